//! SCRATCH STUB of the api-wire interface (replaced when `api-wire` is merged).
#![allow(missing_docs, clippy::all)]
use crate::apiserver::resource::ResourceInfo;
use serde_json::Value;

pub enum PatchType { Json, Merge, StrategicMerge, Apply }
impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(PatchType::Apply),
            _ => None,
        }
    }
}
pub struct PatchRequest<'a> {
    pub info: &'a ResourceInfo,
    pub patch_type: PatchType,
    pub body: &'a [u8],
    pub field_manager: Option<&'a str>,
    pub force: bool,
}
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PatchError { code: u16, reason: &'static str, message: String }
impl PatchError {
    pub fn code(&self) -> u16 { self.code }
    pub fn reason(&self) -> &'static str { self.reason }
}
fn bad(m: impl ToString) -> PatchError { PatchError { code: 400, reason: "BadRequest", message: m.to_string() } }
pub fn apply_patch(req: &PatchRequest, current: Option<&Value>) -> Result<Value, PatchError> {
    match req.patch_type {
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(req.body).map_err(bad)?;
            let mut v = current.cloned().unwrap_or(Value::Null);
            json_patch::patch(&mut v, &p).map_err(|e| PatchError { code: 422, reason: "Invalid", message: e.to_string() })?;
            Ok(v)
        }
        PatchType::Merge | PatchType::StrategicMerge => {
            let p: Value = serde_json::from_slice(req.body).map_err(bad)?;
            let mut v = current.cloned().unwrap_or(Value::Null);
            json_patch::merge(&mut v, &p);
            Ok(v)
        }
        PatchType::Apply => {
            let p: Value = serde_yaml::from_slice(req.body).map_err(bad)?;
            let mut v = current.cloned().unwrap_or(serde_json::json!({}));
            json_patch::merge(&mut v, &p);
            Ok(v)
        }
    }
}
pub mod managed_fields {
    use serde_json::Value;
    pub fn record_update(_old: Option<&Value>, _new: &mut Value, _manager: &str, _api_version: &str, _subresource: Option<&str>) {}
}
