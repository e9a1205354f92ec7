//! The one error type of the API server and its mapping to Kubernetes
//! `Status` bodies.
//!
//! Every non-2xx answer is a `Status` (`kind: Status`, `status: Failure`,
//! `reason`, `code`, `message`, optional `details`). kubectl prints
//! `Error from server (<reason>): <message>` and branches on `reason`/`code`,
//! so the reasons and messages follow Kubernetes exactly. Store failures map
//! through [`ApiError::from_store`], which needs the resource and name for the
//! Kubernetes wording. Internal errors are logged and answered with a generic
//! message, never with their details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::store::StoreError;

/// A group-qualified resource name used in messages: `pods`, `deployments.apps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupResource {
    /// API group, "" for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds one from a group and a plural.
    pub fn new(group: impl Into<String>, resource: impl Into<String>) -> Self {
        GroupResource {
            group: group.into(),
            resource: resource.into(),
        }
    }
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}", self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// e.g. `FieldValueInvalid`.
    pub reason: String,
    /// Human-readable message without the field prefix.
    pub message: String,
    /// The field path, e.g. `metadata.labels`.
    pub field: String,
}

/// An API error: everything needed to render a Kubernetes `Status`.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes `reason`, e.g. `NotFound`.
    pub reason: &'static str,
    /// Message shown to users.
    pub message: String,
    /// `details`, if any (`name`, `group`, `kind`, `uid`, `causes`, `retryAfterSeconds`).
    pub details: Option<Value>,
    /// `Retry-After` header in seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    fn name_details(gr: &GroupResource, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": gr.resource});
        if !gr.group.is_empty() {
            d["group"] = json!(gr.group);
        }
        d
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for a named object: `pods "x" not found`.
    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found"))
            .with_details(Self::name_details(gr, name))
    }

    /// 404 NotFound for an unknown path.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 409 AlreadyExists: `pods "x" already exists`.
    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{gr} \"{name}\" already exists"),
        )
        .with_details(Self::name_details(gr, name))
    }

    /// 409 Conflict with a custom explanation:
    /// `Operation cannot be fulfilled on pods "x": <why>`.
    pub fn conflict(gr: &GroupResource, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {gr} \"{name}\": {why}"),
        )
        .with_details(Self::name_details(gr, name))
    }

    /// 409 Conflict for a stale `resourceVersion`.
    pub fn stale(gr: &GroupResource, name: &str) -> Self {
        Self::conflict(
            gr,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid: `Pod "x" is invalid: <causes>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let joined: Vec<String> = causes
            .iter()
            .map(|c| {
                if c.field.is_empty() {
                    c.message.clone()
                } else {
                    format!("{}: {}", c.field, c.message)
                }
            })
            .collect();
        let summary = if joined.len() == 1 {
            joined[0].clone()
        } else {
            format!("[{}]", joined.join(", "))
        };
        let mut details = json!({
            "name": name,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        });
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {summary}"),
        )
        .with_details(details)
    }

    /// 403 Forbidden: `<resource> "<name>" is forbidden: <why>`.
    pub fn forbidden(gr: &GroupResource, name: &str, why: &str) -> Self {
        let message = if name.is_empty() {
            format!("{gr} is forbidden: {why}")
        } else {
            format!("{gr} \"{name}\" is forbidden: {why}")
        };
        Self::new(403, "Forbidden", message).with_details(Self::name_details(gr, name))
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 410 Expired: a resourceVersion or continue token too old.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
        .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": content_type}]}))
    }

    /// 429 TooManyRequests with `Retry-After`.
    pub fn too_many_requests(retry_after: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
        .with_details(json!({"retryAfterSeconds": retry_after}));
        e.retry_after = Some(retry_after);
        e
    }

    /// 500 InternalError. The cause is logged here and not shown to the client.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(context, %cause, "internal error");
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {context}"),
        )
        .with_details(json!({"causes": [{"message": context}]}))
    }

    /// 501 for features that are not implemented here.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(501, "NotImplemented", message)
    }

    /// 503 ServiceUnavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504 Timeout, e.g. a resourceVersion newer than the store.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// Maps a store error for the object `name` of resource `gr`.
    pub fn from_store(err: StoreError, gr: &GroupResource, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists { .. } => Self::already_exists(gr, name),
            StoreError::NotFound { .. } => Self::not_found(gr, name),
            StoreError::Conflict { .. } => Self::stale(gr, name),
            other => Self::from(other),
        }
    }

    /// The `Status` body.
    pub fn status_body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            body["details"] = d.clone();
        }
        body
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AlreadyExists { key } => {
                Self::new(409, "AlreadyExists", format!("{key} already exists"))
            }
            StoreError::NotFound { key } => Self::new(404, "NotFound", format!("{key} not found")),
            StoreError::Conflict { .. } => Self::new(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
            StoreError::Expired { requested, oldest } => {
                Self::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::FutureRevision { requested, current } => Self::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ))
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})),
            StoreError::Overloaded => Self::too_many_requests(1),
            StoreError::Closed => Self::unavailable("the storage backend is shutting down"),
            e @ StoreError::Backend { .. } => Self::internal("storage error", &e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.status_body().to_string();
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Result alias for the API server.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> GroupResource {
        GroupResource::new("", "pods")
    }

    #[test]
    fn group_resource_is_qualified_outside_core() {
        assert_eq!(pods().to_string(), "pods");
        assert_eq!(
            GroupResource::new("apps", "deployments").to_string(),
            "deployments.apps"
        );
    }

    #[test]
    fn store_errors_map_to_kubernetes_reasons() {
        let gr = pods();
        let cases: Vec<(StoreError, u16, &str, &str)> = vec![
            (
                StoreError::AlreadyExists { key: "k".into() },
                409,
                "AlreadyExists",
                "pods \"x\" already exists",
            ),
            (
                StoreError::NotFound { key: "k".into() },
                404,
                "NotFound",
                "pods \"x\" not found",
            ),
            (
                StoreError::Conflict {
                    key: "k".into(),
                    expected: 1,
                    actual: 2,
                },
                409,
                "Conflict",
                "Operation cannot be fulfilled on pods \"x\": the object has been modified; please apply your changes to the latest version and try again",
            ),
            (
                StoreError::Expired {
                    requested: 3,
                    oldest: 9,
                },
                410,
                "Expired",
                "too old resource version: 3 (9)",
            ),
            (
                StoreError::Overloaded,
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            (
                StoreError::Closed,
                503,
                "ServiceUnavailable",
                "the storage backend is shutting down",
            ),
            (
                StoreError::Backend {
                    message: "/var/lib/secret.redb corrupt".into(),
                    source: None,
                },
                500,
                "InternalError",
                "Internal error occurred: storage error",
            ),
        ];
        for (err, code, reason, message) in cases {
            let e = ApiError::from_store(err, &gr, "x");
            assert_eq!(
                (e.code, e.reason, e.message.as_str()),
                (code, reason, message)
            );
        }
    }

    #[test]
    fn too_many_requests_sets_retry_after_header() {
        let resp = ApiError::from(StoreError::Overloaded).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let e = ApiError::from(StoreError::Backend {
            message: "disk /secret/path failed".into(),
            source: None,
        });
        assert!(!e.status_body().to_string().contains("secret"));
    }

    #[test]
    fn status_body_has_kubernetes_shape() {
        let body =
            ApiError::not_found(&GroupResource::new("apps", "deployments"), "web").status_body();
        assert_eq!(
            body,
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"deployments.apps \"web\" not found","reason":"NotFound",
                   "details":{"name":"web","group":"apps","kind":"deployments"},"code":404})
        );
    }

    #[test]
    fn invalid_joins_several_causes() {
        let c = |f: &str| Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: f.into(),
        };
        let one = ApiError::invalid("", "Pod", "p", vec![c("spec.containers")]);
        assert_eq!(
            one.message,
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
        let two = ApiError::invalid("", "Pod", "p", vec![c("a"), c("b")]);
        assert_eq!(
            two.message,
            "Pod \"p\" is invalid: [a: Required value, b: Required value]"
        );
        assert_eq!(two.code, 422);
        assert_eq!(
            two.details
                .as_ref()
                .map(|d| d["causes"][1]["field"].clone()),
            Some(json!("b"))
        );
    }
}
