//! The decisions of one StatefulSet sync (Kubernetes'
//! `defaultStatefulSetControl.updateStatefulSet`), as a pure function from
//! the set, its pods and its two revisions to a [`Plan`]: which pods to
//! create, delete or relabel, in order, and the status to publish.
//!
//! - Identity: pod `<set>-<ordinal>` for ordinals `[start, start+replicas)`,
//!   labels `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`,
//!   `controller-revision-hash`, `spec.hostname` = pod name and
//!   `spec.subdomain` = `serviceName`.
//! - OrderedReady: create one pod at a time, only when every lower ordinal is
//!   Running and Ready (and available after `minReadySeconds`); scale down
//!   one pod at a time, highest ordinal first, only when the others are
//!   healthy. Parallel: create and delete without waiting.
//! - RollingUpdate: delete the highest-ordinal pod not at the update
//!   revision (down to `partition`), one at a time, waiting for health;
//!   pods below the partition are recreated at the current revision.
//!   OnDelete: pods are replaced at the update revision only once deleted.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::revisions::Revision;
use crate::controllers::owners::controller_ref;
use crate::controllers::pods::{self, is_available, is_ready, is_terminating, until_available};

/// Label with the pod's own name.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label with the name of the revision the pod was built from.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// One action of a sync, executed in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Create this pod.
    Create(Box<Pod>),
    /// Delete the pod of this name.
    Delete {
        /// Pod name.
        name: String,
        /// Why, for logs: `failed`, `scale down`, `update`.
        why: &'static str,
    },
    /// Restore the identity labels of the pod of this name.
    Relabel {
        /// Pod name.
        name: String,
        /// Its ordinal.
        ordinal: i32,
    },
}

/// The outcome of planning one sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Actions, in order.
    pub steps: Vec<Step>,
    /// The status to publish.
    pub status: StatefulSetStatus,
    /// Sync again after this long (a pod becomes available).
    pub requeue_after: Option<Duration>,
}

/// `<parent>-<ordinal>` split into parent and ordinal.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The pod's ordinal if it is named after `set_name`.
pub fn ordinal_of(set_name: &str, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    match parent_and_ordinal(name) {
        Some((parent, ord)) if parent == set_name => Some(ord),
        _ => None,
    }
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

fn running_and_ready(pod: &Pod) -> bool {
    pods::phase(pod) == "Running" && is_ready(pod)
}

fn healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !is_terminating(pod)
}

fn available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    running_and_ready(pod) && is_available(pod, min_ready, now)
}

/// True if the pod carries its identity labels (`identityMatches`).
pub fn identity_matches(set_name: &str, pod: &Pod, ordinal: i32) -> bool {
    let name = format!("{set_name}-{ordinal}");
    let labels = pod.metadata.labels.as_ref();
    pod.metadata.name.as_deref() == Some(name.as_str())
        && labels.and_then(|l| l.get(POD_NAME_LABEL)) == Some(&name)
        && labels.and_then(|l| l.get(POD_INDEX_LABEL)) == Some(&ordinal.to_string())
}

/// The pod for `ordinal` built from `revision` (`newStatefulSetPod` +
/// `setPodRevision`).
pub fn new_pod(set: &StatefulSet, revision: &Revision, ordinal: i32) -> Pod {
    let set_name = set.name_any();
    let ns = set.namespace().unwrap_or_default();
    let mut pod = pods::pod_from_template(&revision.template, &ns, "", Some(controller_ref(set)));
    let name = format!("{set_name}-{ordinal}");
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.name.clone());
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(name);
        spec.subdomain = service;
    }
    pod
}

/// Which revision a new pod for `ordinal` gets (`newVersionedStatefulSetPod`):
/// under RollingUpdate, ordinals below the partition keep the current
/// revision; everything else gets the update revision.
pub fn versioned_pod(
    set: &StatefulSet,
    current: &Revision,
    update: &Revision,
    ordinal: i32,
) -> Pod {
    let spec = set.spec.clone().unwrap_or_default();
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let strategy = spec.update_strategy.unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let below = match strategy.rolling_update.as_ref() {
        Some(ru) => ordinal < start + ru.partition.unwrap_or(0),
        None => {
            let current_replicas = set
                .status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0);
            ordinal < start + current_replicas
        }
    };
    if rolling && below {
        new_pod(set, current, ordinal)
    } else {
        new_pod(set, update, ordinal)
    }
}

/// One position of the wanted sequence.
enum Slot {
    /// A pod exists for this ordinal.
    Existing(Arc<Pod>),
    /// No pod yet: this one would be created.
    Planned(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Existing(p) => p,
            Slot::Planned(p) => p,
        }
    }
}

/// Counts of `computeReplicaStatus` over existing pods.
fn replica_status(
    set: &StatefulSet,
    pods: &[&Pod],
    current: &Revision,
    update: &Revision,
    collision_count: Option<i32>,
    now: Timestamp,
) -> StatefulSetStatus {
    let min_ready = set
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let (mut replicas, mut ready, mut avail, mut cur, mut upd) = (0, 0, 0, 0, 0);
    for p in pods {
        replicas += 1;
        if running_and_ready(p) {
            ready += 1;
            if available(p, min_ready, now) {
                avail += 1;
            }
        }
        if !is_terminating(p) {
            if revision_of(p) == current.name {
                cur += 1;
            }
            if revision_of(p) == update.name {
                upd += 1;
            }
        }
    }
    let opt = |n: i32| (n != 0).then_some(n);
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas,
        ready_replicas: opt(ready),
        available_replicas: Some(avail),
        current_replicas: opt(cur),
        updated_replicas: opt(upd),
        current_revision: Some(current.name.clone()),
        update_revision: Some(update.name.clone()),
        collision_count,
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// `completeRollingUpdate`: once every replica is updated and ready, the
/// update revision becomes the current one.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate";
    let updated = status.updated_replicas.unwrap_or(0);
    if rolling
        && updated == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

/// Plans one sync of `set` over the pods it owns.
pub fn plan(
    set: &StatefulSet,
    owned: &[Arc<Pod>],
    current: &Revision,
    update: &Revision,
    collision_count: Option<i32>,
    now: Timestamp,
) -> Plan {
    let mut p = plan_steps(set, owned, current, update, collision_count, now);
    complete_rolling_update(set, &mut p.status);
    p
}

fn plan_steps(
    set: &StatefulSet,
    owned: &[Arc<Pod>],
    current: &Revision,
    update: &Revision,
    collision_count: Option<i32>,
    now: Timestamp,
) -> Plan {
    let set_name = set.name_any();
    let spec = set.spec.clone().unwrap_or_default();
    let replica_count = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");

    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; replica_count as usize];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    let mut counted: Vec<&Pod> = Vec::new();
    for pod in owned {
        let Some(ord) = ordinal_of(&set_name, pod) else {
            continue;
        };
        counted.push(pod);
        if ord >= start && ord < start + replica_count {
            slots[(ord - start) as usize] = Some(pod.clone());
        } else {
            condemned.push((ord, pod.clone()));
        }
    }
    let mut plan = Plan {
        steps: Vec::new(),
        status: replica_status(set, &counted, current, update, collision_count, now),
        requeue_after: None,
    };
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let slots: Vec<(i32, Slot)> = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let ord = start + i as i32;
            let slot = match p {
                Some(p) => Slot::Existing(p),
                None => Slot::Planned(Box::new(versioned_pod(set, current, update, ord))),
            };
            (ord, slot)
        })
        .collect();
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
    // The first unhealthy pod: lowest ordinal among replicas, else the
    // lowest-ordinal condemned one.
    let first_unhealthy: Option<String> = slots
        .iter()
        .map(|(_, s)| s)
        .find(|s| match s {
            Slot::Existing(p) => !healthy(p),
            Slot::Planned(_) => true,
        })
        .map(|s| s.pod().name_any())
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !healthy(p))
                .map(|(_, p)| p.name_any())
        });
    let wait_available = |pod: &Pod| {
        until_available(pod, min_ready, now)
            .map(|d| Duration::from_secs_f64(d.as_secs_f64().max(0.0)) + Duration::from_secs(1))
    };

    for (ord, slot) in &slots {
        let pod = match slot {
            Slot::Planned(p) => {
                plan.steps.push(Step::Create(p.clone()));
                if monotonic {
                    return plan;
                }
                continue;
            }
            Slot::Existing(p) => p,
        };
        let phase = pods::phase(pod);
        if phase == "Failed" || phase == "Succeeded" {
            if !is_terminating(pod) {
                plan.steps.push(Step::Delete {
                    name: pod.name_any(),
                    why: "failed",
                });
            }
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic {
            if is_terminating(pod) || !running_and_ready(pod) {
                return plan;
            }
            if !available(pod, min_ready, now) {
                plan.requeue_after = wait_available(pod);
                return plan;
            }
        }
        if !identity_matches(&set_name, pod, *ord) {
            plan.steps.push(Step::Relabel {
                name: pod.name_any(),
                ordinal: *ord,
            });
        }
    }

    for (_, pod) in &condemned {
        let name = pod.name_any();
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(name.as_str());
        if monotonic && !first {
            if !running_and_ready(pod) {
                return plan;
            }
            if !available(pod, min_ready, now) {
                plan.requeue_after = wait_available(pod);
                return plan;
            }
        }
        plan.steps.push(Step::Delete {
            name,
            why: "scale down",
        });
        if monotonic {
            return plan;
        }
    }

    let strategy = spec.update_strategy.unwrap_or_default();
    if strategy.type_.as_deref() == Some("OnDelete") {
        return plan;
    }
    let update_min = strategy
        .rolling_update
        .and_then(|ru| ru.partition)
        .unwrap_or(0)
        .max(0) as usize;
    for (_, slot) in slots.iter().skip(update_min).rev() {
        let pod = slot.pod();
        if revision_of(pod) != update.name && !is_terminating(pod) {
            plan.steps.push(Step::Delete {
                name: pod.name_any(),
                why: "update",
            });
            plan.status.current_replicas = plan
                .status
                .current_replicas
                .map(|n| n - 1)
                .filter(|n| *n != 0);
            return plan;
        }
        let ok = match slot {
            Slot::Existing(p) => healthy(p),
            Slot::Planned(_) => false,
        };
        if !ok {
            return plan;
        }
    }
    plan
}

#[cfg(test)]
#[path = "logic_tests.rs"]
mod tests;
