//! SCRATCH STUB of the api-wire interface (replaced when `api-wire` is merged).
#![allow(missing_docs, clippy::all)]
use crate::apiserver::resource::ResourceInfo;
use serde_json::{json, Value};
pub fn v3_root(_resources: &[ResourceInfo]) -> Value { json!({"paths": {}}) }
pub fn v3_group_version(_group: &str, _version: &str, _resources: &[ResourceInfo]) -> Option<Value> { None }
pub fn v2(_resources: &[ResourceInfo]) -> Value { json!({"swagger": "2.0"}) }
pub fn v2_protobuf(_resources: &[ResourceInfo]) -> Option<Vec<u8>> { None }
