//! Server-side apply (in progress).
use serde_json::Value;

use super::{PatchError, PatchRequest};

/// Server-side apply.
pub(super) fn server_side_apply(
    _req: &PatchRequest,
    _current: Option<&Value>,
) -> Result<Value, PatchError> {
    Err(PatchError::Internal(
        "server-side apply is not implemented yet".into(),
    ))
}
