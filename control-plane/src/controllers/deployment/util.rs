//! The Deployment controller's pure core (Kubernetes' `deployment/util`):
//! defaults, surge/unavailable fenceposts, revisions and annotations, which
//! ReplicaSet is new, how far to scale each one, proportional scaling, and
//! the status with its Available/Progressing conditions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, DeploymentStrategy, ReplicaSet,
    ReplicaSetCondition, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::hash::equal_ignore_hash;

/// Revision of the template a ReplicaSet runs.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet served (after rollbacks).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the Deployment when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the Deployment at that time.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deprecated rollback request annotation (never copied).
pub const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// The annotation `kubectl apply` keeps (never copied).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Kubernetes' limit on the revision-history annotation.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

/// Condition reasons, exactly as Kubernetes writes them.
pub mod reason {
    /// A new ReplicaSet was created.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet was found for the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout progressed.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The new ReplicaSet is fully available.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Resumed.
    pub const RESUMED: &str = "DeploymentResumed";
    /// Creating the new ReplicaSet failed.
    pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
    /// Enough pods are available.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// Too few pods are available.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// `spec.progressDeadlineSeconds` meaning "no deadline" (math.MaxInt32).
const NO_DEADLINE: i32 = i32::MAX;

/// The Deployment with Kubernetes' defaults filled in where the API server
/// left them unset: 1 replica, RollingUpdate 25%/25%, history limit 10,
/// progress deadline 600 s.
pub fn with_defaults(d: &Deployment) -> Deployment {
    let mut d = d.clone();
    let spec = d.spec.get_or_insert_with(Default::default);
    spec.replicas.get_or_insert(1);
    spec.revision_history_limit.get_or_insert(10);
    spec.progress_deadline_seconds.get_or_insert(600);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    let type_ = strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
    if type_ == "RollingUpdate" {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        ru.max_surge
            .get_or_insert(IntOrString::String("25%".into()));
        ru.max_unavailable
            .get_or_insert(IntOrString::String("25%".into()));
    }
    d
}

/// `spec.replicas` (after [`with_defaults`]).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `spec.replicas` of a ReplicaSet.
pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn rs_status(rs: &ReplicaSet) -> (i32, i32, i32) {
    rs.status.as_ref().map_or((0, 0, 0), |s| {
        (
            s.replicas,
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
        )
    })
}

/// True for the RollingUpdate strategy.
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    format!("invalid value for IntOrString: invalid value {s:?}: not a percentage")
                })?;
            let exact = pct as f64 * f64::from(total) / 100.0;
            Ok(if round_up {
                exact.ceil()
            } else {
                exact.floor()
            } as i32)
        }
    }
}

/// Kubernetes' `ResolveFenceposts`: absolute maxSurge (rounded up) and
/// maxUnavailable (rounded down); both zero becomes unavailable = 1.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 1))
}

/// Kubernetes' `MaxSurge`.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Kubernetes' `MaxUnavailable`.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Revision number of a ReplicaSet (0 when unset or invalid).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Kubernetes' `MaxRevision`.
pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter().map(revision).max().unwrap_or(0)
}

fn creation(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Kubernetes' `ReplicaSetsByCreationTimestamp`: older first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    creation(a)
        .cmp(&creation(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Kubernetes' `ReplicaSetsByRevision`: lower revision first.
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// Kubernetes' `ReplicaSetsBySizeNewer`: larger first, ties newer first.
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// Kubernetes' `ReplicaSetsBySizeOlder`: larger first, ties older first.
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// Kubernetes' `FindNewReplicaSet`: the oldest ReplicaSet whose template
/// equals the Deployment's (ignoring the hash label).
pub fn find_new(d: &Deployment, rss: &[ReplicaSet]) -> Option<usize> {
    let template = d
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut order: Vec<usize> = (0..rss.len()).collect();
    order.sort_by(|&a, &b| by_creation(&rss[a], &rss[b]));
    order.into_iter().find(|&i| {
        let t = rss[i]
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .unwrap_or_default();
        equal_ignore_hash(&t, &template)
    })
}

/// Sum of `spec.replicas`.
pub fn spec_replicas_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

/// Sum of `status.availableReplicas`.
pub fn available_sum<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(|rs| rs_status(rs).2).sum()
}

/// Kubernetes' `NewRSNewReplicas`: the size the new ReplicaSet may grow to.
pub fn new_rs_new_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs_replicas: i32) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current = spec_replicas_sum(all.iter().copied());
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return new_rs_replicas;
    }
    let up = (max_total - current).min(replicas(d) - new_rs_replicas);
    new_rs_replicas + up
}

/// The target of Kubernetes' `reconcileNewReplicaSet`, if it must change.
pub fn reconcile_new_target(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Option<i32> {
    let current = rs_replicas(new_rs);
    let want = replicas(d);
    let target = match current.cmp(&want) {
        Ordering::Equal => return None,
        Ordering::Greater => want,
        Ordering::Less => new_rs_new_replicas(d, all, current),
    };
    (target != current).then_some(target)
}

/// How many old pods may be removed now (Kubernetes' `maxScaledDown` in
/// `reconcileOldReplicaSets`); zero or less means none.
pub fn max_scaled_down(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let all_pods = spec_replicas_sum(all.iter().copied());
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new_rs) - rs_status(new_rs).2;
    all_pods - min_available - new_unavailable
}

/// Kubernetes' `cleanupUnhealthyReplicas` plan: `(index into old, new size)`
/// for old ReplicaSets (sorted oldest first) with unavailable pods.
pub fn cleanup_unhealthy_plan(old: &[&ReplicaSet], max_cleanup: i32) -> Vec<(usize, i32)> {
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by(|&a, &b| by_creation(old[a], old[b]));
    let mut total = 0;
    let mut plan = Vec::new();
    for i in order {
        if total >= max_cleanup {
            break;
        }
        let size = rs_replicas(old[i]);
        let available = rs_status(old[i]).2;
        if size == 0 || size == available {
            continue;
        }
        let down = (max_cleanup - total).min(size - available);
        plan.push((i, size - down));
        total += down;
    }
    plan
}

/// Kubernetes' `scaleDownOldReplicaSetsForRollingUpdate` plan: `(index into
/// old, new size)`, oldest first, keeping `replicas - maxUnavailable` available.
pub fn scale_down_old_plan(
    d: &Deployment,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
) -> Vec<(usize, i32)> {
    let min_available = replicas(d) - max_unavailable(d);
    let available = available_sum(all.iter().copied());
    if available <= min_available {
        return Vec::new();
    }
    let budget = available - min_available;
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by(|&a, &b| by_creation(old[a], old[b]));
    let mut total = 0;
    let mut plan = Vec::new();
    for i in order {
        if total >= budget {
            break;
        }
        let size = rs_replicas(old[i]);
        if size == 0 {
            continue;
        }
        let down = size.min(budget - total);
        plan.push((i, size - down));
        total += down;
    }
    plan
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, MAX_REPLICAS).and_then(|v| v.parse().ok())
}

/// Desired-replicas annotation of a ReplicaSet.
pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    annotation(rs, DESIRED_REPLICAS).and_then(|v| v.parse().ok())
}

/// Kubernetes' `getReplicaSetFraction`.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = replicas(d) + max_surge(d);
    let before = match max_replicas_annotation(rs) {
        Some(v) if v != 0 => v,
        _ => d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0),
    };
    if before == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(max_now) / f64::from(before);
    size.round() as i32 - rs_replicas(rs)
}

/// Kubernetes' `GetReplicaSetProportion`.
fn rs_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' proportional scaling in `scale()`: new sizes for the active
/// ReplicaSets (`active` holds indices into `all`) so that together they
/// reach `replicas + maxSurge`, keeping their proportions. Returns
/// `(index into all, new size)` for every active ReplicaSet, in update order.
pub fn proportional_plan(d: &Deployment, all: &[&ReplicaSet]) -> Vec<(usize, i32)> {
    let mut active: Vec<usize> = (0..all.len())
        .filter(|&i| rs_replicas(all[i]) > 0)
        .collect();
    let current = spec_replicas_sum(active.iter().map(|&i| all[i]));
    let allowed = if replicas(d) > 0 {
        replicas(d) + max_surge(d)
    } else {
        0
    };
    let to_add = allowed - current;
    match to_add.cmp(&0) {
        Ordering::Greater => active.sort_by(|&a, &b| by_size_newer(all[a], all[b])),
        Ordering::Less => active.sort_by(|&a, &b| by_size_older(all[a], all[b])),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::with_capacity(active.len());
    for &i in &active {
        let size = rs_replicas(all[i]);
        if to_add != 0 {
            let p = rs_proportion(all[i], d, to_add, added);
            sizes.push((i, size + p));
            added += p;
        } else {
            sizes.push((i, size));
        }
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    sizes
}

/// Kubernetes' `FindActiveOrLatest`: the single active ReplicaSet, or the
/// newest if none is active; `None` if several are active. Indices into
/// `all` (`new_rs` first if present, then the old ones).
pub fn active_or_latest(
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Option<ActiveOrLatest> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let active_new = new_rs.is_some_and(|rs| rs_replicas(rs) > 0);
    let active_old: Vec<usize> = (0..old.len())
        .filter(|&i| rs_replicas(old[i]) > 0)
        .collect();
    match (active_new, active_old.len()) {
        (false, 0) => {
            if new_rs.is_some() {
                return Some(ActiveOrLatest::New);
            }
            let newest = (0..old.len()).max_by(|&a, &b| by_creation(old[a], old[b]))?;
            Some(ActiveOrLatest::Old(newest))
        }
        (true, 0) => Some(ActiveOrLatest::New),
        (false, 1) => Some(ActiveOrLatest::Old(active_old[0])),
        _ => None,
    }
}

/// Which ReplicaSet [`active_or_latest`] picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveOrLatest {
    /// The new ReplicaSet.
    New,
    /// This index into the old ones.
    Old(usize),
}

/// Kubernetes' `IsSaturated`.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let want = replicas(d);
    desired_replicas_annotation(rs) == Some(want)
        && rs_replicas(rs) == want
        && rs_status(rs).2 == want
}

/// Sets the desired/max replicas annotations; true if they changed.
pub fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

fn skip_copy(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// Kubernetes' `SetNewReplicaSetAnnotations`: copies the Deployment's
/// annotations (but the skipped ones), raises the revision (recording the
/// old one in revision-history on a rollback) and, for a ReplicaSet about to
/// be created, sets the replicas annotations. True if anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_num = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return changed,
        },
    };
    if old_num < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                annotations.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    parts = parts.split_off(start);
                    parts.push(&old);
                    let joined = parts.join(",");
                    annotations.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists {
        let want = replicas(d);
        changed |= set_replicas_annotations(annotations, want, want + max_surge(d));
    }
    changed
}

/// Condition of a type in a Deployment status.
pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// A new condition stamped `now`.
pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Kubernetes' `SetDeploymentCondition`: no-op for the same status and
/// reason; keeps the transition time when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    if let Some(current) = condition(status, &cond.type_) {
        if current.status == cond.status && current.reason == cond.reason {
            return;
        }
        if current.status == cond.status {
            cond.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &cond.type_);
    status.conditions.get_or_insert_with(Vec::new).push(cond);
}

/// Removes the condition of this type.
pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

/// True if `progressDeadlineSeconds` is set and finite.
pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|s| s != NO_DEADLINE)
}

/// Kubernetes' `calculateStatus` for a Deployment.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_sum(all.iter().copied());
    let total = spec_replicas_sum(all.iter().copied());
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_status(rs).0).sum()),
        updated_replicas: Some(new_rs.map_or(0, |rs| rs_status(rs).0)),
        ready_replicas: Some(all.iter().map(|rs| rs_status(rs).1).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: old.terminating_replicas,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                reason::MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                reason::MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

fn num(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Kubernetes' `DeploymentComplete`.
pub fn is_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    num(status.updated_replicas) == want
        && num(status.replicas) == want
        && num(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Kubernetes' `DeploymentProgressing`: any progress since the last status.
pub fn is_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = num(old.replicas) - num(old.updated_replicas);
    let new_old = num(new.replicas) - num(new.updated_replicas);
    num(new.updated_replicas) > num(old.updated_replicas)
        || new_old < old_old
        || num(new.ready_replicas) > num(old.ready_replicas)
        || num(new.available_replicas) > num(old.available_replicas)
}

/// Kubernetes' `DeploymentTimedOut`.
pub fn is_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(cond) = condition(status, "Progressing") else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(reason::NEW_RS_AVAILABLE) => return false,
        Some(reason::TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = cond.last_update_time.as_ref() else {
        return false;
    };
    let deadline = SignedDuration::from_secs(i64::from(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600),
    ));
    from.0 + deadline < now
}

/// Kubernetes' `syncRolloutStatus` condition logic: the new status with the
/// Progressing condition (and ReplicaFailure) updated.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(d, all, new_rs, now);
    if !has_progress_deadline(d) {
        remove_condition(&mut status, "Progressing");
    }
    let name = d.metadata.name.clone().unwrap_or_default();
    let old = d.status.clone().unwrap_or_default();
    let current = condition(&old, "Progressing").cloned();
    let complete_already = num(status.replicas) == num(status.updated_replicas)
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
    if has_progress_deadline(d) && !complete_already {
        let rs_name = new_rs.and_then(|rs| rs.metadata.name.clone());
        if is_complete(d, &status) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet \"{n}\" has successfully progressed."),
                None => format!("Deployment \"{name}\" has successfully progressed."),
            };
            set_condition(
                &mut status,
                new_condition("Progressing", "True", reason::NEW_RS_AVAILABLE, msg, now),
            );
        } else if is_progressing(d, &status) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet \"{n}\" is progressing."),
                None => format!("Deployment \"{name}\" is progressing."),
            };
            let mut cond = new_condition("Progressing", "True", reason::RS_UPDATED, msg, now);
            if let Some(cur) = &current {
                if cur.status == "True" {
                    cond.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
            }
            set_condition(&mut status, cond);
        } else if is_timed_out(d, &status, now) {
            let msg = match &rs_name {
                Some(n) => format!("ReplicaSet \"{n}\" has timed out progressing."),
                None => format!("Deployment \"{name}\" has timed out progressing."),
            };
            set_condition(
                &mut status,
                new_condition("Progressing", "False", reason::TIMED_OUT, msg, now),
            );
        }
    }
    match replica_failure(all, new_rs) {
        Some(c) => set_condition(&mut status, c),
        None => remove_condition(&mut status, "ReplicaFailure"),
    }
    status
}

fn rs_failure(rs: &ReplicaSet) -> Option<&ReplicaSetCondition> {
    rs.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "ReplicaFailure")
}

/// Kubernetes' `getReplicaFailures`: the new ReplicaSet's failure, else the
/// first old one's, as a Deployment condition.
fn replica_failure(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
) -> Option<DeploymentCondition> {
    let c = new_rs
        .and_then(rs_failure)
        .or_else(|| all.iter().find_map(|rs| rs_failure(rs)))?;
    Some(DeploymentCondition {
        type_: c.type_.clone(),
        status: c.status.clone(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time.clone(),
    })
}

/// Kubernetes' `requeueStuckDeployment`: when to look again for a timeout
/// if the rollout is neither complete nor timed out.
pub fn requeue_stuck_after(
    d: &Deployment,
    new: &DeploymentStatus,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let old = d.status.clone().unwrap_or_default();
    let cond = condition(&old, "Progressing")?;
    if !has_progress_deadline(d)
        || is_complete(d, new)
        || cond.reason.as_deref() == Some(reason::TIMED_OUT)
    {
        return None;
    }
    let deadline = SignedDuration::from_secs(i64::from(
        d.spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600),
    ));
    let at = cond.last_update_time.as_ref()?.0 + deadline;
    let after = at.duration_since(now);
    if after < SignedDuration::from_secs(1) {
        Some(std::time::Duration::from_secs(1))
    } else {
        Some(std::time::Duration::from_secs(after.as_secs() as u64 + 1))
    }
}

/// Kubernetes' `cleanupDeployment` choice: old ReplicaSets (indices) to
/// delete beyond `revisionHistoryLimit`, lowest revisions first, skipping
/// any that still have pods or unobserved changes.
pub fn history_to_delete(d: &Deployment, old: &[&ReplicaSet]) -> Vec<usize> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Vec::new();
    };
    let mut alive: Vec<usize> = (0..old.len())
        .filter(|&i| old[i].metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|&a, &b| by_revision(old[a], old[b]));
    alive
        .into_iter()
        .take(diff as usize)
        .filter(|&i| {
            let rs = old[i];
            rs_status(rs).0 == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0)
                    <= rs
                        .status
                        .as_ref()
                        .and_then(|s| s.observed_generation)
                        .unwrap_or(0)
        })
        .collect()
}

/// Kubernetes' paused-condition check: the Progressing condition to write
/// when a Deployment with a deadline is paused or resumed.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    if !has_progress_deadline(d) {
        return None;
    }
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let status = d.status.clone().unwrap_or_default();
    let reason_now = condition(&status, "Progressing").and_then(|c| c.reason.clone());
    if paused && reason_now.as_deref() != Some(reason::PAUSED) {
        return Some(new_condition(
            "Progressing",
            "Unknown",
            reason::PAUSED,
            "Deployment is paused".into(),
            now,
        ));
    }
    if !paused && reason_now.as_deref() == Some(reason::PAUSED) {
        return Some(new_condition(
            "Progressing",
            "Unknown",
            reason::RESUMED,
            "Deployment is resumed".into(),
            now,
        ));
    }
    None
}

#[cfg(test)]
#[path = "util_tests.rs"]
mod tests;
