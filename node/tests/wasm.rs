//! Real Wasmtime pods on a real pod network (needs root and the wasm32 targets; skipped
//! without root unless `CI=true`): a wasm HTTP server gets a pod IP on the bridge and is
//! reached from the node and from a pod of another runtime (a host-process pod, standing in
//! for busybox until the Docker runtime lands); a configMap and a secret are visible to a wasm
//! guest; a memory limit ends a guest with `OOMKilled`.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use skiff_node::{NetworkMode, PodCidrSource};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeConfig, FakeImage, FakeRuntime};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};

const T: Duration = Duration::from_secs(20);

fn can_run() -> bool {
    if skiff_runtimes::netns::supported() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI needs root for netns tests"
    );
    eprintln!("skipping: cannot create network namespaces");
    false
}

struct BridgeCleanup(&'static str);

impl Drop for BridgeCleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
        for dir in ["-i", "-o"] {
            let _ = Command::new("iptables")
                .args([
                    "-w",
                    "-D",
                    "FORWARD",
                    dir,
                    self.0,
                    "-m",
                    "comment",
                    "--comment",
                    "skiff pod network",
                    "-j",
                    "ACCEPT",
                ])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_pods_on_the_pod_network() {
    if !can_run() {
        return;
    }
    let _cleanup = BridgeCleanup("sktest1");
    let cluster = cluster().await;
    let data = tempfile::tempdir().expect("data");
    let netns_dir = data.path().join("netns");
    let wasmtime = WasmtimeRuntime::new(WasmtimeConfig {
        netns_dir: netns_dir.clone(),
        max_containers: 32,
        require_pod_network: true,
        ..WasmtimeConfig::new(data.path())
    })
    .expect("wasmtime runtime");
    let store = wasmtime.image_store().clone();
    tokio::task::spawn_blocking(move || {
        for (name, image) in [
            ("http-server", "http-server:v1"),
            ("hello", "hello:v1"),
            ("memory-hog", "hog:v1"),
        ] {
            store.import_bytes(&wasm(name), image).expect("import");
        }
    })
    .await
    .expect("images");
    let fake = FakeRuntime::with_config(FakeConfig {
        netns_dir,
        require_pod_network: true,
        ..FakeConfig::default()
    });
    fake.add_image(
        "wget:v1",
        FakeImage::shell("for i in $(seq 50); do wget -q -T 2 -O - \"http://$TARGET:8080/\" && exit 0; sleep 0.2; done; exit 1"),
    );
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(wasmtime));
    registry.register(Arc::new(fake));
    let _node = start_node(&cluster.client, registry, "n1", |c| {
        c.network.mode = NetworkMode::Auto;
        c.network.bridge = "sktest1".to_owned();
        c.network.masquerade = false;
        c.network.pod_cidr = PodCidrSource::Static("10.251.8.0/24".parse().expect("cidr"));
    });
    let c = &cluster.client;

    // A wasm HTTP server gets a pod IP; the node reaches it.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "server", "image": "http-server:v1",
                     "imagePullPolicy": "IfNotPresent", "env": [{"name": "PORT", "value": "8080"}]}]}
        }),
    )
    .await;
    let web = wait_pod(c, "web", T, "wasm server Running", |p| {
        phase(p) == "Running"
            && p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .is_some_and(|ip| ip.starts_with("10.251.8."))
    })
    .await;
    let ip = web
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("ip");
    let cs = container_status(&web, "server").expect("status");
    assert!(
        cs.container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("wasmtime://")),
        "{cs:?}"
    );
    let body = eventually(T, "HTTP from the node to the wasm pod", || {
        let ip = ip.clone();
        async move {
            let out = tokio::process::Command::new("wget")
                .args(["-q", "-T", "1", "-O", "-", &format!("http://{ip}:8080/")])
                .output()
                .await
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await;
    assert!(body.contains("hello from skiff wasm"), "{body}");

    // A pod of another runtime (chosen by RuntimeClass) reaches the wasm pod's IP.
    let classes: Api<RuntimeClass> = Api::all(c.clone());
    classes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                "metadata": {"name": "host-process"}, "handler": "fake"
            }))
            .expect("rc"),
        )
        .await
        .expect("create runtime class");
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "getter", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never", "runtimeClassName": "host-process",
                     "containers": [{"name": "get", "image": "wget:v1", "env": [{"name": "TARGET", "value": ip}]}]}
        }),
    )
    .await;
    let getter = wait_pod(c, "getter", T, "getter done", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&getter), "Succeeded", "{:?}", getter.status);

    // ConfigMap and Secret volumes are visible to a wasm guest.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "greeting"}, "data": {"message.txt": "from a configmap"}
        }))
        .expect("cm"),
    )
    .await
    .expect("create cm");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "token"}, "stringData": {"token": "s3cret"}
            }))
            .expect("secret"),
        )
        .await
        .expect("create secret");
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never",
                "volumes": [{"name": "config", "configMap": {"name": "greeting"}},
                            {"name": "token", "secret": {"secretName": "token"}}],
                "containers": [{"name": "hello", "image": "hello:v1", "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}}],
                    "volumeMounts": [{"name": "config", "mountPath": "/config"}, {"name": "token", "mountPath": "/var/run/token"}]}]}
        }),
    )
    .await;
    let hello = wait_pod(c, "hello", T, "hello done", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(phase(&hello), "Succeeded", "{:?}", hello.status);
    let uid = hello.metadata.uid.clone().expect("uid");
    let log = std::fs::read_to_string(
        _node
            .data_dir
            .join(format!("logs/default_hello_{uid}/hello/0.log")),
    )
    .expect("log");
    assert!(
        log.contains("/config/message.txt: from a configmap"),
        "{log}"
    );
    assert!(log.contains("GREETING=s3cret"), "{log}");

    // A memory limit ends a greedy guest with OOMKilled.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hog", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never",
                "containers": [{"name": "hog", "image": "hog:v1", "imagePullPolicy": "IfNotPresent",
                    "resources": {"limits": {"memory": "32Mi"}}}]}
        }),
    )
    .await;
    let hog = wait_pod(c, "hog", T, "hog Failed", |p| phase(p) == "Failed").await;
    let t = container_status(&hog, "hog")
        .and_then(|s| s.state.as_ref()?.terminated.clone())
        .expect("terminated");
    assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
}
