//! SCRATCH STUB of the api-wire interface (replaced when `api-wire` is merged).
#![allow(missing_docs, clippy::all)]
use crate::apiserver::resource::ResourceInfo;
use serde_json::Value;
use std::sync::Arc;
pub fn schema_for(info: &ResourceInfo) -> Option<Arc<Value>> { info.crd_schema.clone() }
pub fn unknown_fields(_schema: &Value, _obj: &Value) -> Vec<String> { Vec::new() }
pub struct FieldError { pub field: String, pub reason: &'static str, pub message: String }
pub fn validate_structural(_schema: &Value, _obj: &Value) -> Vec<FieldError> { Vec::new() }
pub fn prune(_schema: &Value, _obj: &mut Value) {}
