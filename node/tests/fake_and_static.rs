//! Fake (kwok-like) nodes, and static pods with mirror pods, against the in-process API
//! server.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::DeleteParams;
use serde_json::json;
use skiff_node::{FakeNodesConfig, run_fake_nodes};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeImage, FakeRuntime};
use tokio::sync::watch;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn fake_nodes_register_and_run_pods_without_containers() {
    let cluster = cluster().await;
    let c = &cluster.client;
    let (ready_tx, mut ready) = watch::channel(false);
    let config = FakeNodesConfig {
        count: 3,
        name_prefix: "kwok".into(),
        heartbeat: Duration::from_secs(1),
        ready: Some(ready_tx),
        ..FakeNodesConfig::default()
    };
    let task = tokio::spawn(run_fake_nodes(c.clone(), config));
    tokio::time::timeout(T, ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");
    let nodes: Api<Node> = Api::all(c.clone());
    for i in 0..3 {
        let n = nodes.get(&format!("kwok-{i}")).await.expect("node");
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").cloned())
            .expect("ready");
        assert_eq!(ready.status, "True");
        assert_eq!(
            n.spec.as_ref().and_then(|s| s.pod_cidr.clone()),
            Some(format!("10.128.{i}.0/24"))
        );
    }
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    assert!(leases.get_opt("kwok-2").await.expect("lease").is_some());

    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc", "namespace": "default"},
            "spec": {"nodeName": "kwok-1", "containers": [{"name": "app", "image": "anything:v1"}]}
        }),
    )
    .await;
    create_pod(c, json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": "default", "annotations": {"skiff.io/fake-duration": "300ms"}},
        "spec": {"nodeName": "kwok-2", "restartPolicy": "Never", "containers": [{"name": "app", "image": "anything:v1"}]}
    })).await;
    let svc = wait_pod(c, "svc", T, "fake pod Running", |p| phase(p) == "Running").await;
    assert_eq!(
        condition(&svc, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(
        svc.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(|ip| ip.starts_with("10.128.1."))
    );
    wait_pod(c, "job", T, "fake job Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.delete("svc", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(T, "fake pod gone", || async {
        get_pod(c, "svc").await.is_none().then_some(())
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn static_pods_get_mirror_pods() {
    let cluster = cluster().await;
    let c = &cluster.client;
    let fake = FakeRuntime::new();
    fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    let manifests = tempfile::tempdir().expect("manifests");
    std::fs::write(
        manifests.path().join("static-web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: sleeper:v1\n",
    )
    .expect("write manifest");
    let dir = manifests.path().to_owned();
    let _node = start_node(c, registry, "n1", move |cfg| {
        cfg.pod_manifest_path = Some(dir);
        cfg.static_pod_rescan = Duration::from_millis(300);
    });
    let mirror = wait_pod(c, "static-web-n1", T, "mirror pod Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let annotations = mirror.metadata.annotations.clone().unwrap_or_default();
    assert!(
        annotations.contains_key("kubernetes.io/config.mirror"),
        "{annotations:?}"
    );
    assert_eq!(
        annotations
            .get("kubernetes.io/config.source")
            .map(String::as_str),
        Some("file")
    );
    std::fs::remove_file(manifests.path().join("static-web.yaml")).expect("remove manifest");
    eventually(T, "mirror pod gone", || async {
        get_pod(c, "static-web-n1").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleted_mirror_pods_come_back_at_once() {
    let cluster = cluster().await;
    let c = &cluster.client;
    let fake = FakeRuntime::new();
    fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    let manifests = tempfile::tempdir().expect("manifests");
    std::fs::write(
        manifests.path().join("static-web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: sleeper:v1\n",
    )
    .expect("write manifest");
    let dir = manifests.path().to_owned();
    // Rescans too rare to matter: only the deletion watch can bring the mirror back in time.
    let _node = start_node(c, registry, "n1", move |cfg| {
        cfg.pod_manifest_path = Some(dir);
        cfg.static_pod_rescan = Duration::from_secs(300);
    });
    let first = wait_pod(c, "static-web-n1", T, "mirror pod Running", |p| {
        phase(p) == "Running"
    })
    .await;
    let first_uid = first.metadata.uid.clone().expect("uid");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    pods.delete("static-web-n1", &DeleteParams::default())
        .await
        .expect("delete mirror");
    let again = wait_pod(
        c,
        "static-web-n1",
        T,
        "mirror pod recreated and Running",
        |p| p.metadata.uid.as_deref() != Some(first_uid.as_str()) && phase(p) == "Running",
    )
    .await;
    assert!(
        again
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"))
    );
}
