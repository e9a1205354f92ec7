//! CustomResourceDefinitions: turning a CRD into served resources, its
//! status conditions (`NamesAccepted`, `Established`), and keeping the
//! registry in step with the store.
//!
//! The registry is updated synchronously by the CRD write path (so a client
//! that waits for `Established` can use the resource at once) and by a
//! background watch (so several API servers sharing one store agree).

use std::sync::Arc;

use futures::StreamExt;
use serde_json::{Value, json};

use super::ApiState;
use super::kinds::{ALL_VERBS, KindId, Resource, scale_sub};
use super::objects;
use super::registry::{Registry, intern};
use super::resource::{ResourceInfo, Scope, Subresource};
use crate::store::EventKind;

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type (`string`, `integer`, `number`, `boolean`, `date`).
    pub type_: String,
    /// OpenAPI format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 = always shown, >0 = `-o wide` only.
    pub priority: i64,
    /// Simple JSONPath into the object (`.spec.replicas`).
    pub json_path: String,
}

/// Paths of the scale subresource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePaths {
    /// e.g. `.spec.replicas`.
    pub spec_replicas: String,
    /// e.g. `.status.replicas`.
    pub status_replicas: String,
    /// e.g. `.status.selector`.
    pub label_selector: Option<String>,
}

/// Per-version extras of a custom resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomInfo {
    /// The CRD's name (`widgets.example.com`).
    pub crd_name: String,
    /// The storage version.
    pub storage_version: String,
    /// Printer columns for Table output.
    pub printer_columns: Vec<PrinterColumn>,
    /// Scale subresource paths, if served.
    pub scale: Option<ScalePaths>,
    /// Extra field-selectable paths (`selectableFields`), without the leading dot.
    pub selectable_fields: Vec<String>,
}

fn condition(ty: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({"type": ty, "status": if ok { "True" } else { "False" }, "lastTransitionTime": objects::now_rfc3339(),
           "reason": reason, "message": message})
}

/// CRD defaulting: singular, listKind, conversion, per-version flags.
pub fn default_crd(obj: &mut Value) {
    let kind = objects::path_str(obj, "spec.names.kind").to_string();
    if let Some(names) = obj
        .pointer_mut("/spec/names")
        .and_then(Value::as_object_mut)
        && !kind.is_empty()
    {
        names
            .entry("singular")
            .or_insert_with(|| json!(kind.to_ascii_lowercase()));
        names
            .entry("listKind")
            .or_insert_with(|| json!(format!("{kind}List")));
    }
}

/// True if the CRD has `Established=True`.
pub fn is_established(crd: &Value) -> bool {
    objects::path(crd, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        })
}

/// Computes `status` for a CRD being written: names accepted unless another
/// resource already uses the plural or kind in the group.
pub fn compute_status(crd: &Value, old: Option<&Value>, registry: &Registry) -> Value {
    let group = objects::path_str(crd, "spec.group");
    let plural = objects::path_str(crd, "spec.names.plural");
    let kind = objects::path_str(crd, "spec.names.kind");
    let conflict = registry.name_conflict(objects::name(crd), group, plural, kind);
    let old_status = old
        .and_then(|o| o.get("status"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut stored: Vec<Value> = old_status
        .get("storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = storage_version(crd)
        && !stored.contains(&json!(v))
    {
        stored.push(json!(v));
    }
    let keep_time = |ty: &str, st: &str| -> Option<Value> {
        old_status
            .get("conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty && c["status"] == st)
            .cloned()
    };
    let conditions = match conflict {
        Some(name) => vec![
            condition(
                "NamesAccepted",
                false,
                "PluralConflict",
                &format!("\"{name}\" is already in use"),
            ),
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            ),
        ],
        None => vec![
            keep_time("NamesAccepted", "True").unwrap_or_else(|| {
                condition("NamesAccepted", true, "NoConflicts", "no conflicts found")
            }),
            keep_time("Established", "True").unwrap_or_else(|| {
                condition(
                    "Established",
                    true,
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                )
            }),
        ],
    };
    let mut status = json!({"conditions": conditions, "storedVersions": stored});
    if status["conditions"][0]["status"] == "True" {
        status["acceptedNames"] = objects::path(crd, "spec.names")
            .cloned()
            .unwrap_or_else(|| json!({}));
    } else {
        status["acceptedNames"] = json!({"plural": "", "kind": ""});
    }
    status
}

/// The version marked `storage: true`.
pub fn storage_version(crd: &Value) -> Option<String> {
    objects::path(crd, "spec.versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The served resources of an Established CRD, one per served version.
pub fn resources_from_crd(crd: &Value) -> Vec<Resource> {
    if !is_established(crd) || objects::is_deleting(crd) {
        return Vec::new();
    }
    let group = objects::path_str(crd, "spec.group").to_string();
    let names = objects::path(crd, "spec.names")
        .cloned()
        .unwrap_or(Value::Null);
    let kind = names["kind"].as_str().unwrap_or("").to_string();
    let plural = names["plural"].as_str().unwrap_or("").to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_ascii_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let scope = if objects::path_str(crd, "spec.scope") == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    let storage = storage_version(crd).unwrap_or_default();
    let versions = objects::path(crd, "spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let g: &'static str = intern(&group);
    let k: &'static str = intern(&kind);
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| {
            let version = v["name"].as_str().unwrap_or("").to_string();
            let subs = v.get("subresources");
            let mut subresources: Vec<Subresource> = Vec::new();
            let scale = subs.and_then(|s| s.get("scale")).map(|s| ScalePaths {
                spec_replicas: s["specReplicasPath"]
                    .as_str()
                    .unwrap_or(".spec.replicas")
                    .to_string(),
                status_replicas: s["statusReplicasPath"]
                    .as_str()
                    .unwrap_or(".status.replicas")
                    .to_string(),
                label_selector: s["labelSelectorPath"].as_str().map(str::to_string),
            });
            if scale.is_some() {
                subresources.push(scale_sub());
            }
            let has_status = subs.and_then(|s| s.get("status")).is_some();
            if has_status {
                subresources.push(Subresource {
                    name: "status",
                    group: g,
                    version: intern(&version),
                    kind: k,
                    verbs: &["get", "patch", "update"],
                });
            }
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: c["name"].as_str().unwrap_or("").to_string(),
                            type_: c["type"].as_str().unwrap_or("string").to_string(),
                            format: c["format"].as_str().unwrap_or("").to_string(),
                            description: c["description"].as_str().unwrap_or("").to_string(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                            json_path: c["jsonPath"].as_str().unwrap_or("").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let selectable_fields = v
                .get("selectableFields")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f["jsonPath"].as_str())
                        .map(|p| p.trim_start_matches('.').to_string())
                        .collect()
                })
                .unwrap_or_default();
            let schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
            Resource {
                info: ResourceInfo {
                    group: group.clone(),
                    version: version.clone(),
                    kind: kind.clone(),
                    list_kind: list_kind.clone(),
                    plural: plural.clone(),
                    singular: singular.clone(),
                    scope,
                    short_names: strings(names.get("shortNames")),
                    categories: strings(names.get("categories")),
                    verbs: ALL_VERBS.to_vec(),
                    subresources,
                    has_status_subresource: has_status,
                    crd_schema: schema,
                },
                id: KindId::Custom,
                custom: Some(Arc::new(CustomInfo {
                    crd_name: objects::name(crd).to_string(),
                    storage_version: storage.clone(),
                    printer_columns,
                    scale,
                    selectable_fields,
                })),
            }
        })
        .collect()
}

/// Updates the registry from one CRD's stored state (`None` = deleted).
pub fn sync_one(registry: &Registry, name: &str, crd: Option<&Value>) {
    let resources = crd.map(resources_from_crd).unwrap_or_default();
    registry.set_custom(name, resources);
}

/// Loads every stored CRD into the registry; returns the list revision.
pub async fn load_all(state: &ApiState) -> Result<i64, crate::store::StoreError> {
    let Some(res) = state
        .registry()
        .builtin("apiextensions.k8s.io", "customresourcedefinitions")
    else {
        return Ok(0);
    };
    let prefix = objects::key(&res, None, None);
    let list = state.store().list(&prefix, Default::default()).await?;
    for kv in &list.items {
        if let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) {
            sync_one(state.registry(), objects::name(&obj), Some(&obj));
        }
    }
    Ok(list.revision)
}

/// Keeps the registry in step with CRD changes made by any API server.
pub async fn watch_crds(state: ApiState) {
    let mut after = match load_all(&state).await {
        Ok(rev) => rev,
        Err(e) => {
            tracing::warn!(error = %e, "loading CRDs failed");
            0
        }
    };
    let Some(res) = state
        .registry()
        .builtin("apiextensions.k8s.io", "customresourcedefinitions")
    else {
        return;
    };
    let prefix = objects::key(&res, None, None);
    loop {
        let mut stream = match state.store().watch(&prefix, after).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "CRD watch failed; reloading");
                after = load_all(&state).await.unwrap_or(after);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    after = ev.revision;
                    let obj: Option<Value> = serde_json::from_slice(&ev.kv.value).ok();
                    let Some(obj) = obj else { continue };
                    let name = objects::name(&obj).to_string();
                    match ev.kind {
                        EventKind::Put => sync_one(state.registry(), &name, Some(&obj)),
                        EventKind::Delete => sync_one(state.registry(), &name, None),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "CRD watch ended");
                    break;
                }
            }
        }
        if state.is_closed() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
        "group": "example.com", "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"], "categories": ["all"]},
        "versions": [
            {"name": "v1", "served": true, "storage": true,
             "schema": {"openAPIV3Schema": {"type": "object"}},
             "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"}},
             "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}]},
            {"name": "v1beta1", "served": false, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}}
        ]}})
    }

    #[test]
    fn status_accepts_free_names() {
        let mut c = crd();
        default_crd(&mut c);
        let st = compute_status(&c, None, &Registry::new());
        assert_eq!(st["conditions"][0]["type"], "NamesAccepted");
        assert_eq!(st["conditions"][1]["status"], "True");
        assert_eq!(st["acceptedNames"]["singular"], "widget");
        assert_eq!(st["acceptedNames"]["listKind"], "WidgetList");
        assert_eq!(st["storedVersions"], json!(["v1"]));
        c["status"] = st;
        assert!(is_established(&c));
    }

    #[test]
    fn status_rejects_conflicting_names() {
        let mut c = crd();
        c["spec"]["group"] = json!("apps");
        c["spec"]["names"]["plural"] = json!("deployments");
        let st = compute_status(&c, None, &Registry::new());
        assert_eq!(st["conditions"][0]["status"], "False");
        assert_eq!(st["conditions"][0]["reason"], "PluralConflict");
        c["status"] = st;
        assert!(resources_from_crd(&c).is_empty());
    }

    #[test]
    fn resources_per_served_version() {
        let mut c = crd();
        default_crd(&mut c);
        c["status"] = compute_status(&c, None, &Registry::new());
        let rs = resources_from_crd(&c);
        assert_eq!(rs.len(), 1);
        let r = &rs[0];
        assert_eq!(
            (
                r.info.group.as_str(),
                r.info.version.as_str(),
                r.info.plural.as_str()
            ),
            ("example.com", "v1", "widgets")
        );
        assert!(r.info.has_status_subresource);
        assert!(r.has_subresource("scale"));
        assert_eq!(r.info.short_names, ["wd"]);
        let ci = r.custom.as_ref().expect("custom");
        assert_eq!(ci.printer_columns[0].json_path, ".spec.size");
        assert_eq!(
            ci.scale.as_ref().map(|s| s.spec_replicas.as_str()),
            Some(".spec.size")
        );
        let reg = Registry::new();
        sync_one(&reg, "widgets.example.com", Some(&c));
        assert!(reg.lookup("example.com", "v1", "widgets").is_some());
        assert_eq!(
            reg.name_conflict("other.example.com", "example.com", "widgets", "X"),
            Some("widgets".into())
        );
        sync_one(&reg, "widgets.example.com", None);
        assert!(reg.lookup("example.com", "v1", "widgets").is_none());
    }
}
