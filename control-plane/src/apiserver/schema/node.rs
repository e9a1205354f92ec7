//! A cursor over type information that the patch and field-management code
//! walk in step with a JSON value: built-in types come from the catalog,
//! custom resources from their structural schema, and anything unknown is
//! "untyped" (objects merge field by field, lists are atomic).

use serde_json::Value;

use super::catalog::{Cardinality, FieldDef, FieldType, TypeDef, catalog};

/// OpenAPI name of `ObjectMeta`.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// How the elements of a list are identified (structured-merge-diff list types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind<'a> {
    /// The list is one value, replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// An associative list keyed by these fields.
    Map(Vec<&'a str>),
}

/// Strategic-merge-patch metadata of one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmpMeta<'a> {
    /// `patchStrategy` contains `merge`.
    pub merge: bool,
    /// `patchStrategy` contains `retainKeys`.
    pub retain_keys: bool,
    /// `patchStrategy` is `replace`.
    pub replace: bool,
    /// `patchMergeKey`.
    pub merge_key: Option<&'a str>,
}

/// Type information for one position in an object.
#[derive(Clone, Copy, Debug)]
pub enum TypeNode<'a> {
    /// Nothing known: objects are granular, lists atomic.
    Untyped,
    /// A leaf value (string, number, bool, Quantity, Time, IntOrString, …).
    Scalar,
    /// A built-in struct, with the field that holds it (if any).
    Struct(&'a TypeDef, Option<&'a FieldDef>),
    /// A built-in list field.
    List(&'a FieldDef),
    /// A built-in map field.
    Map(&'a FieldDef),
    /// A node of a custom resource's structural schema; `true` when it is
    /// the root of an object (so `metadata` is `ObjectMeta`).
    Schema(&'a Value, bool),
}

impl<'a> TypeNode<'a> {
    /// The node for a built-in type by OpenAPI name, or `Untyped`.
    pub fn builtin(name: &str) -> TypeNode<'static> {
        match catalog().get(name) {
            Some(def) => TypeNode::Struct(def, None),
            None => TypeNode::Untyped,
        }
    }

    /// The node for the value of a built-in field.
    pub fn of_field(field: &'a FieldDef) -> TypeNode<'a> {
        match field.cardinality {
            Cardinality::Repeated => TypeNode::List(field),
            Cardinality::Map => TypeNode::Map(field),
            Cardinality::Single => element(field.ty, Some(field)),
        }
    }

    /// True for built-in struct or schema-described types (not untyped).
    pub fn is_typed(&self) -> bool {
        !matches!(self, TypeNode::Untyped)
    }

    /// The node of member `name` of an object (a struct field or a map value).
    pub fn child(&self, name: &str) -> TypeNode<'a> {
        match *self {
            TypeNode::Struct(def, _) => match def.field(name) {
                Some(f) => TypeNode::of_field(f),
                None => TypeNode::Untyped,
            },
            TypeNode::Map(f) => element(f.ty, None),
            TypeNode::Schema(schema, root) => {
                if (root || is_embedded(schema)) && name == "metadata" {
                    return TypeNode::builtin(OBJECT_META);
                }
                if let Some(prop) = schema.get("properties").and_then(|p| p.get(name)) {
                    return TypeNode::Schema(prop, is_embedded(prop));
                }
                match schema.get("additionalProperties") {
                    Some(add @ Value::Object(_)) => TypeNode::Schema(add, is_embedded(add)),
                    _ => TypeNode::Untyped,
                }
            }
            _ => TypeNode::Untyped,
        }
    }

    /// True if `name` is a declared field of this struct or schema object
    /// (as opposed to a key of a map or an unknown field).
    pub fn declares(&self, name: &str) -> bool {
        match *self {
            TypeNode::Struct(def, _) => def.field(name).is_some(),
            TypeNode::Schema(schema, root) => {
                ((root || is_embedded(schema))
                    && matches!(name, "apiVersion" | "kind" | "metadata"))
                    || schema.get("properties").and_then(|p| p.get(name)).is_some()
            }
            _ => false,
        }
    }

    /// The node of a list's elements.
    pub fn item(&self) -> TypeNode<'a> {
        match *self {
            TypeNode::List(f) => element(f.ty, None),
            TypeNode::Schema(schema, _) => match schema.get("items") {
                Some(items) => TypeNode::Schema(items, is_embedded(items)),
                None => TypeNode::Untyped,
            },
            _ => TypeNode::Untyped,
        }
    }

    /// How this list identifies its elements (server-side apply). Lists with
    /// `patchStrategy=merge` and no `+listType` count as associative (keyed by
    /// the merge key) or sets, as Kubernetes' schema conversion does.
    pub fn list_kind(&self) -> ListKind<'a> {
        match *self {
            TypeNode::List(f) => match f.list_type {
                Some("map") if !f.list_map_keys.is_empty() => {
                    ListKind::Map(f.list_map_keys.clone())
                }
                Some("set") => ListKind::Set,
                Some(_) => ListKind::Atomic,
                None if f.smp_merge() => match f.merge_key {
                    Some(key) => ListKind::Map(vec![key]),
                    None => ListKind::Set,
                },
                None => ListKind::Atomic,
            },
            TypeNode::Schema(schema, _) => {
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("map") => ListKind::Map(
                        schema
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
                            .unwrap_or_default(),
                    ),
                    Some("set") => ListKind::Set,
                    _ => ListKind::Atomic,
                }
            }
            _ => ListKind::Atomic,
        }
    }

    /// True if an object at this node is replaced as a whole by apply
    /// (`+structType=atomic`, `+mapType=atomic`, or a leaf).
    pub fn is_atomic(&self) -> bool {
        match *self {
            TypeNode::Scalar => true,
            TypeNode::Struct(def, field) => {
                def.atomic || field.is_some_and(|f| f.struct_type == Some("atomic"))
            }
            TypeNode::Map(f) => f.map_type == Some("atomic"),
            TypeNode::Schema(schema, _) => {
                schema.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
            }
            TypeNode::List(_) | TypeNode::Untyped => false,
        }
    }

    /// Strategic-merge metadata of the field holding this node.
    pub fn smp(&self) -> SmpMeta<'a> {
        let field = match *self {
            TypeNode::Struct(_, Some(f)) | TypeNode::List(f) | TypeNode::Map(f) => f,
            _ => return SmpMeta::default(),
        };
        SmpMeta {
            merge: field.smp_merge(),
            retain_keys: field.smp_retain_keys(),
            replace: field.smp_replace(),
            merge_key: field.merge_key,
        }
    }
}

fn is_embedded(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The node for one value of type `ty`.
fn element<'a>(ty: FieldType, field: Option<&'a FieldDef>) -> TypeNode<'a> {
    match ty {
        FieldType::Message(name) => match name {
            "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.Duration"
            | "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1"
            | "io.k8s.apimachinery.pkg.api.resource.Quantity"
            | "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => TypeNode::Scalar,
            "io.k8s.apimachinery.pkg.runtime.RawExtension" => TypeNode::Untyped,
            _ => match catalog().get(name) {
                Some(def) if def.list_wrapper => TypeNode::Scalar,
                Some(def) => TypeNode::Struct(def, field),
                None => TypeNode::Untyped,
            },
        },
        _ => TypeNode::Scalar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn walks_builtin_pod() {
        let pod = TypeNode::builtin("io.k8s.api.core.v1.Pod");
        let containers = pod.child("spec").child("containers");
        assert_eq!(containers.list_kind(), ListKind::Map(vec!["name"]));
        assert_eq!(containers.smp().merge_key, Some("name"));
        let ports = containers.item().child("ports");
        assert_eq!(
            ports.list_kind(),
            ListKind::Map(vec!["containerPort", "protocol"])
        );
        assert_eq!(
            containers.item().child("args").list_kind(),
            ListKind::Atomic
        );
        assert!(matches!(containers.item().child("image"), TypeNode::Scalar));
        let labels = pod.child("metadata").child("labels");
        assert!(matches!(labels, TypeNode::Map(_)));
        assert!(!labels.is_atomic());
        assert!(pod.child("spec").child("nodeSelector").is_atomic());
        assert_eq!(
            pod.child("metadata").child("finalizers").list_kind(),
            ListKind::Set
        );
        let limits = containers.item().child("resources").child("limits");
        assert!(matches!(limits.child("cpu"), TypeNode::Scalar));
        assert!(matches!(pod.child("nope"), TypeNode::Untyped));
    }

    #[test]
    fn walks_smp_strategies() {
        let deploy = TypeNode::builtin("io.k8s.api.apps.v1.Deployment");
        let spec = deploy.child("spec");
        assert!(spec.child("strategy").smp().retain_keys);
        assert!(!spec.child("selector").smp().replace);
        assert!(spec.child("selector").is_atomic());
        let pdb = TypeNode::builtin("io.k8s.api.policy.v1.PodDisruptionBudget");
        assert!(pdb.child("spec").child("selector").smp().replace);
        let volumes = spec.child("template").child("spec").child("volumes");
        assert!(volumes.smp().merge && volumes.smp().retain_keys);
    }

    #[test]
    fn walks_crd_schema() {
        let schema = json!({"type":"object","properties":{
            "metadata":{"type":"object"},
            "spec":{"type":"object","properties":{
                "items":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["id"],
                         "items":{"type":"object","properties":{"id":{"type":"string"}}}},
                "tags":{"type":"array","x-kubernetes-list-type":"set","items":{"type":"string"}},
                "sel":{"type":"object","x-kubernetes-map-type":"atomic"},
                "extra":{"type":"object","additionalProperties":{"type":"integer"}}}}}});
        let root = TypeNode::Schema(&schema, true);
        assert!(matches!(root.child("metadata"), TypeNode::Struct(..)));
        let spec = root.child("spec");
        assert_eq!(spec.child("items").list_kind(), ListKind::Map(vec!["id"]));
        assert_eq!(spec.child("tags").list_kind(), ListKind::Set);
        assert!(spec.child("sel").is_atomic());
        assert!(matches!(
            spec.child("extra").child("any"),
            TypeNode::Schema(..)
        ));
        assert!(matches!(spec.child("missing"), TypeNode::Untyped));
    }
}
