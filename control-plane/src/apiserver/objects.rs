//! Helpers for objects held as JSON: metadata accessors, timestamps, storage
//! keys and the conversion between stored bytes and served objects.
//!
//! Objects are stored without `metadata.resourceVersion`; it is set from the
//! key's `mod_revision` when an object is read, as etcd-backed Kubernetes does.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::errors::{ApiError, ApiResult};
use super::kinds::Resource;
use crate::store::{KeyValue, Revision, key_for};

/// `metadata` of an object, if present.
pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// `metadata` of an object, created if missing. Non-object `metadata` is
/// replaced (validation has rejected it before this is used on user input).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let entry = map.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("metadata ensured above")
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// `metadata.name` (empty if unset).
pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

/// `metadata.namespace` (empty if unset).
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace").unwrap_or("")
}

/// `metadata.uid` (empty if unset).
pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid").unwrap_or("")
}

/// `metadata.resourceVersion` (empty if unset).
pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion").unwrap_or("")
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `metadata.finalizers`, removing the field when empty.
pub fn set_finalizers(obj: &mut Value, list: &[String]) {
    let m = meta_mut(obj);
    if list.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(list));
    }
}

/// True if `metadata.deletionTimestamp` is set.
pub fn is_deleting(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|v| !v.is_null())
}

/// A string map field of `metadata` (labels or annotations).
pub fn string_map<'a>(obj: &'a Value, field: &str) -> Vec<(&'a str, &'a str)> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The value at a dotted path (`spec.nodeName`), if present.
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, k| v.get(k))
}

/// A string at a dotted path, or "".
pub fn path_str<'a>(obj: &'a Value, dotted: &str) -> &'a str {
    path(obj, dotted).and_then(Value::as_str).unwrap_or("")
}

/// An integer at a dotted path, or 0.
pub fn path_i64(obj: &Value, dotted: &str) -> i64 {
    path(obj, dotted).and_then(Value::as_i64).unwrap_or(0)
}

/// The current time as Kubernetes writes it (`2024-05-01T12:00:00Z`).
pub fn now_rfc3339() -> String {
    format_time(jiff::Timestamp::now())
}

/// Formats a timestamp with second precision, UTC.
pub fn format_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>().ok()
}

/// The storage key of an object or (with `name = None`) of a collection.
pub fn key(res: &Resource, namespace: Option<&str>, name: Option<&str>) -> String {
    let ns = if res.info.namespaced() {
        namespace
    } else {
        None
    };
    key_for(res.storage_group(), &res.info.plural, ns, name)
}

/// Encodes an object of `res` for the store (converted to the storage
/// version where versions share storage).
pub fn encode_for(res: &Resource, obj: &Value) -> ApiResult<Bytes> {
    if res.id == super::kinds::KindId::EventV1 {
        return encode(&super::events_v1::to_core(obj));
    }
    encode(obj)
}

/// Encodes an object for the store (without `resourceVersion`).
pub fn encode(obj: &Value) -> ApiResult<Bytes> {
    serde_json::to_vec(&Skipping {
        value: obj,
        skip: &["metadata", "resourceVersion"],
    })
    .map(Bytes::from)
    .map_err(|e| ApiError::internal("encoding an object", &e))
}

/// Serializes `value` leaving out the member path `skip` (of objects; empty:
/// nothing), so encoding needs no copy of the object.
struct Skipping<'a> {
    value: &'a Value,
    skip: &'a [&'a str],
}

impl serde::Serialize for Skipping<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (Value::Object(map), [first, rest @ ..]) = (self.value, self.skip) else {
            return self.value.serialize(ser);
        };
        let dropped = rest.is_empty() && map.contains_key(*first);
        let mut out = ser.serialize_map(Some(map.len() - usize::from(dropped)))?;
        for (k, v) in map {
            if k != first {
                out.serialize_entry(k, v)?;
            } else if !rest.is_empty() {
                out.serialize_entry(
                    k,
                    &Skipping {
                        value: v,
                        skip: rest,
                    },
                )?;
            }
        }
        out.end()
    }
}

/// Decodes a stored object and sets `resourceVersion` from the key's revision.
/// Custom resources are served in the requested version (conversion `None`).
pub fn decode(res: &Resource, kv: &KeyValue) -> ApiResult<Value> {
    decode_at(res, &kv.value, kv.mod_revision)
}

/// Like [`decode`] for raw bytes and an explicit revision.
pub fn decode_at(res: &Resource, bytes: &[u8], revision: Revision) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::internal("decoding a stored object", &e))?;
    if res.id == super::kinds::KindId::EventV1 {
        obj = super::events_v1::from_core(&obj);
    }
    set_resource_version(&mut obj, revision);
    if res.custom.is_some()
        && let Some(m) = obj.as_object_mut()
    {
        m.insert("apiVersion".into(), json!(res.info.api_version()));
    }
    Ok(obj)
}

/// The JSON of a stored object with `metadata.resourceVersion` set, spliced
/// into the stored bytes without decoding the object into a tree (what a
/// watch sends most). `None` when [`decode_at`] has more to do (events.k8s.io
/// and custom resources are converted) or the bytes do not split simply.
pub fn stored_json(res: &Resource, bytes: &[u8], revision: Revision) -> Option<Vec<u8>> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    if res.id == super::kinds::KindId::EventV1 || res.custom.is_some() {
        return None;
    }
    let mut top: BTreeMap<&str, &RawValue> = serde_json::from_slice(bytes).ok()?;
    let mut meta: BTreeMap<&str, &RawValue> = match top.get("metadata") {
        Some(m) => serde_json::from_str(m.get()).ok()?,
        None => BTreeMap::new(),
    };
    let rv = RawValue::from_string(format!("\"{revision}\"")).ok()?;
    meta.insert("resourceVersion", &rv);
    let meta = serde_json::value::to_raw_value(&meta).ok()?;
    top.insert("metadata", &meta);
    serde_json::to_vec(&top).ok()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, revision: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), json!(revision.to_string()));
}

/// A random lowercase alphanumeric suffix like Kubernetes' `generateName`
/// (consonants and digits without vowels or look-alikes).
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Builds a `PartialObjectMetadata` for an object.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_read_metadata() {
        let o = json!({"metadata": {"name": "a", "namespace": "n", "finalizers": ["x"], "labels": {"k": "v"}}});
        assert_eq!((name(&o), namespace(&o), uid(&o)), ("a", "n", ""));
        assert_eq!(finalizers(&o), vec!["x".to_string()]);
        assert_eq!(string_map(&o, "labels"), vec![("k", "v")]);
        assert!(!is_deleting(&o));
    }

    #[test]
    fn encode_drops_resource_version() {
        let o = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = encode(&o).expect("encode");
        let back: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(back, json!({"metadata": {"name": "a"}}));
        for kept in [
            json!({"metadata": {"name": "a"}, "spec": {"resourceVersion": "5"}}),
            json!({"kind": "X"}),
            json!({"metadata": null}),
        ] {
            let bytes = encode(&kept).expect("encode");
            let back: Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(back, kept);
        }
    }

    #[test]
    fn stored_json_matches_decoding() {
        let pods = crate::apiserver::kinds::builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == "pods")
            .expect("pods");
        for stored in [
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "labels": {"x": "y"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}),
            json!({"kind": "Pod"}),
            json!({"metadata": {"name": "esc\"aped", "annotations": {"a/b": "line\nbreak"}}}),
        ] {
            let bytes = encode(&stored).expect("encode");
            let spliced = stored_json(&pods, &bytes, 42).expect("splices");
            let spliced: Value = serde_json::from_slice(&spliced).expect("json");
            assert_eq!(spliced, decode_at(&pods, &bytes, 42).expect("decode"));
            assert_eq!(spliced["metadata"]["resourceVersion"], "42");
        }
        assert_eq!(stored_json(&pods, b"[1]", 1), None);
    }

    #[test]
    fn suffix_has_requested_length() {
        let s = random_suffix(5);
        assert_eq!(s.len(), 5);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn time_has_second_precision() {
        let ts: jiff::Timestamp = "2024-05-01T12:00:00.123Z".parse().expect("ts");
        assert_eq!(format_time(ts), "2024-05-01T12:00:00Z");
        assert_eq!(
            path_str(&json!({"spec": {"nodeName": "n1"}}), "spec.nodeName"),
            "n1"
        );
    }
}
