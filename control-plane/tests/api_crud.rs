//! CRUD through the router: create/get/update/patch/delete, metadata rules,
//! conflicts, Status errors, body handling, field validation and dry runs.

mod api_common;

use api_common::{deployment, pod, start};
use axum::http::{Method, StatusCode};
use serde_json::json;

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn create_get_and_server_set_metadata() {
    let api = start().await;
    let r = api.post(PODS, pod("web")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let m = &r.body["metadata"];
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["generation"], 1);
    assert!(m["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(
        m["creationTimestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let rv: i64 = m["resourceVersion"]
        .as_str()
        .expect("rv")
        .parse()
        .expect("numeric rv");
    assert_eq!(rv, api.store.current_revision());
    // Defaults a real cluster adds.
    let spec = &r.body["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["tolerations"].as_array().map(Vec::len), Some(2));
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
    assert_eq!(r.body["status"]["phase"], "Pending");

    let g = api.get(&format!("{PODS}/web")).await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(g.body["metadata"]["uid"], m["uid"]);

    let dup = api.post(PODS, pod("web")).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.body["reason"], "AlreadyExists");
    assert_eq!(dup.body["message"], "pods \"web\" already exists");
}

#[tokio::test]
async fn not_found_statuses() {
    let api = start().await;
    let r = api.get(&format!("{DEPLOYS}/nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["message"], "deployments.apps \"nope\" not found");
    assert_eq!(
        r.body["details"],
        json!({"name": "nope", "group": "apps", "kind": "deployments"})
    );
    let r = api.get("/api/v1/namespaces/default/widgets").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["reason"], "NotFound");
    let r = api.get("/nonsense").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["kind"], "Status");
}

#[tokio::test]
async fn namespaces_must_exist_and_not_be_terminating() {
    let api = start().await;
    let r = api.post("/api/v1/namespaces/ghost/pods", pod("p")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "namespaces \"ghost\" not found");

    assert_eq!(
        api.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}))
            .await
            .status,
        StatusCode::CREATED
    );
    // A pod on a node keeps the namespace terminating (graceful deletion).
    let mut p = pod("held");
    p["spec"]["nodeName"] = json!("node-1");
    assert_eq!(
        api.post("/api/v1/namespaces/team/pods", p).await.status,
        StatusCode::CREATED
    );
    let d = api.delete("/api/v1/namespaces/team").await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.body["status"]["phase"], "Terminating");
    let r = api
        .post(
            "/api/v1/namespaces/team/configmaps",
            json!({"metadata": {"name": "c"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.body["reason"], "Forbidden");
    assert_eq!(
        r.body["message"],
        "configmaps \"c\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );

    let ns = api.delete("/api/v1/namespaces/default").await;
    assert_eq!(ns.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn namespace_mismatch_and_name_mismatch_are_400() {
    let api = start().await;
    let mut p = pod("p");
    p["metadata"]["namespace"] = json!("kube-system");
    let r = api.post(PODS, p).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["message"],
        "the namespace of the provided object does not match the namespace sent on the request"
    );
    assert_eq!(api.post(PODS, pod("p")).await.status, StatusCode::CREATED);
    let r = api.put(&format!("{PODS}/p"), pod("q")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["message"],
        "the name of the object (q) does not match the name on the URL (p)"
    );
}

#[tokio::test]
async fn generate_name_gets_a_suffix() {
    let api = start().await;
    let r = api
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"generateName": "cfg-"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let name = r.body["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    let r = api
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
}

#[tokio::test]
async fn update_with_stale_resource_version_conflicts() {
    let api = start().await;
    let c = api.post(DEPLOYS, deployment("web", 1)).await;
    let mut obj = c.body.clone();
    obj["spec"]["replicas"] = json!(2);
    let u = api.put(&format!("{DEPLOYS}/web"), obj.clone()).await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["metadata"]["generation"], 2);
    // The old resourceVersion is stale now.
    obj["spec"]["replicas"] = json!(3);
    let stale = api.put(&format!("{DEPLOYS}/web"), obj).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.body["reason"], "Conflict");
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Metadata-only changes keep the generation.
    let mut latest = u.body.clone();
    latest["metadata"]["labels"] = json!({"tier": "fe"});
    let l = api.put(&format!("{DEPLOYS}/web"), latest).await;
    assert_eq!(l.body["metadata"]["generation"], 2);
    // No-op updates do not bump the resourceVersion.
    let same = api.put(&format!("{DEPLOYS}/web"), l.body.clone()).await;
    assert_eq!(
        same.body["metadata"]["resourceVersion"],
        l.body["metadata"]["resourceVersion"]
    );
}

#[tokio::test]
async fn status_is_split_from_spec() {
    let api = start().await;
    api.post(DEPLOYS, deployment("web", 1)).await;
    let mut obj = api.get(&format!("{DEPLOYS}/web")).await.body;
    obj["status"] = json!({"replicas": 7});
    let u = api.put(&format!("{DEPLOYS}/web"), obj.clone()).await;
    assert_eq!(u.body["status"], json!({}), "main resource ignores status");
    let s = api.put(&format!("{DEPLOYS}/web/status"), obj).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["status"]["replicas"], 7);
    assert_eq!(s.body["metadata"]["generation"], 1);
    let p = api
        .patch(
            &format!("{DEPLOYS}/web/status"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 5}, "status": {"readyReplicas": 1}}),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["spec"]["replicas"], 1, "status writes ignore spec");
    assert_eq!(p.body["status"]["readyReplicas"], 1);
}

#[tokio::test]
async fn patches_of_every_type() {
    let api = start().await;
    api.post(PODS, pod("web")).await;
    let uri = format!("{PODS}/web");
    let m = api
        .patch(
            &uri,
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"env": "prod"}}}),
        )
        .await;
    assert_eq!(m.status, StatusCode::OK, "{}", m.body);
    assert_eq!(m.body["metadata"]["labels"]["env"], "prod");
    let j = api
        .patch(
            &uri,
            "application/json-patch+json",
            json!([{"op": "remove", "path": "/metadata/labels/env"}]),
        )
        .await;
    assert_eq!(j.status, StatusCode::OK, "{}", j.body);
    assert!(j.body["metadata"]["labels"].get("env").is_none());
    let s = api
        .patch(
            &uri,
            "application/strategic-merge-patch+json",
            json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.26"}]}}),
        )
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.body["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(
        s.body["spec"]["containers"].as_array().map(Vec::len),
        Some(1)
    );
    let bad = api.patch(&uri, "text/plain", json!({})).await;
    assert_eq!(bad.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let missing = api
        .patch(
            &format!("{PODS}/nope"),
            "application/merge-patch+json",
            json!({}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let forbidden = api
        .patch(
            &uri,
            "application/merge-patch+json",
            json!({"spec": {"restartPolicy": "Never"}}),
        )
        .await;
    assert_eq!(
        forbidden.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        forbidden.body
    );
}

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let api = start().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}});
    let uri = "/api/v1/namespaces/default/configmaps/ssa?fieldManager=kubectl&force=false";
    let r = api
        .patch(uri, "application/apply-patch+yaml", cm.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["data"]["a"], "1");
    let mut cm2 = cm;
    cm2["data"] = json!({"a": "1", "b": "2"});
    let r = api.patch(uri, "application/apply-patch+yaml", cm2).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["b"], "2");
    let mf = r.body["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        mf.len(),
        1,
        "one Apply entry, no extra Update entry: {mf:?}"
    );
    assert_eq!(
        (mf[0]["manager"].clone(), mf[0]["operation"].clone()),
        (json!("kubectl"), json!("Apply"))
    );
    let nofm = api
        .patch(
            "/api/v1/namespaces/default/configmaps/ssa",
            "application/apply-patch+yaml",
            json!({}),
        )
        .await;
    assert_eq!(nofm.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn body_errors() {
    let api = start().await;
    let r = api
        .raw(Method::POST, PODS, b"{not json".to_vec(), &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api
        .raw(
            Method::POST,
            PODS,
            b"{}".to_vec(),
            &[("content-type", "text/html")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(r.body["reason"], "UnsupportedMediaType");
    let big = vec![b' '; 3 * 1024 * 1024 + 10];
    let r = api.raw(Method::POST, PODS, big, &[]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.body["reason"], "RequestEntityTooLarge");
    let yaml =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n".to_vec();
    let r = api
        .raw(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            yaml,
            &[("content-type", "application/yaml")],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = api
        .call(Method::GET, &format!("{PODS}?watch=maybe"), None, &[])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = api.call(Method::PUT, PODS, Some(pod("x")), &[]).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn field_validation_modes() {
    let api = start().await;
    let mut p = pod("strict");
    p["spec"]["foo"] = json!(1);
    let r = api
        .post(&format!("{PODS}?fieldValidation=Strict"), p.clone())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "strict decoding error: unknown field \"spec.foo\""
    );
    let r = api
        .post(&format!("{PODS}?fieldValidation=Warn"), p.clone())
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let warning = r
        .headers
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(warning, "299 - \"unknown field \\\"spec.foo\\\"\"");
    assert!(
        r.body["spec"].get("foo").is_none(),
        "unknown fields are dropped"
    );
    let dup =
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d","name":"e"}}"#.to_vec();
    let r = api
        .raw(
            Method::POST,
            "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
            dup,
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["message"],
        "strict decoding error: duplicate field \"metadata.name\""
    );
    let r = api
        .post(&format!("{PODS}?fieldValidation=Bogus"), pod("z"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn validation_errors_are_422_with_causes() {
    let api = start().await;
    let r = api
        .post(PODS, json!({"metadata": {"name": "Bad_Name", "labels": {"bad key": "v"}}, "spec": {"containers": []}}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["reason"], "Invalid");
    let causes = r.body["details"]["causes"].as_array().expect("causes");
    let fields: Vec<&str> = causes.iter().filter_map(|c| c["field"].as_str()).collect();
    assert_eq!(
        fields,
        ["metadata.name", "metadata.labels", "spec.containers"]
    );
    assert_eq!(causes[1]["reason"], "FieldValueInvalid");
    assert!(r.body["message"].as_str().is_some_and(|m| {
        m.starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\"")
    }));
    let svc = api
        .post(
            "/api/v1/namespaces/default/services",
            json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    assert_eq!(
        svc.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "services need DNS-1035 names"
    );
    let ns = api
        .post("/api/v1/namespaces", json!({"metadata": {"name": "a.b"}}))
        .await;
    assert_eq!(
        ns.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "namespaces need DNS labels"
    );
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let api = start().await;
    let before = api.store.current_revision();
    let r = api.post(&format!("{PODS}?dryRun=All"), pod("dry")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["metadata"]["name"], "dry");
    assert_eq!(
        api.get(&format!("{PODS}/dry")).await.status,
        StatusCode::NOT_FOUND
    );
    api.post(PODS, pod("real")).await;
    let rev = api.store.current_revision();
    let d = api
        .call(
            Method::DELETE,
            &format!("{PODS}/real?dryRun=All"),
            None,
            &[],
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let p = api
        .patch(
            &format!("{PODS}/real?dryRun=All"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(p.body["metadata"]["labels"]["x"], "y");
    assert_eq!(api.store.current_revision(), rev);
    assert!(rev > before);
    assert_eq!(
        api.get(&format!("{PODS}/real")).await.status,
        StatusCode::OK
    );
    let bad = api.post(&format!("{PODS}?dryRun=Some"), pod("x")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn services_get_unique_cluster_ips() {
    let api = start().await;
    let k = api
        .get("/api/v1/namespaces/default/services/kubernetes")
        .await;
    assert_eq!(k.body["spec"]["clusterIP"], "10.96.0.1");
    let mut ips = std::collections::HashSet::new();
    for i in 0..5 {
        let r = api
            .post(
                "/api/v1/namespaces/default/services",
                json!({"metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let ip = r.body["spec"]["clusterIP"]
            .as_str()
            .expect("ip")
            .to_string();
        assert!(ip.starts_with("10."), "{ip}");
        assert_eq!(r.body["spec"]["clusterIPs"], json!([ip]));
        assert_eq!(r.body["spec"]["ports"][0]["targetPort"], 80);
        assert!(ips.insert(ip));
    }
    let taken = api
        .post("/api/v1/namespaces/default/services", json!({"metadata": {"name": "dup"}, "spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80}]}}))
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    let np = api
        .post("/api/v1/namespaces/default/services", json!({"metadata": {"name": "np"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}))
        .await;
    let port = np.body["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    assert!((30000..=32767).contains(&port));
    // Deleting frees the IP: it can be requested again.
    let ip = np.body["spec"]["clusterIP"]
        .as_str()
        .expect("ip")
        .to_string();
    assert_eq!(
        api.delete("/api/v1/namespaces/default/services/np")
            .await
            .status,
        StatusCode::OK
    );
    let again = api
        .post("/api/v1/namespaces/default/services", json!({"metadata": {"name": "np2"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}))
        .await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[tokio::test]
async fn protobuf_bodies_from_kubectl_generators() {
    let api = start().await;
    let pb = |f: &str| {
        std::fs::read(format!(
            "{}/src/apiserver/protobuf/testdata/{f}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("testdata")
    };
    let ct = [
        ("content-type", "application/vnd.kubernetes.protobuf"),
        (
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        ),
    ];
    let r = api
        .raw(
            Method::POST,
            "/api/v1/namespaces?fieldManager=kubectl-create",
            pb("namespace.pb"),
            &ct,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["metadata"]["name"], "ns1");
    assert!(r.body["metadata"]["creationTimestamp"].is_string());
    let r = api
        .raw(
            Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            pb("deployment.pb"),
            &ct,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["kind"], "Deployment");
    let r = api
        .raw(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            b"k8s\0garbage".to_vec(),
            &ct,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn managed_fields_record_the_field_manager() {
    let api = start().await;
    let r = api
        .post(&format!("{PODS}?fieldManager=kubectl-create"), pod("mf"))
        .await;
    let mf = r.body["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(mf.len(), 1, "{}", r.body);
    assert_eq!(
        (mf[0]["manager"].clone(), mf[0]["operation"].clone()),
        (json!("kubectl-create"), json!("Update"))
    );
    let p = api
        .patch(
            &format!("{PODS}/mf?fieldManager=kubectl-label"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    let managers: Vec<&str> = p.body["metadata"]["managedFields"]
        .as_array()
        .expect("mf")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["kubectl-create", "kubectl-label"]);
    let s = api
        .patch(
            &format!("{PODS}/mf/status?fieldManager=kubelet"),
            "application/merge-patch+json",
            json!({"status": {"phase": "Running"}}),
        )
        .await;
    let status_entry = s.body["metadata"]["managedFields"]
        .as_array()
        .expect("mf")
        .iter()
        .find(|m| m["manager"] == "kubelet")
        .cloned();
    assert_eq!(
        status_entry.map(|e| e["subresource"].clone()),
        Some(json!("status"))
    );
}
