//! The ReplicaSet controller's pure core: which pods to delete on scale-down
//! (Kubernetes' `ActivePodsWithRanks` ordering with logarithmic scale-down and
//! pod-deletion-cost), the status computation and slow-start batching.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::controllers::owners::LabelMatcher;
use crate::controllers::pods::{is_active, is_available, is_ready, phase, ready_since};

/// At most this many pods are created or deleted per sync (Kubernetes' `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The first batch of a slow start (Kubernetes' `SlowStartInitialBatchSize`).
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// Annotation by which users rank pods for deletion (lower goes first).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(pod: &Pod) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

/// Highest restart count among regular containers, then among restartable
/// init containers (sidecars).
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let status = pod.status.as_ref();
    let regular = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0);
    let sidecar_names: Vec<&str> = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .map(|ics| {
            ics.iter()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                .map(|c| c.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let sidecar = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| sidecar_names.contains(&c.name.as_str()))
                .map(|c| c.restart_count)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    (regular, sidecar)
}

/// Kubernetes' `logarithmicRankDiff` bucket: the base-2 logarithm of the
/// age in nanoseconds, so pods of roughly the same age rank equal; an
/// unknown time sorts first (Kubernetes' `afterOrZero`).
fn log_bucket(t: Option<Timestamp>, now: Timestamp) -> i64 {
    match t {
        None => i64::MIN,
        Some(t) => {
            let d = now.as_nanosecond() - t.as_nanosecond();
            if d > 0 { (d as f64).log2() as i64 } else { -1 }
        }
    }
}

/// Kubernetes' `ActivePodsWithRanks.Less` as a total order: `Less` means
/// "delete first". `rank_*` is the number of related active pods on the
/// same node. Kubernetes breaks ties inside an age bucket by UID at once;
/// here the later criteria are consulted first and the UID decides last, so
/// that the order stays transitive.
pub fn compare_for_deletion(
    a: &Pod,
    rank_a: usize,
    b: &Pod,
    rank_b: usize,
    now: Timestamp,
) -> Ordering {
    // 1. Unassigned < assigned.
    let assigned = |p: &Pod| !node_name(p).is_empty();
    assigned(a)
        .cmp(&assigned(b))
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_ordinal(a).cmp(&phase_ordinal(b)))
        // 3. Not ready < ready.
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // 4. Lower pod-deletion-cost < higher.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // 5. Doubled up (more related pods on the node) < not doubled up.
        .then_with(|| rank_b.cmp(&rank_a))
        // 6. Ready for a shorter time < longer (logarithmic buckets).
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                log_bucket(ready_since(a), now).cmp(&log_bucket(ready_since(b), now))
            } else {
                Ordering::Equal
            }
        })
        // 7. More restarts < fewer.
        .then_with(|| {
            let ((ra, sa), (rb, sb)) = (max_restarts(a), max_restarts(b));
            rb.cmp(&ra).then_with(|| sb.cmp(&sa))
        })
        // 8. Newer < older (logarithmic buckets), unset creation time first.
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            log_bucket(created(a), now).cmp(&log_bucket(created(b), now))
        })
        .then_with(|| a.metadata.uid.cmp(&b.metadata.uid))
}

/// Kubernetes' `getPodsToDelete`: the `diff` pods to delete first among
/// `filtered`, ranking pods doubled up on a node with `related` pods (those
/// of every ReplicaSet of the same Deployment) as better victims.
pub fn pods_to_delete(
    filtered: &[Arc<Pod>],
    related: &[Arc<Pod>],
    diff: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    let mut pods: Vec<Arc<Pod>> = filtered.to_vec();
    if diff < pods.len() {
        let mut on_node: HashMap<&str, usize> = HashMap::new();
        for pod in related.iter().filter(|p| is_active(p)) {
            *on_node.entry(node_name(pod)).or_default() += 1;
        }
        let mut ranked: Vec<(usize, Arc<Pod>)> = pods
            .into_iter()
            .map(|p| (on_node.get(node_name(&p)).copied().unwrap_or(0), p))
            .collect();
        ranked.sort_by(|(ra, a), (rb, b)| compare_for_deletion(a, *ra, b, *rb, now));
        pods = ranked.into_iter().map(|(_, p)| p).collect();
    }
    pods.truncate(diff);
    pods
}

/// Kubernetes' `calculateStatus` for a ReplicaSet from its active owned
/// pods; `manage_error` is the message of a failed create/delete, if any.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_error: Option<&str>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let desired = spec.and_then(|s| s.replicas).unwrap_or(1);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template = LabelMatcher::from_map(&template_labels);
    let mut status = rs.status.clone().unwrap_or_default();
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in pods {
        if template.matches(pod.metadata.labels.as_ref()) {
            fully_labeled += 1;
        }
        if is_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .as_ref()
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "ReplicaFailure"));
    match manage_error {
        Some(message) if !has_failure => {
            let diff = pods.len() as i64 - i64::from(desired);
            let reason = match diff.cmp(&0) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            status
                .conditions
                .get_or_insert_with(Vec::new)
                .push(ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message.into()),
                    last_transition_time: Some(Time(now)),
                });
        }
        None if has_failure => {
            if let Some(cs) = status.conditions.as_mut() {
                cs.retain(|c| c.type_ != "ReplicaFailure");
            }
            if status.conditions.as_ref().is_some_and(Vec::is_empty) {
                status.conditions = None;
            }
        }
        _ => {}
    }
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status
}

/// Kubernetes' `slowStartBatch`: runs `count` calls of `f` in batches of 1,
/// 2, 4, … (all calls of a batch concurrently), stopping after the first
/// batch with a failure. Returns the successful results and the first error.
pub async fn slow_start_batch<T, E, F, Fut>(
    count: usize,
    initial: usize,
    f: F,
) -> (Vec<T>, Option<E>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut done = Vec::with_capacity(count);
    let mut remaining = count;
    let mut batch = initial.max(1).min(remaining);
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(v) => done.push(v),
                Err(e) => {
                    if first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
        }
        if first_error.is_some() {
            return (done, first_error);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (done, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pods::testing::pod;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn created(mut p: Pod, secs: i64) -> Pod {
        p.metadata.creation_timestamp = Some(Time(ts(secs)));
        p
    }

    #[test]
    fn victims_follow_the_kubernetes_order() {
        let now = ts(100_000);
        let unassigned = pod("unassigned", "Pending", "", None);
        let pending = pod("pending", "Pending", "n1", None);
        let unknown = pod("unknown", "Unknown", "n1", None);
        let running_not_ready = pod("running", "Running", "n1", None);
        let ready_recent = pod("ready-recent", "Running", "n1", Some(ts(99_990)));
        let ready_old = pod("ready-old", "Running", "n1", Some(ts(10_000)));
        let all: Vec<Arc<Pod>> = [
            ready_old,
            ready_recent,
            running_not_ready,
            unknown,
            pending,
            unassigned,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let victims = pods_to_delete(&all, &[], 5, now);
        assert_eq!(
            names(&victims),
            [
                "unassigned",
                "pending",
                "unknown",
                "running",
                "ready-recent"
            ]
        );
    }

    #[test]
    fn deletion_cost_beats_colocation_and_age() {
        let now = ts(100_000);
        let mut cheap = pod("cheap", "Running", "n1", Some(ts(10)));
        cheap.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "-5".to_string())].into());
        let mut invalid = pod("invalid", "Running", "n1", Some(ts(99_999)));
        invalid.metadata.annotations =
            Some([(POD_DELETION_COST.to_string(), "x".to_string())].into());
        let pods: Vec<Arc<Pod>> = vec![Arc::new(invalid), Arc::new(cheap)];
        assert_eq!(names(&pods_to_delete(&pods, &[], 1, now)), ["cheap"]);
    }

    #[test]
    fn doubled_up_pods_go_first() {
        let now = ts(100_000);
        let a = Arc::new(pod("a", "Running", "n1", Some(ts(10))));
        let b = Arc::new(pod("b", "Running", "n2", Some(ts(10))));
        let c = Arc::new(pod("c", "Running", "n2", Some(ts(10))));
        let related = vec![a.clone(), b.clone(), c.clone()];
        let victims = pods_to_delete(&[a, b, c], &related, 1, now);
        assert_eq!(
            victims[0]
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref()),
            Some("n2")
        );
    }

    #[test]
    fn similar_ages_share_a_bucket_and_fall_back_to_uid() {
        let now = ts(1_000_000);
        // Ready 1000 s and 1010 s ago: same log2 bucket of nanoseconds.
        let a = Arc::new(pod("a", "Running", "n1", Some(ts(999_000))));
        let b = Arc::new(pod("b", "Running", "n1", Some(ts(998_990))));
        assert_eq!(
            compare_for_deletion(&a, 0, &b, 0, now),
            Ordering::Less,
            "uid-a < uid-b"
        );
        // Ready 10 s vs 100 000 s ago: the newer goes first.
        let young = Arc::new(pod("z-young", "Running", "n1", Some(ts(999_990))));
        let old = Arc::new(pod("a-old", "Running", "n1", Some(ts(900_000))));
        assert_eq!(
            compare_for_deletion(&young, 0, &old, 0, now),
            Ordering::Less
        );
        assert_eq!(
            compare_for_deletion(&old, 0, &young, 0, now),
            Ordering::Greater
        );
    }

    #[test]
    fn restarts_then_creation_time_break_ties() {
        let now = ts(1_000_000);
        let mut restarted = pod("restarted", "Running", "n1", None);
        if let Some(s) = restarted.status.as_mut() {
            s.container_statuses = Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: 3,
                ..ContainerStatus::default()
            }]);
        }
        let plain = pod("plain", "Running", "n1", None);
        assert_eq!(
            compare_for_deletion(&restarted, 0, &plain, 0, now),
            Ordering::Less
        );
        let newer = created(pod("newer", "Running", "n1", None), 999_990);
        let older = created(pod("older", "Running", "n1", None), 100);
        assert_eq!(
            compare_for_deletion(&newer, 0, &older, 0, now),
            Ordering::Less
        );
        let unset = pod("unset", "Running", "n1", None);
        assert_eq!(
            compare_for_deletion(&unset, 0, &older, 0, now),
            Ordering::Less
        );
        assert_eq!(
            compare_for_deletion(&plain, 0, &plain, 0, now),
            Ordering::Equal
        );
    }

    #[test]
    fn the_order_is_total_on_mixed_pods() {
        // Rust's sort panics on an inconsistent comparator; mix every
        // criterion across many pods.
        let now = ts(10_000_000);
        let pods: Vec<Arc<Pod>> = (0..200)
            .map(|i| {
                let ready = (i % 3 != 0).then(|| ts(10_000_000 - (i * 7919 % 5000) as i64));
                let mut p = pod(
                    &format!("p{i:03}"),
                    if i % 5 == 0 { "Pending" } else { "Running" },
                    if i % 7 == 0 { "" } else { "n" },
                    ready,
                );
                if i % 4 == 0 {
                    p.metadata.creation_timestamp =
                        Some(Time(ts(10_000_000 - (i * 104_729 % 900_000) as i64)));
                }
                if i % 6 == 0 {
                    p = {
                        let mut q = p;
                        if let Some(s) = q.status.as_mut() {
                            s.container_statuses = Some(vec![ContainerStatus {
                                name: "c".into(),
                                restart_count: i % 4,
                                ..ContainerStatus::default()
                            }]);
                        }
                        q
                    };
                }
                Arc::new(p)
            })
            .collect();
        let related = pods.clone();
        let victims = pods_to_delete(&pods, &related, 150, now);
        assert_eq!(victims.len(), 150);
        assert!(
            victims.iter().take(20).all(|p| p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none()),
            "unassigned first"
        );
    }

    #[test]
    fn deleting_everything_needs_no_ranking() {
        let pods: Vec<Arc<Pod>> = vec![Arc::new(pod("a", "Running", "n", None))];
        assert_eq!(pods_to_delete(&pods, &[], 1, ts(1)).len(), 1);
        assert_eq!(pods_to_delete(&pods, &[], 0, ts(1)).len(), 0);
    }

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_string(), "web".to_string()),
                                ("tier".to_string(), "fe".to_string()),
                            ]
                            .into(),
                        ),
                        ..ObjectMeta::default()
                    }),
                    spec: None,
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn status_counts_labeled_ready_and_available() {
        let now = ts(1000);
        let mut labeled = pod("a", "Running", "n", Some(ts(995)));
        labeled.metadata.labels = Some(
            [
                ("app".to_string(), "web".to_string()),
                ("tier".to_string(), "fe".to_string()),
            ]
            .into(),
        );
        let mut partial = pod("b", "Running", "n", Some(ts(100)));
        partial.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let not_ready = pod("c", "Pending", "", None);
        let pods: Vec<Arc<Pod>> = [labeled, partial, not_ready]
            .into_iter()
            .map(Arc::new)
            .collect();
        let status = calculate_status(&rs(3, 10), &pods, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(1));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(
            status.available_replicas,
            Some(1),
            "one pod is ready for only 5 s of 10"
        );
        assert_eq!(status.conditions, None);
    }

    #[test]
    fn replica_failure_condition_is_set_and_cleared() {
        let now = ts(1000);
        let mut set = rs(3, 0);
        let status = calculate_status(&set, &[], Some("quota exceeded"), now);
        let cond = status.conditions.as_ref().and_then(|c| c.first()).cloned();
        assert_eq!(
            cond.as_ref().map(|c| c.type_.as_str()),
            Some("ReplicaFailure")
        );
        assert_eq!(
            cond.as_ref().and_then(|c| c.reason.as_deref()),
            Some("FailedCreate")
        );
        set.status = Some(status);
        let again = calculate_status(&set, &[], Some("other"), now);
        assert_eq!(
            again.conditions.as_ref().map(Vec::len),
            Some(1),
            "not duplicated"
        );
        set.status = Some(again);
        let cleared = calculate_status(&set, &[], None, now);
        assert_eq!(cleared.conditions, None);
        let too_many: Vec<Arc<Pod>> = (0..4)
            .map(|i| Arc::new(pod(&format!("p{i}"), "Running", "n", None)))
            .collect();
        let del = calculate_status(&rs(3, 0), &too_many, Some("boom"), now);
        assert_eq!(
            del.conditions
                .as_ref()
                .and_then(|c| c.first())
                .and_then(|c| c.reason.as_deref()),
            Some("FailedDelete")
        );
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_on_failure() {
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, AtomicOrdering::SeqCst);
            Ok::<_, String>(())
        })
        .await;
        assert_eq!((ok.len(), err), (10, None));
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 10);

        // Batches 1, 2, 4, 8: the 5th call fails, so the batch of 4 finishes
        // and no batch of 8 starts.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(20, 1, || async {
            let n = calls.fetch_add(1, AtomicOrdering::SeqCst);
            if n == 4 {
                Err(format!("call {n}"))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(calls.load(AtomicOrdering::SeqCst), 7);
        assert_eq!(ok.len(), 6);
        assert_eq!(err.as_deref(), Some("call 4"));

        let (ok, err) = slow_start_batch(0, 1, || async { Ok::<_, String>(()) }).await;
        assert!(ok.is_empty() && err.is_none());
    }
}
