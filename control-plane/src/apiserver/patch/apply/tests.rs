//! Server-side apply tests with the bodies `kubectl apply --server-side` sends.

use serde_json::{Value, json};

use super::*;
use crate::apiserver::patch::managed_fields::record_update_typed;
use crate::apiserver::patch::tests::info;
use crate::apiserver::patch::{PatchRequest, PatchType};
use crate::apiserver::resource::ResourceInfo;

const NOW: &str = "2026-02-03T04:05:06Z";

fn apply(
    info: &ResourceInfo,
    manager: Option<&str>,
    force: bool,
    body: &str,
    current: Option<&Value>,
) -> Result<Value, PatchError> {
    let req = PatchRequest {
        info,
        patch_type: PatchType::Apply,
        body: body.as_bytes(),
        field_manager: manager,
        force,
    };
    server_side_apply_at(&req, current, NOW)
}

fn deploy_info() -> ResourceInfo {
    info("apps", "v1", "Deployment")
}

fn config(replicas: i64, image: &str, labels: Value) -> String {
    json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","namespace":"default","labels":labels},
        "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},
                "spec":{"containers":[{"name":"nginx","image":image}]}}}})
    .to_string()
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["manager"] == manager))
        .unwrap_or(&Value::Null)
}

/// What the store adds after a create.
fn stored(mut obj: Value) -> Value {
    obj["metadata"]["uid"] = json!("uid-1");
    obj["metadata"]["resourceVersion"] = json!("7");
    obj
}

#[test]
fn creates_when_absent_and_records_apply_entry() {
    let info = deploy_info();
    let out = apply(
        &info,
        Some("kubectl"),
        false,
        &config(2, "nginx:1.25", json!({"app":"web"})),
        None,
    )
    .expect("create");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["metadata"]["name"], "web");
    let e = entry(&out, "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], NOW);
    let expected = json!({"f:metadata":{"f:labels":{"f:app":{}}},
        "f:spec":{"f:replicas":{},"f:selector":{},
            "f:template":{"f:metadata":{"f:labels":{"f:app":{}}},
                "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}});
    assert_eq!(e["fieldsV1"], expected);
}

#[test]
fn reapply_updates_and_removes_dropped_fields() {
    let info = deploy_info();
    let first = stored(
        apply(
            &info,
            Some("kubectl"),
            false,
            &config(2, "nginx:1.25", json!({"app":"web","tier":"fe"})),
            None,
        )
        .expect("create"),
    );
    let second = apply(
        &info,
        Some("kubectl"),
        false,
        &config(2, "nginx:1.26", json!({"app":"web"})),
        Some(&first),
    )
    .expect("apply");
    assert_eq!(
        second["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(second["metadata"]["labels"], json!({"app":"web"}));
    assert_eq!(second["metadata"]["uid"], "uid-1");
    assert!(
        entry(&second, "kubectl")["fieldsV1"]["f:metadata"]["f:labels"]
            .get("f:tier")
            .is_none()
    );

    // Re-applying the same configuration changes nothing.
    let second = stored(second);
    let third = apply(
        &info,
        Some("kubectl"),
        false,
        &config(2, "nginx:1.26", json!({"app":"web"})),
        Some(&second),
    )
    .expect("noop");
    assert_eq!(third, second);
}

#[test]
fn conflicts_with_other_manager_then_force_takes_over() {
    let info = deploy_info();
    let created = stored(
        apply(
            &info,
            Some("ssa-a"),
            false,
            &config(2, "nginx", json!({"app":"web"})),
            None,
        )
        .expect("create"),
    );
    // Someone edits replicas with an ordinary update.
    let mut edited = created.clone();
    edited["spec"]["replicas"] = json!(4);
    record_update_typed(
        Some(&created),
        &mut edited,
        "kubectl-edit",
        "apps/v1",
        None,
        crate::apiserver::schema::node::TypeNode::builtin("io.k8s.api.apps.v1.Deployment"),
        "2026-01-01T00:00:00Z",
    );
    let err = apply(
        &info,
        Some("ssa-a"),
        false,
        &config(3, "nginx", json!({"app":"web"})),
        Some(&edited),
    )
    .expect_err("conflict");
    assert_eq!((err.code(), err.reason()), (409, "Conflict"));
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
    assert_eq!(err.causes()[0].field, ".spec.replicas");
    assert_eq!(err.causes()[0].reason, "FieldManagerConflict");

    // Applying the value the other manager set is not a conflict: both own it.
    let shared = apply(
        &info,
        Some("ssa-a"),
        false,
        &config(4, "nginx", json!({"app":"web"})),
        Some(&edited),
    )
    .expect("same value");
    assert!(
        entry(&shared, "kubectl-edit")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    );

    let forced = apply(
        &info,
        Some("ssa-a"),
        true,
        &config(3, "nginx", json!({"app":"web"})),
        Some(&edited),
    )
    .expect("force");
    assert_eq!(forced["spec"]["replicas"], 3);
    assert_eq!(
        entry(&forced, "kubectl-edit"),
        &Value::Null,
        "kubectl-edit owned only replicas"
    );
}

#[test]
fn fields_owned_by_others_survive_when_dropped() {
    let info = deploy_info();
    let created = stored(
        apply(
            &info,
            Some("a"),
            false,
            &config(2, "nginx", json!({"app":"web","x":"1"})),
            None,
        )
        .expect("a"),
    );
    let both = stored(
        apply(
            &info,
            Some("b"),
            false,
            &json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","labels":{"x":"1"}}})
            .to_string(),
            Some(&created),
        )
        .expect("b"),
    );
    let out = apply(
        &info,
        Some("a"),
        false,
        &config(2, "nginx", json!({"app":"web"})),
        Some(&both),
    )
    .expect("a again");
    assert_eq!(out["metadata"]["labels"], json!({"app":"web","x":"1"}));
}

#[test]
fn multiple_conflicts_message() {
    let info = deploy_info();
    let created = stored(
        apply(
            &info,
            Some("a"),
            false,
            &config(2, "nginx", json!({"app":"web"})),
            None,
        )
        .expect("a"),
    );
    let err = apply(
        &info,
        Some("b"),
        false,
        &config(5, "httpd", json!({"app":"web"})),
        Some(&created),
    )
    .expect_err("conflicts");
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
}

#[test]
fn kubectl_takes_over_client_side_apply_fields() {
    let info = deploy_info();
    let last = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx"}]}}}});
    let mut obj: Value =
        serde_json::from_str(&config(2, "nginx", json!({"app":"web"}))).expect("config");
    obj["metadata"]["annotations"] = json!({ LAST_APPLIED: last.to_string() });
    let node = crate::apiserver::schema::node::TypeNode::builtin("io.k8s.api.apps.v1.Deployment");
    record_update_typed(
        None,
        &mut obj,
        "kubectl-client-side-apply",
        "apps/v1",
        None,
        node,
        "2026-01-01T00:00:00Z",
    );
    let obj = stored(obj);
    let out = apply(
        &info,
        Some("kubectl"),
        false,
        &config(3, "nginx", json!({"app":"web"})),
        Some(&obj),
    )
    .expect("migration");
    assert_eq!(out["spec"]["replicas"], 3);
    // The annotation now mirrors the server-side configuration.
    let annotation: Value = serde_json::from_str(
        out["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("annotation"),
    )
    .expect("json");
    assert_eq!(annotation["spec"]["replicas"], 3);
    // Another manager gets the conflict.
    let err = apply(
        &info,
        Some("other"),
        false,
        &config(3, "nginx", json!({"app":"web"})),
        Some(&obj),
    )
    .expect_err("conflict");
    assert!(
        err.to_string()
            .contains("\"kubectl-client-side-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
}

#[test]
fn untracked_object_gets_before_first_apply() {
    let info = info("", "v1", "ConfigMap");
    let live = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","uid":"u"},"data":{"a":"1","b":"2"}});
    let out = apply(
        &info,
        Some("m"),
        false,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: \"1\"\n",
        Some(&live),
    )
    .expect("apply");
    assert_eq!(out["data"], json!({"a":"1","b":"2"}));
    let before = entry(&out, "before-first-apply");
    assert_eq!(before["operation"], "Update");
    assert_eq!(
        before["fieldsV1"],
        json!({"f:data":{".":{},"f:a":{},"f:b":{}}})
    );
    assert_eq!(entry(&out, "m")["fieldsV1"], json!({"f:data":{"f:a":{}}}));
}

#[test]
fn request_validation_errors() {
    let info = deploy_info();
    let body = config(1, "x", json!({}));
    let err = apply(&info, None, false, &body, None).expect_err("no manager");
    assert_eq!((err.code(), err.reason()), (422, "Invalid"));
    assert_eq!(
        err.to_string(),
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let err = apply(&info, Some(&"m".repeat(129)), false, &body, None).expect_err("too long");
    assert_eq!(err.code(), 422);
    let err = apply(
        &info,
        Some("m"),
        false,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#,
        None,
    )
    .expect_err("kind");
    assert_eq!(err.code(), 400);
    assert_eq!(err.to_string(), "invalid object type: /v1, Kind=Pod");
    let err = apply(&info, Some("m"), false, r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","managedFields":[{}]}}"#, None)
        .expect_err("managedFields");
    assert_eq!(err.to_string(), "metadata.managedFields must be nil");
    let err = apply(&info, Some("m"), false, "a: [unclosed", None).expect_err("yaml");
    assert_eq!(err.code(), 400);
    let err = apply(&info, Some("m"), false, "- 1", None).expect_err("not an object");
    assert_eq!(err.code(), 400);
    let live = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"other"}});
    let err = apply(&info, Some("m"), false, &body, Some(&live)).expect_err("name");
    assert!(
        err.to_string()
            .contains("does not match the name on the URL"),
        "{err}"
    );
}

#[test]
fn custom_resource_lists_follow_schema() {
    let mut info = info("example.com", "v1", "Widget");
    info.crd_schema = Some(std::sync::Arc::new(json!({"type":"object","properties":{
        "spec":{"type":"object","properties":{
            "ports":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["name"],
                "items":{"type":"object","properties":{"name":{"type":"string"},"port":{"type":"integer"}}}},
            "tags":{"type":"array","items":{"type":"string"}}}}}})));
    let first = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
        "spec":{"ports":[{"name":"a","port":1}],"tags":["x"]}}"#;
    let a = stored(apply(&info, Some("a"), false, first, None).expect("a"));
    let second = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
        "spec":{"ports":[{"name":"b","port":2}],"tags":["y"]}}"#;
    let err = apply(&info, Some("b"), false, second, Some(&a)).expect_err("tags atomic conflict");
    assert!(err.to_string().contains(".spec.tags"), "{err}");
    let out = apply(&info, Some("b"), true, second, Some(&a)).expect("forced");
    assert_eq!(
        out["spec"]["ports"],
        json!([{"name":"a","port":1},{"name":"b","port":2}])
    );
    assert_eq!(out["spec"]["tags"], json!(["y"]));
}
