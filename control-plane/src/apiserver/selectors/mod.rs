//! Label and field selectors: parsing (with Kubernetes' error messages) and
//! matching against JSON objects. Pure code, no I/O.

pub mod field;
pub mod label;

pub use field::FieldSelector;
pub use label::LabelSelector;

use serde_json::Value;

use super::kinds::Resource;

/// A list/watch filter: both selectors must match.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// True if the filter selects everything.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// True if `obj` (of resource `res`) passes both selectors.
    pub fn matches(&self, res: &Resource, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(res, obj)
    }
}
