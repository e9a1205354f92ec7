//! The ResourceQuota admission plugin: before an object is stored, every
//! quota of its namespace that covers it is charged, by writing the new
//! `status.used` back with a compare-and-swap on the quota's revision (as
//! Kubernetes' quota evaluator does), so two concurrent creates can never
//! both take the last unit, even through different API servers. A conflict
//! re-reads the quotas and re-checks. Within one API server, creates in a
//! namespace that has quotas are also serialized (Kubernetes' evaluator
//! works one namespace at a time), so they do not fight over the CAS.
//! A write that fails after charging gives the charge back
//! ([`Charge::refund`]). Creates are charged their whole usage
//! ([`admit_create`]); updates of Services and pods what they add
//! ([`admit_update`]).
//!
//! The arithmetic is in [`evaluate`]; the resource quota controller later
//! recomputes `status.used` from what is really stored.

pub mod evaluate;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use serde_json::{Value, json};

use crate::apiserver::ApiState;
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::Resource;
use crate::apiserver::objects;
use crate::store::{ListOptions, Revision, StoreError};
use evaluate::{Evaluator, Usage};

/// How often a create re-reads the quotas after losing a race.
const MAX_ATTEMPTS: usize = 16;

/// Per (store, namespace) locks serializing quota charges in this process.
type LockMap = HashMap<(usize, String), Arc<tokio::sync::Mutex<()>>>;
static NAMESPACE_LOCKS: LazyLock<parking_lot::Mutex<LockMap>> = LazyLock::new(Default::default);

fn namespace_lock(state: &ApiState, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
    let store = Arc::as_ptr(state.store()) as *const () as usize;
    let mut locks = NAMESPACE_LOCKS.lock();
    if locks.len() > 1024 {
        locks.retain(|_, l| Arc::strong_count(l) > 1);
    }
    locks
        .entry((store, namespace.to_string()))
        .or_default()
        .clone()
}

/// What a create was charged, to give back if it is not stored after all.
#[derive(Debug, Default)]
#[must_use = "refund the charge if the object is not stored"]
pub struct Charge {
    namespace: String,
    /// (quota name, uid, amount added to its `status.used`)
    entries: Vec<(String, String, Usage)>,
}

struct Loaded {
    quota: ResourceQuota,
    raw: Value,
    revision: Revision,
}

async fn load_quotas(
    state: &ApiState,
    quota_res: &Resource,
    namespace: &str,
) -> ApiResult<Vec<Loaded>> {
    let prefix = objects::key(quota_res, Some(namespace), None);
    let list = state.store().list(&prefix, ListOptions::default()).await?;
    let mut out = Vec::with_capacity(list.items.len());
    for kv in &list.items {
        let raw = objects::decode(quota_res, kv)?;
        let quota: ResourceQuota = serde_json::from_value(raw.clone())
            .map_err(|e| ApiError::internal("decoding a stored ResourceQuota", &e))?;
        out.push(Loaded {
            quota,
            raw,
            revision: kv.mod_revision,
        });
    }
    Ok(out)
}

/// True if `namespace` has a ResourceQuota. Without one, Kubernetes' quota
/// admission admits at once, before measuring the object.
async fn has_quotas(state: &ApiState, namespace: &str) -> ApiResult<bool> {
    let Some(quota_res) = state.registry().builtin("", "resourcequotas") else {
        return Ok(false);
    };
    let prefix = objects::key(&quota_res, Some(namespace), None);
    let opts = ListOptions {
        limit: Some(1),
        ..ListOptions::default()
    };
    Ok(!state.store().list(&prefix, opts).await?.items.is_empty())
}

fn used_json(used: &Usage) -> Value {
    Value::Object(
        used.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect(),
    )
}

/// Writes `status.used` of one loaded quota, guarded by its revision.
/// `Ok(false)` if someone else wrote it first.
async fn write_used(
    state: &ApiState,
    quota_res: &Resource,
    namespace: &str,
    loaded: &Loaded,
    used: &Usage,
) -> ApiResult<bool> {
    let name = loaded.quota.metadata.name.clone().unwrap_or_default();
    let mut raw = loaded.raw.clone();
    if !raw.get("status").is_some_and(Value::is_object) {
        raw["status"] = json!({});
    }
    raw["status"]["used"] = used_json(used);
    let key = objects::key(quota_res, Some(namespace), Some(&name));
    match state
        .store()
        .update(
            &key,
            objects::encode_for(quota_res, &raw)?,
            Some(loaded.revision),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(ApiError::from_store(e, &quota_res.group_resource(), &name)),
    }
}

/// Checks a new object of `res` against the quotas of `namespace` and
/// charges them (nothing is written for dry runs). Refusals are 403
/// Forbidden with Kubernetes' messages, e.g. `pods "p3" is forbidden:
/// exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
pub async fn admit_create(
    state: &ApiState,
    res: &Resource,
    namespace: &str,
    obj: &Value,
    dry_run: bool,
) -> ApiResult<Charge> {
    if !has_quotas(state, namespace).await? {
        return Ok(Charge::default());
    }
    let evaluator = Evaluator::for_resource(&res.info.group, &res.info.plural);
    let now = jiff::Timestamp::now();
    let (pod, delta) = measure(&evaluator, obj, now)?;
    admit(
        state,
        res,
        namespace,
        objects::name(obj),
        &evaluator,
        pod.as_ref(),
        &delta,
        dry_run,
    )
    .await
}

/// Checks an update of an object of `res` (`old` → `new`) against the
/// quotas of `namespace` and charges what it adds, as Kubernetes does for
/// the kinds whose usage can grow in place: a Service turned NodePort or
/// LoadBalancer, or given more ports; a pod (in-place resize). The delta is
/// the new usage minus the old, never negative; a change that adds nothing
/// is still checked against the pod constraints. Other kinds (object
/// counts) are charged on create only.
pub async fn admit_update(
    state: &ApiState,
    res: &Resource,
    namespace: &str,
    old: &Value,
    new: &Value,
    dry_run: bool,
) -> ApiResult<Charge> {
    let evaluator = Evaluator::for_resource(&res.info.group, &res.info.plural);
    if !evaluator.handles_updates() || !has_quotas(state, namespace).await? {
        return Ok(Charge::default());
    }
    let now = jiff::Timestamp::now();
    let (pod, new_usage) = measure(&evaluator, new, now)?;
    let (_, old_usage) = measure(&evaluator, old, now)?;
    let delta = evaluate::subtract(&new_usage, &old_usage);
    admit(
        state,
        res,
        namespace,
        objects::name(new),
        &evaluator,
        pod.as_ref(),
        &delta,
        dry_run,
    )
    .await
}

/// The object as a pod (for pod evaluators) and its usage.
fn measure(
    evaluator: &Evaluator,
    obj: &Value,
    now: jiff::Timestamp,
) -> ApiResult<(Option<Pod>, Usage)> {
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("measuring quota usage: {e}"));
    let pod = match evaluator {
        Evaluator::Pods => Some(serde_json::from_value::<Pod>(obj.clone()).map_err(bad)?),
        _ => None,
    };
    let usage = evaluate::object_usage(evaluator, obj, now).map_err(bad)?;
    Ok((pod, usage))
}

/// Charges `delta` for the object `name` to every quota of `namespace` that
/// covers it, or refuses it; retries on lost compare-and-swap races.
#[allow(clippy::too_many_arguments)]
async fn admit(
    state: &ApiState,
    res: &Resource,
    namespace: &str,
    name: &str,
    evaluator: &Evaluator,
    pod: Option<&Pod>,
    delta: &Usage,
    dry_run: bool,
) -> ApiResult<Charge> {
    let mut charge = Charge {
        namespace: namespace.to_string(),
        entries: Vec::new(),
    };
    let Some(quota_res) = state.registry().builtin("", "resourcequotas") else {
        return Ok(charge);
    };
    let gr = res.group_resource();
    let mut charged: BTreeSet<String> = BTreeSet::new();
    let mut last_conflict = String::new();
    if load_quotas(state, &quota_res, namespace).await?.is_empty() {
        return Ok(charge);
    }
    let lock = namespace_lock(state, namespace);
    let _serialized = lock.lock().await;
    for _ in 0..MAX_ATTEMPTS {
        let loaded: Vec<Loaded> = load_quotas(state, &quota_res, namespace)
            .await?
            .into_iter()
            .filter(|l| !charged.contains(l.quota.metadata.uid.as_deref().unwrap_or_default()))
            .collect();
        if loaded.is_empty() {
            return Ok(charge);
        }
        let quotas: Vec<ResourceQuota> = loaded.iter().map(|l| l.quota.clone()).collect();
        let updates = match evaluate::check(&quotas, evaluator, pod, delta) {
            Ok(u) => u,
            Err(refusal) => {
                charge.refund_locked(state).await;
                return Err(ApiError::forbidden(&gr, name, &refusal.0));
            }
        };
        if dry_run {
            return Ok(charge);
        }
        let mut lost_race = None;
        for (i, new_used) in updates {
            let l = &loaded[i];
            match write_used(state, &quota_res, namespace, l, &new_used).await {
                Ok(true) => {
                    let uid = l.quota.metadata.uid.clone().unwrap_or_default();
                    let hard = evaluate::status_hard(&l.quota);
                    let amount = evaluate::mask(delta, hard.keys());
                    charged.insert(uid.clone());
                    charge.entries.push((
                        l.quota.metadata.name.clone().unwrap_or_default(),
                        uid,
                        amount,
                    ));
                }
                Ok(false) => lost_race = l.quota.metadata.name.clone(),
                Err(e) => {
                    charge.refund_locked(state).await;
                    return Err(e);
                }
            }
        }
        match lost_race {
            None => return Ok(charge),
            Some(q) => last_conflict = q,
        }
    }
    charge.refund_locked(state).await;
    Err(ApiError::conflict(
        &quota_res.group_resource(),
        &last_conflict,
        "the object has been modified; please apply your changes to the latest version and try again",
    ))
}

impl Charge {
    /// True if nothing was charged.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Gives the charged amounts back (best effort: the quota controller's
    /// next recount fixes anything left over).
    pub async fn refund(&mut self, state: &ApiState) {
        if self.entries.is_empty() {
            return;
        }
        let lock = namespace_lock(state, &self.namespace);
        let _serialized = lock.lock().await;
        self.refund_locked(state).await;
    }

    async fn refund_locked(&mut self, state: &ApiState) {
        let Some(quota_res) = state.registry().builtin("", "resourcequotas") else {
            return;
        };
        for (name, uid, amount) in std::mem::take(&mut self.entries) {
            for _ in 0..MAX_ATTEMPTS {
                let loaded = match load_quotas(state, &quota_res, &self.namespace).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(namespace = %self.namespace, quota = %name, error = %e, "could not refund quota usage");
                        break;
                    }
                };
                let Some(l) = loaded
                    .iter()
                    .find(|l| l.quota.metadata.uid.as_deref() == Some(uid.as_str()))
                else {
                    break;
                };
                let used = evaluate::status_used(&l.quota);
                let back = evaluate::subtract(&used, &amount);
                match write_used(state, &quota_res, &self.namespace, l, &back).await {
                    Ok(true) => break,
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(namespace = %self.namespace, quota = %name, error = %e, "could not refund quota usage");
                        break;
                    }
                }
            }
        }
    }
}
