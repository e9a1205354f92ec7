//! Content negotiation: which representation the client asked for in
//! `Accept` (plain JSON/YAML, a `meta.k8s.io` Table, PartialObjectMetadata,
//! or aggregated discovery), and rendering answers with the exact
//! `Content-Type` Kubernetes uses.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::errors::{ApiError, ApiResult};

/// A representation the server can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// `application/json;as=Table;v=<v>;g=meta.k8s.io`.
    Table(MetaVersion),
    /// `application/json;as=PartialObjectMetadata[List];v=<v>;g=meta.k8s.io`.
    PartialMetadata(MetaVersion),
    /// `application/json;g=apidiscovery.k8s.io;v=<v>;as=APIGroupDiscoveryList`.
    Discovery(DiscoveryVersion),
}

/// `meta.k8s.io` version of a Table / PartialObjectMetadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaVersion {
    /// `v1`.
    V1,
    /// `v1beta1`.
    V1beta1,
}

impl MetaVersion {
    /// As written in `apiVersion`.
    pub fn as_str(self) -> &'static str {
        match self {
            MetaVersion::V1 => "v1",
            MetaVersion::V1beta1 => "v1beta1",
        }
    }
}

/// Aggregated discovery version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryVersion {
    /// `v2`.
    V2,
    /// `v2beta1`.
    V2beta1,
}

impl DiscoveryVersion {
    /// As written in `apiVersion`.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscoveryVersion::V2 => "v2",
            DiscoveryVersion::V2beta1 => "v2beta1",
        }
    }
}

/// Which kinds of output an endpoint can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Objects and lists: JSON, YAML, Table, PartialObjectMetadata.
    Objects,
    /// `/api` and `/apis`: JSON or aggregated discovery.
    DiscoveryRoot,
    /// Anything else: JSON (and YAML).
    Plain,
}

struct MediaRange {
    ty: String,
    params: Vec<(String, String)>,
}

fn parse_accept(accept: &str) -> Vec<MediaRange> {
    accept
        .split(',')
        .filter_map(|part| {
            let mut it = part.split(';');
            let ty = it.next()?.trim().to_ascii_lowercase();
            if ty.is_empty() {
                return None;
            }
            let params = it
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((
                        k.trim().to_ascii_lowercase(),
                        v.trim().trim_matches('"').to_string(),
                    ))
                })
                .collect();
            Some(MediaRange { ty, params })
        })
        .collect()
}

fn param<'a>(m: &'a MediaRange, k: &str) -> Option<&'a str> {
    m.params
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// Picks the first representation in `Accept` this endpoint supports.
/// A missing header means JSON; nothing acceptable is 406.
pub fn choose(headers: &HeaderMap, endpoint: Endpoint) -> ApiResult<Output> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Output::Json);
    };
    let ranges = parse_accept(accept);
    if ranges.is_empty() {
        return Ok(Output::Json);
    }
    for m in &ranges {
        let json_like = matches!(m.ty.as_str(), "application/json" | "*/*" | "application/*");
        match param(m, "as") {
            Some(as_) if m.ty == "application/json" => {
                let g = param(m, "g").unwrap_or("");
                let v = param(m, "v").unwrap_or("");
                match (endpoint, as_, g, v) {
                    (Endpoint::Objects, "Table", "meta.k8s.io", "v1") => {
                        return Ok(Output::Table(MetaVersion::V1));
                    }
                    (Endpoint::Objects, "Table", "meta.k8s.io", "v1beta1") => {
                        return Ok(Output::Table(MetaVersion::V1beta1));
                    }
                    (
                        Endpoint::Objects,
                        "PartialObjectMetadata" | "PartialObjectMetadataList",
                        "meta.k8s.io",
                        "v1",
                    ) => {
                        return Ok(Output::PartialMetadata(MetaVersion::V1));
                    }
                    (
                        Endpoint::Objects,
                        "PartialObjectMetadata" | "PartialObjectMetadataList",
                        "meta.k8s.io",
                        "v1beta1",
                    ) => {
                        return Ok(Output::PartialMetadata(MetaVersion::V1beta1));
                    }
                    (
                        Endpoint::DiscoveryRoot,
                        "APIGroupDiscoveryList",
                        "apidiscovery.k8s.io",
                        "v2",
                    ) => {
                        return Ok(Output::Discovery(DiscoveryVersion::V2));
                    }
                    (
                        Endpoint::DiscoveryRoot,
                        "APIGroupDiscoveryList",
                        "apidiscovery.k8s.io",
                        "v2beta1",
                    ) => {
                        return Ok(Output::Discovery(DiscoveryVersion::V2beta1));
                    }
                    _ => continue,
                }
            }
            Some(_) => continue,
            None if json_like => return Ok(Output::Json),
            None if m.ty == "application/yaml" => return Ok(Output::Yaml),
            None => continue,
        }
    }
    Err(ApiError::not_acceptable(format!(
        "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {accept}"
    )))
}

/// The `Content-Type` of an output.
pub fn content_type(out: Output) -> String {
    match out {
        Output::Json => "application/json".to_string(),
        Output::Yaml => "application/yaml".to_string(),
        Output::Table(v) => format!("application/json;as=Table;v={};g=meta.k8s.io", v.as_str()),
        Output::PartialMetadata(v) => format!(
            "application/json;as=PartialObjectMetadata;v={};g=meta.k8s.io",
            v.as_str()
        ),
        Output::Discovery(v) => format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            v.as_str()
        ),
    }
}

/// Renders a JSON value as the response body in the chosen output.
pub fn respond(status: StatusCode, out: Output, body: &Value) -> Response {
    let bytes = match out {
        Output::Yaml => serde_yaml::to_string(body)
            .map(String::into_bytes)
            .unwrap_or_default(),
        _ => serde_json::to_vec(body).unwrap_or_default(),
    };
    let mut resp = (status, bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type(out)) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// Adds `Warning: 299 - "<text>"` headers.
pub fn add_warnings(resp: &mut Response, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(accept: Option<&str>, ep: Endpoint) -> ApiResult<Output> {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, HeaderValue::from_str(a).expect("header"));
        }
        choose(&h, ep)
    }

    #[test]
    fn kubectl_table_accept() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            pick(Some(a), Endpoint::Objects).ok(),
            Some(Output::Table(MetaVersion::V1))
        );
        assert_eq!(pick(Some(a), Endpoint::Plain).ok(), Some(Output::Json));
    }

    #[test]
    fn kubectl_discovery_accept() {
        let new = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            pick(Some(new), Endpoint::DiscoveryRoot).ok(),
            Some(Output::Discovery(DiscoveryVersion::V2))
        );
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            pick(Some(old), Endpoint::DiscoveryRoot).ok(),
            Some(Output::Discovery(DiscoveryVersion::V2beta1))
        );
        assert_eq!(pick(Some(new), Endpoint::Objects).ok(), Some(Output::Json));
        assert_eq!(
            content_type(Output::Discovery(DiscoveryVersion::V2)),
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let a = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(pick(Some(a), Endpoint::Objects).ok(), Some(Output::Json));
        assert_eq!(
            pick(Some("application/json, */*"), Endpoint::Objects).ok(),
            Some(Output::Json)
        );
        assert_eq!(pick(None, Endpoint::Objects).ok(), Some(Output::Json));
        assert_eq!(
            pick(Some("application/yaml"), Endpoint::Objects).ok(),
            Some(Output::Yaml)
        );
    }

    #[test]
    fn unacceptable_is_406() {
        assert_eq!(
            pick(
                Some("application/vnd.kubernetes.protobuf"),
                Endpoint::Objects
            )
            .err()
            .map(|e| e.code),
            Some(406)
        );
        assert_eq!(
            pick(Some("text/html"), Endpoint::Plain)
                .err()
                .map(|e| e.code),
            Some(406)
        );
    }

    #[test]
    fn partial_metadata_accept() {
        let a = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            pick(Some(a), Endpoint::Objects).ok(),
            Some(Output::PartialMetadata(MetaVersion::V1))
        );
    }
}
