//! Schemas of the served kinds: built-in ones come from k8s-openapi's
//! `schemars` output plus the generated type [`catalog`]; custom resources
//! bring their structural schema in `ResourceInfo::crd_schema`. Used for
//! strict field validation (`unknown_fields`), CRD validation and pruning,
//! and by the patch code to know list types and merge keys ([`node`]).

pub mod catalog;
pub mod node;

use serde_json::Value;

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
