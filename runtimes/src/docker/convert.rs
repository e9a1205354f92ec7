//! Pure conversions between Skiff's spec/status types and Docker's API models.
//!
//! Everything Docker stores about a Skiff sandbox or container is in its labels (see
//! [`labels`]), so a node that restarts rebuilds its view from `docker ps` alone. This module
//! builds the create bodies ([`sandbox_body`], [`container_body`]) and reads inspect results
//! back ([`sandbox_status`], [`container_status`]); it does no I/O and is unit-tested here.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, HostConfig,
    HostConfigLogConfig, Mount as DockerMount, MountType,
};
use jiff::Timestamp;

use crate::spec::{ContainerSpec, NetworkMode, SandboxSpec};
use crate::status::{
    ContainerState, ContainerStatus, ExitInfo, ExitReason, SandboxState, SandboxStatus,
};

/// The labels Skiff puts on its Docker containers.
pub mod labels {
    /// Which Skiff node (runtime instance) owns the container; its value is
    /// [`DockerConfig::instance`](super::super::DockerConfig::instance).
    pub const MANAGED_BY: &str = "io.skiff.managed-by";
    /// `sandbox` for a pod's pause container, `container` for the pod's other containers.
    pub const KIND: &str = "io.skiff.kind";
    /// [`KIND`] value of pause containers.
    pub const KIND_SANDBOX: &str = "sandbox";
    /// [`KIND`] value of application containers.
    pub const KIND_CONTAINER: &str = "container";
    /// The id of the sandbox (pause container) an application container belongs to.
    pub const SANDBOX_ID: &str = "io.skiff.sandbox.id";
    /// The pod's name.
    pub const POD_NAME: &str = "io.skiff.pod.name";
    /// The pod's namespace.
    pub const POD_NAMESPACE: &str = "io.skiff.pod.namespace";
    /// The pod's UID.
    pub const POD_UID: &str = "io.skiff.pod.uid";
    /// `pod` or `host`: how the sandbox got its network namespace.
    pub const NETWORK: &str = "io.skiff.sandbox.network";
    /// The container's name within its pod.
    pub const CONTAINER_NAME: &str = "io.skiff.container.name";
    /// Where the container's CRI log file is written.
    pub const LOG_PATH: &str = "io.skiff.container.log-path";
    /// Prefix of every Skiff label; callers' labels with it are dropped.
    pub const PREFIX: &str = "io.skiff.";
}

/// Docker's "no time" value, used for containers that never started or finished.
const ZERO_TIME_PREFIX: &str = "0001-01-01";

/// The create body of a pod's pause container.
pub fn sandbox_body(
    spec: &SandboxSpec,
    instance: &str,
    pause_image: &str,
) -> Result<ContainerCreateBody, String> {
    let (network_mode, network_label) = match &spec.network {
        NetworkMode::Pod => ("none", "pod"),
        NetworkMode::Host => ("host", "host"),
        NetworkMode::Existing(path) => {
            return Err(format!(
                "Docker cannot join an existing network namespace by path ({}); let the Docker \
                 sandbox own the namespace and join it from other runtimes",
                path.display()
            ));
        }
    };
    let mut labels = user_labels(&spec.labels);
    labels.extend([
        (labels::MANAGED_BY.to_owned(), instance.to_owned()),
        (labels::KIND.to_owned(), labels::KIND_SANDBOX.to_owned()),
        (labels::POD_NAME.to_owned(), spec.name.clone()),
        (labels::POD_NAMESPACE.to_owned(), spec.namespace.clone()),
        (labels::POD_UID.to_owned(), spec.uid.clone()),
        (labels::NETWORK.to_owned(), network_label.to_owned()),
    ]);
    let hostname = (network_mode != "host").then(|| hostname_for(&spec.name));
    Ok(ContainerCreateBody {
        image: Some(pause_image.to_owned()),
        hostname,
        labels: Some(labels),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode.to_owned()),
            // The pod's containers join the pause container's IPC namespace, as in Kubernetes.
            ipc_mode: Some("shareable".to_owned()),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    })
}

/// The create body of an application container joining sandbox `sandbox_id`.
pub fn container_body(
    spec: &ContainerSpec,
    sandbox_id: &str,
    sandbox_labels: &HashMap<String, String>,
    instance: &str,
) -> ContainerCreateBody {
    let mut labels = user_labels(&spec.labels);
    for key in [labels::POD_NAME, labels::POD_NAMESPACE, labels::POD_UID] {
        if let Some(value) = sandbox_labels.get(key) {
            labels.insert(key.to_owned(), value.clone());
        }
    }
    labels.extend([
        (labels::MANAGED_BY.to_owned(), instance.to_owned()),
        (labels::KIND.to_owned(), labels::KIND_CONTAINER.to_owned()),
        (labels::SANDBOX_ID.to_owned(), sandbox_id.to_owned()),
        (labels::CONTAINER_NAME.to_owned(), spec.name.clone()),
    ]);
    if let Some(path) = &spec.log_path {
        labels.insert(labels::LOG_PATH.to_owned(), path.display().to_string());
    }

    // Kubernetes semantics: `command` replaces the image's entrypoint (and drops its cmd);
    // `args` alone replace only the image's cmd.
    let (entrypoint, cmd) = match (spec.command.is_empty(), spec.args.is_empty()) {
        (false, _) => (Some(spec.command.clone()), Some(spec.args.clone())),
        (true, false) => (None, Some(spec.args.clone())),
        (true, true) => (None, None),
    };
    let env = spec
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mounts = spec
        .mounts
        .iter()
        .map(|m| DockerMount {
            typ: Some(MountType::BIND),
            source: Some(m.host_path.display().to_string()),
            target: Some(m.container_path.clone()),
            read_only: Some(m.read_only),
            ..DockerMount::default()
        })
        .collect::<Vec<_>>();
    let memory = spec
        .resources
        .memory_limit_bytes
        .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
    let nano_cpus = spec
        .resources
        .cpu_millicores
        .map(|milli| i64::try_from(milli.saturating_mul(1_000_000)).unwrap_or(i64::MAX));
    let joined = format!("container:{sandbox_id}");
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint,
        cmd,
        env: Some(env),
        working_dir: spec.working_dir.clone(),
        labels: Some(labels),
        // What `kubectl run -i[t]` sets; attach needs stdin open from the start.
        open_stdin: Some(spec.stdin),
        stdin_once: Some(spec.stdin && spec.stdin_once),
        attach_stdin: Some(spec.stdin),
        tty: Some(spec.tty),
        host_config: Some(HostConfig {
            network_mode: Some(joined.clone()),
            ipc_mode: Some(joined),
            mounts: (!mounts.is_empty()).then_some(mounts),
            memory,
            // No swap on top of the limit, so going over it is an OOM kill, not a slowdown.
            memory_swap: memory,
            nano_cpus,
            log_config: Some(HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), "10m".to_owned()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// A readable, unique Docker container name: `skiff_<container>_<pod>_<namespace>_<suffix>`.
pub fn container_name(parts: &[&str], suffix: &str) -> String {
    let mut name = String::from("skiff");
    for part in parts.iter().chain(std::iter::once(&suffix)) {
        name.push('_');
        name.extend(part.chars().take(63).map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        }));
    }
    name
}

/// Whether an inspected container is one of this instance's, of `kind`.
pub fn is_ours(labels: Option<&HashMap<String, String>>, instance: &str, kind: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(labels::MANAGED_BY).map(String::as_str) == Some(instance)
            && l.get(labels::KIND).map(String::as_str) == Some(kind)
    })
}

/// The sandbox status of an inspected pause container; `None` if it is not this instance's.
pub fn sandbox_status(inspect: &ContainerInspectResponse, instance: &str) -> Option<SandboxStatus> {
    let labels = inspect.config.as_ref()?.labels.as_ref();
    if !is_ours(labels, instance, labels::KIND_SANDBOX) {
        return None;
    }
    let labels = labels?;
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    let state = inspect.state.as_ref();
    let pid = state
        .filter(|s| s.running == Some(true))
        .and_then(|s| s.pid)
        .filter(|pid| *pid > 0);
    let host_network = labels.get(labels::NETWORK).map(String::as_str) == Some("host");
    Some(SandboxStatus {
        id: inspect.id.clone()?,
        name: label(labels::POD_NAME),
        namespace: label(labels::POD_NAMESPACE),
        uid: label(labels::POD_UID),
        state: if pid.is_some() {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        },
        netns_path: pid
            .filter(|_| !host_network)
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net"))),
        created_at: parse_time(inspect.created.as_deref()).unwrap_or_else(Timestamp::now),
    })
}

/// The container status of an inspected application container; `None` if it is not this
/// instance's. `cancelled` is the exit recorded for a container stopped before it started
/// (Docker itself keeps such a container in `created`).
pub fn container_status(
    inspect: &ContainerInspectResponse,
    instance: &str,
    cancelled: Option<&ExitInfo>,
) -> Option<ContainerStatus> {
    let config = inspect.config.as_ref()?;
    let labels = config.labels.as_ref();
    if !is_ours(labels, instance, labels::KIND_CONTAINER) {
        return None;
    }
    let labels = labels?;
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    Some(ContainerStatus {
        id: inspect.id.clone()?,
        sandbox_id: label(labels::SANDBOX_ID),
        name: label(labels::CONTAINER_NAME),
        image: config.image.clone().unwrap_or_default(),
        image_digest: inspect.image.clone(),
        state: container_state(inspect, cancelled),
        created_at: parse_time(inspect.created.as_deref()).unwrap_or_else(Timestamp::now),
        log_path: labels.get(labels::LOG_PATH).map(PathBuf::from),
    })
}

/// Docker's state of a container as a Skiff [`ContainerState`].
pub fn container_state(
    inspect: &ContainerInspectResponse,
    cancelled: Option<&ExitInfo>,
) -> ContainerState {
    let Some(state) = inspect.state.as_ref() else {
        return ContainerState::Created;
    };
    let started_at = parse_time(state.started_at.as_deref());
    match state.status {
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => {
            // A start that failed (no such executable, ...) leaves Docker's container in
            // `created` with the runtime's error: for Kubernetes it ended, ContainerCannotRun.
            let failed_start = state
                .error
                .clone()
                .filter(|e| !e.is_empty())
                .map(|message| ExitInfo {
                    exit_code: state
                        .exit_code
                        .and_then(|c| i32::try_from(c).ok())
                        .filter(|c| *c != 0)
                        .unwrap_or(128),
                    reason: ExitReason::ContainerCannotRun,
                    message: Some(message),
                    finished_at: parse_time(state.finished_at.as_deref())
                        .unwrap_or_else(Timestamp::now),
                });
            match failed_start.as_ref().or(cancelled) {
                Some(exit) => ContainerState::Exited {
                    started_at: None,
                    exit: exit.clone(),
                },
                None => ContainerState::Created,
            }
        }
        Some(
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::STOPPING,
        ) => ContainerState::Running {
            started_at: started_at.unwrap_or_else(Timestamp::now),
        },
        Some(
            ContainerStateStatusEnum::EXITED
            | ContainerStateStatusEnum::DEAD
            | ContainerStateStatusEnum::REMOVING,
        ) => {
            let code = state
                .exit_code
                .map(|c| i32::try_from(c).unwrap_or(i32::MAX))
                .unwrap_or(0);
            let reason = if state.oom_killed == Some(true) {
                ExitReason::OomKilled
            } else {
                ExitReason::from_exit_code(code)
            };
            ContainerState::Exited {
                started_at,
                exit: ExitInfo {
                    exit_code: code,
                    reason,
                    message: state.error.clone().filter(|e| !e.is_empty()),
                    // Docker stamps StartedAt after runc has started the process, so a
                    // process that exits at once can have finished "before" it started.
                    finished_at: parse_time(state.finished_at.as_deref())
                        .map(|finished| started_at.map_or(finished, |s| finished.max(s)))
                        .or(started_at)
                        .unwrap_or_else(Timestamp::now),
                },
            }
        }
    }
}

/// Parse a Docker RFC 3339 time; `None` for its zero time or garbage.
pub fn parse_time(value: Option<&str>) -> Option<Timestamp> {
    let value = value?;
    if value.is_empty() || value.starts_with(ZERO_TIME_PREFIX) {
        return None;
    }
    value.parse().ok()
}

/// The Docker `stop` timeout for a grace period: whole seconds, rounded up.
pub fn stop_timeout_secs(grace: std::time::Duration) -> i32 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// A caller's labels without any in Skiff's own `io.skiff.` namespace.
fn user_labels(labels: &BTreeMap<String, String>) -> HashMap<String, String> {
    labels
        .iter()
        .filter(|(key, _)| !key.starts_with(labels::PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A valid hostname (RFC 1123 label) from a pod name.
fn hostname_for(pod: &str) -> String {
    let name: String = pod
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        "pod".to_owned()
    } else {
        name.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Mount, Resources};
    use bollard::models::{ContainerConfig, ContainerState as DockerState};
    use std::time::Duration;

    fn inspect(
        labels: &[(&str, &str)],
        status: ContainerStateStatusEnum,
        adjust: impl FnOnce(&mut DockerState),
    ) -> ContainerInspectResponse {
        let mut state = DockerState {
            status: Some(status),
            running: Some(status == ContainerStateStatusEnum::RUNNING),
            pid: Some(if status == ContainerStateStatusEnum::RUNNING {
                42
            } else {
                0
            }),
            started_at: Some("0001-01-01T00:00:00Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            exit_code: Some(0),
            oom_killed: Some(false),
            error: Some(String::new()),
            ..DockerState::default()
        };
        adjust(&mut state);
        ContainerInspectResponse {
            id: Some("abc".into()),
            created: Some("2024-05-06T07:08:09.123456789Z".into()),
            image: Some("sha256:feed".into()),
            state: Some(state),
            config: Some(ContainerConfig {
                image: Some("busybox:v1".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ContainerConfig::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    fn ours(kind: &str) -> Vec<(&'static str, &str)> {
        vec![
            (labels::MANAGED_BY, "node-a"),
            (labels::KIND, kind),
            (labels::SANDBOX_ID, "sb1"),
            (labels::CONTAINER_NAME, "app"),
            (labels::POD_NAME, "web"),
            (labels::POD_NAMESPACE, "prod"),
            (labels::POD_UID, "uid-1"),
            (labels::LOG_PATH, "/var/log/app.log"),
        ]
    }

    #[test]
    fn sandbox_body_uses_network_none_and_labels() {
        let mut spec = SandboxSpec::new("web_1");
        spec.uid = "uid-1".into();
        spec.labels.insert("team".into(), "a".into());
        spec.labels.insert(labels::KIND.into(), "forged".into());
        let body = sandbox_body(&spec, "node-a", "skiff/pause:3.10").expect("body");
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(body.hostname.as_deref(), Some("web-1"));
        let labels = body.labels.expect("labels");
        assert_eq!(
            labels[labels::KIND],
            "sandbox",
            "callers cannot forge Skiff labels"
        );
        assert_eq!(labels[labels::MANAGED_BY], "node-a");
        assert_eq!(labels[labels::POD_UID], "uid-1");
        assert_eq!(labels["team"], "a");

        let host_spec = spec.clone().with_network(NetworkMode::Host);
        let body = sandbox_body(&host_spec, "node-a", "p").expect("host body");
        assert_eq!(body.hostname, None);
        let existing = spec.with_network(NetworkMode::Existing("/run/netns/x".into()));
        assert!(sandbox_body(&existing, "node-a", "p").is_err());
    }

    #[test]
    fn container_body_follows_kubernetes_command_semantics() {
        let base = ContainerSpec::new("app", "busybox:v1");
        let body = container_body(&base, "sb1", &HashMap::new(), "n");
        assert_eq!((body.entrypoint, body.cmd), (None, None));

        let mut args_only = base.clone();
        args_only.args = vec!["-x".into()];
        let body = container_body(&args_only, "sb1", &HashMap::new(), "n");
        assert_eq!((body.entrypoint, body.cmd), (None, Some(vec!["-x".into()])));

        let mut command = base.clone();
        command.command = vec!["/bin/sh".into()];
        let body = container_body(&command, "sb1", &HashMap::new(), "n");
        assert_eq!(body.entrypoint, Some(vec!["/bin/sh".into()]));
        assert_eq!(body.cmd, Some(vec![]), "command drops the image's cmd");
    }

    #[test]
    fn container_body_carries_env_mounts_limits_and_labels() {
        let mut spec = ContainerSpec::new("app", "busybox:v1");
        spec.env = vec![("A".into(), "1 2".into()), ("EMPTY".into(), String::new())];
        spec.working_dir = Some("/work".into());
        spec.mounts = vec![Mount {
            host_path: "/srv/data".into(),
            container_path: "/data".into(),
            read_only: true,
        }];
        spec.resources = Resources {
            memory_limit_bytes: Some(64 << 20),
            cpu_millicores: Some(250),
        };
        spec.log_path = Some("/logs/app.log".into());
        let sandbox_labels = HashMap::from([(labels::POD_UID.to_owned(), "uid-1".to_owned())]);
        let body = container_body(&spec, "sb1", &sandbox_labels, "node-a");
        assert_eq!(body.env, Some(vec!["A=1 2".into(), "EMPTY=".into()]));
        assert_eq!(body.working_dir.as_deref(), Some("/work"));
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("container:sb1"));
        assert_eq!(host.ipc_mode.as_deref(), Some("container:sb1"));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_swap, Some(64 << 20));
        assert_eq!(host.nano_cpus, Some(250_000_000));
        let mount = &host.mounts.expect("mounts")[0];
        assert_eq!(mount.source.as_deref(), Some("/srv/data"));
        assert_eq!(mount.target.as_deref(), Some("/data"));
        assert_eq!(mount.read_only, Some(true));
        let labels = body.labels.expect("labels");
        assert_eq!(labels[labels::SANDBOX_ID], "sb1");
        assert_eq!(labels[labels::POD_UID], "uid-1");
        assert_eq!(labels[labels::LOG_PATH], "/logs/app.log");
        assert_eq!(labels[labels::CONTAINER_NAME], "app");
        assert_eq!(body.open_stdin, Some(false), "stdin closed unless asked");
        assert_eq!(body.tty, Some(false));
    }

    #[test]
    fn container_body_opens_stdin_and_a_terminal_when_asked() {
        let mut spec = ContainerSpec::new("app", "busybox:v1");
        spec.stdin = true;
        spec.stdin_once = true;
        spec.tty = true;
        let body = container_body(&spec, "sb1", &HashMap::new(), "n");
        assert_eq!(body.open_stdin, Some(true));
        assert_eq!(body.stdin_once, Some(true));
        assert_eq!(body.tty, Some(true));
    }

    #[test]
    fn names_are_docker_safe() {
        assert_eq!(
            container_name(&["app", "web/1", "prod"], "ab12"),
            "skiff_app_web-1_prod_ab12"
        );
    }

    #[test]
    fn foreign_containers_are_not_ours() {
        let foreign = inspect(&[("x", "y")], ContainerStateStatusEnum::RUNNING, |_| {});
        assert!(container_status(&foreign, "node-a", None).is_none());
        let other_node = inspect(
            &[(labels::MANAGED_BY, "node-b"), (labels::KIND, "container")],
            ContainerStateStatusEnum::RUNNING,
            |_| {},
        );
        assert!(container_status(&other_node, "node-a", None).is_none());
        let sandbox = inspect(&ours("sandbox"), ContainerStateStatusEnum::RUNNING, |_| {});
        assert!(container_status(&sandbox, "node-a", None).is_none());
        assert!(sandbox_status(&sandbox, "node-a").is_some());
    }

    #[test]
    fn sandbox_status_reports_the_pause_netns() {
        let running = inspect(&ours("sandbox"), ContainerStateStatusEnum::RUNNING, |_| {});
        let status = sandbox_status(&running, "node-a").expect("ours");
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(status.netns_path, Some(PathBuf::from("/proc/42/ns/net")));
        assert_eq!(
            (status.name.as_str(), status.namespace.as_str()),
            ("web", "prod")
        );
        assert_eq!(status.uid, "uid-1");

        let stopped = inspect(&ours("sandbox"), ContainerStateStatusEnum::EXITED, |_| {});
        let status = sandbox_status(&stopped, "node-a").expect("ours");
        assert_eq!(status.state, SandboxState::NotReady);
        assert_eq!(status.netns_path, None);

        let mut host = ours("sandbox");
        host.push((labels::NETWORK, "host"));
        let host = inspect(&host, ContainerStateStatusEnum::RUNNING, |_| {});
        let status = sandbox_status(&host, "node-a").expect("ours");
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(status.netns_path, None, "host network has no pod namespace");
    }

    #[test]
    fn container_states_map_from_docker() {
        let labels = ours("container");
        let created = inspect(&labels, ContainerStateStatusEnum::CREATED, |_| {});
        let status = container_status(&created, "node-a", None).expect("ours");
        assert_eq!(status.state, ContainerState::Created);
        assert_eq!(status.image, "busybox:v1");
        assert_eq!(status.image_digest.as_deref(), Some("sha256:feed"));
        assert_eq!(status.log_path, Some(PathBuf::from("/var/log/app.log")));
        assert_eq!(
            (status.sandbox_id.as_str(), status.name.as_str()),
            ("sb1", "app")
        );

        let cancelled = ExitInfo::killed();
        let state = container_state(&created, Some(&cancelled));
        assert_eq!(state.exit_info().map(|e| e.exit_code), Some(137));
        assert_eq!(state.started_at(), None);

        let running = inspect(&labels, ContainerStateStatusEnum::RUNNING, |s| {
            s.started_at = Some("2024-05-06T07:08:10.5Z".into());
        });
        let state = container_state(&running, None);
        assert_eq!(
            state.started_at().map(|t| t.to_string()),
            Some("2024-05-06T07:08:10.5Z".to_owned())
        );

        let exited = inspect(&labels, ContainerStateStatusEnum::EXITED, |s| {
            s.started_at = Some("2024-05-06T07:08:10Z".into());
            s.finished_at = Some("2024-05-06T07:08:11Z".into());
            s.exit_code = Some(3);
        });
        let state = container_state(&exited, Some(&cancelled));
        let exit = state.exit_info().expect("exited");
        assert_eq!((exit.exit_code, exit.reason), (3, ExitReason::Error));
        assert_eq!(exit.message, None);
        assert!(state.started_at().is_some());

        // Observed with dockerd 20.10 for a container exiting at once.
        let instant = inspect(&labels, ContainerStateStatusEnum::EXITED, |s| {
            s.started_at = Some("2026-11-22T03:11:59.070272124Z".into());
            s.finished_at = Some("2026-11-22T03:11:59.06954202Z".into());
        });
        let state = container_state(&instant, None);
        let finished = state.exit_info().expect("exited").finished_at;
        assert_eq!(
            Some(finished),
            state.started_at(),
            "never finished before started"
        );

        let oom = inspect(&labels, ContainerStateStatusEnum::EXITED, |s| {
            s.exit_code = Some(137);
            s.oom_killed = Some(true);
        });
        let state = container_state(&oom, None);
        let exit = state.exit_info().expect("exited");
        assert_eq!((exit.exit_code, exit.reason), (137, ExitReason::OomKilled));
        assert_eq!(state.started_at(), None, "zero time is no time");

        let cannot_run = inspect(&labels, ContainerStateStatusEnum::CREATED, |s| {
            s.exit_code = Some(127);
            s.error = Some("exec: \"/nope\": stat /nope: no such file or directory".into());
        });
        let state = container_state(&cannot_run, None);
        let exit = state.exit_info().expect("a failed start is an exit");
        assert_eq!(
            (exit.exit_code, exit.reason),
            (127, ExitReason::ContainerCannotRun)
        );
        assert!(exit.message.as_deref().is_some_and(|m| m.contains("/nope")));
        assert_eq!(state.started_at(), None);

        let failed = inspect(&labels, ContainerStateStatusEnum::EXITED, |s| {
            s.exit_code = Some(127);
            s.error = Some("exec: \"/nope\": not found".into());
        });
        let exit = container_state(&failed, None)
            .exit_info()
            .cloned()
            .expect("exited");
        assert_eq!(exit.message.as_deref(), Some("exec: \"/nope\": not found"));
    }

    #[test]
    fn stop_timeouts_round_up_to_seconds() {
        assert_eq!(stop_timeout_secs(Duration::ZERO), 0);
        assert_eq!(stop_timeout_secs(Duration::from_millis(1)), 1);
        assert_eq!(stop_timeout_secs(Duration::from_secs(30)), 30);
        assert_eq!(stop_timeout_secs(Duration::from_millis(1500)), 2);
    }
}
