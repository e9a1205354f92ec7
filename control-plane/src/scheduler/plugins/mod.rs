//! The filter and score plugins of the default profile, as pure functions
//! over a `PodInfo`, a `NodeInfo` and per-cycle precomputed state.
//!
//! Filters run in Kubernetes' order and stop at the first failure:
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, RuntimeFit
//! (Skiff's), NodePorts, NodeResourcesFit, PodTopologySpread,
//! InterPodAffinity. Scores use the default weights: TaintToleration 3,
//! NodeAffinity 2, PodTopologySpread 2, InterPodAffinity 2,
//! NodeResourcesFit (LeastAllocated) 1, BalancedAllocation 1,
//! ImageLocality 1; each plugin's scores are normalised to 0–100 first.

pub mod basic;
pub mod fit;
pub mod image;
pub mod interpod;
pub mod runtime;
pub mod spread;

use std::borrow::Cow;

use super::node_info::{NodeInfo, Snapshot};
use super::pod_info::PodInfo;

/// The highest score a plugin gives a node.
pub const MAX_NODE_SCORE: i64 = 100;

/// How bad a filter failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Removing pods (preemption) might make the pod fit.
    Unschedulable,
    /// Nothing preemption can do helps (`UnschedulableAndUnresolvable`).
    Unresolvable,
}

/// A filter failure: a code and the reasons shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Whether preemption could help.
    pub code: Code,
    /// Reasons, each counted in the `0/N nodes are available` histogram.
    pub reasons: Vec<String>,
}

impl Status {
    /// A failure with one reason.
    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into().into_owned()],
        }
    }
}

/// A filter's verdict.
pub type FilterResult = Result<(), Status>;

/// What PreFilter computed once for a pod, shared by all nodes' filters.
#[derive(Clone, Debug, Default)]
pub struct CycleState {
    /// InterPodAffinity counts (`None`: nothing to check).
    pub inter_pod: Option<interpod::FilterState>,
    /// PodTopologySpread counts (`None`: no hard constraints).
    pub spread: Option<spread::FilterState>,
}

/// Runs the PreFilter step over all nodes (skipping InterPodAffinity's
/// scan when neither the pod nor any placed pod has a required term).
pub fn pre_filter(pod: &PodInfo, snapshot: &Snapshot<'_>) -> CycleState {
    let inter_pod_needed = snapshot.any_required_anti_affinity
        || !pod.required_affinity.is_empty()
        || !pod.required_anti_affinity.is_empty();
    CycleState {
        inter_pod: if inter_pod_needed {
            interpod::pre_filter(pod, snapshot.nodes)
        } else {
            None
        },
        spread: spread::pre_filter(pod, snapshot.nodes),
    }
}

/// Runs every filter on one node, stopping at the first failure.
pub fn run_filters(pod: &PodInfo, state: &CycleState, node: &NodeInfo) -> FilterResult {
    basic::node_unschedulable(pod, node)?;
    basic::node_name(pod, node)?;
    basic::taint_toleration(pod, node)?;
    basic::node_affinity(pod, node)?;
    runtime::runtime_fit(pod, node)?;
    basic::node_ports(pod, node)?;
    fit::fit(pod, node)?;
    spread::filter(pod, state.spread.as_ref(), node)?;
    interpod::filter(pod, state.inter_pod.as_ref(), node)
}

/// Kubernetes' `DefaultNormalizeScore`: scales to 0–100 by the maximum,
/// optionally reversed (lower raw is better).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max <= 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = MAX_NODE_SCORE * *s / max;
        *s = if reverse { MAX_NODE_SCORE - v } else { v };
    }
}

/// Default plugin weights.
pub mod weights {
    /// TaintToleration.
    pub const TAINT_TOLERATION: i64 = 3;
    /// NodeAffinity (preferred terms).
    pub const NODE_AFFINITY: i64 = 2;
    /// PodTopologySpread (soft constraints).
    pub const POD_TOPOLOGY_SPREAD: i64 = 2;
    /// InterPodAffinity (preferred terms).
    pub const INTER_POD_AFFINITY: i64 = 2;
    /// NodeResourcesFit, LeastAllocated strategy.
    pub const NODE_RESOURCES_FIT: i64 = 1;
    /// NodeResourcesBalancedAllocation.
    pub const BALANCED_ALLOCATION: i64 = 1;
    /// ImageLocality.
    pub const IMAGE_LOCALITY: i64 = 1;
}

/// Scores the feasible nodes: the weighted sum of every plugin's
/// normalised score, one total per node in `feasible`'s order.
pub fn score_nodes(pod: &PodInfo, feasible: &[&NodeInfo], snapshot: &Snapshot<'_>) -> Vec<i64> {
    let mut total = vec![0i64; feasible.len()];
    let mut add = |scores: &[i64], weight: i64| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += s * weight;
        }
    };
    let per_node =
        |f: &dyn Fn(&NodeInfo) -> i64| -> Vec<i64> { feasible.iter().map(|n| f(n)).collect() };

    // NodeResourcesFit + BalancedAllocation + ImageLocality: already 0–100.
    add(
        &per_node(&|n| fit::least_allocated(pod, n)),
        weights::NODE_RESOURCES_FIT,
    );
    add(
        &per_node(&|n| fit::balanced_allocation(pod, n)),
        weights::BALANCED_ALLOCATION,
    );
    if !pod.images.is_empty() && !snapshot.image_nodes.is_empty() {
        add(
            &per_node(&|n| image::image_locality(pod, n, snapshot)),
            weights::IMAGE_LOCALITY,
        );
    }
    // TaintToleration: reverse-normalised count of PreferNoSchedule taints.
    let mut taints = per_node(&|n| basic::taint_score(pod, n));
    default_normalize(&mut taints, true);
    add(&taints, weights::TAINT_TOLERATION);
    // NodeAffinity: only pods with preferred terms.
    if !pod.preferred_node_affinity.is_empty() {
        let mut s = per_node(&|n| basic::node_affinity_score(pod, n));
        default_normalize(&mut s, false);
        add(&s, weights::NODE_AFFINITY);
    }
    if let Some(state) = spread::pre_score(pod, feasible, snapshot.nodes) {
        let mut s = per_node(&|n| spread::score(pod, &state, n));
        spread::normalize(&state, feasible, &mut s);
        add(&s, weights::POD_TOPOLOGY_SPREAD);
    }
    let inter_pod_needed = snapshot.any_pod_affinity
        || !pod.preferred_affinity.is_empty()
        || !pod.preferred_anti_affinity.is_empty();
    if let Some(state) = inter_pod_needed
        .then(|| interpod::pre_score(pod, snapshot.nodes))
        .flatten()
    {
        let mut s = per_node(&|n| interpod::score(&state, n));
        interpod::normalize(&mut s);
        add(&s, weights::INTER_POD_AFFINITY);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::count_image_nodes;
    use crate::scheduler::node_info::testing::{node, pod, pod_req};
    use serde_json::json;

    #[test]
    fn default_normalize_matches_kubernetes() {
        let mut s = vec![0, 5, 10];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 50, 100]);
        let mut s = vec![0, 1, 4];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 75, 0]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, true);
        assert_eq!(s, vec![100, 100]);
        let mut s = vec![0, 0];
        default_normalize(&mut s, false);
        assert_eq!(s, vec![0, 0]);
    }

    #[test]
    fn filters_run_in_order_and_stop_at_the_first_failure() {
        let n = NodeInfo::new(node(
            "n1",
            json!({"spec": {"unschedulable": true,
            "taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ));
        let p = pod_req("p", "100", "1");
        let counts = count_image_nodes(std::slice::from_ref(&n));
        let st = pre_filter(&p, &Snapshot::new(std::slice::from_ref(&n), &counts));
        let err = run_filters(&p, &st, &n).expect_err("cordoned");
        assert_eq!(err.reasons, vec![basic::ERR_UNSCHEDULABLE.to_string()]);
        let ok = NodeInfo::new(node("n1", json!({})));
        assert!(run_filters(&pod_req("p", "1", "1Gi"), &st, &ok).is_ok());
    }

    #[test]
    fn emptier_nodes_and_tolerated_nodes_win() {
        let mut busy = NodeInfo::new(node("busy", json!({})));
        busy.add_pod(pod_req("a", "3", "16Gi"));
        let idle = NodeInfo::new(node("idle", json!({})));
        let soft = NodeInfo::new(node(
            "soft",
            json!({"spec": {"taints": [{"key": "x", "effect": "PreferNoSchedule"}]}}),
        ));
        let nodes = vec![busy, idle, soft];
        let counts = count_image_nodes(&nodes);
        let snap = Snapshot::new(&nodes, &counts);
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let s = score_nodes(&pod_req("p", "100m", "500Mi"), &feasible, &snap);
        assert!(s[1] > s[0], "idle beats busy: {s:?}");
        assert!(s[1] > s[2], "untainted beats PreferNoSchedule: {s:?}");
        // Preferred node affinity (weight 2) outweighs resource scores, but
        // not an untolerated PreferNoSchedule taint (weight 3).
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["busy", "soft"]}]}}]}}}}),
        );
        let s = score_nodes(&p, &feasible, &snap);
        assert!(s[0] > s[1], "affinity beats free resources: {s:?}");
        assert!(s[1] > s[2], "a soft taint beats affinity: {s:?}");
    }
}
