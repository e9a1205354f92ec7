//! Starting one container run: image (pull policy, `Pulling`/`Pulled` events), environment,
//! mounts, the runtime spec, create (`Created`) and start (`Started`). Failures come back with
//! the waiting reason Kubernetes shows (`ErrImagePull`, `CreateContainerConfigError`,
//! `CreateContainerError`, ...).

use std::collections::BTreeMap;
use std::time::Instant;

use super::pull::{PullAction, PullPolicy};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use skiff_runtimes::{ContainerSpec, RegistryAuth, Resources};

use super::Kubelet;
use super::env::{self, NodeFacts, Sources};
use super::events::EventType;
use super::record;
use super::volumes::Volumes;

/// A started run.
#[derive(Debug, Clone)]
pub struct Started {
    /// Runtime id.
    pub id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// `image@digest`.
    pub image_id: Option<String>,
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    /// Waiting reason.
    pub reason: String,
    /// Detail.
    pub message: String,
}

impl StartFailure {
    fn new(reason: &str, message: impl Into<String>) -> Self {
        StartFailure {
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// True for image pull failures (retried with `ImagePullBackOff`).
    pub fn is_pull(&self) -> bool {
        matches!(
            self.reason.as_str(),
            record::ERR_IMAGE_PULL
                | record::IMAGE_PULL_BACK_OFF
                | "ErrImageNeverPull"
                | "InvalidImageName"
        )
    }
}

/// Fetch the ConfigMaps and Secrets named in `configmaps`/`secrets` (absent → `None`).
pub async fn fetch_sources(
    kubelet: &Kubelet,
    namespace: &str,
    configmaps: &[String],
    secrets: &[String],
) -> Result<Sources, String> {
    let mut sources = Sources::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(kubelet.client.clone(), namespace);
    for name in configmaps {
        let cm = cm_api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read configmap \"{name}\": {e}"))?;
        sources.config_maps.insert(
            name.clone(),
            cm.map(|cm| {
                let mut data = cm.data.unwrap_or_default();
                for (k, v) in cm.binary_data.unwrap_or_default() {
                    data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
                }
                data
            }),
        );
    }
    let secret_api: Api<Secret> = Api::namespaced(kubelet.client.clone(), namespace);
    for name in secrets {
        let secret = secret_api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read secret \"{name}\": {e}"))?;
        sources.secrets.insert(
            name.clone(),
            secret.map(|s| {
                let mut data: BTreeMap<String, String> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(s.string_data.unwrap_or_default());
                data
            }),
        );
    }
    Ok(sources)
}

/// Node facts for env and downward API.
pub fn node_facts(kubelet: &Kubelet, pod_ip: Option<std::net::IpAddr>) -> NodeFacts {
    NodeFacts {
        host_ip: kubelet.config.node_ip.to_string(),
        pod_ip: pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        allocatable_cpu: kubelet.config.allocatable_cpu,
        allocatable_memory: kubelet.config.allocatable_memory,
    }
}

/// Memory and CPU limits of a container for the runtime.
pub fn resources_of(container: &Container) -> Resources {
    let limits = container
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    Resources {
        memory_limit_bytes: limits
            .get("memory")
            .and_then(|q| env::parse_quantity(&q.0))
            .map(|b| b as u64)
            .filter(|b| *b > 0),
        cpu_millicores: limits
            .get("cpu")
            .and_then(|q| env::parse_quantity(&q.0))
            .map(|c| (c * 1000.0).ceil() as u64)
            .filter(|m| *m > 0),
    }
}

/// Everything needed to start one run.
pub struct StartRequest<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The container.
    pub container: &'a Container,
    /// Runtime handler.
    pub handler: &'a str,
    /// Sandbox id in that runtime.
    pub sandbox_id: &'a str,
    /// Prepared volumes.
    pub volumes: &'a Volumes,
    /// The pod IP.
    pub pod_ip: Option<std::net::IpAddr>,
    /// The restart count this run will have (names the log file).
    pub attempt: i32,
}

/// Pull (per policy), build the spec, create and start. Events are recorded on the way.
pub async fn start(kubelet: &Kubelet, req: StartRequest<'_>) -> Result<Started, StartFailure> {
    let pod = req.pod;
    let c = req.container;
    let name = c.name.as_str();
    let image = c.image.clone().unwrap_or_default();
    let event = |type_, reason: &str, message: String| {
        kubelet
            .recorder
            .pod_event(pod, Some(name), type_, reason, message);
    };
    let runtime = kubelet
        .selector
        .runtime(req.handler)
        .map_err(|e| StartFailure::new("CreateContainerError", e.0))?;

    // Image.
    let policy = c
        .image_pull_policy
        .as_deref()
        .and_then(PullPolicy::parse)
        .unwrap_or_else(|| PullPolicy::default_for(&image));
    let local = runtime
        .image_status(&image)
        .await
        .map_err(|e| StartFailure::new(e.reason(), e.to_string()))?;
    let info = match policy.decide(local.is_some()) {
        PullAction::UseLocal => {
            event(
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            local.ok_or_else(|| StartFailure::new(record::ERR_IMAGE_PULL, "image vanished"))?
        }
        PullAction::FailNeverPull => {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            event(EventType::Warning, "ErrImageNeverPull", message.clone());
            return Err(StartFailure::new("ErrImageNeverPull", message));
        }
        PullAction::Pull => {
            event(
                EventType::Normal,
                "Pulling",
                format!("Pulling image \"{image}\""),
            );
            let started = Instant::now();
            match runtime.pull_image(&image, &RegistryAuth::Anonymous).await {
                Ok(info) => {
                    let took = started.elapsed().as_secs_f64();
                    event(
                        EventType::Normal,
                        "Pulled",
                        format!(
                            "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.",
                            info.size
                        ),
                    );
                    info
                }
                Err(error) => match local {
                    // `Always` with a local copy (e.g. `skiff image import`): use it.
                    Some(info) => {
                        tracing::debug!(image, %error, "pull failed; using the local image");
                        info
                    }
                    None => {
                        let message = format!("Failed to pull image \"{image}\": {error}");
                        event(EventType::Warning, "Failed", message.clone());
                        event(
                            EventType::Warning,
                            "Failed",
                            format!("Error: {}", record::ERR_IMAGE_PULL),
                        );
                        return Err(StartFailure::new(record::ERR_IMAGE_PULL, message));
                    }
                },
            }
        }
    };
    let image_id = Some(record::image_id(&image, &info.id));

    // Environment and mounts.
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cms, secrets) = env::referenced(c);
    let config_error = |message: String| {
        event(EventType::Warning, "Failed", format!("Error: {message}"));
        StartFailure::new("CreateContainerConfigError", message)
    };
    let sources = fetch_sources(kubelet, namespace, &cms, &secrets)
        .await
        .map_err(config_error)?;
    let facts = node_facts(kubelet, req.pod_ip);
    let env = env::resolve(pod, c, &sources, &facts).map_err(|e| config_error(e.0))?;
    let mounts = req
        .volumes
        .mounts(c, pod)
        .map_err(|e| config_error(e.message))?;
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let log_dir = kubelet.pod_log_dir(namespace, pod_name, uid).join(name);
    // On a blocking thread: creating directories waits on the filesystem.
    tokio::fs::create_dir_all(&log_dir).await.map_err(|e| {
        StartFailure::new(
            "CreateContainerError",
            format!("create log directory {}: {e}", log_dir.display()),
        )
    })?;
    let spec = ContainerSpec {
        name: name.to_owned(),
        image: image.clone(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        mounts,
        resources: resources_of(c),
        log_path: Some(log_dir.join(format!("{}.log", req.attempt))),
        labels: BTreeMap::from([
            ("io.kubernetes.pod.uid".to_owned(), uid.to_owned()),
            ("io.kubernetes.pod.name".to_owned(), pod_name.to_owned()),
            (
                "io.kubernetes.pod.namespace".to_owned(),
                namespace.to_owned(),
            ),
            ("io.kubernetes.container.name".to_owned(), name.to_owned()),
        ]),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
    };

    // Create and start.
    let id = runtime
        .create_container(req.sandbox_id, &spec)
        .await
        .map_err(|e| {
            let message = e.to_string();
            event(EventType::Warning, "Failed", format!("Error: {message}"));
            let reason = match e.reason() {
                "CreateContainerConfigError" => "CreateContainerConfigError",
                _ => "CreateContainerError",
            };
            StartFailure::new(reason, message)
        })?;
    event(
        EventType::Normal,
        "Created",
        format!("Created container: {name}"),
    );
    if let Err(e) = runtime.start_container(&id).await {
        let message = e.to_string();
        event(EventType::Warning, "Failed", format!("Error: {message}"));
        let _ = runtime.remove_container(&id).await;
        return Err(StartFailure::new("RunContainerError", message));
    }
    event(
        EventType::Normal,
        "Started",
        format!("Started container {name}"),
    );
    let started_at = runtime
        .container_status(&id)
        .await
        .ok()
        .and_then(|s| s.state.started_at())
        .unwrap_or_else(Timestamp::now);
    Ok(Started {
        id,
        started_at,
        image_id,
    })
}
