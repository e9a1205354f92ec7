//! Unit tests for the non-apply patch types, with the bodies kubectl sends.

use serde_json::{Value, json};

use super::*;
use crate::apiserver::resource::{ResourceInfo, Scope};

pub(crate) fn info(group: &str, version: &str, kind: &str) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: format!("{}s", kind.to_lowercase()),
        singular: kind.to_lowercase(),
        scope: Scope::Namespaced,
        short_names: vec![],
        categories: vec![],
        verbs: vec!["get", "patch"],
        subresources: vec![],
        has_status_subresource: false,
        crd_schema: None,
    }
}

fn patch(
    info: &ResourceInfo,
    ty: PatchType,
    body: &Value,
    current: &Value,
) -> Result<Value, PatchError> {
    let body = serde_json::to_vec(body).expect("body");
    let req = PatchRequest {
        info,
        patch_type: ty,
        body: &body,
        field_manager: Some("test"),
        force: false,
    };
    apply_patch(&req, Some(current))
}

fn smp(info: &ResourceInfo, body: Value, current: &Value) -> Value {
    patch(info, PatchType::StrategicMerge, &body, current).expect("strategic merge patch")
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo", "namespace": "default", "labels": {"app": "demo", "env": "dev"},
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                     "finalizers": ["a.example/one"]},
        "spec": {
            "containers": [
                {"name": "app", "image": "nginx:1.25", "args": ["-a", "-b"],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "sidecar", "image": "busybox"}
            ],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "volumes": [{"name": "data", "emptyDir": {}}]
        }
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "annotations": {"deployment.kubernetes.io/revision": "2"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "nginx", "image": "nginx:1.25", "resources": {}},
                    {"name": "log", "image": "busybox"}
                ]}
            }
        }
    })
}

#[test]
fn content_types() {
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json"),
        Some(PatchType::Json)
    );
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
        Some(PatchType::Merge)
    );
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json"),
        Some(PatchType::StrategicMerge)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml"),
        Some(PatchType::Apply)
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+cbor"),
        None
    );
    assert_eq!(PatchType::from_content_type("application/json"), None);
    assert_eq!(PatchType::from_content_type(""), None);
}

#[test]
fn kubectl_apply_body_updates_image_and_keeps_rest() {
    let info = info("", "v1", "Pod");
    let body = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"new\":1}"},"labels":{"tier":"web"}},
                      "spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"sidecar"}],
                              "containers":[{"image":"nginx:1.26","name":"app"}]}});
    let out = smp(&info, body, &pod());
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app":"demo","env":"dev","tier":"web"})
    );
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"new\":1}"
    );
    let containers = out["spec"]["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0]["name"], "app");
    assert_eq!(containers[0]["image"], "nginx:1.26");
    assert_eq!(containers[0]["args"], json!(["-a", "-b"]));
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(
        containers[1],
        json!({"name": "sidecar", "image": "busybox"})
    );
    assert!(out["spec"].get("$setElementOrder/containers").is_none());
}

#[test]
fn set_image_on_deployment_template() {
    let info = info("apps", "v1", "Deployment");
    let body = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"log"}],
                      "containers":[{"image":"nginx:1.26","name":"nginx"}]}}}});
    let out = smp(&info, body, &deployment());
    let containers = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0],
        json!({"name":"nginx","image":"nginx:1.26","resources":{}})
    );
    assert_eq!(containers[1], json!({"name":"log","image":"busybox"}));
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn rollout_restart_adds_template_annotation() {
    let info = info("apps", "v1", "Deployment");
    let body = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-02T03:04:05Z"}}}}});
    let out = smp(&info, body, &deployment());
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"labels":{"app":"web"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-01-02T03:04:05Z"}})
    );
    assert_eq!(
        out["spec"]["template"]["spec"],
        deployment()["spec"]["template"]["spec"]
    );
}

#[test]
fn null_removes_label_and_unmatched_null_is_ignored() {
    let info = info("", "v1", "Pod");
    let out = smp(
        &info,
        json!({"metadata":{"labels":{"env":null,"gone":null}}}),
        &pod(),
    );
    assert_eq!(out["metadata"]["labels"], json!({"app":"demo"}));
    let out = smp(
        &info,
        json!({"metadata":{"newmap":{"a":null,"b":"x"}}}),
        &pod(),
    );
    assert_eq!(out["metadata"]["newmap"], json!({"b":"x"}));
}

#[test]
fn delete_directive_removes_container_by_merge_key() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"$setElementOrder/containers":[{"name":"app"}],
                      "containers":[{"$patch":"delete","name":"sidecar"}]}});
    let out = smp(&info, body, &pod());
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, vec!["app"]);
}

#[test]
fn replace_directive_in_list_and_map() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}});
    let out = smp(&info, body, &pod());
    assert_eq!(
        out["spec"]["containers"],
        json!([{"name":"only","image":"x"}])
    );

    let body = json!({"metadata":{"labels":{"$patch":"replace","fresh":"yes"}}});
    let out = smp(&info, body, &pod());
    assert_eq!(out["metadata"]["labels"], json!({"fresh":"yes"}));

    let body = json!({"metadata":{"labels":{"$patch":"delete"}}});
    let out = smp(&info, body, &pod());
    assert_eq!(out["metadata"]["labels"], json!({}));

    let body = json!({"spec":{"containers":[{"$patch":"merge"}]}});
    let err = patch(&info, PatchType::StrategicMerge, &body, &pod()).expect_err("merge directive");
    assert_eq!(err.code(), 500);
    let body = json!({"metadata":{"labels":{"$patch":"bogus"}}});
    let err = patch(&info, PatchType::StrategicMerge, &body, &pod()).expect_err("bogus");
    assert!(
        err.to_string().contains("unknown patch type: bogus"),
        "{err}"
    );
}

#[test]
fn set_element_order_reorders_containers() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"app"}]}});
    let out = smp(&info, body, &pod());
    assert_eq!(out["spec"]["containers"][0]["name"], "sidecar");
    assert_eq!(out["spec"]["containers"][1]["name"], "app");
    assert_eq!(out["spec"]["containers"][1]["image"], "nginx:1.25");

    // Adding a container between existing ones.
    let body = json!({"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"mid"},{"name":"sidecar"}],
                      "containers":[{"name":"mid","image":"m"}]}});
    let out = smp(&info, body, &pod());
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, vec!["app", "mid", "sidecar"]);

    // A patch item missing from the order list is rejected.
    let body = json!({"spec":{"$setElementOrder/containers":[{"name":"app"}],
                      "containers":[{"name":"other","image":"o"}]}});
    let err = patch(&info, PatchType::StrategicMerge, &body, &pod()).expect_err("order mismatch");
    assert!(
        err.to_string()
            .contains("doesn't match $setElementOrder list"),
        "{err}"
    );
}

#[test]
fn nested_lists_merge_by_their_keys() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"containers":[{"name":"app",
        "env":[{"name":"B","value":"two"},{"name":"C","value":"3"}],
        "ports":[{"containerPort":8080,"protocol":"TCP"}],
        "volumeMounts":[{"mountPath":"/data","readOnly":true}],
        "args":["-z"]}]}});
    let out = smp(&info, body, &pod());
    let app = &out["spec"]["containers"][0];
    // Patch items first in patch order, then server-only ones where they were.
    assert_eq!(
        app["env"],
        json!([{"name":"A","value":"1"},{"name":"B","value":"two"},{"name":"C","value":"3"}])
    );
    assert_eq!(
        app["ports"],
        json!([{"containerPort":8080,"protocol":"TCP"},{"containerPort":80,"protocol":"TCP"}])
    );
    assert_eq!(
        app["volumeMounts"],
        json!([{"name":"data","mountPath":"/data","readOnly":true}])
    );
    // args has no patch strategy: replaced.
    assert_eq!(app["args"], json!(["-z"]));
}

#[test]
fn lists_without_strategy_are_replaced() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"tolerations":[{"key":"other","operator":"Exists"}]}});
    let out = smp(&info, body, &pod());
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key":"other","operator":"Exists"}])
    );
}

#[test]
fn primitive_merge_list_and_delete_from_primitive_list() {
    let info = info("", "v1", "Pod");
    let out = smp(
        &info,
        json!({"metadata":{"finalizers":["b.example/two","a.example/one"]}}),
        &pod(),
    );
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["b.example/two", "a.example/one"])
    );
    let out = smp(
        &info,
        json!({"metadata":{"finalizers":["b.example/two"]}}),
        &pod(),
    );
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["b.example/two", "a.example/one"])
    );

    let body = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a.example/one"]}});
    let out = smp(&info, body, &pod());
    assert_eq!(out["metadata"]["finalizers"], json!([]));

    let body = json!({"metadata":{"$setElementOrder/finalizers":["b","a.example/one"],"finalizers":["b"]}});
    let out = smp(&info, body, &pod());
    assert_eq!(out["metadata"]["finalizers"], json!(["b", "a.example/one"]));
}

#[test]
fn retain_keys_switches_deployment_strategy() {
    let info = info("apps", "v1", "Deployment");
    let body = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}});
    let out = smp(&info, body, &deployment());
    assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));

    let body = json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{"maxSurge":1}}}});
    let err =
        patch(&info, PatchType::StrategicMerge, &body, &deployment()).expect_err("not retained");
    assert_eq!(err.code(), 400);
    assert_eq!(err.to_string(), "invalid patch format of retainKeys");
}

#[test]
fn volumes_retain_keys_replaces_volume_source() {
    let info = info("", "v1", "Pod");
    let body = json!({"spec":{"volumes":[{"$retainKeys":["configMap","name"],"name":"data","configMap":{"name":"cm"}}]}});
    let out = smp(&info, body, &pod());
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name":"data","configMap":{"name":"cm"}}])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let info = info("", "v1", "Service");
    let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
        "spec":{"selector":{"app":"a"},"ports":[{"port":80,"targetPort":8080,"protocol":"TCP"}]}});
    let out = smp(
        &info,
        json!({"spec":{"ports":[{"port":80,"targetPort":9090}]}}),
        &svc,
    );
    assert_eq!(
        out["spec"]["ports"],
        json!([{"port":80,"targetPort":9090,"protocol":"TCP"}])
    );
    let out = smp(&info, json!({"spec":{"selector":{"tier":"b"}}}), &svc);
    assert_eq!(out["spec"]["selector"], json!({"app":"a","tier":"b"}));
}

#[test]
fn selector_strategy_follows_struct_tags() {
    // Deployment's selector has no patch strategy, so (as in Kubernetes) it merges.
    let deploy = info("apps", "v1", "Deployment");
    let out = smp(
        &deploy,
        json!({"spec":{"selector":{"matchLabels":{"other":"x"}}}}),
        &deployment(),
    );
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels":{"app":"web","other":"x"}})
    );
    // PodDisruptionBudget's selector is `patchStrategy:"replace"`.
    let pdb_info = info("policy", "v1", "PodDisruptionBudget");
    let pdb = json!({"spec":{"selector":{"matchLabels":{"app":"web"}},"minAvailable":1}});
    let out = smp(
        &pdb_info,
        json!({"spec":{"selector":{"matchLabels":{"other":"x"}}}}),
        &pdb,
    );
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels":{"other":"x"}})
    );
}

#[test]
fn missing_merge_key_and_list_of_lists_fail_like_kubernetes() {
    let info = info("", "v1", "Pod");
    let err = patch(
        &info,
        PatchType::StrategicMerge,
        &json!({"spec":{"containers":[{"image":"x"}]}}),
        &pod(),
    )
    .expect_err("no merge key");
    assert_eq!(err.code(), 500);
    assert!(
        err.to_string()
            .contains("does not contain declared merge key: name"),
        "{err}"
    );
    let err = patch(
        &info,
        PatchType::StrategicMerge,
        &json!({"metadata":{"finalizers":[["x"]]}}),
        &pod(),
    )
    .expect_err("list of lists");
    assert_eq!((err.code(), err.reason()), (422, "Invalid"));
}

#[test]
fn new_subtrees_drop_directives_and_nulls() {
    let info = info("apps", "v1", "Deployment");
    let mut current = deployment();
    current["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("template");
    let body = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"a"}],
                      "containers":[{"name":"a","image":"i","stdin":null}]}}}});
    let out = smp(&info, body, &current);
    assert_eq!(
        out["spec"]["template"],
        json!({"spec":{"containers":[{"name":"a","image":"i"}]}})
    );
}

#[test]
fn strategic_merge_rejected_for_custom_resources() {
    let mut crd = info("example.com", "v1", "Widget");
    crd.crd_schema = Some(std::sync::Arc::new(json!({"type":"object"})));
    let err = patch(
        &crd,
        PatchType::StrategicMerge,
        &json!({"spec":{}}),
        &json!({}),
    )
    .expect_err("415");
    assert_eq!((err.code(), err.reason()), (415, "UnsupportedMediaType"));
    let unknown = info("example.com", "v1", "Gadget");
    let err = patch(&unknown, PatchType::StrategicMerge, &json!({}), &json!({})).expect_err("415");
    assert_eq!(err.code(), 415);
}

#[test]
fn scale_subresource_uses_object_kind() {
    let info = info("apps", "v1", "Deployment");
    let scale = json!({"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"web"},"spec":{"replicas":1}});
    let out = smp(&info, json!({"spec":{"replicas":3}}), &scale);
    assert_eq!(out["spec"]["replicas"], 3);
}

#[test]
fn bad_bodies_are_bad_requests() {
    let info = info("", "v1", "Pod");
    for ty in [PatchType::StrategicMerge, PatchType::Merge, PatchType::Json] {
        let req = PatchRequest {
            info: &info,
            patch_type: ty,
            body: b"{not json",
            field_manager: None,
            force: false,
        };
        let err = apply_patch(&req, Some(&pod())).expect_err("invalid JSON");
        assert_eq!((err.code(), err.reason()), (400, "BadRequest"), "{ty:?}");
    }
    let err = patch(&info, PatchType::StrategicMerge, &json!([1]), &pod()).expect_err("array");
    assert_eq!(err.code(), 400);
    let err = patch(&info, PatchType::Merge, &json!([1]), &pod()).expect_err("array");
    assert_eq!(err.code(), 400);
    let err = patch(&info, PatchType::Json, &json!({"op":"add"}), &pod()).expect_err("not a list");
    assert_eq!(err.code(), 400);
    let err = patch(
        &info,
        PatchType::Json,
        &json!([{"op":"frobnicate","path":"/a"}]),
        &pod(),
    )
    .expect_err("bad op");
    assert_eq!(err.code(), 400);
}

#[test]
fn merge_patch_label_and_scale() {
    let info = info("", "v1", "Pod");
    let out = patch(
        &info,
        PatchType::Merge,
        &json!({"metadata":{"labels":{"env":"prod"}}}),
        &pod(),
    )
    .expect("merge");
    assert_eq!(
        out["metadata"]["labels"],
        json!({"app":"demo","env":"prod"})
    );
    let out = patch(
        &info,
        PatchType::Merge,
        &json!({"metadata":{"labels":{"env":null}}}),
        &pod(),
    )
    .expect("merge");
    assert_eq!(out["metadata"]["labels"], json!({"app":"demo"}));
    // Lists are replaced wholesale by a merge patch.
    let out = patch(
        &info,
        PatchType::Merge,
        &json!({"spec":{"containers":[{"name":"x"}]}}),
        &pod(),
    )
    .expect("merge");
    assert_eq!(out["spec"]["containers"], json!([{"name":"x"}]));
    let deploy = info_apps();
    let out = patch(
        &deploy,
        PatchType::Merge,
        &json!({"spec":{"replicas":3}}),
        &deployment(),
    )
    .expect("scale");
    assert_eq!(out["spec"]["replicas"], 3);
}

fn info_apps() -> ResourceInfo {
    info("apps", "v1", "Deployment")
}

#[test]
fn json_patch_rollout_undo_body() {
    let info = info_apps();
    let template = json!({"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},
        "spec":{"containers":[{"name":"nginx","image":"nginx:1.24","resources":{}}]}});
    let annotations = json!({"deployment.kubernetes.io/revision":"1"});
    let body = json!([{"op":"replace","path":"/spec/template","value":template},
                      {"op":"replace","path":"/metadata/annotations","value":annotations}]);
    let out = patch(&info, PatchType::Json, &body, &deployment()).expect("undo");
    assert_eq!(out["spec"]["template"], template);
    assert_eq!(out["metadata"]["annotations"], annotations);
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn json_patch_failures_are_invalid() {
    let info = info_apps();
    let body = json!([{"op":"test","path":"/spec/replicas","value":5}]);
    let err = patch(&info, PatchType::Json, &body, &deployment()).expect_err("test fails");
    assert_eq!((err.code(), err.reason()), (422, "Invalid"));
    let body = json!([{"op":"remove","path":"/spec/nothing"}]);
    let err = patch(&info, PatchType::Json, &body, &deployment()).expect_err("missing path");
    assert_eq!(err.code(), 422);
    let body = json!([{"op":"test","path":"/spec/replicas","value":2},{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]);
    let out = patch(&info, PatchType::Json, &body, &deployment()).expect("ok");
    assert_eq!(out["metadata"]["labels"], json!({"a":"b"}));
}

#[test]
fn error_codes_and_reasons() {
    let cases = [
        (PatchError::BadRequest("x".into()), 400, "BadRequest"),
        (
            PatchError::UnsupportedMediaType("x".into()),
            415,
            "UnsupportedMediaType",
        ),
        (
            PatchError::Invalid {
                message: "x".into(),
                causes: vec![],
            },
            422,
            "Invalid",
        ),
        (
            PatchError::Conflict {
                message: "x".into(),
                causes: vec![],
            },
            409,
            "Conflict",
        ),
        (
            PatchError::TooLarge("x".into()),
            413,
            "RequestEntityTooLarge",
        ),
        (PatchError::Internal("x".into()), 500, "InternalError"),
    ];
    for (err, code, reason) in cases {
        assert_eq!((err.code(), err.reason()), (code, reason));
    }
}
