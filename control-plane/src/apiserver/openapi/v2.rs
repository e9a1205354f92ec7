//! Swagger 2.0 (`/openapi/v2`), derived from the v3 group-version
//! documents, and its protobuf encoding (gnostic `openapi.v2.Document`),
//! which is the only form kubectl 1.27/1.28 accept for client-side
//! validation and `explain`.

use serde_json::{Map, Value, json};

use super::{KUBE_VERSION, group_versions, v3_group_version};
use crate::apiserver::resource::ResourceInfo;
use crate::apiserver::schema::builtin::REF_PREFIX;

const V2_REF_PREFIX: &str = "#/definitions/";

/// `GET /openapi/v2` as JSON: every served group-version merged.
pub fn v2(resources: &[ResourceInfo]) -> Value {
    let mut definitions = Map::new();
    let mut paths = Map::new();
    for (group, version) in group_versions(resources) {
        let Some(doc) = v3_group_version(&group, &version, resources) else {
            continue;
        };
        if let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in schemas {
                definitions.insert(name.clone(), to_v2_schema(schema));
            }
        }
        if let Some(items) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in items {
                paths.insert(path.clone(), to_v2_path_item(item));
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        "security": [{"BearerToken": []}]
    })
}

/// A v3 schema in v2 form: references point at `#/definitions/`, a
/// described reference is a plain `$ref` with siblings again (kubectl's v2
/// model does not follow `allOf`), and the OpenAPI 3-only `nullable` is
/// dropped.
fn to_v2_schema(schema: &Value) -> Value {
    match schema {
        Value::Object(map) if is_wrapped_ref(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                match k.as_str() {
                    "allOf" => {
                        if let Some(r) = v.pointer("/0/$ref").and_then(Value::as_str) {
                            out.insert(
                                "$ref".into(),
                                Value::String(r.replace(REF_PREFIX, V2_REF_PREFIX)),
                            );
                        }
                    }
                    "default" | "nullable" => {}
                    _ => {
                        out.insert(k.clone(), to_v2_schema(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| k.as_str() != "nullable")
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => {
                            Value::String(r.replace(REF_PREFIX, V2_REF_PREFIX))
                        }
                        _ => to_v2_schema(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_v2_schema).collect()),
        other => other.clone(),
    }
}

fn is_wrapped_ref(map: &Map<String, Value>) -> bool {
    matches!(map.get("allOf").and_then(Value::as_array).map(Vec::as_slice), Some([only]) if only.get("$ref").is_some())
}

fn to_v2_parameter(param: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in param.as_object().into_iter().flatten() {
        if k == "schema" {
            for (sk, sv) in v.as_object().into_iter().flatten() {
                out.insert(sk.clone(), sv.clone());
            }
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

fn to_v2_path_item(item: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in item.as_object().into_iter().flatten() {
        if k == "parameters" {
            let params = v
                .as_array()
                .into_iter()
                .flatten()
                .map(to_v2_parameter)
                .collect();
            out.insert(k.clone(), Value::Array(params));
        } else {
            out.insert(k.clone(), to_v2_operation(v));
        }
    }
    Value::Object(out)
}

fn to_v2_operation(op: &Value) -> Value {
    let mut out = Map::new();
    let mut params: Vec<Value> = Vec::new();
    for (k, v) in op.as_object().into_iter().flatten() {
        match k.as_str() {
            "parameters" => params.extend(v.as_array().into_iter().flatten().map(to_v2_parameter)),
            "requestBody" => {
                let consumes: Vec<&String> = v
                    .get("content")
                    .and_then(Value::as_object)
                    .map(|c| c.keys().collect())
                    .unwrap_or_default();
                let schema = v
                    .get("content")
                    .and_then(Value::as_object)
                    .and_then(|c| c.values().next())
                    .and_then(|m| m.get("schema"))
                    .map(to_v2_schema)
                    .unwrap_or(json!({}));
                params.push(
                    json!({"name": "body", "in": "body", "required": true, "schema": schema}),
                );
                out.insert("consumes".into(), json!(consumes));
            }
            "responses" => {
                let mut responses = Map::new();
                let mut produces: Vec<String> = Vec::new();
                for (code, resp) in v.as_object().into_iter().flatten() {
                    let mut r = Map::new();
                    r.insert(
                        "description".into(),
                        resp.get("description").cloned().unwrap_or(json!("")),
                    );
                    if let Some(content) = resp.get("content").and_then(Value::as_object) {
                        for t in content.keys() {
                            if !produces.contains(t) {
                                produces.push(t.clone());
                            }
                        }
                        if let Some(schema) = content.values().next().and_then(|m| m.get("schema"))
                        {
                            r.insert("schema".into(), to_v2_schema(schema));
                        }
                    }
                    responses.insert(code.clone(), Value::Object(r));
                }
                out.insert("responses".into(), Value::Object(responses));
                out.insert("produces".into(), json!(produces));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("schemes".into(), json!(["https"]));
    Value::Object(out)
}

/// `GET /openapi/v2` with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`:
/// the gnostic `openapi.v2.Document` encoding of [`v2`]'s definitions (with
/// their vendor extensions, which carry the group-version-kinds kubectl
/// looks up). Paths are left out: kubectl's validation and `explain` read
/// only the definitions.
pub fn v2_protobuf(resources: &[ResourceInfo]) -> Option<Vec<u8>> {
    let doc = v2(resources);
    let definitions = doc.get("definitions")?.as_object()?;
    let mut out = Vec::new();
    put_str(&mut out, 1, "2.0");
    let mut info = Vec::new();
    put_str(&mut info, 1, "Kubernetes");
    put_str(&mut info, 2, KUBE_VERSION);
    put_msg(&mut out, 2, &info);
    let mut defs = Vec::new();
    for (name, schema) in definitions {
        put_msg(&mut defs, 1, &named(name, &encode_schema(schema)));
    }
    put_msg(&mut out, 9, &defs);
    Some(out)
}

fn named(name: &str, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, 1, name);
    put_msg(&mut out, 2, value);
    out
}

/// gnostic `Any`: the value as YAML text (JSON is YAML).
fn any(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, 2, &value.to_string());
    out
}

/// gnostic `openapi.v2.Schema`.
fn encode_schema(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(map) = schema.as_object() else {
        return out;
    };
    let s = |k: &str| map.get(k).and_then(Value::as_str);
    let f = |k: &str| map.get(k).and_then(Value::as_f64);
    let i = |k: &str| map.get(k).and_then(Value::as_i64);
    let b = |k: &str| map.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(v) = s("$ref") {
        put_str(&mut out, 1, v);
    }
    for (field, key) in [(2, "format"), (3, "title"), (4, "description")] {
        if let Some(v) = s(key) {
            put_str(&mut out, field, v);
        }
    }
    if let Some(v) = map.get("default") {
        put_msg(&mut out, 5, &any(v));
    }
    for (field, key) in [(6, "multipleOf"), (7, "maximum")] {
        if let Some(v) = f(key) {
            put_f64(&mut out, field, v);
        }
    }
    put_bool(&mut out, 8, b("exclusiveMaximum"));
    if let Some(v) = f("minimum") {
        put_f64(&mut out, 9, v);
    }
    put_bool(&mut out, 10, b("exclusiveMinimum"));
    for (field, key) in [(11, "maxLength"), (12, "minLength")] {
        if let Some(v) = i(key) {
            put_varint_field(&mut out, field, v as u64);
        }
    }
    if let Some(v) = s("pattern") {
        put_str(&mut out, 13, v);
    }
    for (field, key) in [(14, "maxItems"), (15, "minItems")] {
        if let Some(v) = i(key) {
            put_varint_field(&mut out, field, v as u64);
        }
    }
    put_bool(&mut out, 16, b("uniqueItems"));
    for (field, key) in [(17, "maxProperties"), (18, "minProperties")] {
        if let Some(v) = i(key) {
            put_varint_field(&mut out, field, v as u64);
        }
    }
    for req in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = req.as_str() {
            put_str(&mut out, 19, r);
        }
    }
    for e in map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_msg(&mut out, 20, &any(e));
    }
    match map.get("additionalProperties") {
        Some(Value::Bool(flag)) => {
            let mut item = Vec::new();
            put_varint_field(&mut item, 2, u64::from(*flag));
            put_msg(&mut out, 21, &item);
        }
        Some(sub @ Value::Object(_)) => {
            let mut item = Vec::new();
            put_msg(&mut item, 1, &encode_schema(sub));
            put_msg(&mut out, 21, &item);
        }
        _ => {}
    }
    if let Some(t) = s("type") {
        let mut item = Vec::new();
        put_str(&mut item, 1, t);
        put_msg(&mut out, 22, &item);
    }
    if let Some(items) = map.get("items") {
        let mut item = Vec::new();
        put_msg(&mut item, 1, &encode_schema(items));
        put_msg(&mut out, 23, &item);
    }
    for sub in map
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_msg(&mut out, 24, &encode_schema(sub));
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        let mut p = Vec::new();
        for (name, sub) in props {
            put_msg(&mut p, 1, &named(name, &encode_schema(sub)));
        }
        put_msg(&mut out, 25, &p);
    }
    put_bool(&mut out, 27, b("readOnly"));
    for (k, v) in map.iter().filter(|(k, _)| k.starts_with("x-")) {
        put_msg(&mut out, 31, &named(k, &any(v)));
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    if s.is_empty() {
        return;
    }
    put_msg(out, field, s.as_bytes());
}

fn put_msg(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_bool(out: &mut Vec<u8>, field: u32, v: bool) {
    if v {
        put_varint_field(out, field, 1);
    }
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_key(out, field, 0);
        put_varint(out, v);
    }
}

fn put_f64(out: &mut Vec<u8>, field: u32, v: f64) {
    if v != 0.0 {
        put_key(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}
