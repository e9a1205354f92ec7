//! Server-side apply (`application/apply-patch+yaml`), after Kubernetes'
//! field manager and structured-merge-diff:
//!
//! 1. the configuration (YAML or JSON) must name the resource's kind and
//!    apiVersion and carry no managedFields; `fieldManager` is required;
//! 2. it is merged into the live object (created from nothing if absent):
//!    configured values win, associative lists merge by key, sets by value,
//!    atomic lists and structs are replaced;
//! 3. fields this manager applied before and no longer applies are removed,
//!    unless another manager owns them;
//! 4. fields changed that other managers own are conflicts (409) unless
//!    `force`, which takes them over; `kubectl` applying over an object last
//!    written by client-side apply is allowed to take over fields whose values
//!    still match the `last-applied-configuration` annotation;
//! 5. managedFields records the applier's configured fields (operation
//!    `Apply`); an object never tracked before gets a `before-first-apply`
//!    entry owning its existing fields.
//!
//! Approximations: `null` in the configuration is treated as unset; there is
//! no conversion between versions; apply through a subresource is not
//! distinguished.

use serde_json::{Map, Value, json};

use super::fieldpath::{FieldSet, display_path};
use super::managed_fields::{
    Entry, Managers, Operation, strip_meta, update_ownership, without_managed_fields, zero_object,
};
use super::typed::{compare, json_eq, merge, remove_unowned, to_field_set};
use super::{Cause, PatchError, PatchRequest};
use crate::apiserver::schema;
use crate::apiserver::schema::node::TypeNode;

/// The annotation client-side apply keeps its last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Longest `fieldManager` Kubernetes accepts.
const MAX_FIELD_MANAGER_LEN: usize = 128;

/// One conflicting field.
#[derive(Clone, Debug)]
struct Conflict {
    manager: String,
    path: Vec<String>,
}

pub(super) fn server_side_apply(
    req: &PatchRequest,
    current: Option<&Value>,
) -> Result<Value, PatchError> {
    server_side_apply_at(req, current, &super::managed_fields::now())
}

/// [`server_side_apply`] with an explicit clock (for tests).
pub(super) fn server_side_apply_at(
    req: &PatchRequest,
    current: Option<&Value>,
    now: &str,
) -> Result<Value, PatchError> {
    let manager = validate_field_manager(req.field_manager)?;
    let config = parse_config(req.body)?;
    let info = req.info;
    let api_version = info.api_version();
    let config_gvk = (
        config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        config
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    if config_gvk != (api_version.as_str(), info.kind.as_str()) {
        let (group, version) = config_gvk.0.split_once('/').unwrap_or(("", config_gvk.0));
        return Err(PatchError::BadRequest(format!(
            "invalid object type: {group}/{version}, Kind={}",
            config_gvk.1
        )));
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(PatchError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let config_name = config.pointer("/metadata/name").and_then(Value::as_str);
    if let (Some(cur), Some(name)) = (current, config_name) {
        let live_name = cur
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name != live_name {
            return Err(PatchError::BadRequest(format!(
                "the name of the object ({name}) does not match the name on the URL ({live_name})"
            )));
        }
    }
    let node = schema::type_node(info, current.or(Some(&config)));

    let (live, mut managers) = match current {
        Some(cur) => {
            let managers = Managers::decode(cur).map_err(|e| {
                PatchError::Internal(format!("failed to decode managed fields: {e}"))
            })?;
            (without_managed_fields(cur), managers)
        }
        None => (new_object(&config), Managers::default()),
    };
    if managers.entries.is_empty() && current.is_some() {
        // Kubernetes gives the fields of a never-tracked object to a
        // synthetic updater before applying.
        let zero = zero_object(node, &api_version, &info.kind);
        update_ownership(
            &mut managers,
            &zero,
            &live,
            node,
            Entry {
                manager: "before-first-apply".into(),
                operation: Operation::Update,
                api_version: api_version.clone(),
                time: Some(now.to_string()),
                subresource: None,
                fields: FieldSet::new(),
            },
        );
    }
    let owner = Entry {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version: api_version.clone(),
        time: None,
        subresource: None,
        fields: FieldSet::new(),
    };
    let (mut result, mut managers) =
        match apply_once(&live, &config, node, &managers, &owner, req.force) {
            Ok(done) => done,
            Err(conflicts) => {
                let remaining = if manager == "kubectl" {
                    conflicts_not_explained_by_last_applied(&live, &conflicts, node, &api_version)
                } else {
                    conflicts
                };
                if !remaining.is_empty() {
                    return Err(conflict_error(remaining));
                }
                apply_once(&live, &config, node, &managers, &owner, true).map_err(conflict_error)?
            }
        };

    let previous_time = managers.get(&owner).and_then(|e| e.time.clone());
    if let Some(entry) = managers.get(&owner).cloned() {
        let changed = !json_eq(&live, &result);
        let time = if changed {
            Some(now.to_string())
        } else {
            previous_time
        };
        managers.put(Entry {
            fields: strip_meta(&entry.fields),
            time,
            ..entry
        });
    }
    managers.drop_empty();
    managers.cap_updates();

    if manager == "kubectl" && has_last_applied(&result) {
        let mut applied = config.clone();
        if let Some(annotations) = applied
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.remove(LAST_APPLIED);
        }
        if let Some(annotations) = result
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            annotations.insert(LAST_APPLIED.into(), Value::String(applied.to_string()));
        }
    }
    managers.store(&mut result);
    Ok(result)
}

/// One apply attempt: merge, prune what this manager stopped applying,
/// then find or take over conflicting fields.
fn apply_once(
    live: &Value,
    config: &Value,
    node: TypeNode,
    managers: &Managers,
    owner: &Entry,
    force: bool,
) -> Result<(Value, Managers), Vec<Conflict>> {
    let mut managers = managers.clone();
    let mut merged = merge(live, config, node);
    let previous = managers.get(owner).cloned();
    managers.put(Entry {
        fields: to_field_set(config, node),
        time: previous.as_ref().and_then(|p| p.time.clone()),
        ..owner.clone()
    });
    if let Some(last) = previous.map(|p| p.fields).filter(|f| !f.is_empty()) {
        let keep = managers.all_fields();
        remove_unowned(&mut merged, &last, &keep, node);
    }
    let cmp = compare(live, &merged, node);
    let changed = cmp.modified.union(&cmp.added);
    let mut conflicts = Vec::new();
    for entry in managers.entries.iter_mut() {
        if entry.same_identity(owner) {
            continue;
        }
        let clash = entry.fields.intersection(&changed);
        for path in clash.paths() {
            conflicts.push(Conflict {
                manager: entry.display(),
                path,
            });
        }
        entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
    }
    if !force && !conflicts.is_empty() {
        return Err(conflicts);
    }
    managers.drop_empty();
    Ok((merged, managers))
}

/// Conflicts that the client-side-apply annotation does not explain: a
/// field counts as explained when the last-applied configuration set it to
/// the value the live object still has.
fn conflicts_not_explained_by_last_applied(
    live: &Value,
    conflicts: &[Conflict],
    node: TypeNode,
    api_version: &str,
) -> Vec<Conflict> {
    let allowed = live
        .pointer(&format!(
            "/metadata/annotations/{}",
            LAST_APPLIED.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .filter(|last| last.get("apiVersion").and_then(Value::as_str) == Some(api_version))
        .map(|last| {
            let set = to_field_set(&last, node);
            let cmp = compare(&last, live, node);
            set.difference(&cmp.modified)
                .difference(&cmp.added)
                .difference(&cmp.removed)
        });
    match allowed {
        Some(allowed) => conflicts
            .iter()
            .filter(|c| !allowed.contains(&c.path))
            .cloned()
            .collect(),
        None => conflicts.to_vec(),
    }
}

fn conflict_error(mut conflicts: Vec<Conflict>) -> PatchError {
    conflicts.sort_by(|a, b| (&a.manager, &a.path).cmp(&(&b.manager, &b.path)));
    let causes = conflicts
        .iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict",
            message: format!("conflict with {}", c.manager),
            field: display_path(&c.path),
        })
        .collect();
    let message = if let [only] = conflicts.as_slice() {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager,
            display_path(&only.path)
        )
    } else {
        let mut lines = Vec::new();
        let mut last_manager: Option<&str> = None;
        for c in &conflicts {
            if last_manager != Some(c.manager.as_str()) {
                lines.push(format!("conflicts with {}:", c.manager));
                last_manager = Some(c.manager.as_str());
            }
            lines.push(format!("- {}", display_path(&c.path)));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    PatchError::Conflict { message, causes }
}

fn validate_field_manager(manager: Option<&str>) -> Result<&str, PatchError> {
    let invalid = |detail: String, cause: Cause| PatchError::Invalid {
        message: format!("PatchOptions.meta.k8s.io \"\" is invalid: {detail}"),
        causes: vec![cause],
    };
    match manager {
        None | Some("") => Err(invalid(
            "fieldManager: Required value: is required for apply patch".into(),
            Cause {
                reason: "FieldValueRequired",
                message: "Required value: is required for apply patch".into(),
                field: "fieldManager".into(),
            },
        )),
        Some(m) if m.len() > MAX_FIELD_MANAGER_LEN => Err(invalid(
            format!("fieldManager: Too long: may not be more than {MAX_FIELD_MANAGER_LEN} bytes"),
            Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {MAX_FIELD_MANAGER_LEN} bytes"),
                field: "fieldManager".into(),
            },
        )),
        Some(m) => {
            if let Some((i, c)) = m.chars().enumerate().find(|(_, c)| c.is_control()) {
                let detail = format!("invalid character {c:?} (at position {i})");
                return Err(invalid(
                    format!("fieldManager: Invalid value: {m:?}: {detail}"),
                    Cause {
                        reason: "FieldValueInvalid",
                        message: detail,
                        field: "fieldManager".into(),
                    },
                ));
            }
            Ok(m)
        }
    }
}

/// Parse the body (YAML, of which JSON is a subset) into an object without nulls.
fn parse_config(body: &[u8]) -> Result<Value, PatchError> {
    let value: Value = serde_yaml::from_slice(body)
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))?;
    match drop_nulls(value) {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(PatchError::BadRequest(
            "error decoding patch: the apply configuration must be an object".into(),
        )),
    }
}

fn drop_nulls(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| drop_nulls(v).map(|v| (k, v)))
                .collect(),
        )),
        Value::Array(list) => Some(Value::Array(
            list.into_iter().filter_map(drop_nulls).collect(),
        )),
        other => Some(other),
    }
}

/// The object an apply creates from: kind, apiVersion, name and namespace.
fn new_object(config: &Value) -> Value {
    let mut meta = Map::new();
    for key in ["name", "namespace"] {
        if let Some(v) = config.pointer(&format!("/metadata/{key}")) {
            meta.insert(key.into(), v.clone());
        }
    }
    json!({"apiVersion": config["apiVersion"], "kind": config["kind"], "metadata": meta})
}

fn has_last_applied(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

#[cfg(test)]
mod tests;
