//! OpenAPI documents for kubectl: the v3 root (`/openapi/v3`), one v3
//! document per group-version (`/openapi/v3/apis/<g>/<v>`), Swagger 2.0
//! (`/openapi/v2`, JSON) and its protobuf form for kubectl 1.27/1.28.
//!
//! Schemas are the real ones ([`schema::builtin`]) plus each custom
//! resource's structural schema. Every PATCH operation carries
//! `x-kubernetes-group-version-kind` and a `fieldValidation` query parameter:
//! that is how kubectl ≥ 1.29 decides to leave validation to the server.
//! Start with [`v3_root`] and [`v3_group_version`].

mod paths;
mod v2;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use crate::apiserver::resource::ResourceInfo;
use crate::apiserver::schema::builtin::{self, REF_PREFIX};
use crate::apiserver::schema::builtin_type_name;

pub use v2::{v2, v2_protobuf};

/// What kubectl puts in `Accept` when it wants [`v2_protobuf`].
pub const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The `Content-Type` to answer [`v2_protobuf`] with. Kubernetes replaces the
/// `@` by a dot: Go's MIME parser (and so kubectl) rejects the `@` form.
pub const V2_PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The Kubernetes version these documents describe.
const KUBE_VERSION: &str = "v1.33.0";
const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// `GET /openapi/v3`: one entry per served group-version, pointing at its
/// document with a content hash (kubectl caches by it).
pub fn v3_root(resources: &[ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions(resources) {
        let key = gv_path(&group, &version);
        let hash = fingerprint(&group, &version, resources);
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    json!({ "paths": paths })
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/<group>/<version>`; `None`
/// if no resource is served in that group-version.
pub fn v3_group_version(group: &str, version: &str, resources: &[ResourceInfo]) -> Option<Value> {
    let served: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    for info in &served {
        let Some(kind_schema) = kind_schema_name(info, &mut schemas) else {
            continue;
        };
        let list_name = format!("{kind_schema}List");
        schemas.insert(list_name.clone(), list_schema(info, &kind_schema));
        paths::add_resource_paths(info, &kind_schema, &list_name, &mut paths, &mut schemas);
    }
    for extra in [STATUS, DELETE_OPTIONS, PATCH, OBJECT_META, LIST_META] {
        add_definition(extra, &mut schemas);
    }
    let schemas: Map<String, Value> = schemas.into_iter().collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}}
        },
        "security": [{"BearerToken": []}]
    }))
}

/// Served group-versions, core first, then by group.
fn group_versions(resources: &[ResourceInfo]) -> BTreeSet<(String, String)> {
    resources
        .iter()
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect()
}

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// URL prefix of a group-version: `/api/v1`, `/apis/apps/v1`.
fn gv_prefix(group: &str, version: &str) -> String {
    format!("/{}", gv_path(group, version))
}

/// A stable hash of everything a group-version document is built from, in
/// Kubernetes' ETag form (upper-case hex SHA-512).
fn fingerprint(group: &str, version: &str, resources: &[ResourceInfo]) -> String {
    let mut hasher = Sha512::new();
    hasher.update(concat!("skiff-openapi-", env!("CARGO_PKG_VERSION"), "\0"));
    hasher.update(format!("{group}/{version}\0"));
    let mut served: Vec<&ResourceInfo> = resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    served.sort_by(|a, b| a.plural.cmp(&b.plural));
    for r in served {
        hasher.update(format!(
            "{}|{}|{:?}|{:?}\0",
            r.plural, r.kind, r.scope, r.verbs
        ));
        for s in &r.subresources {
            hasher.update(format!(
                "{}|{}|{}|{}|{:?}\0",
                s.name, s.group, s.version, s.kind, s.verbs
            ));
        }
        if let Some(schema) = &r.crd_schema {
            hasher.update(schema.to_string());
        }
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Reversed-domain schema name of a custom resource: `com.example.v1.Widget`.
fn crd_schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// Add the schema of `info`'s kind (and everything it references) to
/// `schemas`; returns its name.
fn kind_schema_name(info: &ResourceInfo, schemas: &mut BTreeMap<String, Value>) -> Option<String> {
    if let Some(crd) = &info.crd_schema {
        let name = crd_schema_name(&info.group, &info.version, &info.kind);
        schemas.insert(name.clone(), crd_schema(info, crd));
        add_definition(OBJECT_META, schemas);
        return Some(name);
    }
    let name = builtin_type_name(&info.group, &info.version, &info.kind)?;
    builtin::definition(&name)?;
    add_definition(&name, schemas);
    Some(name)
}

/// A custom resource's schema as Kubernetes publishes it: metadata is
/// ObjectMeta, and the GVK extension is set.
fn crd_schema(info: &ResourceInfo, schema: &Value) -> Value {
    let mut out = match schema {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    out.entry("type").or_insert_with(|| json!("object"));
    let props = out
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}));
        props.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{REF_PREFIX}{OBJECT_META}")}], "description": "Standard object's metadata."}));
    }
    out.insert(
        "x-kubernetes-group-version-kind".into(),
        gvk(&info.group, &info.version, &info.kind),
    );
    Value::Object(out)
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!([{"group": group, "kind": kind, "version": version}])
}

/// Copy definition `name` and its transitive references into `schemas`.
fn add_definition(name: &str, schemas: &mut BTreeMap<String, Value>) {
    let mut pending = vec![name.to_string()];
    while let Some(next) = pending.pop() {
        if schemas.contains_key(&next) {
            continue;
        }
        let Some(def) = builtin::definition(&next) else {
            continue;
        };
        collect_refs(def, &mut pending);
        schemas.insert(next, def.as_ref().clone());
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(target) = map.get("$ref").and_then(Value::as_str)
                && let Some(name) = target.strip_prefix(REF_PREFIX)
            {
                out.push(name.to_string());
            }
            for v in map.values() {
                collect_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn list_schema(info: &ResourceInfo, kind_schema: &str) -> Value {
    json!({
        "description": format!("{} is a list of {}.", info.list_kind, info.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {"type": "array", "description": format!("List of {}.", info.plural), "items": {"allOf": [{"$ref": format!("{REF_PREFIX}{kind_schema}")}], "default": {}}},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX}{LIST_META}")}], "default": {}, "description": "Standard list metadata."}
        },
        "x-kubernetes-group-version-kind": gvk(&info.group, &info.version, &info.list_kind)
    })
}

#[cfg(test)]
mod tests;
