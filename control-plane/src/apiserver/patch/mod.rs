//! Patch application, as the Kubernetes API server does it: strategic merge
//! patch (built-in kinds only), JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and server-side apply, plus `metadata.managedFields`
//! bookkeeping for ordinary writes.
//!
//! Everything here is pure: [`apply_patch`] takes the current object and the
//! request body and returns the new object, which the caller then validates
//! and stores. Start with [`apply_patch`]; the strategic merge rules live in
//! `strategic`, field ownership in [`fieldpath`], [`apply`] and
//! [`managed_fields`].

pub mod apply;
pub mod fieldpath;
pub mod managed_fields;
mod strategic;
pub mod typed;

use serde_json::Value;

use crate::apiserver::resource::ResourceInfo;
use crate::apiserver::schema;

/// Kubernetes rejects JSON patches with more operations than this (413).
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// The four patch formats, chosen by the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply; the body is YAML or JSON).
    Apply,
}

impl PatchType {
    /// Every patch type, in the order Kubernetes lists them.
    pub const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    /// The patch type for a `Content-Type` header value; parameters such as
    /// `; charset=utf-8` are ignored. `None` means 415 Unsupported Media Type.
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let mime = ct.split(';').next().unwrap_or_default().trim();
        PatchType::ALL
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(mime))
    }

    /// The media type of this patch format.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// One PATCH request, as the handler parsed it.
#[derive(Clone, Copy, Debug)]
pub struct PatchRequest<'a> {
    /// The resource being patched. For a subresource whose kind differs from
    /// the parent's (e.g. `scale`), pass a `ResourceInfo` describing that kind,
    /// or make sure the current object carries its own `apiVersion`/`kind`.
    pub info: &'a ResourceInfo,
    /// The patch format.
    pub patch_type: PatchType,
    /// The raw request body.
    pub body: &'a [u8],
    /// The `fieldManager` query parameter (required for apply).
    pub field_manager: Option<&'a str>,
    /// The `force` query parameter (apply only: take over conflicting fields).
    pub force: bool,
}

/// A `Status` cause (`details.causes[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Cause type, e.g. `FieldManagerConflict`, `FieldValueRequired`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Field path, e.g. `.spec.replicas`.
    pub field: String,
}

/// Why a patch could not be applied. Each variant maps to the HTTP code and
/// `Status.reason` the Kubernetes API server uses for the same failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// Malformed body or directive (400 BadRequest).
    #[error("{0}")]
    BadRequest(String),
    /// The patch type is not supported for this kind, e.g. strategic merge
    /// on a custom resource (415 UnsupportedMediaType).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request is semantically invalid (422 Invalid).
    #[error("{message}")]
    Invalid {
        /// Full message.
        message: String,
        /// Per-field causes.
        causes: Vec<Cause>,
    },
    /// Server-side apply found fields owned by other managers (409 Conflict).
    #[error("{message}")]
    Conflict {
        /// Full message, e.g. `Apply failed with 1 conflict: …`.
        message: String,
        /// One cause per conflicting field.
        causes: Vec<Cause>,
    },
    /// Too many JSON patch operations (413 RequestEntityTooLarge).
    #[error("Request entity too large: {0}")]
    TooLarge(String),
    /// A failure Kubernetes reports as a plain server error (500), e.g. a
    /// list element missing its merge key.
    #[error("{0}")]
    Internal(String),
}

impl PatchError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::UnsupportedMediaType(_) => 415,
            PatchError::Invalid { .. } => 422,
            PatchError::Conflict { .. } => 409,
            PatchError::TooLarge(_) => 413,
            PatchError::Internal(_) => 500,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) => "BadRequest",
            PatchError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            PatchError::Invalid { .. } => "Invalid",
            PatchError::Conflict { .. } => "Conflict",
            PatchError::TooLarge(_) => "RequestEntityTooLarge",
            PatchError::Internal(_) => "InternalError",
        }
    }

    /// `Status.details.causes`.
    pub fn causes(&self) -> &[Cause] {
        match self {
            PatchError::Invalid { causes, .. } | PatchError::Conflict { causes, .. } => causes,
            _ => &[],
        }
    }

    fn invalid_request(detail: impl std::fmt::Display) -> PatchError {
        PatchError::Invalid {
            message: format!(
                "the server rejected our request due to an error in our request: {detail}"
            ),
            causes: Vec::new(),
        }
    }
}

/// Apply `req` to `current` and return the new object (not yet validated or
/// stored; `metadata.managedFields` already updated for apply).
///
/// `current = None` means the object does not exist: only apply may then
/// create it; the other types answer 404-worthy errors from the caller, so
/// here they patch an empty object.
pub fn apply_patch(req: &PatchRequest, current: Option<&Value>) -> Result<Value, PatchError> {
    match req.patch_type {
        PatchType::Json => json_patch_object(req.body, current),
        PatchType::Merge => merge_patch_object(req.body, current),
        PatchType::StrategicMerge => {
            let node = schema::builtin_node(req.info, current).ok_or_else(|| {
                PatchError::UnsupportedMediaType(format!(
                    "the body of the request was in an unknown format - accepted media types include: {}, {}, {}",
                    PatchType::Json.content_type(),
                    PatchType::Merge.content_type(),
                    PatchType::Apply.content_type()
                ))
            })?;
            let patch = parse_json(req.body)?;
            let original = current
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            strategic::strategic_merge(original, patch, node)
        }
        PatchType::Apply => apply::server_side_apply(req, current),
    }
}

/// Parse a JSON body; anything else is 400 like Kubernetes' `invalid JSON patch`.
fn parse_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|_| PatchError::BadRequest("invalid JSON patch".into()))
}

fn json_patch_object(body: &[u8], current: Option<&Value>) -> Result<Value, PatchError> {
    let raw = parse_json(body)?;
    let ops: json_patch::Patch = serde_json::from_value(raw)
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))?;
    if ops.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            ops.0.len()
        )));
    }
    let mut doc = current
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    json_patch::patch(&mut doc, &ops.0).map_err(PatchError::invalid_request)?;
    Ok(doc)
}

fn merge_patch_object(body: &[u8], current: Option<&Value>) -> Result<Value, PatchError> {
    let patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(PatchError::BadRequest("Invalid JSON Patch".into()));
    }
    let mut doc = current
        .cloned()
        .unwrap_or_else(|| Value::Object(Default::default()));
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

#[cfg(test)]
pub(crate) mod tests;
