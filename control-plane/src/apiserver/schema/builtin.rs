//! OpenAPI definitions of the built-in kinds, generated once from
//! k8s-openapi's `schemars` implementations (OpenAPI 3 flavour, so references
//! read `#/components/schemas/<name>` and a described reference is wrapped
//! in `allOf`, as in Kubernetes' own v3 documents).
//!
//! Two things Kubernetes publishes that k8s-openapi leaves out are added from
//! the type catalog: `x-kubernetes-group-version-kind` on every top-level kind
//! (kubectl explain needs it) and the patch / list extensions
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`,
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys`,
//! `x-kubernetes-map-type`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Value, json};

use super::catalog::{Cardinality, catalog};

/// Prefix of every reference in the generated definitions.
pub const REF_PREFIX: &str = "#/components/schemas/";

/// One built-in kind with a schema.
#[derive(Clone, Copy, Debug)]
pub struct BuiltinKind {
    /// API group ("" for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// OpenAPI definition name.
    pub definition: &'static str,
}

type AddFn = fn(&mut SchemaGenerator);

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
    generator.subschema_for::<T>();
}

macro_rules! kinds {
    ($( $group:literal $version:literal $kind:literal => $($path:ident)::+ ;)*) => {
        const KINDS: &[(BuiltinKind, AddFn)] = &[
            $((
                BuiltinKind {
                    group: $group,
                    version: $version,
                    kind: $kind,
                    definition: concat!("io.k8s.", kinds!(@def $($path)::+)),
                },
                add::<k8s_openapi::$($path)::+> as AddFn,
            ),)*
        ];
    };
    (@def api :: $pkg:ident :: $ver:ident :: $ty:ident) => {
        concat!("api.", stringify!($pkg), ".", stringify!($ver), ".", stringify!($ty))
    };
    (@def apiextensions_apiserver :: pkg :: apis :: apiextensions :: $ver:ident :: $ty:ident) => {
        concat!("apiextensions-apiserver.pkg.apis.apiextensions.", stringify!($ver), ".", stringify!($ty))
    };
}

kinds! {
    "" "v1" "Binding" => api::core::v1::Binding;
    "" "v1" "ComponentStatus" => api::core::v1::ComponentStatus;
    "" "v1" "ConfigMap" => api::core::v1::ConfigMap;
    "" "v1" "Endpoints" => api::core::v1::Endpoints;
    "" "v1" "Event" => api::core::v1::Event;
    "" "v1" "LimitRange" => api::core::v1::LimitRange;
    "" "v1" "Namespace" => api::core::v1::Namespace;
    "" "v1" "Node" => api::core::v1::Node;
    "" "v1" "PersistentVolume" => api::core::v1::PersistentVolume;
    "" "v1" "PersistentVolumeClaim" => api::core::v1::PersistentVolumeClaim;
    "" "v1" "Pod" => api::core::v1::Pod;
    "" "v1" "PodTemplate" => api::core::v1::PodTemplate;
    "" "v1" "ReplicationController" => api::core::v1::ReplicationController;
    "" "v1" "ResourceQuota" => api::core::v1::ResourceQuota;
    "" "v1" "Secret" => api::core::v1::Secret;
    "" "v1" "Service" => api::core::v1::Service;
    "" "v1" "ServiceAccount" => api::core::v1::ServiceAccount;
    "apps" "v1" "ControllerRevision" => api::apps::v1::ControllerRevision;
    "apps" "v1" "DaemonSet" => api::apps::v1::DaemonSet;
    "apps" "v1" "Deployment" => api::apps::v1::Deployment;
    "apps" "v1" "ReplicaSet" => api::apps::v1::ReplicaSet;
    "apps" "v1" "StatefulSet" => api::apps::v1::StatefulSet;
    "batch" "v1" "CronJob" => api::batch::v1::CronJob;
    "batch" "v1" "Job" => api::batch::v1::Job;
    "autoscaling" "v1" "HorizontalPodAutoscaler" => api::autoscaling::v1::HorizontalPodAutoscaler;
    "autoscaling" "v1" "Scale" => api::autoscaling::v1::Scale;
    "autoscaling" "v2" "HorizontalPodAutoscaler" => api::autoscaling::v2::HorizontalPodAutoscaler;
    "networking.k8s.io" "v1" "Ingress" => api::networking::v1::Ingress;
    "networking.k8s.io" "v1" "IngressClass" => api::networking::v1::IngressClass;
    "networking.k8s.io" "v1" "NetworkPolicy" => api::networking::v1::NetworkPolicy;
    "networking.k8s.io" "v1" "IPAddress" => api::networking::v1::IPAddress;
    "networking.k8s.io" "v1" "ServiceCIDR" => api::networking::v1::ServiceCIDR;
    "policy" "v1" "Eviction" => api::policy::v1::Eviction;
    "policy" "v1" "PodDisruptionBudget" => api::policy::v1::PodDisruptionBudget;
    "rbac.authorization.k8s.io" "v1" "ClusterRole" => api::rbac::v1::ClusterRole;
    "rbac.authorization.k8s.io" "v1" "ClusterRoleBinding" => api::rbac::v1::ClusterRoleBinding;
    "rbac.authorization.k8s.io" "v1" "Role" => api::rbac::v1::Role;
    "rbac.authorization.k8s.io" "v1" "RoleBinding" => api::rbac::v1::RoleBinding;
    "coordination.k8s.io" "v1" "Lease" => api::coordination::v1::Lease;
    "discovery.k8s.io" "v1" "EndpointSlice" => api::discovery::v1::EndpointSlice;
    "events.k8s.io" "v1" "Event" => api::events::v1::Event;
    "scheduling.k8s.io" "v1" "PriorityClass" => api::scheduling::v1::PriorityClass;
    "node.k8s.io" "v1" "RuntimeClass" => api::node::v1::RuntimeClass;
    "storage.k8s.io" "v1" "CSIDriver" => api::storage::v1::CSIDriver;
    "storage.k8s.io" "v1" "CSINode" => api::storage::v1::CSINode;
    "storage.k8s.io" "v1" "CSIStorageCapacity" => api::storage::v1::CSIStorageCapacity;
    "storage.k8s.io" "v1" "StorageClass" => api::storage::v1::StorageClass;
    "storage.k8s.io" "v1" "VolumeAttachment" => api::storage::v1::VolumeAttachment;
    "authentication.k8s.io" "v1" "SelfSubjectReview" => api::authentication::v1::SelfSubjectReview;
    "authentication.k8s.io" "v1" "TokenRequest" => api::authentication::v1::TokenRequest;
    "authentication.k8s.io" "v1" "TokenReview" => api::authentication::v1::TokenReview;
    "authorization.k8s.io" "v1" "LocalSubjectAccessReview" => api::authorization::v1::LocalSubjectAccessReview;
    "authorization.k8s.io" "v1" "SelfSubjectAccessReview" => api::authorization::v1::SelfSubjectAccessReview;
    "authorization.k8s.io" "v1" "SelfSubjectRulesReview" => api::authorization::v1::SelfSubjectRulesReview;
    "authorization.k8s.io" "v1" "SubjectAccessReview" => api::authorization::v1::SubjectAccessReview;
    "certificates.k8s.io" "v1" "CertificateSigningRequest" => api::certificates::v1::CertificateSigningRequest;
    "admissionregistration.k8s.io" "v1" "MutatingWebhookConfiguration" => api::admissionregistration::v1::MutatingWebhookConfiguration;
    "admissionregistration.k8s.io" "v1" "ValidatingWebhookConfiguration" => api::admissionregistration::v1::ValidatingWebhookConfiguration;
    "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicy" => api::admissionregistration::v1::ValidatingAdmissionPolicy;
    "admissionregistration.k8s.io" "v1" "ValidatingAdmissionPolicyBinding" => api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
    "flowcontrol.apiserver.k8s.io" "v1" "FlowSchema" => api::flowcontrol::v1::FlowSchema;
    "flowcontrol.apiserver.k8s.io" "v1" "PriorityLevelConfiguration" => api::flowcontrol::v1::PriorityLevelConfiguration;
    "apiextensions.k8s.io" "v1" "CustomResourceDefinition" => apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
}

/// Every built-in kind that has a schema.
pub fn kinds() -> impl Iterator<Item = &'static BuiltinKind> {
    KINDS.iter().map(|(k, _)| k)
}

/// The built-in kind for (group, version, kind).
pub fn find(group: &str, version: &str, kind: &str) -> Option<&'static BuiltinKind> {
    kinds().find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// All definitions by OpenAPI name (generated once).
pub fn definitions() -> &'static BTreeMap<String, Arc<Value>> {
    static CELL: OnceLock<BTreeMap<String, Arc<Value>>> = OnceLock::new();
    CELL.get_or_init(build)
}

/// The definition named `name`.
pub fn definition(name: &str) -> Option<&'static Arc<Value>> {
    definitions().get(name)
}

/// Follow `$ref` (and a single-element `allOf` wrapping one) to the
/// definition it names; other schemas are returned as they are.
pub fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    for _ in 0..8 {
        if let Some(target) = current.get("$ref").and_then(Value::as_str) {
            match target.strip_prefix(REF_PREFIX).and_then(definition) {
                Some(def) => current = def.as_ref(),
                None => return current,
            }
        } else if let Some([only]) = current
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            && only.get("$ref").is_some()
        {
            current = only;
        } else {
            return current;
        }
    }
    current
}

fn build() -> BTreeMap<String, Arc<Value>> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for (_, add) in KINDS {
        add(&mut generator);
    }
    add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>(&mut generator);
    add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>(&mut generator);
    add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>(&mut generator);
    add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Patch>(&mut generator);
    let mut defs: BTreeMap<String, Value> = generator.take_definitions(true).into_iter().collect();
    for (kind, _) in KINDS {
        if let Some(Value::Object(def)) = defs.get_mut(kind.definition) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": kind.group, "kind": kind.kind, "version": kind.version}]),
            );
        }
    }
    for (name, def) in defs.iter_mut() {
        add_catalog_extensions(name, def);
    }
    defs.into_iter().map(|(k, v)| (k, Arc::new(v))).collect()
}

/// Copy the patch and list markers of the catalog into the schema's properties.
fn add_catalog_extensions(name: &str, def: &mut Value) {
    let Some(ty) = catalog().get(name) else {
        return;
    };
    if ty.atomic
        && let Some(obj) = def.as_object_mut()
    {
        obj.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    let Some(props) = def.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (prop_name, prop) in props.iter_mut() {
        let Some(field) = ty.field(prop_name) else {
            continue;
        };
        let Some(obj) = prop.as_object_mut() else {
            continue;
        };
        if let Some(strategy) = field.patch_strategy {
            obj.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        }
        if let Some(key) = field.merge_key {
            obj.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
        if field.cardinality == Cardinality::Repeated {
            if let Some(list_type) = field.list_type {
                obj.insert("x-kubernetes-list-type".into(), json!(list_type));
            }
            if !field.list_map_keys.is_empty() {
                obj.insert(
                    "x-kubernetes-list-map-keys".into(),
                    json!(field.list_map_keys),
                );
            }
        }
        if let Some(map_type) = field.map_type {
            obj.insert("x-kubernetes-map-type".into(), json!(map_type));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_definition_with_extensions() {
        let pod = definition("io.k8s.api.core.v1.Pod").expect("Pod");
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group":"","kind":"Pod","version":"v1"}])
        );
        assert!(
            pod["properties"]["spec"]
                .to_string()
                .contains("io.k8s.api.core.v1.PodSpec")
        );
        let spec = resolve(&pod["properties"]["spec"]);
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-patch-strategy"],
            "merge"
        );
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-list-type"],
            "map"
        );
        assert_eq!(
            spec["properties"]["containers"]["x-kubernetes-list-map-keys"],
            json!(["name"])
        );
        let container = resolve(&spec["properties"]["containers"]["items"]);
        assert!(container["properties"]["image"].is_object());
        assert!(definition("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").is_some());
        assert!(definition("io.k8s.apimachinery.pkg.apis.meta.v1.Status").is_some());
        let crd = definition(
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition",
        );
        assert!(crd.is_some());
        assert!(find("apps", "v1", "Deployment").is_some());
        for kind in kinds() {
            assert!(definition(kind.definition).is_some(), "{}", kind.definition);
        }
    }
}
