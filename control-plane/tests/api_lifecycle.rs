//! Object lifecycles: scale and binding subresources, deletion (preconditions,
//! finalizers, propagation policies, graceful pods), deletecollection and the
//! built-in namespace finalizer.

mod api_common;

use api_common::{deployment, eventually, pod, start};
use axum::http::{Method, StatusCode};
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn scale_subresource_get_put_patch() {
    let api = start().await;
    api.post(DEPLOYS, deployment("web", 1)).await;
    let s = api.get(&format!("{DEPLOYS}/web/scale")).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(
        (s.body["kind"].clone(), s.body["apiVersion"].clone()),
        (json!("Scale"), json!("autoscaling/v1"))
    );
    assert_eq!(s.body["spec"]["replicas"], 1);
    assert_eq!(s.body["status"]["selector"], "app=web");
    let p = api
        .patch(
            &format!("{DEPLOYS}/web/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["spec"]["replicas"], 3);
    let d = api.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!(d.body["spec"]["replicas"], 3);
    assert_eq!(d.body["metadata"]["generation"], 2);
    // kubectl scale --current-replicas: PUT without Content-Type, RV precondition.
    let mut scale = p.body.clone();
    scale["spec"]["replicas"] = json!(4);
    let bytes = serde_json::to_vec(&scale).expect("json");
    let put = api
        .raw(
            Method::PUT,
            &format!("{DEPLOYS}/web/scale"),
            bytes.clone(),
            &[],
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["spec"]["replicas"], 4);
    let stale = api
        .raw(Method::PUT, &format!("{DEPLOYS}/web/scale"), bytes, &[])
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let neg = api
        .patch(
            &format!("{DEPLOYS}/web/scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": -1}}),
        )
        .await;
    assert_eq!(neg.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        api.get("/api/v1/namespaces/default/pods/x/scale")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn binding_assigns_a_node_once() {
    let api = start().await;
    let created = api.post(PODS, pod("p")).await;
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-1"}});
    let r = api
        .post(&format!("{PODS}/p/binding"), binding.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let p = api.get(&format!("{PODS}/p")).await;
    assert_eq!(p.body["spec"]["nodeName"], "node-1");
    let cond = p.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned();
    assert_eq!(cond.map(|c| c["status"].clone()), Some(json!("True")));
    // Like Kubernetes' BindingREST, a binding adds no managedFields entry.
    assert_eq!(
        p.body["metadata"]["managedFields"],
        created.body["metadata"]["managedFields"]
    );
    assert_ne!(
        p.body["metadata"]["resourceVersion"],
        created.body["metadata"]["resourceVersion"]
    );
    let again = api.post(&format!("{PODS}/p/binding"), binding).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("already assigned to node \"node-1\""))
    );
    let direct = api
        .patch(
            &format!("{PODS}/p"),
            "application/merge-patch+json",
            json!({"spec": {"nodeName": "node-2"}}),
        )
        .await;
    assert_eq!(
        direct.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "nodeName changes only through binding"
    );
}

#[tokio::test]
async fn kubelet_proxies_answer_service_unavailable() {
    let api = start().await;
    api.post(PODS, pod("p")).await;
    for sub in ["log", "exec", "attach", "portforward"] {
        let r = api.get(&format!("{PODS}/p/{sub}")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{sub}");
        assert_eq!(r.body["kind"], "Status");
    }
}

#[tokio::test]
async fn delete_answers_per_kind_and_checks_preconditions() {
    let api = start().await;
    let c = api.post(DEPLOYS, deployment("web", 1)).await;
    let uid = c.body["metadata"]["uid"].as_str().expect("uid").to_string();
    let wrong = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYS}/web"),
            Some(json!({"preconditions": {"uid": "other"}})),
            &[],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::CONFLICT);
    assert!(
        wrong.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Precondition failed: UID in precondition: other"))
    );
    let d = api
        .call(Method::DELETE, &format!("{DEPLOYS}/web"), Some(json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background", "preconditions": {"uid": uid}})), &[])
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(d.body["kind"], "Status");
    assert_eq!(d.body["status"], "Success");
    assert_eq!(
        d.body["details"],
        json!({"name": "web", "group": "apps", "kind": "deployments", "uid": uid})
    );
    assert_eq!(
        api.delete(&format!("{DEPLOYS}/web")).await.status,
        StatusCode::NOT_FOUND
    );
    // Pods answer with the object.
    api.post(PODS, pod("p")).await;
    let d = api.delete(&format!("{PODS}/p")).await;
    assert_eq!(d.body["kind"], "Pod");
    assert_eq!(
        api.get(&format!("{PODS}/p")).await.status,
        StatusCode::NOT_FOUND,
        "unscheduled pods go at once"
    );
    let bad = api
        .call(
            Method::DELETE,
            &format!("{PODS}/p?propagationPolicy=Sometimes"),
            None,
            &[],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn finalizers_hold_objects_until_removed() {
    let api = start().await;
    let cm = json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}, "data": {"a": "1"}});
    api.post("/api/v1/namespaces/default/configmaps", cm).await;
    let uri = "/api/v1/namespaces/default/configmaps/held";
    let d = api.delete(uri).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(
        d.body["metadata"]["deletionTimestamp"].is_string(),
        "{}",
        d.body
    );
    assert_eq!(d.body["metadata"]["deletionGracePeriodSeconds"], 0);
    let g = api.get(uri).await;
    assert_eq!(g.status, StatusCode::OK, "still there");
    let cant = api
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "held"}}),
        )
        .await;
    assert_eq!(cant.status, StatusCode::CONFLICT);
    let r = api
        .patch(
            uri,
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        api.get(uri).await.status,
        StatusCode::NOT_FOUND,
        "the update that empties finalizers deletes"
    );
}

#[tokio::test]
async fn propagation_policies_set_gc_finalizers() {
    let api = start().await;
    api.post(DEPLOYS, deployment("orphan", 1)).await;
    let d = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYS}/orphan"),
            Some(json!({"propagationPolicy": "Orphan"})),
            &[],
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    assert_eq!(d.body["metadata"]["finalizers"], json!(["orphan"]));
    api.post(DEPLOYS, deployment("fg", 1)).await;
    let d = api
        .call(
            Method::DELETE,
            &format!("{DEPLOYS}/fg?propagationPolicy=Foreground"),
            None,
            &[],
        )
        .await;
    assert_eq!(
        d.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert_eq!(d.body["metadata"]["generation"], 2);
}

#[tokio::test]
async fn scheduled_pods_are_deleted_gracefully() {
    let api = start().await;
    let mut p = pod("g");
    p["spec"]["nodeName"] = json!("node-1");
    p["spec"]["terminationGracePeriodSeconds"] = json!(10);
    api.post(PODS, p).await;
    let d = api.delete(&format!("{PODS}/g")).await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["metadata"]["deletionGracePeriodSeconds"], 10);
    assert!(d.body["metadata"]["deletionTimestamp"].is_string());
    let g = api.get(&format!("{PODS}/g")).await;
    assert_eq!(g.status, StatusCode::OK, "waits for the kubelet");
    let t = api
        .call(
            Method::GET,
            PODS,
            None,
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
        )
        .await;
    assert_eq!(t.body["rows"][0]["cells"][2], "Terminating");
    let short = api
        .call(
            Method::DELETE,
            &format!("{PODS}/g"),
            Some(json!({"gracePeriodSeconds": 3})),
            &[],
        )
        .await;
    assert_eq!(short.body["metadata"]["deletionGracePeriodSeconds"], 3);
    let kubelet = api
        .call(
            Method::DELETE,
            &format!("{PODS}/g"),
            Some(json!({"gracePeriodSeconds": 0})),
            &[],
        )
        .await;
    assert_eq!(kubelet.status, StatusCode::OK);
    assert_eq!(
        api.get(&format!("{PODS}/g")).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn delete_collection_honours_selectors() {
    let api = start().await;
    for (n, app) in [("a", "web"), ("b", "web"), ("c", "db")] {
        api.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": n, "labels": {"app": app}}}),
        )
        .await;
    }
    let r = api
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps?labelSelector=app%3Dweb",
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "ConfigMapList");
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(2));
    let left = api.get("/api/v1/namespaces/default/configmaps").await;
    let names: Vec<&str> = left.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["c"]);
}

#[tokio::test]
async fn namespace_deletion_removes_content_then_the_namespace() {
    let api = start().await;
    api.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}))
        .await;
    api.post(
        "/api/v1/namespaces/team/configmaps",
        json!({"metadata": {"name": "c"}}),
    )
    .await;
    api.post("/api/v1/namespaces/team/pods", pod("p")).await;
    api.post(
        "/apis/apps/v1/namespaces/team/deployments",
        deployment("d", 1),
    )
    .await;
    let d = api.delete("/api/v1/namespaces/team").await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["status"]["phase"], "Terminating");
    assert!(
        eventually(|| async {
            api.get("/api/v1/namespaces/team").await.status == StatusCode::NOT_FOUND
        })
        .await,
        "namespace finalized"
    );
    assert_eq!(
        api.get("/api/v1/namespaces/team/configmaps/c").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/apis/apps/v1/namespaces/team/deployments/d")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // A namespace can be recreated afterwards.
    assert_eq!(
        api.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}))
            .await
            .status,
        StatusCode::CREATED
    );
}
