//! OpenAPI document tests.

use std::sync::Arc;

use prost::Message;
use serde_json::{Value, json};

use super::*;
use crate::apiserver::patch::tests::info;
use crate::apiserver::resource::{Scope, Subresource};

pub(crate) fn resources() -> Vec<ResourceInfo> {
    let mut pods = info("", "v1", "Pod");
    pods.verbs = vec![
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    pods.subresources = vec![
        Subresource {
            name: "status",
            group: "",
            version: "v1",
            kind: "Pod",
            verbs: &["get", "patch", "update"],
        },
        Subresource {
            name: "log",
            group: "",
            version: "v1",
            kind: "Pod",
            verbs: &["get"],
        },
        Subresource {
            name: "exec",
            group: "",
            version: "v1",
            kind: "PodExecOptions",
            verbs: &["create", "get"],
        },
    ];
    let mut namespaces = info("", "v1", "Namespace");
    namespaces.scope = Scope::Cluster;
    namespaces.plural = "namespaces".into();
    namespaces.verbs = vec![
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    let mut deployments = info("apps", "v1", "Deployment");
    deployments.verbs = vec![
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    deployments.subresources = vec![Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: &["get", "patch", "update"],
    }];
    let mut widgets = info("example.com", "v1", "Widget");
    widgets.verbs = vec![
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    widgets.crd_schema = Some(Arc::new(json!({"type":"object","properties":{
        "spec":{"type":"object","description":"Widget spec","properties":{"size":{"type":"integer"}}}}})));
    vec![pods, namespaces, deployments, widgets]
}

/// Every `$ref` in `doc` must name a schema in `schemas`.
fn assert_refs_resolve(doc: &Value, prefix: &str, schemas: &serde_json::Map<String, Value>) {
    match doc {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let name = r
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("ref {r} lacks {prefix}"));
                assert!(schemas.contains_key(name), "dangling ref {r}");
            }
            map.values()
                .for_each(|v| assert_refs_resolve(v, prefix, schemas));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| assert_refs_resolve(v, prefix, schemas)),
        _ => {}
    }
}

#[test]
fn root_lists_group_versions_with_stable_hashes() {
    let res = resources();
    let root = v3_root(&res);
    let paths = root["paths"].as_object().expect("paths");
    let keys: Vec<&String> = paths.keys().collect();
    assert_eq!(keys, vec!["api/v1", "apis/apps/v1", "apis/example.com/v1"]);
    let url = paths["api/v1"]["serverRelativeURL"].as_str().expect("url");
    assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
    let hash = url.rsplit('=').next().expect("hash");
    assert_eq!(hash.len(), 128);
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
    assert_eq!(v3_root(&res), root, "hash is deterministic");
    let mut changed = res.clone();
    changed[3].crd_schema = Some(Arc::new(json!({"type":"object"})));
    let root2 = v3_root(&changed);
    assert_ne!(
        root2["paths"]["apis/example.com/v1"],
        root["paths"]["apis/example.com/v1"]
    );
    assert_eq!(root2["paths"]["api/v1"], root["paths"]["api/v1"]);
}

#[test]
fn core_document_has_patch_operations_kubectl_needs() {
    let doc = v3_group_version("", "v1", &resources()).expect("core doc");
    assert_eq!(doc["openapi"], "3.0.0");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert_refs_resolve(&doc, REF_PREFIX, schemas);
    let pod = &schemas["io.k8s.api.core.v1.Pod"];
    assert_eq!(
        pod["x-kubernetes-group-version-kind"],
        json!([{"group":"","kind":"Pod","version":"v1"}])
    );
    assert!(schemas.contains_key("io.k8s.api.core.v1.Container"));
    assert!(schemas.contains_key("io.k8s.api.core.v1.PodList"));

    let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    let patch = &item["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group":"","version":"v1","kind":"Pod"})
    );
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(patch["operationId"], "patchCoreV1NamespacedPod");
    let params = patch["parameters"].as_array().expect("params");
    assert!(
        params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    for t in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
        "application/strategic-merge-patch+json",
    ] {
        assert!(content.contains_key(t), "{t}");
    }
    assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedPod");
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]["operationId"],
        "listCoreV1NamespacedPod"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["delete"]["operationId"],
        "deleteCoreV1CollectionNamespacedPod"
    );
    assert_eq!(
        doc["paths"]["/api/v1/pods"]["get"]["operationId"],
        "listCoreV1PodForAllNamespaces"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/status"]["patch"]["operationId"],
        "patchCoreV1NamespacedPodStatus"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["x-kubernetes-action"],
        "connect"
    );
    assert_eq!(
        doc["paths"]["/api/v1/namespaces/{name}"]["patch"]["operationId"],
        "patchCoreV1Namespace"
    );
    assert!(
        doc["paths"]
            .get("/api/v1/namespaces/{namespace}/namespaces")
            .is_none()
    );
}

#[test]
fn apps_and_custom_resource_documents() {
    let res = resources();
    let apps = v3_group_version("apps", "v1", &res).expect("apps doc");
    let schemas = apps["components"]["schemas"].as_object().expect("schemas");
    assert_refs_resolve(&apps, REF_PREFIX, schemas);
    assert!(schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
    let scale =
        &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(
        scale["x-kubernetes-group-version-kind"],
        json!({"group":"autoscaling","version":"v1","kind":"Scale"})
    );
    assert_eq!(scale["operationId"], "patchAppsV1NamespacedDeploymentScale");

    let crd = v3_group_version("example.com", "v1", &res).expect("crd doc");
    let schemas = crd["components"]["schemas"].as_object().expect("schemas");
    assert_refs_resolve(&crd, REF_PREFIX, schemas);
    let widget = &schemas["com.example.v1.Widget"];
    assert_eq!(
        widget["x-kubernetes-group-version-kind"],
        json!([{"group":"example.com","kind":"Widget","version":"v1"}])
    );
    assert_eq!(
        widget["properties"]["spec"]["properties"]["size"]["type"],
        "integer"
    );
    let patch =
        &crd["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchExampleComV1NamespacedWidget");
    let content = patch["requestBody"]["content"]
        .as_object()
        .expect("content");
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    assert!(content.contains_key("application/apply-patch+yaml"));
    assert!(v3_group_version("nope", "v1", &res).is_none());
}

#[test]
fn swagger_v2_json_is_self_consistent() {
    let doc = v2(&resources());
    assert_eq!(doc["swagger"], "2.0");
    let defs = doc["definitions"].as_object().expect("definitions");
    assert_refs_resolve(&doc, "#/definitions/", defs);
    assert!(!doc.to_string().contains("\"nullable\""));
    assert!(defs.contains_key("io.k8s.api.apps.v1.Deployment"));
    assert!(defs.contains_key("com.example.v1.Widget"));
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    let body = patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .find(|p| p["in"] == "body")
        .expect("body param");
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
    );
    assert!(
        patch["consumes"]
            .as_array()
            .expect("consumes")
            .contains(&json!("application/merge-patch+json"))
    );
}

/// The parts of gnostic's `openapi.v2.Document` the test reads.
#[derive(Clone, PartialEq, Message)]
struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Schema {
    #[prost(string, tag = "1")]
    reference: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Definitions>,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
struct AnyValue {
    #[prost(string, tag = "2")]
    yaml: String,
}

#[test]
fn swagger_v2_protobuf_decodes_as_gnostic_document() {
    let bytes = v2_protobuf(&resources()).expect("protobuf");
    let doc = Document::decode(bytes.as_slice()).expect("gnostic document");
    assert_eq!(doc.swagger, "2.0");
    let defs = doc.definitions.expect("definitions").additional_properties;
    let pod = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.Pod")
        .and_then(|d| d.value.clone())
        .expect("Pod");
    assert_eq!(pod.r#type.expect("type").value, vec!["object"]);
    let gvk = pod
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .expect("gvk");
    let yaml: Value = serde_yaml::from_str(&gvk.value.clone().expect("value").yaml).expect("yaml");
    assert_eq!(yaml, json!([{"group":"","kind":"Pod","version":"v1"}]));
    let props = pod.properties.expect("properties").additional_properties;
    let spec = props
        .iter()
        .find(|p| p.name == "spec")
        .and_then(|p| p.value.clone())
        .expect("spec");
    let spec_ref = spec
        .all_of
        .first()
        .map(|s| s.reference.clone())
        .unwrap_or(spec.reference);
    assert_eq!(spec_ref, "#/definitions/io.k8s.api.core.v1.PodSpec");
    let container = defs
        .iter()
        .find(|d| d.name == "io.k8s.api.core.v1.Container")
        .and_then(|d| d.value.clone())
        .expect("Container");
    assert_eq!(container.required, vec!["name"]);
}
