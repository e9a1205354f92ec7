//! Pod lifecycle against the in-process API server with the fake (host-process) runtime:
//! registration, phases, restarts and back-off, init order, graceful deletion, runtime
//! choice errors, env errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeImage, FakeRuntime};

const T: Duration = Duration::from_secs(15);

fn runtime() -> (FakeRuntime, RuntimeRegistry) {
    let fake = FakeRuntime::new();
    fake.add_image("sleeper:v1", FakeImage::shell("echo started; sleep 1000"));
    fake.add_image("ok:v1", FakeImage::shell("echo done"));
    fake.add_image("exit3:v1", FakeImage::shell("echo failing >&2; exit 3"));
    fake.add_image("sh:v1", FakeImage::shell("eval \"$SCRIPT\""));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake.clone()));
    (fake, registry)
}

fn pod(name: &str, node: &str, image: &str, policy: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "app", "image": image}]
        }
    })
}

#[tokio::test]
async fn node_registers_with_status_and_lease() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let mut node = start_node(&cluster.client, registry, "n1", |c| {
        c.labels
            .insert(skiff_node::CONTROL_PLANE_ROLE_LABEL.into(), String::new());
    });
    tokio::time::timeout(T, node.ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let n = nodes.get("n1").await.expect("node");
    let labels = n.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
    let status = n.status.expect("status");
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
    assert_eq!(status.capacity.as_ref().expect("capacity")["pods"].0, "110");
    let handlers: Vec<_> = status
        .runtime_handlers
        .iter()
        .flatten()
        .filter_map(|h| h.name.clone())
        .collect();
    assert!(handlers.contains(&"fake".to_owned()), "{handlers:?}");
    assert_eq!(
        status.node_info.expect("info").kubelet_version,
        "v1.33.0-skiff"
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let first = leases.get("n1").await.expect("lease");
    let first_renew = first
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.clone())
        .expect("renew");
    let renewed = eventually(T, "lease renewal", || async {
        let lease = leases.get("n1").await.ok()?;
        let renew = lease.spec?.renew_time?;
        (renew.0 > first_renew.0).then_some(renew)
    })
    .await;
    assert!(renewed.0 > first_renew.0);
}

#[tokio::test]
async fn pod_runs_and_completes_like_kubernetes() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let node = start_node(&cluster.client, registry, "n1", |_| {});
    let c = &cluster.client;
    create_pod(c, pod("web", "n1", "sleeper:v1", "Always")).await;
    create_pod(c, pod("job-ok", "n1", "ok:v1", "Never")).await;
    create_pod(c, pod("job-fail", "n1", "exit3:v1", "Never")).await;

    let web = wait_pod(c, "web", T, "web Running and Ready", |p| {
        phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let cs = container_status(&web, "app").expect("status");
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("fake://")),
        "{cs:?}"
    );
    assert!(cs.ready && cs.started == Some(true));
    assert!(cs.image_id.contains("sha256:"), "{}", cs.image_id);
    let status = web.status.as_ref().expect("status");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"), "host network");
    assert!(status.start_time.is_some());
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    for t in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(
            condition(&web, t).map(|c| c.status.as_str()),
            Some("True"),
            "{t}"
        );
    }

    let ok = wait_pod(c, "job-ok", T, "job-ok Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let t = container_status(&ok, "app")
        .and_then(|s| s.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(
        condition(&ok, "Ready").and_then(|c| c.reason.as_deref()),
        Some("PodCompleted")
    );

    let failed = wait_pod(c, "job-fail", T, "job-fail Failed", |p| {
        phase(p) == "Failed"
    })
    .await;
    let t = container_status(&failed, "app")
        .and_then(|s| s.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));

    // The container's output is in its CRI log under the node's log dir.
    let uid = web.metadata.uid.clone().expect("uid");
    let log = node
        .data_dir
        .join(format!("logs/default_web_{uid}/app/0.log"));
    let content = eventually(T, "log content", || async {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("started"))
    })
    .await;
    assert!(content.contains(" stdout F started"), "{content}");

    let reasons = event_reasons(c, "web").await;
    for r in ["Pulled", "Created", "Started"] {
        assert!(reasons.iter().any(|x| x == r), "{r} in {reasons:?}");
    }
}

#[tokio::test]
async fn crash_loop_backs_off_and_counts_restarts() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let _node = start_node(&cluster.client, registry, "n1", |c| {
        c.crash_loop_backoff = (Duration::from_millis(800), Duration::from_secs(3));
    });
    let c = &cluster.client;
    create_pod(c, pod("crasher", "n1", "exit3:v1", "Always")).await;
    let p = wait_pod(c, "crasher", T, "CrashLoopBackOff with restarts", |p| {
        waiting_reason(p, "app").as_deref() == Some("CrashLoopBackOff")
            && container_status(p, "app").is_some_and(|s| s.restart_count >= 2)
    })
    .await;
    assert_eq!(phase(&p), "Running", "Always keeps the pod Running");
    let cs = container_status(&p, "app").expect("status");
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("lastState");
    assert_eq!(last.exit_code, 3);
    let message = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone());
    assert!(message.is_some_and(
        |m| m.starts_with("back-off ") && m.contains("container=app pod=crasher_default(")
    ));
    assert_eq!(
        condition(&p, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let reasons = event_reasons(c, "crasher").await;
    assert!(reasons.iter().any(|r| r == "BackOff"), "{reasons:?}");

    // OnFailure: a clean exit ends the pod.
    create_pod(c, pod("once", "n1", "ok:v1", "OnFailure")).await;
    wait_pod(c, "once", T, "OnFailure success", |p| {
        phase(p) == "Succeeded"
    })
    .await;
}

#[tokio::test]
async fn init_containers_run_in_order_first() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let _node = start_node(&cluster.client, registry, "n1", |_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("order");
    let f = file.display().to_string();
    let c = &cluster.client;
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "init", "namespace": "default"},
            "spec": {
                "nodeName": "n1",
                "initContainers": [
                    {"name": "first", "image": "sh:v1", "env": [{"name": "SCRIPT", "value": format!("sleep 0.3; echo first >> {f}")}]},
                    {"name": "second", "image": "sh:v1", "env": [{"name": "SCRIPT", "value": format!("echo second >> {f}")}]}
                ],
                "containers": [
                    {"name": "app", "image": "sh:v1", "env": [{"name": "SCRIPT", "value": format!("echo app >> {f}; sleep 1000")}]}
                ]
            }
        }),
    )
    .await;
    let p = wait_pod(c, "init", T, "init pod Running", |p| phase(p) == "Running").await;
    assert_eq!(
        condition(&p, "Initialized").map(|c| c.status.as_str()),
        Some("True")
    );
    let inits = p
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .expect("init statuses");
    for s in &inits {
        let t = s
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!(t.reason.as_deref(), Some("Completed"));
    }
    let content = eventually(T, "app wrote", || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| s.contains("app"))
    })
    .await;
    assert_eq!(content, "first\nsecond\napp\n");

    // A failing init container with restartPolicy Never fails the pod; containers never run.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "init-fail", "namespace": "default"},
            "spec": {
                "nodeName": "n1", "restartPolicy": "Never",
                "initContainers": [{"name": "bad", "image": "exit3:v1"}],
                "containers": [{"name": "app", "image": "sleeper:v1"}]
            }
        }),
    )
    .await;
    let p = wait_pod(c, "init-fail", T, "init-fail Failed", |p| {
        phase(p) == "Failed"
    })
    .await;
    assert_eq!(
        waiting_reason(&p, "app").as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(
        condition(&p, "Initialized").and_then(|c| c.reason.as_deref()),
        Some("ContainersNotInitialized")
    );
}

#[tokio::test]
async fn deletion_honours_the_grace_period() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let _node = start_node(&cluster.client, registry, "n1", |_| {});
    let c = &cluster.client;
    let mut spec = pod("graceful", "n1", "sh:v1", "Always");
    // Exits 0.7 s after SIGTERM: the stop must wait for it, not kill at once.
    spec["spec"]["containers"][0]["env"] = json!([{"name": "SCRIPT", "value": "trap 'sleep 0.7; exit 0' TERM; while true; do sleep 0.1; done"}]);
    create_pod(c, spec).await;
    wait_pod(c, "graceful", T, "Running", |p| phase(p) == "Running").await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let started = std::time::Instant::now();
    pods.delete("graceful", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(T, "pod gone", || async {
        get_pod(c, "graceful").await.is_none().then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "stopped too early: {took:?}"
    );
    let reasons = event_reasons(c, "graceful").await;
    assert!(reasons.iter().any(|r| r == "Killing"), "{reasons:?}");
}

#[tokio::test]
async fn unknown_runtime_class_and_missing_env_are_reported() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let _node = start_node(&cluster.client, registry, "n1", |_| {});
    let c = &cluster.client;
    let mut spec = pod("classy", "n1", "sleeper:v1", "Always");
    spec["spec"]["runtimeClassName"] = json!("nope");
    create_pod(c, spec).await;
    let p = wait_pod(c, "classy", T, "sandbox condition", |p| {
        condition(p, "PodReadyToStartContainers")
            .is_some_and(|c| c.status == "False" && c.reason.is_some())
    })
    .await;
    let cond = condition(&p, "PodReadyToStartContainers").expect("condition");
    assert_eq!(cond.reason.as_deref(), Some("FailedCreatePodSandBox"));
    assert!(
        cond.message
            .as_deref()
            .is_some_and(|m| m.contains("RuntimeClass \"nope\" not found")),
        "{cond:?}"
    );
    assert_eq!(phase(&p), "Pending");
    eventually(T, "warning event", || async {
        event_reasons(c, "classy")
            .await
            .iter()
            .any(|r| r == "FailedCreatePodSandBox")
            .then_some(())
    })
    .await;

    let mut spec = pod("envy", "n1", "sleeper:v1", "Always");
    spec["spec"]["containers"][0]["env"] =
        json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}]);
    create_pod(c, spec).await;
    let p = wait_pod(c, "envy", T, "CreateContainerConfigError", |p| {
        waiting_reason(p, "app").as_deref() == Some("CreateContainerConfigError")
    })
    .await;
    let message = container_status(&p, "app")
        .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default();
    assert_eq!(message, "secret \"missing\" not found");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn probes_drive_readiness_and_restarts() {
    let cluster = cluster().await;
    let (_fake, registry) = runtime();
    let _node = start_node(&cluster.client, registry, "n1", |_| {});
    let c = &cluster.client;
    let port = free_port();

    // Readiness: not ready until the server answers the httpGet probe.
    let mut spec = pod("ready-web", "n1", "sh:v1", "Always");
    spec["spec"]["containers"][0]["env"] = json!([{"name": "SCRIPT", "value":
        format!("cd \"$(mktemp -d)\" && sleep 3 && exec python3 -m http.server {port} --bind 127.0.0.1")}]);
    spec["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/", "port": port}, "periodSeconds": 1});
    create_pod(c, spec).await;
    let running = wait_pod(c, "ready-web", T, "Running", |p| phase(p) == "Running").await;
    let cs = container_status(&running, "app").expect("status");
    assert!(!cs.ready, "ready before the probe passed: {cs:?}");
    assert_eq!(
        condition(&running, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    let ready = wait_pod(c, "ready-web", T, "Ready after the probe passes", |p| {
        condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert!(container_status(&ready, "app").is_some_and(|s| s.ready && s.restart_count == 0));

    // Liveness: a container whose probe fails is killed and restarted.
    let mut spec = pod("unhealthy", "n1", "sleeper:v1", "Always");
    spec["spec"]["terminationGracePeriodSeconds"] = json!(1);
    spec["spec"]["containers"][0]["livenessProbe"] =
        json!({"tcpSocket": {"port": free_port()}, "periodSeconds": 1, "failureThreshold": 1});
    create_pod(c, spec).await;
    let restarted = wait_pod(c, "unhealthy", T, "restarted by liveness", |p| {
        container_status(p, "app").is_some_and(|s| s.restart_count >= 1)
    })
    .await;
    assert!(
        container_status(&restarted, "app")
            .and_then(|s| s.last_state.as_ref()?.terminated.as_ref())
            .is_some(),
        "{:?}",
        restarted.status
    );
    let reasons = eventually(T, "Unhealthy and Killing events", || async {
        let reasons = event_reasons(c, "unhealthy").await;
        (reasons.iter().any(|r| r == "Unhealthy") && reasons.iter().any(|r| r == "Killing"))
            .then_some(reasons)
    })
    .await;
    assert!(reasons.iter().any(|r| r == "Started"), "{reasons:?}");
}
