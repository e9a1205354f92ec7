//! Discovery (legacy and aggregated), Table output, /version, health,
//! metrics, OpenAPI routing, componentstatuses and bootstrap objects.

mod api_common;

use std::sync::Arc;

use api_common::{deployment, pod, start, start_with};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::ComponentProbe;
use skiff_control_plane::store::memory::MemoryStore;

const AGG: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const AGG_OLD: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

#[tokio::test]
async fn legacy_discovery() {
    let api = start().await;
    let r = api.get("/api?timeout=32s").await;
    assert_eq!(r.body["kind"], "APIVersions");
    assert_eq!(r.body["versions"], json!(["v1"]));
    assert_eq!(
        r.body["serverAddressByClientCIDRs"][0]["serverAddress"],
        "127.0.0.1:6443"
    );
    let r = api.get("/apis").await;
    assert_eq!(r.body["kind"], "APIGroupList");
    let apps = r.body["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "apps")
        .cloned()
        .expect("apps");
    assert_eq!(
        apps["preferredVersion"],
        json!({"groupVersion": "apps/v1", "version": "v1"})
    );
    let r = api.get("/apis/apps").await;
    assert_eq!(r.body["kind"], "APIGroup");
    let r = api.get("/api/v1").await;
    assert_eq!(r.body["kind"], "APIResourceList");
    let pods = r.body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|x| x["name"] == "pods")
        .cloned()
        .expect("pods");
    assert_eq!(pods["categories"], json!(["all"]));
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    assert_eq!(api.get("/apis/apps/v9").await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/apis/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn aggregated_discovery_is_labelled_exactly() {
    let api = start().await;
    for (accept, v) in [(AGG, "v2"), (AGG_OLD, "v2beta1")] {
        let r = api
            .call(Method::GET, "/apis", None, &[("accept", accept)])
            .await;
        let ct = r.headers["content-type"].to_str().expect("ct").to_string();
        assert_eq!(
            ct,
            format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList")
        );
        assert_eq!(r.body["apiVersion"], format!("apidiscovery.k8s.io/{v}"));
        let apps = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["metadata"]["name"] == "apps")
            .cloned()
            .expect("apps");
        let deploy = apps["versions"][0]["resources"]
            .as_array()
            .expect("res")
            .iter()
            .find(|x| x["resource"] == "deployments")
            .cloned()
            .expect("deploy");
        assert_eq!(deploy["scope"], "Namespaced");
        assert_eq!(
            deploy["responseKind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let scale = deploy["subresources"]
            .as_array()
            .expect("subs")
            .iter()
            .find(|s| s["subresource"] == "scale")
            .cloned()
            .expect("scale");
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
    }
    let core = api
        .call(Method::GET, "/api", None, &[("accept", AGG)])
        .await;
    assert_eq!(core.body["items"].as_array().map(Vec::len), Some(1));
    assert!(core.body["items"][0]["metadata"].get("name").is_none());
}

#[tokio::test]
async fn version_health_metrics() {
    let api = start().await;
    let v = api.get("/version?timeout=32s").await;
    assert_eq!(
        (v.body["major"].clone(), v.body["minor"].clone()),
        (json!("1"), json!("33"))
    );
    assert!(
        v.body["gitVersion"]
            .as_str()
            .is_some_and(|g| g.starts_with("v1.33.0-skiff"))
    );
    assert!(v.body["platform"].as_str().is_some_and(|p| p.contains('/')));
    for p in ["/healthz", "/livez", "/readyz", "/readyz/ping"] {
        let r = api.get(p).await;
        assert_eq!(
            (r.status, r.raw.as_slice()),
            (StatusCode::OK, b"ok".as_slice()),
            "{p}"
        );
    }
    api.get("/api/v1/namespaces/default/pods").await;
    let m = api.get("/metrics").await;
    let text = m.body.as_str().expect("text");
    assert!(text.contains("apiserver_request_total{verb=\"list\",group=\"\",resource=\"pods\",subresource=\"\",code=\"200\"} 1"), "{text}");
    assert!(text.contains("apiserver_request_duration_seconds_bucket"));
}

#[tokio::test]
async fn openapi_is_routed() {
    let api = start().await;
    let r = api.get("/openapi/v3").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_object());
    let r = api.get("/openapi/v2").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        api.get("/openapi/v3/bogus").await.status,
        StatusCode::NOT_FOUND
    );
}

fn cells(t: &Value, row: usize) -> Vec<Value> {
    t["rows"][row]["cells"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn tables_for_core_kinds() {
    let api = start().await;
    api.post("/api/v1/namespaces/default/pods", pod("web"))
        .await;
    api.post(
        "/apis/apps/v1/namespaces/default/deployments",
        deployment("web", 2),
    )
    .await;
    api.post("/api/v1/nodes", json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}})).await;
    let t = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods?limit=500",
            None,
            &[("accept", TABLE)],
        )
        .await;
    assert_eq!(
        t.headers["content-type"],
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    let cols: Vec<&str> = t.body["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            "IP",
            "Node",
            "Nominated Node",
            "Readiness Gates"
        ]
    );
    assert_eq!(t.body["columnDefinitions"][5]["priority"], 1);
    assert_eq!(
        cells(&t.body, 0)[..4],
        [json!("web"), json!("0/1"), json!("Pending"), json!("0")]
    );
    assert_eq!(
        t.body["rows"][0]["object"]["metadata"]["namespace"],
        "default"
    );
    let d = api
        .call(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web",
            None,
            &[("accept", TABLE)],
        )
        .await;
    assert_eq!(cells(&d.body, 0)[1], json!("0/2"));
    let n = api
        .call(Method::GET, "/api/v1/nodes", None, &[("accept", TABLE)])
        .await;
    assert_eq!(
        cells(&n.body, 0)[1..3],
        [json!("Ready"), json!("control-plane")]
    );
    let ns = api
        .call(
            Method::GET,
            "/api/v1/namespaces",
            None,
            &[("accept", TABLE)],
        )
        .await;
    let names: Vec<Value> = (0..4).map(|i| cells(&ns.body, i)[0].clone()).collect();
    assert!(names.contains(&json!("kube-system")));
    assert_eq!(cells(&ns.body, 0)[1], json!("Active"));
    let obj = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods?includeObject=Object",
            None,
            &[("accept", TABLE)],
        )
        .await;
    assert_eq!(obj.body["rows"][0]["object"]["kind"], "Pod");
    let bad = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods?includeObject=All",
            None,
            &[("accept", TABLE)],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let nope = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            None,
            &[("accept", "application/vnd.kubernetes.protobuf")],
        )
        .await;
    assert_eq!(nope.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn component_statuses_use_probes() {
    let mut config = api_common::config();
    let ok: ComponentProbe = Arc::new(|| Ok(()));
    let bad: ComponentProbe = Arc::new(|| Err("leader election lost".to_string()));
    config.component_probes.insert("scheduler".into(), ok);
    config
        .component_probes
        .insert("controller-manager".into(), bad);
    let api = start_with(MemoryStore::new().shared(), config).await;
    let r = api.get("/api/v1/componentstatuses").await;
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["controller-manager", "etcd-0", "scheduler"]);
    let t = api
        .call(
            Method::GET,
            "/api/v1/componentstatuses",
            None,
            &[("accept", TABLE)],
        )
        .await;
    assert_eq!(
        cells(&t.body, 0)[1..4],
        [json!("Unhealthy"), json!(""), json!("leader election lost")]
    );
    assert_eq!(
        api.get("/api/v1/componentstatuses/etcd-0").await.body["conditions"][0]["status"],
        "True"
    );
    assert_eq!(
        api.post("/api/v1/componentstatuses", json!({}))
            .await
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn bootstrap_objects_exist_and_repeat_safely() {
    let api = start().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let r = api.get(&format!("/api/v1/namespaces/{ns}")).await;
        assert_eq!(r.status, StatusCode::OK, "{ns}");
        assert_eq!(r.body["spec"]["finalizers"], json!(["kubernetes"]));
    }
    let svc = api
        .get("/api/v1/namespaces/default/services/kubernetes")
        .await;
    assert_eq!(svc.body["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc.body["spec"]["ports"][0]["targetPort"], 6443);
    let ep = api
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .await;
    assert_eq!(ep.body["subsets"][0]["addresses"][0]["ip"], "127.0.0.1");
    let rev = api.store.current_revision();
    api.server.bootstrap().await.expect("second bootstrap");
    assert_eq!(api.store.current_revision(), rev, "bootstrap is idempotent");
}
