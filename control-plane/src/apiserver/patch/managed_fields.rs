//! managedFields bookkeeping (in progress).
use serde_json::Value;

/// Maintain `metadata.managedFields` for a non-apply write.
pub fn record_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _api_version: &str,
    _subresource: Option<&str>,
) {
}
