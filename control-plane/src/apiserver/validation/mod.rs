//! Validation of objects before they are stored, with Kubernetes' field
//! paths, error types and messages. A failed validation is a 422 `Invalid`
//! Status whose `details.causes` list every [`FieldErr`].
//!
//! Pure functions: `validate(resource, new, old)` dispatches on the kind.

pub mod core;
pub mod crd;
pub mod meta;
pub mod pods;
pub mod workloads;

use serde_json::Value;

use super::errors::{ApiError, Cause};
use super::kinds::{KindId, Resource};
use meta::NameRule;

/// The type of a field error (`field.ErrorType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrType {
    /// `Invalid value`.
    Invalid,
    /// `Required value`.
    Required,
    /// `Duplicate value`.
    Duplicate,
    /// `Unsupported value`.
    NotSupported,
    /// `Forbidden`.
    Forbidden,
    /// `Too long`.
    TooLong,
}

impl ErrType {
    fn reason(self) -> &'static str {
        match self {
            ErrType::Invalid => "FieldValueInvalid",
            ErrType::Required => "FieldValueRequired",
            ErrType::Duplicate => "FieldValueDuplicate",
            ErrType::NotSupported => "FieldValueNotSupported",
            ErrType::Forbidden => "FieldValueForbidden",
            ErrType::TooLong => "FieldValueTooLong",
        }
    }

    fn text(self) -> &'static str {
        match self {
            ErrType::Invalid => "Invalid value",
            ErrType::Required => "Required value",
            ErrType::Duplicate => "Duplicate value",
            ErrType::NotSupported => "Unsupported value",
            ErrType::Forbidden => "Forbidden",
            ErrType::TooLong => "Too long",
        }
    }
}

/// One validation error on one field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldErr {
    /// Error type.
    pub ty: ErrType,
    /// Field path, e.g. `spec.containers[0].name`.
    pub field: String,
    /// The offending value, if shown.
    pub value: Option<Value>,
    /// Extra explanation.
    pub detail: String,
}

impl FieldErr {
    /// `Invalid value: <v>: <detail>`.
    pub fn invalid(field: &str, value: impl Into<Value>, detail: &str) -> Self {
        FieldErr {
            ty: ErrType::Invalid,
            field: field.into(),
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// `Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> Self {
        FieldErr {
            ty: ErrType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `Duplicate value: <v>`.
    pub fn duplicate(field: &str, value: impl Into<Value>) -> Self {
        FieldErr {
            ty: ErrType::Duplicate,
            field: field.into(),
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    /// `Unsupported value: <v>: supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: impl Into<Value>, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
        FieldErr {
            ty: ErrType::NotSupported,
            field: field.into(),
            value: Some(value.into()),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    /// `Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldErr {
            ty: ErrType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    /// `Too long: must have at most N bytes`.
    pub fn too_long(field: &str, max: usize) -> Self {
        FieldErr {
            ty: ErrType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }

    /// `Invalid value: <v>: field is immutable`.
    pub fn immutable(field: &str, value: impl Into<Value>) -> Self {
        Self::invalid(field, value, "field is immutable")
    }

    /// The message without the field prefix (`ErrorBody` in Kubernetes).
    pub fn message(&self) -> String {
        let mut s = self.ty.text().to_string();
        let shows_value = !matches!(
            self.ty,
            ErrType::Required | ErrType::Forbidden | ErrType::TooLong
        );
        if shows_value {
            match &self.value {
                Some(Value::String(v)) => s.push_str(&format!(
                    ": {}",
                    serde_json::to_string(v).unwrap_or_default()
                )),
                Some(Value::Null) | None => s.push_str(": null"),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => s.push_str(&format!(": {v}")),
                Some(v) => s.push_str(&format!(": {v}")),
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// As a Status cause.
    pub fn cause(&self) -> Cause {
        Cause {
            reason: self.ty.reason().into(),
            message: self.message(),
            field: self.field.clone(),
        }
    }

    /// Prefixes the field path (`spec` + `.containers[0]`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// Builds the 422 error for a resource and object name.
pub fn invalid_error(res: &Resource, name: &str, errs: &[FieldErr]) -> ApiError {
    ApiError::invalid(
        &res.info.group,
        &res.info.kind,
        name,
        errs.iter().map(FieldErr::cause).collect(),
    )
}

/// The name rule of a kind.
pub fn name_rule(id: KindId) -> NameRule {
    match id {
        KindId::Namespace => NameRule::Label,
        KindId::Service => NameRule::Dns1035,
        KindId::Custom => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    }
}

/// Validates an object (and, on update, its transition from `old`).
pub fn validate(res: &Resource, obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = meta::validate_object_meta(obj, name_rule(res.id), res.info.namespaced());
    if let Some(old) = old {
        errs.extend(immutable_meta(obj, old));
    }
    errs.extend(match res.id {
        KindId::Pod => pods::validate_pod(obj, old),
        KindId::Deployment | KindId::ReplicaSet | KindId::DaemonSet | KindId::StatefulSet => {
            workloads::validate_workload(res.id, obj, old)
        }
        KindId::Job => workloads::validate_job(obj, old),
        KindId::CronJob => workloads::validate_cronjob(obj),
        KindId::Service => core::validate_service(obj, old),
        KindId::ConfigMap | KindId::Secret => core::validate_config(res.id, obj, old),
        KindId::RuntimeClass => core::validate_runtime_class(obj),
        KindId::CustomResourceDefinition => crd::validate_crd(obj, old),
        _ => Vec::new(),
    });
    errs
}

fn immutable_meta(obj: &Value, old: &Value) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let new_uid = super::objects::uid(obj);
    if !new_uid.is_empty() && new_uid != super::objects::uid(old) {
        errs.push(FieldErr::immutable("metadata.uid", new_uid));
    }
    errs
}

/// A value formatted like Go's `%#v` of a `map[string]string`.
pub fn go_string_map(v: Option<&Value>) -> String {
    let mut pairs: Vec<(String, String)> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
    format!("map[string]string{{{}}}", inner.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_follow_kubernetes() {
        assert_eq!(
            FieldErr::required("spec.containers", "").message(),
            "Required value"
        );
        assert_eq!(
            FieldErr::invalid("spec.replicas", -1, "must be greater than or equal to 0").message(),
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldErr::duplicate("x", "a").message(),
            "Duplicate value: \"a\""
        );
        assert_eq!(
            FieldErr::not_supported(
                "spec.restartPolicy",
                "Sometimes",
                &["Always", "OnFailure", "Never"]
            )
            .message(),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldErr::forbidden("f", "not allowed").message(),
            "Forbidden: not allowed"
        );
        let c = FieldErr::required("name", "")
            .under("spec.containers[0]")
            .cause();
        assert_eq!(
            (c.reason.as_str(), c.field.as_str()),
            ("FieldValueRequired", "spec.containers[0].name")
        );
    }

    #[test]
    fn go_map_formatting() {
        assert_eq!(
            go_string_map(Some(&json!({"b": "2", "a": "1"}))),
            "map[string]string{\"a\":\"1\", \"b\":\"2\"}"
        );
        assert_eq!(go_string_map(None), "map[string]string{}");
    }
}
