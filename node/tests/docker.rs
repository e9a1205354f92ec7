//! OCI pods on the real Docker runtime, on the real pod network (needs root, dockerd and a
//! static busybox; skipped without them unless `CI=true`): Docker's pause container holds
//! the pod's network namespace, which the kubelet wires to the bridge through
//! `/proc/<pid>/ns/net`; in a mixed pod the wasm guest joins that namespace, so a busybox
//! container reaches it on the pod's localhost and the node reaches it on the pod IP.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use skiff_node::{NetworkMode, PodCidrSource};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::docker::{DockerConfig, DockerRuntime, testing};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};

const T: Duration = Duration::from_secs(20);

/// Docker, root and busybox, or a skip (a failure under `CI=true`).
async fn docker_or_skip() -> Option<DockerRuntime> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let instance = format!("node-test-{}", &skiff_runtimes::lifecycle::new_id()[..12]);
    let docker = DockerRuntime::new(DockerConfig::new(instance));
    let problem = if !skiff_runtimes::netns::supported() {
        Some("cannot create network namespaces (not root)".to_owned())
    } else if !docker.available().await {
        Some(format!("no Docker daemon answers at {}", docker.endpoint()))
    } else if !testing::busybox_available() {
        Some("no static busybox (apt-get install busybox-static)".to_owned())
    } else {
        None
    };
    match problem {
        None => Some(docker),
        Some(problem) => {
            assert!(!ci, "{problem}; CI=true does not allow skipping");
            eprintln!("skipping: {problem}");
            None
        }
    }
}

struct Cleanup {
    bridge: &'static str,
    docker: DockerRuntime,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", self.bridge])
            .output();
        for dir in ["-i", "-o"] {
            let _ = Command::new("iptables")
                .args([
                    "-w",
                    "-D",
                    "FORWARD",
                    dir,
                    self.bridge,
                    "-m",
                    "comment",
                    "--comment",
                    "skiff pod network",
                    "-j",
                    "ACCEPT",
                ])
                .output();
        }
        // Containers this test's runtime instance created (pause and app containers).
        let docker = self.docker.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(testing::remove_everything(&docker))
        })
        .join();
    }
}

async fn wget(url: &str) -> Option<String> {
    let out = tokio::process::Command::new("wget")
        .args(["-q", "-T", "1", "-O", "-", url])
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_mixed_pods_on_the_pod_network() {
    let Some(docker) = docker_or_skip().await else {
        return;
    };
    let _cleanup = Cleanup {
        bridge: "sktest3",
        docker: docker.clone(),
    };
    let images = testing::install(&docker).await.expect("busybox images");
    let cluster = cluster().await;
    let data = tempfile::tempdir().expect("data");
    let wasmtime = WasmtimeRuntime::new(WasmtimeConfig {
        netns_dir: data.path().join("netns"),
        max_containers: 16,
        require_pod_network: true,
        ..WasmtimeConfig::new(data.path())
    })
    .expect("wasmtime runtime");
    let store = wasmtime.image_store().clone();
    tokio::task::spawn_blocking(move || {
        store
            .import_bytes(&wasm("http-server"), "http-server:v1")
            .expect("import")
    })
    .await
    .expect("image");
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(wasmtime));
    registry.register(Arc::new(docker.clone()));
    let mut node = start_node(&cluster.client, registry, "n1", |c| {
        c.network.mode = NetworkMode::Auto;
        c.network.bridge = "sktest3".to_owned();
        c.network.masquerade = false;
        c.network.pod_cidr = PodCidrSource::Static("10.251.10.0/24".parse().expect("cidr"));
    });
    let c = &cluster.client;
    let pod_ip =
        |p: &k8s_openapi::api::core::v1::Pod| p.status.as_ref().and_then(|s| s.pod_ip.clone());

    // An OCI pod: busybox httpd on Docker, reached from the node on its pod IP.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "busy", "namespace": "default"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1, "containers": [{
                "name": "web", "image": images.shell,
                "args": ["echo hi-from-docker > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]}]}
        }),
    )
    .await;
    let busy = wait_pod(c, "busy", T, "busybox pod Running on the bridge", |p| {
        phase(p) == "Running" && pod_ip(p).is_some_and(|ip| ip.starts_with("10.251.10."))
    })
    .await;
    let cs = container_status(&busy, "web").expect("status");
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("docker://")),
        "{cs:?}"
    );
    let ip = pod_ip(&busy).expect("ip");
    let body = eventually(T, "HTTP from the node to the Docker pod", || {
        let url = format!("http://{ip}:8080/");
        async move { wget(&url).await }
    })
    .await;
    assert_eq!(body.trim(), "hi-from-docker");

    // A mixed pod: the wasm server and a busybox client share the pause container's netns.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "mixed", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "server", "image": "http-server:v1", "imagePullPolicy": "IfNotPresent",
                     "env": [{"name": "PORT", "value": "8080"}]},
                    {"name": "client", "image": images.shell,
                     "args": ["for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1"]}
                ]}
        }),
    )
    .await;
    let mixed = wait_pod(
        c,
        "mixed",
        T,
        "the busybox client reached the wasm server",
        |p| {
            container_status(p, "client")
                .and_then(|s| s.state.as_ref()?.terminated.as_ref())
                .is_some()
        },
    )
    .await;
    let client = container_status(&mixed, "client").expect("client");
    let done = client
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated");
    assert_eq!(
        (done.exit_code, done.reason.as_deref()),
        (0, Some("Completed")),
        "{:?}",
        mixed.status
    );
    let server = container_status(&mixed, "server").expect("server");
    assert!(
        server
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("wasmtime://")),
        "{server:?}"
    );
    let ip = pod_ip(&mixed).expect("mixed pod ip");
    assert!(ip.starts_with("10.251.10."), "{ip}");
    let body = eventually(
        T,
        "HTTP from the node to the wasm guest of the mixed pod",
        || {
            let url = format!("http://{ip}:8080/");
            async move { wget(&url).await }
        },
    )
    .await;
    assert!(body.contains("hello from skiff wasm"), "{body}");
    // Stop the node before removing its containers, or its workers would restart them.
    node.stop().await;
}
