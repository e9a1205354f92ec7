//! Non-resource endpoints: `/version`, `/healthz`, `/livez`, `/readyz`,
//! `/metrics`, OpenAPI v2/v3 (documents built by [`crate::apiserver::openapi`])
//! and the 404 fallback.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::apiserver::errors::ApiError;
use crate::apiserver::negotiate::{self, Output};
use crate::apiserver::{ApiState, openapi};

/// The Go-style platform string (`linux/amd64`).
pub fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

/// `GET /version`.
pub async fn version(State(state): State<ApiState>) -> Response {
    let body = json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": state.config().git_version,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": platform(),
    });
    negotiate::respond(StatusCode::OK, Output::Json, &body)
}

fn text_ok() -> Response {
    let mut r = (StatusCode::OK, "ok").into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// `GET /healthz`, `/livez`: `ok`.
pub async fn ok() -> Response {
    text_ok()
}

/// `GET /readyz`: `ok` once the store answers.
pub async fn readyz(State(state): State<ApiState>) -> Response {
    match state.store().get("/registry/health").await {
        Ok(_) => text_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            let mut r = (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]etcd failed: reason withheld\nreadyz check failed",
            )
                .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
    }
}

/// `GET /metrics` (Prometheus text format).
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let mut r = (StatusCode::OK, state.metrics().encode()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// `GET /openapi/v2` (JSON, or protobuf when asked for).
pub async fn openapi_v2(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let infos = state.registry().infos();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        return match openapi::v2_protobuf(&infos) {
            Some(bytes) => {
                let mut r = (StatusCode::OK, bytes).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(openapi::V2_PROTOBUF_CONTENT_TYPE),
                );
                r
            }
            None if accept.contains("json") => {
                negotiate::respond(StatusCode::OK, Output::Json, &openapi::v2(&infos))
            }
            None => {
                ApiError::not_acceptable("the OpenAPI v2 document is not available as protobuf")
                    .into_response()
            }
        };
    }
    negotiate::respond(StatusCode::OK, Output::Json, &openapi::v2(&infos))
}

/// `GET /openapi/v3`.
pub async fn openapi_v3_root(State(state): State<ApiState>) -> Response {
    negotiate::respond(
        StatusCode::OK,
        Output::Json,
        &openapi::v3_root(&state.registry().infos()),
    )
}

/// `GET /openapi/v3/api/v1` and `/openapi/v3/apis/{group}/{version}`.
pub async fn openapi_v3_gv(State(state): State<ApiState>, Path(gv): Path<String>) -> Response {
    let parts: Vec<&str> = gv.trim_matches('/').split('/').collect();
    let (group, version) = match parts.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return ApiError::path_not_found().into_response(),
    };
    match openapi::v3_group_version(group, version, &state.registry().infos()) {
        Some(doc) => negotiate::respond(StatusCode::OK, Output::Json, &doc),
        None => ApiError::path_not_found().into_response(),
    }
}

/// Anything else: a 404 Status.
pub async fn not_found() -> Response {
    ApiError::path_not_found().into_response()
}
