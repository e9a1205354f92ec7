//! Request bodies: size limit (413), media type (JSON, YAML, Kubernetes
//! protobuf; anything else 415), decoding (malformed = 400) and detection of
//! duplicate JSON fields for `fieldValidation=Strict`.

use std::collections::HashSet;
use std::fmt;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::errors::{ApiError, ApiResult};
use super::protobuf;

/// Media types accepted for object bodies.
pub const ACCEPTED: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// Reads the whole body, failing with 413 past `limit` bytes.
pub async fn read(body: Body, limit: usize) -> ApiResult<Bytes> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// The request's media type without parameters, lower-cased ("" if absent).
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// A decoded object body plus the duplicate fields found in it.
#[derive(Debug)]
pub struct Decoded {
    /// The object.
    pub value: Value,
    /// Duplicate field paths (JSON only), e.g. `metadata.name`.
    pub duplicates: Vec<String>,
}

/// Decodes an object body according to its `Content-Type`.
pub fn decode_object(headers: &HeaderMap, bytes: &[u8], expected_kind: &str) -> ApiResult<Decoded> {
    let mt = media_type(headers);
    match mt.as_str() {
        "" | "application/json" | "*/*" => decode_json(bytes, expected_kind),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let value: Value = serde_yaml::from_slice(bytes).map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {expected_kind}): couldn't get version/kind; yaml parse error: {e}"
                ))
            })?;
            Ok(Decoded {
                value,
                duplicates: Vec::new(),
            })
        }
        "application/vnd.kubernetes.protobuf" => {
            let value = protobuf::decode(bytes).map_err(|e| {
                ApiError::bad_request(format!(
                    "the object provided is unrecognized (must be of type {expected_kind}): {e}"
                ))
            })?;
            Ok(Decoded {
                value,
                duplicates: Vec::new(),
            })
        }
        other => Err(ApiError::unsupported_media_type(other, ACCEPTED)),
    }
}

/// Decodes JSON, reporting duplicate fields.
pub fn decode_json(bytes: &[u8], expected_kind: &str) -> ApiResult<Decoded> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {expected_kind}): couldn't get version/kind; json parse error: {e}"
        ))
    })?;
    Ok(Decoded {
        value,
        duplicates: duplicate_fields(bytes),
    })
}

/// Paths of duplicate object keys in a JSON document (empty if none or unparsable).
pub fn duplicate_fields(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let _ = DupSeed {
        path: String::new(),
        out: &mut out,
    }
    .deserialize(&mut de);
    out
}

struct DupSeed<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for DupSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(DupVisitor {
            path: self.path,
            out: self.out,
        })
    }
}

struct DupVisitor<'a> {
    path: String,
    out: &'a mut Vec<String>,
}

impl DupVisitor<'_> {
    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

impl<'de> Visitor<'de> for DupVisitor<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let path = format!("{}[{i}]", self.path);
            if seq
                .next_element_seed(DupSeed {
                    path,
                    out: self.out,
                })?
                .is_none()
            {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = self.child(&key);
            if !seen.insert(key) {
                self.out.push(path.clone());
            }
            map.next_value_seed(DupSeed {
                path,
                out: self.out,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(ct: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(ct).expect("header"),
            );
        }
        h
    }

    #[test]
    fn finds_duplicate_fields() {
        let d = duplicate_fields(
            br#"{"metadata":{"name":"a","name":"b"},"spec":{"x":[{"a":1,"a":2}]}}"#,
        );
        assert_eq!(d, vec!["metadata.name", "spec.x[0].a"]);
        assert!(duplicate_fields(br#"{"a":{"b":1},"c":{"b":1}}"#).is_empty());
    }

    #[test]
    fn media_types() {
        assert!(
            decode_object(&headers(None), b"{}", "Pod").is_ok(),
            "missing content type = JSON"
        );
        assert!(
            decode_object(
                &headers(Some("application/json; charset=utf-8")),
                b"{}",
                "Pod"
            )
            .is_ok()
        );
        let y = decode_object(
            &headers(Some("application/yaml")),
            b"kind: Pod\nmetadata:\n  name: a\n",
            "Pod",
        )
        .expect("yaml");
        assert_eq!(y.value["metadata"]["name"], "a");
        assert_eq!(
            decode_object(&headers(Some("text/plain")), b"{}", "Pod")
                .err()
                .map(|e| e.code),
            Some(415)
        );
        assert_eq!(
            decode_object(&headers(None), b"{bad", "Pod")
                .err()
                .map(|e| e.code),
            Some(400)
        );
    }

    #[tokio::test]
    async fn size_limit() {
        assert_eq!(
            read(Body::from(vec![0u8; 10]), 5)
                .await
                .err()
                .map(|e| e.code),
            Some(413)
        );
        assert_eq!(
            read(Body::from(vec![0u8; 5]), 5)
                .await
                .map(|b| b.len())
                .ok(),
            Some(5)
        );
    }
}
