//! CustomResourceDefinitions: conditions, discovery, serving custom objects
//! (validation, pruning, status and scale subresources, printer columns,
//! patch types), and deletion of a CRD's objects.

mod api_common;

use api_common::{TestApi, start};
use axum::http::{Method, StatusCode};
use serde_json::{Value, json};

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
const WIDGETS: &str = "/apis/example.com/v1/namespaces/default/widgets";

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer", "minimum": 0},
                        "color": {"type": "string", "enum": ["red", "blue"]}}},
                    "status": {"type": "object", "properties": {"ready": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.ready", "labelSelectorPath": ".status.selector"}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                                             {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
            }]
        }
    })
}

async fn install(api: &TestApi) -> Value {
    let r = api.post(CRDS, widget_crd()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

fn widget(name: &str, size: i64) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": size, "color": "red"}})
}

#[tokio::test]
async fn crd_becomes_established_and_discoverable() {
    let api = start().await;
    let crd = install(&api).await;
    let conds = crd["status"]["conditions"].as_array().expect("conditions");
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "NamesAccepted" && c["status"] == "True")
    );
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    let list = api.get("/apis/example.com/v1").await;
    let names: Vec<&str> = list.body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["widgets", "widgets/scale", "widgets/status"]);
    let groups = api.get("/apis").await;
    assert!(
        groups.body["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "example.com")
    );
    let clash = api
        .post(CRDS, {
            let mut c = widget_crd();
            c["metadata"]["name"] = json!("deployments.apps");
            c["spec"]["group"] = json!("apps");
            c["spec"]["names"]["plural"] = json!("deployments");
            c
        })
        .await;
    assert_eq!(
        clash.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "apps is not a dotted domain: {}",
        clash.body
    );
    let bad = api
        .post(
            CRDS,
            json!({"metadata": {"name": "x.example.com"}, "spec": {"group": "example.com"}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn custom_objects_are_validated_pruned_and_served() {
    let api = start().await;
    install(&api).await;
    let mut w = widget("w1", 2);
    w["spec"]["unknown"] = json!("dropped");
    let r = api.post(WIDGETS, w).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(
        r.body["spec"].get("unknown").is_none(),
        "pruned: {}",
        r.body
    );
    assert_eq!(r.body["metadata"]["generation"], 1);
    let bad = api.post(WIDGETS, json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w2"}, "spec": {"size": -1, "color": "green"}})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.body["details"]["kind"], "Widget");
    let smp = api
        .patch(
            &format!("{WIDGETS}/w1"),
            "application/strategic-merge-patch+json",
            json!({"spec": {"size": 3}}),
        )
        .await;
    assert_eq!(smp.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mp = api
        .patch(
            &format!("{WIDGETS}/w1"),
            "application/merge-patch+json",
            json!({"spec": {"size": 3}}),
        )
        .await;
    assert_eq!(mp.status, StatusCode::OK, "{}", mp.body);
    assert_eq!(mp.body["metadata"]["generation"], 2);
    let table = api
        .call(
            Method::GET,
            WIDGETS,
            None,
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
        )
        .await;
    let cols: Vec<&str> = table.body["columnDefinitions"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Size", "Age"]);
    assert_eq!(table.body["rows"][0]["cells"][1], 3);
    let list = api.get(WIDGETS).await;
    assert_eq!(list.body["kind"], "WidgetList");
    assert_eq!(list.body["items"][0]["apiVersion"], "example.com/v1");
}

#[tokio::test]
async fn custom_status_and_scale_subresources() {
    let api = start().await;
    install(&api).await;
    api.post(WIDGETS, widget("w", 1)).await;
    let mut obj = api.get(&format!("{WIDGETS}/w")).await.body;
    obj["status"] = json!({"ready": 1, "selector": "app=w"});
    let main = api.put(&format!("{WIDGETS}/w"), obj.clone()).await;
    assert!(
        main.body.get("status").is_none() || main.body["status"].get("ready").is_none(),
        "main resource ignores status"
    );
    let st = api.put(&format!("{WIDGETS}/w/status"), obj).await;
    assert_eq!(st.status, StatusCode::OK, "{}", st.body);
    assert_eq!(st.body["status"]["ready"], 1);
    let scale = api.get(&format!("{WIDGETS}/w/scale")).await;
    assert_eq!(scale.body["spec"]["replicas"], 1);
    assert_eq!(
        scale.body["status"],
        json!({"replicas": 1, "selector": "app=w"})
    );
    let p = api
        .patch(
            &format!("{WIDGETS}/w/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 4}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(
        api.get(&format!("{WIDGETS}/w")).await.body["spec"]["size"],
        4
    );
}

#[tokio::test]
async fn deleting_a_crd_deletes_its_objects_and_stops_serving() {
    let api = start().await;
    install(&api).await;
    api.post(WIDGETS, widget("a", 1)).await;
    let d = api.delete(&format!("{CRDS}/widgets.example.com")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(api.get(WIDGETS).await.status, StatusCode::NOT_FOUND);
    install(&api).await;
    let list = api.get(WIDGETS).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        list.body["items"].as_array().map(Vec::len),
        Some(0),
        "old objects are gone"
    );
}

#[tokio::test]
async fn cluster_scoped_custom_resources() {
    let api = start().await;
    let mut crd = widget_crd();
    crd["metadata"]["name"] = json!("gizmos.example.com");
    crd["spec"]["scope"] = json!("Cluster");
    crd["spec"]["names"] = json!({"plural": "gizmos", "kind": "Gizmo"});
    assert_eq!(api.post(CRDS, crd).await.status, StatusCode::CREATED);
    let r = api
        .post(
            "/apis/example.com/v1/gizmos",
            json!({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["metadata"].get("namespace").is_none());
    assert_eq!(
        api.get("/apis/example.com/v1/namespaces/default/gizmos")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
