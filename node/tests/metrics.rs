//! The kubelet's `/metrics` on its HTTPS server: running pods and containers, and the pod
//! start histogram, as Prometheus scrapes them (with curl).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use serde_json::json;
use skiff_control_plane::pki::Pki;
use skiff_node::ServerConfig;
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeImage, FakeRuntime};

const T: Duration = Duration::from_secs(20);

async fn scrape(port: u16) -> String {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sSk",
            "-m",
            "5",
            &format!("https://127.0.0.1:{port}/metrics"),
        ])
        .output()
        .await
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_running_pods_and_pod_starts() {
    let cluster = cluster().await;
    let c = &cluster.client;
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::load_or_create(&dir.path().join("pki"), &[], &[]).expect("pki");
    let serving = pki
        .issue_serving_cert(
            "n1",
            &["127.0.0.1".parse().expect("ip")],
            &["n1".to_owned()],
        )
        .expect("serving cert");
    let fake = FakeRuntime::new();
    fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
    fake.add_image("ok:v1", FakeImage::shell("exit 0"));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    let mut node = start_node(c, registry, "n1", |cfg| {
        cfg.server = Some(ServerConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            cert_pem: serving.cert_pem.clone(),
            key_pem: serving.key_pem.clone(),
            client_ca_pem: None,
        });
    });
    tokio::time::timeout(T, node.ready.wait_for(|r| *r))
        .await
        .expect("node ready in time")
        .expect("ready");
    let port = Api::<Node>::all(c.clone())
        .get("n1")
        .await
        .expect("node")
        .status
        .and_then(|s| s.daemon_endpoints?.kubelet_endpoint)
        .map(|e| e.port)
        .expect("kubelet endpoint");
    let port = u16::try_from(port).expect("port");

    let text = scrape(port).await;
    assert_eq!(value(&text, "kubelet_running_pods"), Some(0.0), "{text}");
    assert_eq!(
        value(&text, "kubelet_pod_start_duration_seconds_count"),
        Some(0.0),
        "{text}"
    );

    for (name, image, policy) in [
        ("a", "sleeper:v1", "Always"),
        ("b", "sleeper:v1", "Always"),
        ("done", "ok:v1", "Never"),
    ] {
        create_pod(
            c,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "n1", "restartPolicy": policy, "terminationGracePeriodSeconds": 1,
                         "containers": [{"name": "app", "image": image}]}
            }),
        )
        .await;
    }
    for name in ["a", "b"] {
        wait_pod(c, name, T, "Running", |p| phase(p) == "Running").await;
    }
    wait_pod(c, "done", T, "Succeeded", |p| phase(p) == "Succeeded").await;
    let text = eventually(T, "two running pods in the metrics", || async {
        let text = scrape(port).await;
        (value(&text, "kubelet_running_pods") == Some(2.0)).then_some(text)
    })
    .await;
    assert_eq!(
        value(
            &text,
            "kubelet_running_containers{container_state=\"running\"}"
        ),
        Some(2.0),
        "{text}"
    );
    // Both long-running pods went Pending → Running; the one that completed at once may
    // never have been seen Running.
    let starts = value(&text, "kubelet_pod_start_duration_seconds_count").expect("count");
    assert!((2.0..=3.0).contains(&starts), "{text}");
    let under_ten = value(
        &text,
        "kubelet_pod_start_duration_seconds_bucket{le=\"10.0\"}",
    )
    .expect("bucket");
    assert_eq!(under_ten, starts, "{text}");
}
