//! The API server over the durable redb store: objects, service IP
//! reservations and CRDs survive a restart; concurrent unconditional
//! updates all land (guaranteed-update retries).

mod api_common;

use std::sync::Arc;

use api_common::{config, pod, start_with};
use axum::http::StatusCode;
use serde_json::json;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

fn open(path: &std::path::Path) -> Arc<dyn Store> {
    let cfg = RedbConfig {
        cache_size: 8 * 1024 * 1024,
        ..RedbConfig::default()
    };
    Arc::new(RedbStore::open(path, cfg).expect("open redb"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skiff.redb");
    let first_ip;
    {
        let api = start_with(open(&path), config()).await;
        assert_eq!(
            api.post("/api/v1/namespaces/default/pods", pod("keep"))
                .await
                .status,
            StatusCode::CREATED
        );
        let svc = api
            .post(
                "/api/v1/namespaces/default/services",
                json!({"metadata": {"name": "s1"}, "spec": {"ports": [{"port": 80}]}}),
            )
            .await;
        first_ip = svc.body["spec"]["clusterIP"]
            .as_str()
            .expect("ip")
            .to_string();
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
        assert_eq!(
            api.post(
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                crd
            )
            .await
            .status,
            StatusCode::CREATED
        );
        let w = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"x": 1}});
        assert_eq!(
            api.post("/apis/example.com/v1/namespaces/default/widgets", w)
                .await
                .status,
            StatusCode::CREATED
        );
        api.server.state().close();
    }
    // Let the first store's writer thread finish and release the file.
    let mut reopened = None;
    for _ in 0..50 {
        match RedbStore::open(
            &path,
            RedbConfig {
                cache_size: 8 * 1024 * 1024,
                ..RedbConfig::default()
            },
        ) {
            Ok(s) => {
                reopened = Some(Arc::new(s) as Arc<dyn Store>);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let api = start_with(reopened.expect("reopen"), config()).await;
    assert_eq!(
        api.get("/api/v1/namespaces/default/pods/keep").await.status,
        StatusCode::OK
    );
    let w = api
        .get("/apis/example.com/v1/namespaces/default/widgets/w")
        .await;
    assert_eq!(
        w.status,
        StatusCode::OK,
        "CRDs are served again after a restart: {}",
        w.body
    );
    let dup = api
        .post("/api/v1/namespaces/default/services", json!({"metadata": {"name": "s2"}, "spec": {"clusterIP": first_ip, "ports": [{"port": 80}]}}))
        .await;
    assert_eq!(
        dup.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the IP reservation persisted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_unconditional_updates_all_land() {
    let api = Arc::new(start_with(MemoryStore::new().shared(), config()).await);
    api.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "c"}, "data": {}}),
    )
    .await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let patch = json!({"data": {format!("k{i}"): "v"}});
            api.patch(
                "/api/v1/namespaces/default/configmaps/c",
                "application/merge-patch+json",
                patch,
            )
            .await
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK);
    }
    let c = api.get("/api/v1/namespaces/default/configmaps/c").await;
    assert_eq!(c.body["data"].as_object().map(|m| m.len()), Some(10));
}
