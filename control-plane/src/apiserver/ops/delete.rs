//! Delete: preconditions, graceful pod deletion, finalizers (including the
//! `orphan`/`foregroundDeletion` finalizers of propagation policies),
//! namespaces entering `Terminating`, and clean-up after an object is gone
//! (service IPs, a CRD's custom objects).

use serde_json::{Value, json};

use super::{WriteOpts, load, record_manager};
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::{KindId, Resource};
use crate::apiserver::params::Propagation;
use crate::apiserver::{ApiState, crd, ipalloc, objects};
use crate::store::StoreError;

const MAX_ATTEMPTS: usize = 16;
const ORPHAN: &str = "orphan";
const FOREGROUND: &str = "foregroundDeletion";
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// `DeleteOptions`, merged from the query and the body.
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy` (or `orphanDependents`).
    pub propagation: Option<Propagation>,
    /// `orphanDependents` as sent (for the 202 rule).
    pub orphan_dependents: Option<bool>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The outcome of a delete.
#[derive(Clone, Debug)]
pub struct Deleted {
    /// The object (final state, or with `deletionTimestamp` if it stays).
    pub object: Value,
    /// True if it is gone from the store.
    pub gone: bool,
}

fn check_preconditions(res: &Resource, obj: &Value, opts: &DeleteOpts) -> ApiResult<()> {
    let gr = res.group_resource();
    let name = objects::name(obj);
    if let Some(uid) = opts.precondition_uid.as_deref()
        && uid != objects::uid(obj)
    {
        return Err(ApiError::conflict(
            &gr,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                objects::uid(obj)
            ),
        ));
    }
    if let Some(rv) = opts.precondition_rv.as_deref()
        && rv != objects::resource_version(obj)
    {
        return Err(ApiError::conflict(
            &gr,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                objects::resource_version(obj)
            ),
        ));
    }
    Ok(())
}

/// The grace period a pod gets (0 = delete at once).
fn pod_grace(obj: &Value, requested: Option<i64>) -> i64 {
    let phase = objects::path_str(obj, "status.phase");
    if objects::path_str(obj, "spec.nodeName").is_empty()
        || phase == "Succeeded"
        || phase == "Failed"
    {
        return 0;
    }
    let g = requested.unwrap_or_else(|| {
        objects::path(obj, "spec.terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    g.max(0)
}

/// Finalizers after applying a propagation policy (Kubernetes' rules).
fn finalizers_for(current: &[String], policy: Option<Propagation>) -> Vec<String> {
    let mut f: Vec<String> = current.to_vec();
    match policy {
        Some(Propagation::Orphan) => {
            f.retain(|x| x != FOREGROUND);
            if !f.iter().any(|x| x == ORPHAN) {
                f.push(ORPHAN.into());
            }
        }
        Some(Propagation::Foreground) => {
            f.retain(|x| x != ORPHAN);
            if !f.iter().any(|x| x == FOREGROUND) {
                f.push(FOREGROUND.into());
            }
        }
        Some(Propagation::Background) => f.retain(|x| x != ORPHAN && x != FOREGROUND),
        None => {}
    }
    f
}

/// Deletes one object.
pub async fn delete(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
    opts: &DeleteOpts,
    write: &WriteOpts,
) -> ApiResult<Deleted> {
    let gr = res.group_resource();
    let key = objects::key(res, namespace, Some(name));
    for _ in 0..MAX_ATTEMPTS {
        let Some((cur, rev)) = load(state, res, namespace, name).await? else {
            return Err(ApiError::not_found(&gr, name));
        };
        check_preconditions(res, &cur, opts)?;
        if res.id == KindId::Namespace {
            return delete_namespace(state, res, cur, rev, opts, write).await;
        }
        let grace = if res.id == KindId::Pod {
            pod_grace(&cur, opts.grace_period)
        } else {
            0
        };
        let policy = opts.propagation.or(match opts.orphan_dependents {
            Some(true) => Some(Propagation::Orphan),
            _ => None,
        });
        let fins = finalizers_for(&objects::finalizers(&cur), policy);
        let already = objects::is_deleting(&cur);
        // Graceful (pods on nodes) or pending finalizers: mark, don't remove.
        if grace > 0 || !fins.is_empty() {
            let mut next = cur.clone();
            objects::set_finalizers(&mut next, &fins);
            let cur_grace = objects::meta(&cur)
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64);
            let shorten = cur_grace.is_none_or(|g| grace < g);
            if !already || shorten {
                let when = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                let meta = objects::meta_mut(&mut next);
                meta.insert(
                    "deletionTimestamp".into(),
                    json!(objects::format_time(when)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
                if !already {
                    let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                    if g > 0 {
                        meta.insert("generation".into(), json!(g + 1));
                    }
                }
            }
            if next == cur {
                return Ok(Deleted {
                    object: cur,
                    gone: false,
                });
            }
            record_manager(res, Some(&cur), &mut next, write, None);
            if opts.dry_run {
                return Ok(Deleted {
                    object: next,
                    gone: false,
                });
            }
            match state
                .store()
                .update(&key, objects::encode_for(res, &next)?, Some(rev))
                .await
            {
                Ok(kv) => {
                    objects::set_resource_version(&mut next, kv.mod_revision);
                    if res.id == KindId::CustomResourceDefinition {
                        crd::sync_one(state.registry(), name, Some(&next));
                    }
                    return Ok(Deleted {
                        object: next,
                        gone: false,
                    });
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, &gr, name)),
            }
        }
        if opts.dry_run {
            return Ok(Deleted {
                object: cur,
                gone: true,
            });
        }
        if res.id == KindId::CustomResourceDefinition {
            delete_custom_objects(state, &cur).await?;
        }
        match state.store().delete(&key, Some(rev)).await {
            Ok(kv) => {
                let mut obj = cur;
                objects::set_resource_version(&mut obj, kv.mod_revision);
                after_delete(state, res, &obj).await;
                return Ok(Deleted {
                    object: obj,
                    gone: true,
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, &gr, name)),
        }
    }
    Err(ApiError::conflict(
        &gr,
        name,
        "too many concurrent updates, please retry",
    ))
}

async fn delete_namespace(
    state: &ApiState,
    res: &Resource,
    cur: Value,
    rev: i64,
    opts: &DeleteOpts,
    write: &WriteOpts,
) -> ApiResult<Deleted> {
    let name = objects::name(&cur).to_string();
    let gr = res.group_resource();
    if SYSTEM_NAMESPACES.contains(&name.as_str()) {
        return Err(ApiError::forbidden(
            &gr,
            &name,
            "this namespace may not be deleted",
        ));
    }
    if objects::is_deleting(&cur) {
        return Ok(Deleted {
            object: cur,
            gone: false,
        });
    }
    let mut next = cur.clone();
    let fins = finalizers_for(&objects::finalizers(&cur), opts.propagation);
    objects::set_finalizers(&mut next, &fins);
    let meta = objects::meta_mut(&mut next);
    meta.insert("deletionTimestamp".into(), json!(objects::now_rfc3339()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    next["status"] = json!({"phase": "Terminating"});
    record_manager(res, Some(&cur), &mut next, write, None);
    if opts.dry_run {
        return Ok(Deleted {
            object: next,
            gone: false,
        });
    }
    let key = objects::key(res, None, Some(&name));
    let kv = state
        .store()
        .update(&key, objects::encode_for(res, &next)?, Some(rev))
        .await
        .map_err(|e| ApiError::from_store(e, &gr, &name))?;
    objects::set_resource_version(&mut next, kv.mod_revision);
    state.wake_namespace_finalizer();
    Ok(Deleted {
        object: next,
        gone: false,
    })
}

/// Deletes every stored object of a CRD (all versions share one prefix).
async fn delete_custom_objects(state: &ApiState, crd_obj: &Value) -> ApiResult<()> {
    let group = objects::path_str(crd_obj, "spec.group");
    let plural = objects::path_str(crd_obj, "spec.names.plural");
    if group.is_empty() || plural.is_empty() {
        return Ok(());
    }
    let prefix = crate::store::key_for(group, plural, None, None);
    let list = state.store().list(&prefix, Default::default()).await?;
    for kv in list.items {
        match state.store().delete(&kv.key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Clean-up once an object has left the store.
pub async fn after_delete(state: &ApiState, res: &Resource, obj: &Value) {
    match res.id {
        KindId::Service => ipalloc::release(state, &ipalloc::Allocation::of_service(obj)).await,
        KindId::CustomResourceDefinition => {
            crd::sync_one(state.registry(), objects::name(obj), None)
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_grace_rules() {
        let scheduled = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(pod_grace(&scheduled, None), 10);
        assert_eq!(pod_grace(&scheduled, Some(0)), 0);
        assert_eq!(pod_grace(&scheduled, Some(3)), 3);
        assert_eq!(pod_grace(&json!({"spec": {"nodeName": "n"}}), None), 30);
        assert_eq!(
            pod_grace(&json!({"spec": {}}), None),
            0,
            "unscheduled pods go at once"
        );
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(pod_grace(&done, None), 0, "terminal pods go at once");
    }

    #[test]
    fn propagation_finalizers() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            finalizers_for(&none, Some(Propagation::Orphan)),
            vec!["orphan"]
        );
        assert_eq!(
            finalizers_for(&none, Some(Propagation::Foreground)),
            vec!["foregroundDeletion"]
        );
        assert!(finalizers_for(&none, Some(Propagation::Background)).is_empty());
        let both = vec!["x".to_string(), "orphan".to_string()];
        assert_eq!(
            finalizers_for(&both, Some(Propagation::Foreground)),
            vec!["x", "foregroundDeletion"]
        );
        assert_eq!(
            finalizers_for(&both, Some(Propagation::Background)),
            vec!["x"]
        );
        assert_eq!(finalizers_for(&both, None), both);
    }
}
