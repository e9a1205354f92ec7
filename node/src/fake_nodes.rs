//! Fake nodes (like kwok): one task registers N Nodes with Ready status and Leases, and
//! plays the kubelet for pods bound to them without running anything. Pods go Running and
//! Ready at once; a pod with restartPolicy `Never` or `OnFailure` and the annotation
//! [`DURATION_ANNOTATION`] (`"5s"`, `"250ms"`) goes `Succeeded` after that long. Deleted pods
//! are finalized at once. Used by scheduler and controller benchmarks.
//!
//! The pod status is built by the same pure code as the real kubelet's
//! ([`record`](crate::kubelet::record), [`phase`]), so fake pods look exactly like real ones.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::Error;
use crate::config::FakeNodesConfig;
use crate::heartbeat::{NodeRegistrar, Readiness};
use crate::host::HostInfo;
use crate::kubelet::phase::{self, ConditionInputs};
use crate::kubelet::record::{ContainerRecord, Termination};
use crate::node_status::StatusInputs;

/// Annotation giving a fake pod's run time before it succeeds (restartPolicy Never/OnFailure).
pub const DURATION_ANNOTATION: &str = "skiff.io/fake-duration";

/// Label put on every fake node.
pub const FAKE_NODE_LABEL: &str = "skiff.io/fake-node";

/// Parse `"5s"`, `"250ms"`, `"2m"` or plain seconds.
pub fn parse_duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    let (number, unit) = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map(|i| v.split_at(i))
        .unwrap_or((v, "s"));
    let n: f64 = number.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Node `i`'s pod range: `10.(128 + i / 256).(i % 256).0/24`, clear of the real 10.244/16.
fn pod_ip(node: u32, pod: u32) -> IpAddr {
    let second = 128 + (node / 256) as u8;
    let third = (node % 256) as u8;
    IpAddr::V4(Ipv4Addr::new(10, second, third, (pod % 253 + 2) as u8))
}

fn node_ip(node: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        10,
        127,
        (node / 256) as u8,
        (node % 256) as u8,
    ))
}

/// The status of a fake pod: all containers running and ready, or all terminated (exit 0).
pub fn fake_status(
    pod: &Pod,
    host_ip: IpAddr,
    ip: IpAddr,
    finished: bool,
    now: Timestamp,
) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .unwrap_or(now);
    let record = |c: &k8s_openapi::api::core::v1::Container, done: bool| {
        let mut r = ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default(), "");
        r.handler = Some("fake".to_owned());
        r.started_run(
            format!(
                "{}-{}",
                pod.metadata.uid.as_deref().unwrap_or_default(),
                c.name
            ),
            started,
        );
        r.image_id = Some(format!("fake@sha256:{:064x}", 0));
        if done {
            r.exited(Termination {
                exit_code: 0,
                reason: "Completed".to_owned(),
                message: None,
                started_at: Some(started),
                finished_at: now,
                container_id: r.container_id(),
            });
        } else {
            r.started = true;
            r.ready = true;
        }
        r.to_status()
    };
    let init: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| record(c, true))
        .collect();
    let containers: Vec<_> = spec
        .containers
        .iter()
        .map(|c| record(c, finished))
        .collect();
    let phase = phase::phase(&spec, &init, &containers);
    let existing = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let conditions = phase::conditions(
        &spec,
        &init,
        &containers,
        ConditionInputs {
            sandbox_ready: !finished,
            sandbox_error: None,
            phase,
        },
        &existing,
        now,
    );
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(host_ip.to_string()),
        host_ips: Some(vec![HostIP {
            ip: host_ip.to_string(),
        }]),
        pod_ip: Some(ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(Time(started)),
        qos_class: Some(phase::qos_class(&spec).to_owned()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(containers),
        ..PodStatus::default()
    }
}

struct FakeNode {
    index: u32,
    pods: u32,
}

/// Run `config.count` fake nodes until the future is dropped.
pub async fn run_fake_nodes(client: Client, config: FakeNodesConfig) -> Result<(), Error> {
    if config.count == 0 {
        return Err(Error::Config(
            "fake node count must be at least 1".to_owned(),
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut registered = Vec::new();
    let nodes: Arc<Mutex<HashMap<String, FakeNode>>> = Arc::new(Mutex::new(HashMap::new()));
    for i in 0..config.count {
        let name = format!("{}-{i}", config.name_prefix);
        let host = HostInfo {
            hostname: name.clone(),
            cpus: config.cpu,
            memory_bytes: config.memory_bytes,
            ephemeral_storage_bytes: 100 << 30,
            kernel_version: "fake".to_owned(),
            os_image: "Skiff fake node".to_owned(),
            architecture: crate::host::kube_arch(std::env::consts::ARCH).to_owned(),
            machine_id: format!("fake-{i}"),
            system_uuid: format!("fake-{i}"),
            boot_id: format!("fake-{i}"),
            internal_ip: node_ip(i),
        };
        let inputs = StatusInputs {
            max_pods: config.max_pods,
            runtime_handlers: config.runtime_handlers.clone(),
            kubelet_port: 10250,
            ready: true,
            not_ready_message: None,
        };
        let mut registrar = NodeRegistrar::new(client.clone(), name.clone(), host.clone(), inputs);
        let mut labels = crate::node_status::node_labels(&name, &host, &config.labels);
        labels.insert(FAKE_NODE_LABEL.to_owned(), "true".to_owned());
        registrar.labels = labels;
        registrar.heartbeat = config.heartbeat;
        registrar.measure_usage = false;
        let cidr = format!("10.{}.{}.0/24", 128 + i / 256, i % 256);
        registrar.static_pod_cidr = Some(cidr);
        let (_readiness_tx, readiness_rx) = watch::channel(Readiness::ready());
        let (node_tx, node_rx) = watch::channel(None);
        registered.push(node_rx);
        tasks.spawn(async move {
            let _keep = _readiness_tx;
            registrar.run(readiness_rx, node_tx).await;
        });
        nodes.lock().insert(name, FakeNode { index: i, pods: 0 });
    }
    if let Some(ready) = config.ready.clone() {
        let mut registered = registered;
        tasks.spawn(async move {
            for rx in &mut registered {
                let _ = rx.wait_for(Option::is_some).await;
            }
            ready.send_replace(true);
            std::future::pending::<()>().await;
        });
    }
    tasks.spawn(play_pods(client, nodes, config.name_prefix.clone()));
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result
            && e.is_panic()
        {
            return Err(Error::Panicked(e.to_string()));
        }
    }
    Ok(())
}

async fn play_pods(client: Client, nodes: Arc<Mutex<HashMap<String, FakeNode>>>, prefix: String) {
    let api: Api<Pod> = Api::all(client.clone());
    // Back off on errors: a failing watch must not spin.
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut timers: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut done: BTreeMap<String, ()> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(t) = timers.remove(&uid) {
                    t.abort();
                }
                done.remove(&uid);
                continue;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "fake nodes: pod watch failed; retrying");
                continue;
            }
        };
        let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if !node_name.starts_with(&prefix) {
            continue;
        }
        let Some((index, seq)) = nodes.lock().get_mut(&node_name).map(|n| {
            n.pods += 1;
            (n.index, n.pods)
        }) else {
            continue;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        if pod.metadata.deletion_timestamp.is_some() {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(error) = pods.delete(&name, &params).await {
                tracing::debug!(%error, pod = %name, "fake nodes: final delete failed");
            }
            continue;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if phase == "Running"
            || phase == "Succeeded"
            || phase == "Failed"
            || done.contains_key(&uid)
        {
            continue;
        }
        done.insert(uid.clone(), ());
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .and_then(|ip| ip.parse().ok())
            .unwrap_or_else(|| pod_ip(index, seq));
        let host_ip = node_ip(index);
        let status = fake_status(&pod, host_ip, ip, false, Timestamp::now());
        let patch = serde_json::json!({"status": status});
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(running) => {
                let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.clone());
                let duration = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DURATION_ANNOTATION))
                    .and_then(|d| parse_duration(d));
                if let (Some(duration), Some("Never" | "OnFailure")) = (duration, policy.as_deref())
                {
                    let pods = pods.clone();
                    timers.insert(
                        uid.clone(),
                        tokio::spawn(async move {
                            tokio::time::sleep(duration).await;
                            let status = fake_status(&running, host_ip, ip, true, Timestamp::now());
                            let patch = serde_json::json!({"status": status});
                            if let Err(error) = pods
                                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                                .await
                            {
                                tracing::debug!(%error, pod = %name, "fake nodes: completion failed");
                            }
                        }),
                    );
                }
            }
            Err(error) => {
                done.remove(&uid);
                tracing::debug!(%error, pod = %name, "fake nodes: status update failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn fake_pods_look_real() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("img".into()),
                    ..Container::default()
                }],
                restart_policy: Some("Never".into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let now = Timestamp::now();
        let running = fake_status(&pod, node_ip(0), pod_ip(0, 1), false, now);
        assert_eq!(running.phase.as_deref(), Some("Running"));
        let ready = running
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(running.pod_ip.as_deref(), Some("10.128.0.3"));
        let done = fake_status(&pod, node_ip(0), pod_ip(0, 1), true, now);
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        let cs = &done.container_statuses.expect("statuses")[0];
        assert_eq!(
            cs.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.reason.as_deref()),
            Some("Completed")
        );
    }
}
