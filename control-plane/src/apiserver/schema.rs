//! Schemas of the served kinds: built-in ones come from k8s-openapi's
//! `schemars` output plus the generated type [`catalog`]; custom resources
//! bring their structural schema in `ResourceInfo::crd_schema`. Used for
//! strict field validation (`unknown_fields`), CRD validation and pruning,
//! and by the patch code to know list types and merge keys ([`node`]).

pub mod builtin;
pub mod catalog;
pub mod node;
mod validate;

use std::sync::Arc;

use serde_json::Value;

pub use validate::{FieldError, validate_structural};

use crate::apiserver::resource::ResourceInfo;
use node::TypeNode;

/// The Go package path segment of a built-in API group (`core`, `apps`,
/// `rbac`, …), or `None` for groups that are not built in.
pub fn builtin_package(group: &str) -> Option<&str> {
    match group {
        "" => Some("core"),
        g if !g.contains('.') => Some(g),
        g if g.ends_with(".k8s.io") => g.split('.').next(),
        _ => None,
    }
}

/// OpenAPI definition name of a built-in kind, e.g. `io.k8s.api.apps.v1.Deployment`.
pub fn builtin_type_name(group: &str, version: &str, kind: &str) -> Option<String> {
    match group {
        "apiextensions.k8s.io" => Some(format!(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{version}.{kind}"
        )),
        "apiregistration.k8s.io" => Some(format!(
            "io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}.{kind}"
        )),
        _ => builtin_package(group).map(|pkg| format!("io.k8s.api.{pkg}.{version}.{kind}")),
    }
}

/// Split `apps/v1` into (`apps`, `v1`) and `v1` into (``, `v1`).
fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

/// The catalog node of a built-in kind, or `None` for custom resources and
/// kinds the catalog does not know. When `obj` carries its own
/// `apiVersion`/`kind` (e.g. a `Scale` patched through `deployments/scale`)
/// those win over `info`.
pub fn builtin_node(info: &ResourceInfo, obj: Option<&Value>) -> Option<TypeNode<'static>> {
    if info.crd_schema.is_some() {
        return None;
    }
    let from_obj = obj.and_then(|o| {
        let api_version = o.get("apiVersion")?.as_str()?;
        let kind = o.get("kind")?.as_str()?;
        let (group, version) = split_api_version(api_version);
        builtin_type_name(group, version, kind)
    });
    let name = from_obj.or_else(|| builtin_type_name(&info.group, &info.version, &info.kind))?;
    match TypeNode::builtin(&name) {
        TypeNode::Untyped => None,
        node => Some(node),
    }
}

/// Type information for objects of `info`: the catalog for built-ins, the
/// structural schema for custom resources, else untyped.
pub fn type_node<'a>(info: &'a ResourceInfo, obj: Option<&Value>) -> TypeNode<'a> {
    if let Some(schema) = info.crd_schema.as_deref() {
        return TypeNode::Schema(schema, true);
    }
    builtin_node(info, obj).unwrap_or(TypeNode::Untyped)
}

/// The schema objects of `info` are checked against: the built-in
/// definition (references resolvable through [`builtin::resolve`]) or the
/// custom resource's structural schema.
pub fn schema_for(info: &ResourceInfo) -> Option<Arc<Value>> {
    if let Some(schema) = &info.crd_schema {
        return Some(schema.clone());
    }
    builtin::find(&info.group, &info.version, &info.kind)
        .and_then(|k| builtin::definition(k.definition))
        .cloned()
}

/// Fields of `obj` that `schema` does not declare, as Kubernetes reports them
/// for `fieldValidation=Strict`: `spec.foo`, `spec.containers[0].bar`,
/// `metadata.foo`. Maps (`additionalProperties`) and
/// `x-kubernetes-preserve-unknown-fields` subtrees accept any key.
pub fn unknown_fields(schema: &Value, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk_unknown(schema, obj, true, &mut |path, _| out.push(path));
    out
}

/// Drop the fields [`unknown_fields`] would report, as Kubernetes prunes
/// custom resources (and as decoding into Go types silently drops unknown
/// fields of built-ins), plus `null` values of declared, non-nullable
/// fields, which Kubernetes drops too.
pub fn prune(schema: &Value, obj: &mut Value) {
    prune_at(schema, obj, true);
}

/// [`prune`] in one walk: drops what [`walk_unknown_at`] reports and the
/// declared non-nullable nulls, then prunes what is kept.
fn prune_at(schema: &Value, obj: &mut Value, resource: bool) {
    let s = builtin::resolve(schema);
    match obj {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let keep_unknown = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true)
                || (props.is_none() && additional.is_none())
                || additional == Some(&Value::Bool(true));
            map.retain(|k, v| {
                let declared = props.and_then(|p| p.get(k));
                if v.is_null()
                    && declared.is_some_and(|p| {
                        builtin::resolve(p).get("nullable").and_then(Value::as_bool) != Some(true)
                    })
                {
                    return false;
                }
                if resource && (k == "apiVersion" || k == "kind") {
                    return true;
                }
                let child = if resource && k == "metadata" {
                    object_meta().map(|meta| (meta, false))
                } else if let Some(p) = declared {
                    Some((p, embedded(p)))
                } else if let Some(add @ Value::Object(_)) = additional {
                    Some((add, false))
                } else if keep_unknown {
                    None
                } else {
                    return false;
                };
                if let Some((child_schema, child_resource)) = child {
                    prune_at(child_schema, v, child_resource);
                }
                true
            });
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                let item_resource = embedded(item_schema);
                for item in items {
                    prune_at(item_schema, item, item_resource);
                }
            }
        }
        _ => {}
    }
}

fn object_meta() -> Option<&'static Value> {
    builtin::definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").map(|a| a.as_ref())
}

/// One step from the root to a member: a key or an array index.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `spec.containers[0].bar` and `/spec/containers/0/bar` for `segs`, built
/// only when a member is reported (most walks report nothing).
fn render_path(segs: &[Seg]) -> (String, String) {
    let (mut path, mut pointer) = (String::new(), String::new());
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
            }
            Seg::Index(i) => {
                path.push_str(&format!("[{i}]"));
                pointer.push_str(&format!("/{i}"));
            }
        }
    }
    (path, pointer)
}

/// Walk `obj` with `schema`, calling `report(path, json_pointer)` for every
/// member the schema does not allow. `resource` marks an object root (or an
/// embedded resource), whose `apiVersion`/`kind` are always allowed and
/// whose `metadata` is ObjectMeta.
fn walk_unknown(
    schema: &Value,
    obj: &Value,
    resource: bool,
    report: &mut dyn FnMut(String, String),
) {
    walk_unknown_at(schema, obj, &mut Vec::new(), resource, report);
}

fn embedded(schema: &Value) -> bool {
    builtin::resolve(schema)
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
}

fn walk_unknown_at<'a>(
    schema: &Value,
    obj: &'a Value,
    segs: &mut Vec<Seg<'a>>,
    resource: bool,
    report: &mut dyn FnMut(String, String),
) {
    let s = builtin::resolve(schema);
    match obj {
        Value::Object(map) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let preserve = s
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            let free_form = props.is_none() && additional.is_none();
            for (k, v) in map {
                if resource && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                let child: Option<(&Value, bool)> = if resource && k == "metadata" {
                    object_meta().map(|meta| (meta, false))
                } else if let Some(p) = props.and_then(|p| p.get(k)) {
                    Some((p, embedded(p)))
                } else if let Some(add @ Value::Object(_)) = additional {
                    Some((add, false))
                } else if preserve || free_form || additional == Some(&Value::Bool(true)) {
                    None
                } else {
                    segs.push(Seg::Key(k));
                    let (path, pointer) = render_path(segs);
                    segs.pop();
                    report(path, pointer);
                    None
                };
                if let Some((child_schema, child_resource)) = child {
                    segs.push(Seg::Key(k));
                    walk_unknown_at(child_schema, v, segs, child_resource, report);
                    segs.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.get("items") {
                let item_resource = embedded(item_schema);
                for (i, item) in items.iter().enumerate() {
                    segs.push(Seg::Index(i));
                    walk_unknown_at(item_schema, item, segs, item_resource, report);
                    segs.pop();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::patch::tests::info;
    use serde_json::json;

    #[test]
    fn unknown_fields_of_builtin_pod() {
        let schema = schema_for(&info("", "v1", "Pod")).expect("pod schema");
        let pod = json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","foo":1,"labels":{"any":"thing"},"creationTimestamp":null},
            "spec":{"containers":[{"name":"c","image":"i","bar":true,
                "resources":{"limits":{"cpu":"1"}},"ports":[{"containerPort":80,"hostPortX":1}],
                "livenessProbe":{"httpGet":{"port":"http","path":"/"},"periodSeconds":3}}],
                "nodeSelector":{"k":"v"},"bogus":{}},
            "status":{"phase":"Running"}});
        let mut unknown = unknown_fields(&schema, &pod);
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                "metadata.foo",
                "spec.bogus",
                "spec.containers[0].bar",
                "spec.containers[0].ports[0].hostPortX"
            ]
        );
        let mut pruned = pod.clone();
        prune(&schema, &mut pruned);
        assert!(unknown_fields(&schema, &pruned).is_empty());
        assert_eq!(
            pruned["metadata"],
            json!({"name":"p","labels":{"any":"thing"}})
        );
        assert_eq!(
            pruned["spec"]["containers"][0]["ports"],
            json!([{"containerPort":80}])
        );
        assert_eq!(pruned["status"], json!({"phase":"Running"}));
        let deploy = schema_for(&info("apps", "v1", "Deployment")).expect("deployment");
        let d = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"replicas":1,"selector":{"matchLabels":{"a":"b"}},"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%"}},
                "template":{"metadata":{"labels":{"a":"b"},"annotations":{"x":"y"}},"spec":{"containers":[{"name":"c","image":"i","extra":1}]}}}});
        assert_eq!(
            unknown_fields(&deploy, &d),
            vec!["spec.template.spec.containers[0].extra"]
        );
        assert!(schema_for(&info("example.com", "v1", "Nope")).is_none());
    }

    #[test]
    fn unknown_fields_and_prune_for_crds() {
        let schema = json!({"type":"object","properties":{
            "spec":{"type":"object","properties":{
                "size":{"type":"integer"},
                "opt":{"type":"string","nullable":true},
                "plain":{"type":"string"},
                "labels":{"type":"object","additionalProperties":{"type":"string"}},
                "free":{"type":"object","x-kubernetes-preserve-unknown-fields":true,"properties":{"known":{"type":"object","properties":{}}}},
                "items":{"type":"array","items":{"type":"object","properties":{"a":{"type":"string"}}}},
                "embedded":{"type":"object","x-kubernetes-embedded-resource":true,"properties":{"spec":{"type":"object"}}}}}}});
        let mut obj = json!({"apiVersion":"example.com/v1","kind":"W","metadata":{"name":"w","junk":1},
            "spec":{"size":1,"extra":2,"opt":null,"plain":null,"labels":{"x":"y"},"free":{"anything":1,"known":{"nested":1}},
                "items":[{"a":"x","b":"y"}],"embedded":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{},"bad":1}},
            "status":{}});
        let mut unknown = unknown_fields(&schema, &obj);
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                "metadata.junk",
                "spec.embedded.bad",
                "spec.extra",
                "spec.free.known.nested",
                "spec.items[0].b",
                "status"
            ]
        );
        prune(&schema, &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion":"example.com/v1","kind":"W","metadata":{"name":"w"},
                "spec":{"size":1,"opt":null,"labels":{"x":"y"},"free":{"anything":1,"known":{}},
                    "items":[{"a":"x"}],"embedded":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{}}}})
        );
        let crd_info = crate::apiserver::resource::ResourceInfo {
            crd_schema: Some(Arc::new(schema.clone())),
            ..info("example.com", "v1", "W")
        };
        assert_eq!(schema_for(&crd_info).as_deref(), Some(&schema));
    }
}
