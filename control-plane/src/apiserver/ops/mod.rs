//! The operations behind the HTTP verbs, free of HTTP: create, update
//! (PUT, PATCH and subresource writes share one guaranteed-update loop),
//! delete (graceful deletion, finalizers, propagation), get and list.
//!
//! They are used by the handlers, by bootstrap and by the built-in
//! namespace finalizer, so the same rules apply to every writer.

pub mod create;
pub mod delete;
pub mod read;
pub mod update;

use serde_json::{Value, json};

use super::ApiState;
use super::errors::{ApiError, ApiResult};
use super::kinds::{KindId, Resource};
use super::objects;
use super::params::FieldValidation;
use super::{patch, schema, validation};
use crate::store::Revision;

pub use create::create;
pub use delete::{DeleteOpts, Deleted, delete};
pub use read::{ListOpts, ListResult, get, list};
pub use update::{Precondition, update};

/// Options shared by every write.
#[derive(Clone, Debug)]
pub struct WriteOpts {
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// The field manager recorded in `managedFields`.
    pub field_manager: Option<String>,
    /// How unknown or duplicate fields are handled.
    pub field_validation: FieldValidation,
    /// True when the write already maintained `managedFields` itself
    /// (server-side apply); no `Update` entry is recorded then.
    pub managed_fields_done: bool,
}

impl Default for WriteOpts {
    fn default() -> Self {
        WriteOpts {
            dry_run: false,
            field_manager: None,
            field_validation: FieldValidation::Ignore,
            managed_fields_done: false,
        }
    }
}

/// The outcome of a create or update.
#[derive(Clone, Debug)]
pub struct Written {
    /// The object as stored (with `resourceVersion`), or as it would be for dry runs.
    pub object: Value,
    /// True if the object was created (HTTP 201).
    pub created: bool,
    /// `Warning` headers to send.
    pub warnings: Vec<String>,
}

/// Reads an object and its revision.
pub async fn load(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Option<(Value, Revision)>> {
    let key = objects::key(res, namespace, Some(name));
    match state.store().get(&key).await? {
        None => Ok(None),
        Some(kv) => Ok(Some((objects::decode(res, &kv)?, kv.mod_revision))),
    }
}

/// Fills in or checks `apiVersion` and `kind` of a body.
pub fn check_type_meta(res: &Resource, obj: &mut Value, kind: &str) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {kind}): expected an object"
        )));
    };
    let expected_av = res.info.api_version();
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), json!(kind));
        }
        Some(k) if k == kind => {}
        Some(k) => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({kind})"
            )));
        }
    }
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), json!(expected_av));
        }
        Some(av) if av == expected_av => {}
        Some(av)
            if res.custom.is_some() && av.split('/').next() == Some(res.info.group.as_str()) =>
        {
            map.insert("apiVersion".into(), json!(expected_av));
        }
        Some(av) => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected_av})"
            )));
        }
    }
    Ok(())
}

/// Applies `fieldValidation` to unknown and duplicate fields; returns warnings.
pub fn check_fields(
    res: &Resource,
    obj: &Value,
    mode: FieldValidation,
    duplicates: &[String],
) -> ApiResult<Vec<String>> {
    if mode == FieldValidation::Ignore {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = duplicates
        .iter()
        .map(|d| format!("duplicate field \"{d}\""))
        .collect();
    if let Some(s) = schema::schema_for(&res.info) {
        problems.extend(
            schema::unknown_fields(&s, obj)
                .into_iter()
                .map(|f| format!("unknown field \"{f}\"")),
        );
    }
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        FieldValidation::Strict => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            problems.join(", ")
        ))),
        _ => Ok(problems),
    }
}

/// Checks that `namespace` exists and is not terminating (for creates).
pub async fn check_namespace(
    state: &ApiState,
    res: &Resource,
    namespace: &str,
    name: &str,
) -> ApiResult<()> {
    let Some(ns_res) = state.registry().builtin("", "namespaces") else {
        return Ok(());
    };
    match load(state, &ns_res, None, namespace).await? {
        None => Err(ApiError::not_found(&ns_res.group_resource(), namespace)),
        Some((ns, _))
            if objects::is_deleting(&ns)
                || objects::path_str(&ns, "status.phase") == "Terminating" =>
        {
            Err(ApiError::forbidden(
                &res.group_resource(),
                name,
                &format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                ),
            ))
        }
        Some(_) => Ok(()),
    }
}

/// Defaults, schema handling (custom resources) and validation of an object
/// about to be written. `old` is the current object on updates.
pub fn finish(res: &Resource, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    if res.id != KindId::Custom {
        // Typed decoding drops unknown fields in Kubernetes; do the same.
        if let Some(s) = schema::schema_for(&res.info) {
            schema::prune(&s, obj);
        }
    }
    super::defaults::apply(res, obj);
    if res.id == KindId::CustomResourceDefinition {
        super::crd::default_crd(obj);
    }
    let mut errs = validation::validate(res, obj, old);
    if res.id == KindId::Custom
        && let Some(s) = res.info.crd_schema.as_ref()
    {
        schema::prune(s, obj);
        errs.extend(schema::validate_structural(s, obj).into_iter().map(|e| {
            validation::FieldErr {
                ty: match e.reason {
                    "FieldValueRequired" => validation::ErrType::Required,
                    "FieldValueNotSupported" => validation::ErrType::NotSupported,
                    "FieldValueForbidden" => validation::ErrType::Forbidden,
                    "FieldValueTooLong" => validation::ErrType::TooLong,
                    "FieldValueDuplicate" => validation::ErrType::Duplicate,
                    _ => validation::ErrType::Invalid,
                },
                field: e.field,
                value: None,
                detail: e.message,
            }
        }));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(validation::invalid_error(res, objects::name(obj), &errs))
    }
}

/// True if anything but metadata and status differs (generation bump).
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    !equal_except(old, new, &|k| {
        matches!(k, "metadata" | "status" | "apiVersion" | "kind")
    })
}

/// True if `a` and `b` are equal once the top-level members `skip` names
/// are left out of both (no copies: the objects can be large).
pub fn equal_except(a: &Value, b: &Value, skip: &dyn Fn(&str) -> bool) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let kept = |m: &serde_json::Map<String, Value>| m.keys().filter(|k| !skip(k)).count();
            kept(a) == kept(b)
                && a.iter()
                    .filter(|(k, _)| !skip(k))
                    .all(|(k, v)| b.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Records a non-apply write in `managedFields`.
pub fn record_manager(
    res: &Resource,
    old: Option<&Value>,
    new: &mut Value,
    opts: &WriteOpts,
    sub: Option<&str>,
) {
    if opts.managed_fields_done {
        return;
    }
    if let Some(m) = opts.field_manager.as_deref() {
        patch::managed_fields::record_update_for(&res.info, old, new, m, sub);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::builtin_resources;

    fn res(plural: &str) -> Resource {
        builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == plural)
            .expect("resource")
    }

    #[test]
    fn type_meta_is_filled_or_checked() {
        let pods = res("pods");
        let mut o = json!({});
        check_type_meta(&pods, &mut o, "Pod").expect("fill");
        assert_eq!(
            (o["apiVersion"].clone(), o["kind"].clone()),
            (json!("v1"), json!("Pod"))
        );
        let mut wrong = json!({"apiVersion": "v1", "kind": "Service"});
        assert_eq!(
            check_type_meta(&pods, &mut wrong, "Pod")
                .err()
                .map(|e| e.code),
            Some(400)
        );
        let mut wrong_av = json!({"apiVersion": "apps/v1", "kind": "Pod"});
        let e = check_type_meta(&pods, &mut wrong_av, "Pod").expect_err("av");
        assert_eq!(
            e.message,
            "the API version in the data (apps/v1) does not match the expected API version (v1)"
        );
    }

    #[test]
    fn generation_ignores_metadata_and_status() {
        let a = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"labels": {"a": "2"}}, "spec": {"x": 1}, "status": {"y": 2}});
        let c = json!({"metadata": {}, "spec": {"x": 2}});
        assert!(!spec_changed(&a, &b));
        assert!(spec_changed(&a, &c));
        let d = json!({"metadata": {}, "spec": {"x": 1}, "extra": true});
        assert!(spec_changed(&a, &d) && spec_changed(&d, &a));
    }

    #[test]
    fn duplicates_follow_field_validation() {
        let pods = res("pods");
        let dups = vec!["metadata.name".to_string()];
        let e =
            check_fields(&pods, &json!({}), FieldValidation::Strict, &dups).expect_err("strict");
        assert_eq!(
            e.message,
            "strict decoding error: duplicate field \"metadata.name\""
        );
        assert_eq!(
            check_fields(&pods, &json!({}), FieldValidation::Warn, &dups).expect("warn"),
            vec!["duplicate field \"metadata.name\"".to_string()]
        );
        assert!(
            check_fields(&pods, &json!({}), FieldValidation::Ignore, &dups)
                .expect("ignore")
                .is_empty()
        );
    }
}
