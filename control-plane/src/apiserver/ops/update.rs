//! The guaranteed-update loop behind PUT, PATCH and subresource writes:
//! read the current object, let the caller compute the desired one, merge
//! by the status/spec split, default, validate, bump the generation, and
//! admit (ResourceQuota charges what the update adds) and
//! compare-and-swap in the store, retrying on races (a stale client-pinned
//! `resourceVersion` then fails the precondition with 409 Conflict).

use serde_json::{Value, json};

use super::{
    WriteOpts, Written, check_type_meta, equal_except, finish, load, record_manager, spec_changed,
};
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::{KindId, Resource};
use crate::apiserver::{ApiState, admission, crd, objects};
use crate::store::StoreError;

const MAX_ATTEMPTS: usize = 16;

/// Whether the write may create a missing object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The object must exist (404 otherwise).
    MustExist,
    /// Create it when missing (PUT on kinds that allow it, server-side apply).
    CreateIfMissing,
}

/// Where the write is addressed.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Namespace from the URL.
    pub namespace: Option<&'a str>,
    /// Name from the URL.
    pub name: &'a str,
    /// Subresource: `None`, `status`, `finalize`, `binding`, `scale`.
    pub subresource: Option<&'a str>,
}

/// True if `a` and `b` differ in more than `resourceVersion` and
/// `managedFields` (an update that changes nothing else is a no-op).
fn same_but_volatile(a: &Value, b: &Value) -> bool {
    let volatile = |k: &str| matches!(k, "resourceVersion" | "managedFields");
    equal_except(a, b, &|k| k == "metadata")
        && equal_except(
            a.get("metadata").unwrap_or(&Value::Null),
            b.get("metadata").unwrap_or(&Value::Null),
            &volatile,
        )
}

/// Copies server-owned metadata from `cur` into `desired`.
fn keep_server_metadata(cur: &Value, desired: &mut Value) {
    let cur_meta = objects::meta(cur).cloned().unwrap_or_default();
    let meta = objects::meta_mut(desired);
    for k in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match cur_meta.get(k) {
            Some(v) => {
                meta.insert(k.into(), v.clone());
            }
            None => {
                meta.remove(k);
            }
        }
    }
    meta.remove("selfLink");
}

fn set_or_remove(obj: &mut Value, key: &str, v: Option<&Value>) {
    if let Some(m) = obj.as_object_mut() {
        match v {
            Some(v) => {
                m.insert(key.into(), v.clone());
            }
            None => {
                m.remove(key);
            }
        }
    }
}

/// Builds the object to store from the current and the desired state.
fn merge(res: &Resource, cur: &Value, mut desired: Value, sub: Option<&str>) -> Value {
    match sub {
        Some("status") => {
            let mut out = cur.clone();
            set_or_remove(&mut out, "status", desired.get("status"));
            // Server-side apply to /status maintains managedFields itself.
            if let Some(mf) = desired.pointer("/metadata/managedFields") {
                objects::meta_mut(&mut out).insert("managedFields".into(), mf.clone());
            }
            out
        }
        Some("finalize") => {
            let mut out = cur.clone();
            let fins = desired
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or_else(|| json!([]));
            if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("finalizers".into(), fins);
            } else {
                out["spec"] = json!({"finalizers": fins});
            }
            out
        }
        _ => {
            keep_server_metadata(cur, &mut desired);
            if res.info.has_status_subresource && sub.is_none() {
                set_or_remove(&mut desired, "status", cur.get("status"));
            }
            if res.id == KindId::Namespace {
                let fins = cur.pointer("/spec/finalizers").cloned();
                if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
                    match fins {
                        Some(f) => spec.insert("finalizers".into(), f),
                        None => spec.remove("finalizers"),
                    };
                } else if let Some(f) = fins {
                    desired["spec"] = json!({"finalizers": f});
                }
            }
            if res.id == KindId::Service {
                // A PUT without the allocated fields keeps them (kubectl replace).
                for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                    let missing = desired
                        .pointer(&format!("/spec/{f}"))
                        .is_none_or(|v| v.is_null() || v == "");
                    if let (true, Some(v)) = (missing, cur.pointer(&format!("/spec/{f}")))
                        && let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut)
                    {
                        spec.insert(f.into(), v.clone());
                    }
                }
            }
            desired
        }
    }
}

/// Runs a guaranteed update. `mutate` gets the current object (or `None`
/// when creating) and returns the desired object.
pub async fn update<F>(
    state: &ApiState,
    res: &Resource,
    target: Target<'_>,
    precondition: Precondition,
    opts: &WriteOpts,
    mut mutate: F,
) -> ApiResult<Written>
where
    F: FnMut(Option<&Value>) -> ApiResult<Value> + Send,
{
    let gr = res.group_resource();
    let name = target.name;
    for _ in 0..MAX_ATTEMPTS {
        let Some((cur, rev)) = load(state, res, target.namespace, name).await? else {
            if precondition == Precondition::CreateIfMissing && target.subresource.is_none() {
                let mut obj = mutate(None)?;
                check_type_meta(res, &mut obj, &res.info.kind)?;
                check_name(&mut obj, name, target.namespace, res)?;
                objects::meta_mut(&mut obj).remove("resourceVersion");
                return super::create(state, res, target.namespace, obj, opts).await;
            }
            return Err(ApiError::not_found(&gr, name));
        };
        let mut desired = mutate(Some(&cur))?;
        check_type_meta(res, &mut desired, &res.info.kind)?;
        check_name(&mut desired, name, target.namespace, res)?;
        // A pinned resourceVersion must match; a race with another writer
        // is retried and then fails here if the client pinned the old one.
        let rv = objects::resource_version(&desired);
        if !rv.is_empty() {
            let want: i64 = rv
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?;
            if want != rev {
                return Err(ApiError::stale(&gr, name));
            }
        }
        let sub = target.subresource;
        let mut merged = merge(res, &cur, desired, sub);
        let old_for_checks = if matches!(sub, None | Some("scale")) {
            Some(&cur)
        } else {
            None
        };
        // A binding only sets `spec.nodeName`, annotations and a condition
        // on a stored (already pruned, defaulted and valid) pod, as
        // Kubernetes' BindingREST does without decoding or validating it again.
        if sub != Some("binding") {
            finish(res, &mut merged, old_for_checks)?;
        }
        if res.id == KindId::CustomResourceDefinition && sub != Some("status") {
            let status = crd::compute_status(&merged, Some(&cur), state.registry());
            merged["status"] = status;
        }
        if spec_changed(&cur, &merged) {
            let g = objects::meta(&cur)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            objects::meta_mut(&mut merged).insert("generation".into(), json!(g + 1));
        }
        if same_but_volatile(&merged, &cur) {
            return Ok(Written {
                object: cur,
                created: false,
                warnings: Vec::new(),
            });
        }
        // Kubernetes records no managedFields entry for a binding: the
        // scheduler's write bypasses the field manager.
        if sub != Some("binding") {
            let manager_sub = match sub {
                Some("scale") | None => sub.filter(|s| *s == "scale"),
                other => other,
            };
            record_manager(res, Some(&cur), &mut merged, opts, manager_sub);
        }
        let key = objects::key(res, target.namespace, Some(name));
        if should_delete_now(&merged) {
            if opts.dry_run {
                return Ok(Written {
                    object: merged,
                    created: false,
                    warnings: Vec::new(),
                });
            }
            match state.store().delete(&key, Some(rev)).await {
                Ok(kv) => {
                    objects::set_resource_version(&mut merged, kv.mod_revision);
                    super::delete::after_delete(state, res, &merged).await;
                    return Ok(Written {
                        object: merged,
                        created: false,
                        warnings: Vec::new(),
                    });
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    continue;
                }
                Err(e) => return Err(ApiError::from_store(e, &gr, name)),
            }
        }
        let mut charge = admission::validate_update(
            state,
            res,
            target.namespace,
            sub,
            &cur,
            &merged,
            opts.dry_run,
        )
        .await?;
        if opts.dry_run {
            return Ok(Written {
                object: merged,
                created: false,
                warnings: Vec::new(),
            });
        }
        let encoded = match objects::encode_for(res, &merged) {
            Ok(e) => e,
            Err(e) => {
                charge.refund(state).await;
                return Err(e);
            }
        };
        match state.store().update(&key, encoded, Some(rev)).await {
            Ok(kv) => {
                objects::set_resource_version(&mut merged, kv.mod_revision);
                if res.id == KindId::CustomResourceDefinition {
                    crd::sync_one(state.registry(), name, Some(&merged));
                }
                return Ok(Written {
                    object: merged,
                    created: false,
                    warnings: Vec::new(),
                });
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                charge.refund(state).await;
                continue;
            }
            Err(e) => {
                charge.refund(state).await;
                return Err(ApiError::from_store(e, &gr, name));
            }
        }
    }
    Err(ApiError::conflict(
        &gr,
        name,
        "too many concurrent updates, please retry",
    ))
}

/// Kubernetes deletes an object on update once it is being deleted, has no
/// finalizers left and no grace period remains.
fn should_delete_now(obj: &Value) -> bool {
    objects::is_deleting(obj)
        && objects::finalizers(obj).is_empty()
        && objects::meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            == 0
}

fn check_name(
    obj: &mut Value,
    name: &str,
    namespace: Option<&str>,
    res: &Resource,
) -> ApiResult<()> {
    let meta = objects::meta_mut(obj);
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("name".into(), json!(name));
        }
        Some(n) if n == name => {}
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
    }
    if res.info.namespaced() {
        let url_ns = namespace.unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                meta.insert("namespace".into(), json!(url_ns));
            }
            Some(ns) if ns == url_ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    Ok(())
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
    fn main_resource_writes_keep_status_and_server_metadata() {
        let cur = json!({"metadata": {"name": "d", "uid": "u", "generation": 3, "creationTimestamp": "t"},
                         "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let desired = json!({"metadata": {"name": "d", "uid": "other"}, "spec": {"replicas": 2}, "status": {"replicas": 9}});
        let m = merge(&res("deployments"), &cur, desired, None);
        assert_eq!(m["status"], json!({"replicas": 1}));
        assert_eq!(m["metadata"]["uid"], "u");
        assert_eq!(m["metadata"]["generation"], 3);
        assert_eq!(m["spec"]["replicas"], 2);
    }

    #[test]
    fn status_writes_touch_only_status() {
        let cur = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "a"}, "status": {"phase": "Pending"}});
        let desired = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "b"}, "status": {"phase": "Running"}});
        let m = merge(&res("pods"), &cur, desired, Some("status"));
        assert_eq!(m["spec"]["nodeName"], "a");
        assert_eq!(m["status"]["phase"], "Running");
    }

    #[test]
    fn kinds_without_status_subresource_take_the_body() {
        let cur = json!({"metadata": {"name": "c"}, "data": {"a": "1"}});
        let m = merge(
            &res("configmaps"),
            &cur,
            json!({"metadata": {"name": "c"}, "data": {"a": "2"}}),
            None,
        );
        assert_eq!(m["data"]["a"], "2");
    }

    #[test]
    fn namespace_finalizers_change_only_through_finalize() {
        let cur = json!({"metadata": {"name": "n"}, "spec": {"finalizers": ["kubernetes"]}});
        let m = merge(
            &res("namespaces"),
            &cur,
            json!({"metadata": {"name": "n"}, "spec": {"finalizers": []}}),
            None,
        );
        assert_eq!(m["spec"]["finalizers"], json!(["kubernetes"]));
        let f = merge(
            &res("namespaces"),
            &cur,
            json!({"spec": {"finalizers": []}}),
            Some("finalize"),
        );
        assert_eq!(f["spec"]["finalizers"], json!([]));
    }

    #[test]
    fn services_keep_allocated_ips_on_put() {
        let cur = json!({"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"], "ports": []}});
        let m = merge(
            &res("services"),
            &cur,
            json!({"metadata": {"name": "s"}, "spec": {"ports": []}}),
            None,
        );
        assert_eq!(m["spec"]["clusterIP"], "10.96.0.5");
        assert_eq!(m["spec"]["clusterIPs"], json!(["10.96.0.5"]));
    }

    #[test]
    fn deletion_on_update_rules() {
        assert!(should_delete_now(
            &json!({"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 0}})
        ));
        assert!(!should_delete_now(
            &json!({"metadata": {"deletionTimestamp": "t", "deletionGracePeriodSeconds": 30}})
        ));
        assert!(!should_delete_now(
            &json!({"metadata": {"deletionTimestamp": "t", "finalizers": ["x"]}})
        ));
        assert!(!should_delete_now(&json!({"metadata": {}})));
    }
}
