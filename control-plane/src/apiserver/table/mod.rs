//! Server-side printing: `meta.k8s.io` Tables with the columns Kubernetes
//! prints for each kind (wide columns have `priority: 1`; kubectl shows
//! them with `-o wide`). Printers are pure functions of the object and the
//! current time.

pub mod age;
pub mod core;
pub mod custom;
pub mod pods;
pub mod workloads;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::errors::{ApiError, ApiResult};
use super::kinds::{KindId, Resource};
use super::negotiate::{MetaVersion, Output};
use super::objects;

/// One column definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Header, e.g. `Ready`.
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean`, `date`.
    pub type_: String,
    /// `name` for the name column, else usually "".
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 = default output, 1 = wide only.
    pub priority: i64,
}

/// Builds a column.
pub fn col(name: &str, type_: &str, description: &str, priority: i64) -> Column {
    Column {
        name: name.into(),
        type_: type_.into(),
        format: if name == "Name" {
            "name".into()
        } else {
            String::new()
        },
        description: description.into(),
        priority,
    }
}

/// The standard name column.
pub fn name_col() -> Column {
    col(
        "Name",
        "string",
        "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.",
        0,
    )
}

/// The standard age column.
pub fn age_col() -> Column {
    col(
        "Age",
        "string",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    )
}

/// `includeObject`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object in rows.
    None,
    /// `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The full object.
    Object,
}

impl IncludeObject {
    /// Parses the query value.
    pub fn parse(v: Option<&str>) -> ApiResult<Self> {
        match v {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(o) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: \"{o}\": supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// The age of an object.
pub fn age(obj: &Value, now: Timestamp) -> String {
    age::since(objects::meta_str(obj, "creationTimestamp"), now)
}

/// `labels.FormatLabels`: sorted `k=v` pairs, or `<none>`.
pub fn format_labels(map: Option<&Value>) -> String {
    let mut pairs: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// The columns of a resource's Table.
pub fn columns(res: &Resource) -> Vec<Column> {
    match res.id {
        KindId::Pod => pods::columns(),
        KindId::EventV1 => core::columns(KindId::Event).unwrap_or_default(),
        KindId::Custom => custom::columns(res),
        id => workloads::columns(id)
            .or_else(|| core::columns(id))
            .unwrap_or_else(|| vec![name_col(), age_col()]),
    }
}

/// The cells of one row.
pub fn cells(res: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    match res.id {
        KindId::Pod => pods::cells(obj, now),
        KindId::EventV1 => {
            core::cells(KindId::Event, &super::events_v1::to_core(obj), now).unwrap_or_default()
        }
        KindId::Custom => custom::cells(res, obj, now),
        id => workloads::cells(id, obj, now)
            .or_else(|| core::cells(id, obj, now))
            .unwrap_or_else(|| vec![json!(objects::name(obj)), json!(age(obj, now))]),
    }
}

fn row(res: &Resource, obj: &Value, include: IncludeObject, now: Timestamp) -> Value {
    let mut r = json!({"cells": cells(res, obj, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = objects::partial_metadata(obj),
        IncludeObject::Object => {
            let mut full = obj.clone();
            if let Some(m) = full.as_object_mut() {
                m.entry("apiVersion")
                    .or_insert_with(|| json!(res.info.api_version()));
                m.entry("kind").or_insert_with(|| json!(res.info.kind));
            }
            r["object"] = full;
        }
    }
    if res.id == KindId::Pod {
        let phase = objects::path_str(obj, "status.phase");
        if phase == "Succeeded" || phase == "Failed" {
            r["conditions"] = json!([{"type": "Completed", "status": "True", "reason": phase,
                "message": "The pod has completed successfully."}]);
        }
    }
    r
}

/// A Table of `items` with list metadata `meta`.
pub fn table(
    res: &Resource,
    items: &[Value],
    meta: Value,
    include: IncludeObject,
    version: MetaVersion,
) -> Value {
    let now = Timestamp::now();
    let cols: Vec<Value> = columns(res)
        .into_iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{}", version.as_str()),
        "metadata": meta,
        "columnDefinitions": cols,
        "rows": items.iter().map(|o| row(res, o, include, now)).collect::<Vec<_>>(),
    })
}

/// One object as a server-side conversion shows it: a one-row Table (its list metadata the
/// object's resourceVersion) or a PartialObjectMetadata; `None` when the output is the object
/// itself. Single responses and watch events both use it.
pub fn convert_one(
    res: &Resource,
    out: Output,
    include: IncludeObject,
    obj: &Value,
) -> Option<Value> {
    match out {
        Output::Table(version) => {
            let meta = json!({"resourceVersion": objects::resource_version(obj)});
            Some(table(
                res,
                std::slice::from_ref(obj),
                meta,
                include,
                version,
            ))
        }
        Output::PartialMetadata(version) => {
            let mut partial = objects::partial_metadata(obj);
            partial["apiVersion"] = json!(format!("meta.k8s.io/{}", version.as_str()));
            Some(partial)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::builtin_resources;

    fn res(plural: &str) -> Resource {
        builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == plural)
            .expect("resource")
    }

    #[test]
    fn default_table_is_name_and_age() {
        let t = table(
            &res("leases"),
            &[],
            json!({"resourceVersion": "1"}),
            IncludeObject::Metadata,
            MetaVersion::V1,
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "1");
        let cm = res("serviceaccounts");
        let names: Vec<String> = columns(&cm).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Secrets", "Age"]);
    }

    #[test]
    fn rows_carry_partial_metadata_by_default() {
        let obj = json!({"metadata": {"name": "c", "namespace": "d", "labels": {"a": "b"}}, "data": {"k": "v"}});
        let t = table(
            &res("configmaps"),
            std::slice::from_ref(&obj),
            json!({}),
            IncludeObject::Metadata,
            MetaVersion::V1,
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["namespace"], "d");
        assert_eq!(t["rows"][0]["cells"][1], 1);
        let t = table(
            &res("configmaps"),
            std::slice::from_ref(&obj),
            json!({}),
            IncludeObject::None,
            MetaVersion::V1,
        );
        assert!(t["rows"][0].get("object").is_none());
        let t = table(
            &res("configmaps"),
            &[obj],
            json!({}),
            IncludeObject::Object,
            MetaVersion::V1beta1,
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "ConfigMap");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    }

    #[test]
    fn labels_format() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
        assert!(IncludeObject::parse(Some("Bogus")).is_err());
    }
}
