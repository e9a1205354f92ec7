//! NodeResourcesFit (filter and LeastAllocated score) and
//! NodeResourcesBalancedAllocation, over cpu, memory, ephemeral storage,
//! pod count and extended resources.

use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::resources::Resources;

use super::{Code, FilterResult, MAX_NODE_SCORE, Status};

/// Requests of pods nominated to this node that outrank (or equal) `pod`:
/// the room preemption freed for them is not `pod`'s to take.
fn nominated_extra(pod: &PodInfo, node: &NodeInfo) -> (Resources, usize) {
    let mut extra = Resources::default();
    let mut count = 0;
    for n in &node.nominated {
        if n.priority >= pod.priority && n.key != pod.key {
            extra.add(&n.requests.requested);
            count += 1;
        }
    }
    (extra, count)
}

/// The NodeResourcesFit filter: every requested resource must fit in what
/// the node has left, and the node must have room for one more pod. All
/// shortfalls are reported (`Too many pods`, `Insufficient cpu`, ...).
pub fn fit(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let (extra, extra_pods) = if node.nominated.is_empty() {
        (Resources::default(), 0)
    } else {
        nominated_extra(pod, node)
    };
    let mut reasons: Vec<String> = Vec::new();
    let alloc = &node.allocatable;
    if (node.pods.len() + extra_pods + 1) as i64 > alloc.pods {
        reasons.push("Too many pods".into());
    }
    let req = &pod.requests.requested;
    let used = &node.requested;
    let short = |want: i64, have: i64, used: i64, extra: i64| {
        want > 0 && want > have - used.saturating_add(extra)
    };
    if short(
        req.milli_cpu,
        alloc.milli_cpu,
        used.milli_cpu,
        extra.milli_cpu,
    ) {
        reasons.push("Insufficient cpu".into());
    }
    if short(req.memory, alloc.memory, used.memory, extra.memory) {
        reasons.push("Insufficient memory".into());
    }
    if short(
        req.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
        extra.ephemeral_storage,
    ) {
        reasons.push("Insufficient ephemeral-storage".into());
    }
    for (name, want) in &req.scalar {
        if short(
            *want,
            alloc.scalar(name),
            used.scalar(name),
            extra.scalar(name),
        ) {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Status {
            code: Code::Unschedulable,
            reasons,
        })
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// LeastAllocated score: the mean over cpu and memory (weight 1 each) of
/// the free share left after placing the pod, counting default requests
/// for pods that name none.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let mut total = 0;
    let mut weights = 0;
    for (req, cap) in [
        (
            node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.non_zero_memory + pod.requests.non_zero_memory,
            node.allocatable.memory,
        ),
    ] {
        if cap == 0 {
            continue;
        }
        total += least_requested(req, cap);
        weights += 1;
    }
    if weights == 0 { 0 } else { total / weights }
}

/// BalancedAllocation score: 100 × (1 − the standard deviation of the cpu
/// and memory fractions requested after placing the pod). Pods requesting
/// neither score 0 everywhere (Kubernetes skips them).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let req = &pod.requests.requested;
    if req.milli_cpu == 0 && req.memory == 0 {
        return 0;
    }
    let mut fractions = [0f64; 2];
    let mut n = 0;
    for (want, cap) in [
        (
            node.requested.milli_cpu + req.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (node.requested.memory + req.memory, node.allocatable.memory),
    ] {
        if cap == 0 {
            continue;
        }
        fractions[n] = (want as f64 / cap as f64).min(1.0);
        n += 1;
    }
    let std = if n == 2 {
        ((fractions[0] - fractions[1]) / 2.0).abs()
    } else {
        0.0
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod, pod_req};
    use serde_json::json;

    fn reasons(r: FilterResult) -> Vec<String> {
        r.err().map(|s| s.reasons).unwrap_or_default()
    }

    #[test]
    fn fits_until_full() {
        let mut n = NodeInfo::new(node("n", json!({})));
        assert!(fit(&pod_req("p", "4", "32Gi"), &n).is_ok());
        n.add_pod(pod_req("a", "3", "30Gi"));
        assert!(fit(&pod_req("p", "1", "2Gi"), &n).is_ok());
        assert_eq!(
            reasons(fit(&pod_req("p", "1001m", "1Gi"), &n)),
            vec!["Insufficient cpu"]
        );
        assert_eq!(
            reasons(fit(&pod_req("p", "2", "3Gi"), &n)),
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        let code = fit(&pod_req("p", "2", "1Gi"), &n).err().map(|s| s.code);
        assert_eq!(code, Some(Code::Unschedulable), "preemption may help");
    }

    #[test]
    fn pod_count_limit() {
        let mut n = NodeInfo::new(node("n", json!({"status": {"allocatable": {"pods": "2"}}})));
        n.add_pod(pod("a", json!({})));
        assert!(fit(&pod("p", json!({})), &n).is_ok());
        n.add_pod(pod("b", json!({})));
        assert_eq!(
            reasons(fit(&pod("p", json!({})), &n)),
            vec!["Too many pods"]
        );
        assert_eq!(
            reasons(fit(&pod_req("p", "5", "1"), &n)),
            vec!["Too many pods", "Insufficient cpu"]
        );
    }

    #[test]
    fn extended_and_storage_resources() {
        let n = NodeInfo::new(node(
            "n",
            json!({"status": {"allocatable": {
            "example.com/gpu": "1", "ephemeral-storage": "10Gi"}}}),
        ));
        let gpu = |count: &str| {
            pod(
                "p",
                json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"example.com/gpu": count}}}]}}),
            )
        };
        assert!(fit(&gpu("1"), &n).is_ok());
        assert_eq!(
            reasons(fit(&gpu("2"), &n)),
            vec!["Insufficient example.com/gpu"]
        );
        let other = pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"vendor.io/fpga": "1", "ephemeral-storage": "11Gi"}}}]}}),
        );
        assert_eq!(
            reasons(fit(&other, &n)),
            vec![
                "Insufficient ephemeral-storage",
                "Insufficient vendor.io/fpga"
            ]
        );
    }

    #[test]
    fn init_containers_and_overhead_count() {
        let n = NodeInfo::new(node("n", json!({})));
        let p = pod(
            "p",
            json!({"spec": {
            "overhead": {"cpu": "1"},
            "initContainers": [{"name": "i", "image": "x", "resources": {"requests": {"cpu": "3500m"}}}],
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        // max(1, 3.5) + 1 overhead = 4.5 > 4.
        assert_eq!(reasons(fit(&p, &n)), vec!["Insufficient cpu"]);
    }

    #[test]
    fn nominated_pods_of_higher_priority_reserve_room() {
        let mut n = NodeInfo::new(node("n", json!({})));
        n.nominated.push(pod(
            "big",
            json!({"spec": {"priority": 100, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "3"}}}]}}),
        ));
        let low = pod(
            "low",
            json!({"spec": {"priority": 10, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        assert_eq!(reasons(fit(&low, &n)), vec!["Insufficient cpu"]);
        let high = pod(
            "high",
            json!({"spec": {"priority": 1000, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "2"}}}]}}),
        );
        assert!(
            fit(&high, &n).is_ok(),
            "lower-priority nominations are ignored"
        );
        let itself = pod(
            "big",
            json!({"spec": {"priority": 100, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "3"}}}]}}),
        );
        assert!(
            fit(&itself, &n).is_ok(),
            "a pod does not compete with its own nomination"
        );
    }

    #[test]
    fn least_allocated_scores() {
        let mut n = NodeInfo::new(node("n", json!({})));
        // Empty node, pod 100m / 500Mi of 4 cpu / 32Gi:
        // cpu (4000-100)*100/4000 = 97, mem (32768-500)*100/32768 = 98 → 97.
        assert_eq!(least_allocated(&pod_req("p", "100m", "500Mi"), &n), 97);
        n.add_pod(pod_req("a", "2", "16Gi"));
        // cpu (4000-2100)*100/4000 = 47, mem (32768-16884)*100/32768 = 48 → 47.
        assert_eq!(least_allocated(&pod_req("p", "100m", "500Mi"), &n), 47);
        assert_eq!(
            least_allocated(&pod_req("p", "5", "1Gi"), &n),
            23,
            "overcommitted cpu scores 0"
        );
        // Best-effort pods count 100m / 200Mi.
        let be = pod("be", json!({}));
        let empty = NodeInfo::new(node("e", json!({})));
        assert_eq!(least_allocated(&be, &empty), (97 + 99) / 2);
    }

    #[test]
    fn balanced_allocation_scores() {
        let n = NodeInfo::new(node("n", json!({})));
        // cpu 2/4 = 0.5, mem 8/32 = 0.25 → std 0.125 → 87.
        assert_eq!(balanced_allocation(&pod_req("p", "2", "8Gi"), &n), 87);
        assert_eq!(balanced_allocation(&pod_req("p", "1", "8Gi"), &n), 100);
        // Over-requests cap at 1: cpu 1.0, mem 0 → std 0.5 → 50.
        assert_eq!(balanced_allocation(&pod_req("p", "8", "0"), &n), 50);
        assert_eq!(balanced_allocation(&pod("be", json!({})), &n), 0);
    }
}
