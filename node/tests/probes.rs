//! Exec and gRPC probes through the pod worker: an exec liveness probe that starts failing
//! restarts the container (fake host-process runtime), an exec readiness probe gates Ready, a
//! gRPC readiness probe asks `grpc.health.v1`, and an exec probe on a wasm container (real
//! Wasmtime, which has no exec) errors with a clear `Unhealthy` event and keeps it unready.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeImage, FakeRuntime};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};

const T: Duration = Duration::from_secs(20);

/// `(reason, message)` of the events about pod `name`.
async fn events(client: &kube::Client, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

fn fake_registry() -> RuntimeRegistry {
    let fake = FakeRuntime::new();
    fake.add_image("sh:v1", FakeImage::shell("eval \"$SCRIPT\""));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    registry
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probes_restart_and_gate_readiness() {
    let cluster = cluster().await;
    let _node = start_node(&cluster.client, fake_registry(), "n1", |_| {});
    let c = &cluster.client;
    let marker = tempfile::tempdir().expect("tempdir");
    let healthy = marker.path().join("healthy");
    let healthy = healthy.to_str().expect("utf-8");

    // The classic liveness example: healthy for a while, then the file goes away.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "liveness-exec", "namespace": "default"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "sh:v1",
                    "env": [{"name": "SCRIPT", "value": format!("touch {healthy}; sleep 2; rm -f {healthy}; sleep 1000")}],
                    "livenessProbe": {"exec": {"command": ["cat", healthy]},
                                      "periodSeconds": 1, "failureThreshold": 1},
                    "readinessProbe": {"exec": {"command": ["sh", "-c", "exit 0"]}, "periodSeconds": 1}}]}
        }),
    )
    .await;
    let ready = wait_pod(c, "liveness-exec", T, "Ready through the exec probe", |p| {
        condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert!(container_status(&ready, "app").is_some_and(|s| s.ready));
    wait_pod(
        c,
        "liveness-exec",
        T,
        "restarted by the exec liveness probe",
        |p| container_status(p, "app").is_some_and(|s| s.restart_count >= 1),
    )
    .await;
    let seen = eventually(T, "Unhealthy and Killing events", || async {
        let seen = events(c, "liveness-exec").await;
        let unhealthy = seen.iter().any(|(r, m)| {
            r == "Unhealthy"
                && m.starts_with("Liveness probe failed: cat: ")
                && m.contains("No such file or directory")
        });
        let killing = seen.iter().any(|(r, m)| {
            r == "Killing" && m == "Container app failed liveness probe, will be restarted"
        });
        (unhealthy && killing).then_some(seen)
    })
    .await;
    assert!(seen.iter().any(|(r, _)| r == "Started"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_readiness_probe_asks_the_health_service() {
    let cluster = cluster().await;
    let _node = start_node(&cluster.client, fake_registry(), "n1", |_| {});
    let c = &cluster.client;

    // The pod's gRPC server (host network: the pod IP is 127.0.0.1), NOT_SERVING at first.
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("app", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "grpc", "namespace": "default"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "sh:v1",
                    "env": [{"name": "SCRIPT", "value": "sleep 1000"}],
                    "readinessProbe": {"grpc": {"port": port, "service": "app"}, "periodSeconds": 1}}]}
        }),
    )
    .await;
    eventually(T, "Readiness probe failed event", || async {
        events(c, "grpc").await.into_iter().find(|(r, m)| {
            r == "Unhealthy"
                && m == "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"
        })
    })
    .await;
    let pod = get_pod(c, "grpc").await.expect("pod");
    assert_eq!(
        condition(&pod, "Ready").map(|c| c.status.as_str()),
        Some("False")
    );
    reporter
        .set_service_status("app", tonic_health::ServingStatus::Serving)
        .await;
    wait_pod(c, "grpc", T, "Ready once SERVING", |p| {
        condition(p, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_probe_on_a_wasm_container_errors_and_keeps_it_unready() {
    let cluster = cluster().await;
    let data = tempfile::tempdir().expect("data");
    let wasmtime = WasmtimeRuntime::new(WasmtimeConfig::new(data.path())).expect("wasmtime");
    let store = wasmtime.image_store().clone();
    let module = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "poll_oneoff"
               (func $poll (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_start")
               (loop $forever
                 ;; one relative clock subscription of 1 s at offset 0
                 (i64.store (i32.const 24) (i64.const 1000000000))
                 (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
                 (br $forever))))"#,
    )
    .expect("wat");
    tokio::task::spawn_blocking(move || store.import_bytes(&module, "idle:v1"))
        .await
        .expect("join")
        .expect("import");
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(wasmtime));
    let _node = start_node(&cluster.client, registry, "n1", |_| {});
    let c = &cluster.client;
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "wasm-exec", "namespace": "default"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": "idle:v1", "imagePullPolicy": "IfNotPresent",
                    "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
                    "livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 1}}]}
        }),
    )
    .await;
    let message = eventually(T, "Unhealthy event for the wasm exec probe", || async {
        events(c, "wasm-exec")
            .await
            .into_iter()
            .find(|(r, m)| r == "Unhealthy" && m.starts_with("Readiness probe errored"))
            .map(|(_, m)| m)
    })
    .await;
    assert!(
        message.starts_with("Readiness probe errored and resulted in unknown state: ")
            && message.contains("exec is not supported for wasm containers"),
        "{message}"
    );
    // Errored results are thrown away: not ready, and never restarted by liveness.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pod = get_pod(c, "wasm-exec").await.expect("pod");
    assert_eq!(phase(&pod), "Running", "{:?}", pod.status);
    let status = container_status(&pod, "app").expect("status");
    assert!(!status.ready, "{status:?}");
    assert_eq!(status.restart_count, 0, "{status:?}");
}
