//! PodTopologySpread: `DoNotSchedule` constraints filter (skew of matching
//! pods per domain must stay within `maxSkew`, with `minDomains`), and
//! `ScheduleAnyway` constraints score (fewer matching pods in the node's
//! domains is better), honouring `nodeAffinityPolicy` / `nodeTaintsPolicy`.

use std::collections::{HashMap, HashSet};

use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::{PodInfo, SpreadConstraint};
use crate::scheduler::selectors::tolerated;

use super::basic::node_affinity;
use super::{Code, FilterResult, MAX_NODE_SCORE, Status};

/// Reason when a constraint's skew would be exceeded.
pub const ERR_CONSTRAINTS: &str = "node(s) didn't match pod topology spread constraints";
/// Reason when the node lacks a constraint's topology key.
pub const ERR_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const HOSTNAME: &str = "kubernetes.io/hostname";

fn count_matching(node: &NodeInfo, c: &SpreadConstraint, namespace: &str) -> i64 {
    node.pods
        .iter()
        .filter(|p| !p.terminating && p.namespace == namespace && c.selector.matches(p.labels()))
        .count() as i64
}

fn has_all_keys<'a>(node: &NodeInfo, mut cs: impl Iterator<Item = &'a SpreadConstraint>) -> bool {
    let labels = node.labels();
    cs.all(|c| labels.contains_key(&c.topology_key))
}

fn included(pod: &PodInfo, c: &SpreadConstraint, node: &NodeInfo) -> bool {
    if c.honor_node_affinity && node_affinity(pod, node).is_err() {
        return false;
    }
    if c.honor_node_taints {
        let untolerated = node.taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(&pod.tolerations, t)
        });
        if untolerated {
            return false;
        }
    }
    true
}

/// Per hard constraint: matching pods per domain value.
#[derive(Clone, Debug, Default)]
pub struct FilterState {
    counts: Vec<HashMap<String, i64>>,
}

/// PreFilter; `None` when the pod has no `DoNotSchedule` constraint.
pub fn pre_filter(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<FilterState> {
    let hard: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| c.hard).collect();
    if hard.is_empty() {
        return None;
    }
    let mut counts = vec![HashMap::new(); hard.len()];
    for node in nodes {
        if !has_all_keys(node, hard.iter().copied()) {
            continue;
        }
        for (i, c) in hard.iter().enumerate() {
            if !included(pod, c, node) {
                continue;
            }
            let value = node
                .labels()
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            *counts[i].entry(value).or_insert(0) += count_matching(node, c, &pod.namespace);
        }
    }
    Some(FilterState { counts })
}

/// The PodTopologySpread filter.
pub fn filter(pod: &PodInfo, state: Option<&FilterState>, node: &NodeInfo) -> FilterResult {
    let Some(state) = state else {
        return Ok(());
    };
    let labels = node.labels();
    for (i, c) in pod.spread.iter().filter(|c| c.hard).enumerate() {
        let Some(value) = labels.get(&c.topology_key) else {
            return Err(Status::new(Code::Unresolvable, ERR_MISSING_LABEL));
        };
        let counts = &state.counts[i];
        let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
        let global_min = if counts.len() < min_domains {
            0
        } else {
            counts.values().copied().min().unwrap_or(0)
        };
        let self_match = i64::from(c.selector.matches(pod.labels()));
        let here = counts.get(value).copied().unwrap_or(0);
        if here + self_match - global_min > i64::from(c.max_skew) {
            return Err(Status::new(Code::Unschedulable, ERR_CONSTRAINTS));
        }
    }
    Ok(())
}

/// What scoring precomputes over the feasible nodes.
#[derive(Clone, Debug, Default)]
pub struct ScoreState {
    /// Index of each soft constraint in `pod.spread`.
    constraints: Vec<usize>,
    /// Pod count per (constraint, domain value), for non-hostname keys.
    counts: Vec<HashMap<String, i64>>,
    /// `ln(domains + 2)` per constraint.
    weights: Vec<f64>,
    /// Feasible nodes missing a topology key: they score 0.
    ignored: HashSet<String>,
}

/// PreScore over the `feasible` nodes, counting pods across `all` nodes;
/// `None` when the pod has no `ScheduleAnyway` constraint.
pub fn pre_score(pod: &PodInfo, feasible: &[&NodeInfo], all: &[NodeInfo]) -> Option<ScoreState> {
    let constraints: Vec<usize> = pod
        .spread
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.hard)
        .map(|(i, _)| i)
        .collect();
    if constraints.is_empty() {
        return None;
    }
    let soft = || constraints.iter().map(|i| &pod.spread[*i]);
    let mut state = ScoreState {
        counts: vec![HashMap::new(); constraints.len()],
        ..Default::default()
    };
    let mut sizes = vec![0usize; constraints.len()];
    for node in feasible {
        if !has_all_keys(node, soft()) {
            state.ignored.insert(node.name.clone());
            continue;
        }
        for (i, c) in soft().enumerate() {
            if c.topology_key == HOSTNAME {
                continue;
            }
            let value = node
                .labels()
                .get(&c.topology_key)
                .cloned()
                .unwrap_or_default();
            if let std::collections::hash_map::Entry::Vacant(e) = state.counts[i].entry(value) {
                e.insert(0);
                sizes[i] += 1;
            }
        }
    }
    for (i, c) in soft().enumerate() {
        let size = if c.topology_key == HOSTNAME {
            feasible.len() - state.ignored.len()
        } else {
            sizes[i]
        };
        state.weights.push(((size + 2) as f64).ln());
    }
    for node in all {
        if !has_all_keys(node, soft()) {
            continue;
        }
        for (i, c) in soft().enumerate() {
            if c.topology_key == HOSTNAME || !included(pod, c, node) {
                continue;
            }
            let Some(value) = node.labels().get(&c.topology_key) else {
                continue;
            };
            if let Some(count) = state.counts[i].get_mut(value) {
                *count += count_matching(node, c, &pod.namespace);
            }
        }
    }
    state.constraints = constraints;
    Some(state)
}

/// Score (raw; lower is better before normalisation).
pub fn score(pod: &PodInfo, state: &ScoreState, node: &NodeInfo) -> i64 {
    if state.ignored.contains(&node.name) {
        return 0;
    }
    let labels = node.labels();
    let mut total = 0.0;
    for (i, idx) in state.constraints.iter().enumerate() {
        let c = &pod.spread[*idx];
        let Some(value) = labels.get(&c.topology_key) else {
            continue;
        };
        let count = if c.topology_key == HOSTNAME {
            count_matching(node, c, &pod.namespace)
        } else {
            state.counts[i].get(value).copied().unwrap_or(0)
        };
        total += count as f64 * state.weights[i] + f64::from(c.max_skew - 1);
    }
    total.round() as i64
}

/// NormalizeScore: reverses so the least crowded node gets 100; ignored nodes 0.
pub fn normalize(state: &ScoreState, nodes: &[&NodeInfo], scores: &mut [i64]) {
    let mut min = i64::MAX;
    let mut max = 0;
    for (n, s) in nodes.iter().zip(scores.iter()) {
        if state.ignored.contains(&n.name) {
            continue;
        }
        min = min.min(*s);
        max = max.max(*s);
    }
    for (n, s) in nodes.iter().zip(scores.iter_mut()) {
        *s = if state.ignored.contains(&n.name) {
            0
        } else if max == 0 {
            MAX_NODE_SCORE
        } else {
            MAX_NODE_SCORE * (max + min - *s) / max
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn zn(name: &str, zone: Option<&str>, pods: usize) -> NodeInfo {
        let labels = match zone {
            Some(z) => json!({"zone": z, "kubernetes.io/hostname": name}),
            None => json!({"kubernetes.io/hostname": name}),
        };
        let mut n = NodeInfo::new(node(name, json!({"metadata": {"labels": labels}})));
        for i in 0..pods {
            n.add_pod(pod(
                &format!("{name}-{i}"),
                json!({"metadata": {"labels": {"app": "web"}}}),
            ));
        }
        n
    }

    fn spread_pod(constraint: Value) -> Arc<PodInfo> {
        pod(
            "new",
            json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"topologySpreadConstraints": [constraint]}}),
        )
    }

    fn hard(key: &str, max_skew: i32) -> Value {
        json!({"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<Option<String>> {
        let state = pre_filter(p, nodes);
        nodes
            .iter()
            .map(|n| {
                filter(p, state.as_ref(), n)
                    .err()
                    .map(|s| s.reasons[0].clone())
            })
            .collect()
    }

    #[test]
    fn skew_is_enforced() {
        // zone a: 2 pods, zone b: 0 → placing in a gives skew 3 > 1.
        let nodes = vec![
            zn("a1", Some("a"), 2),
            zn("b1", Some("b"), 0),
            zn("x", None, 0),
        ];
        let p = spread_pod(hard("zone", 1));
        assert_eq!(
            run(&p, &nodes),
            vec![
                Some(ERR_CONSTRAINTS.into()),
                None,
                Some(ERR_MISSING_LABEL.into())
            ]
        );
        let p = spread_pod(hard("zone", 3));
        assert_eq!(run(&p, &nodes)[0], None);
        let codes: Vec<_> = {
            let p = spread_pod(hard("zone", 1));
            let st = pre_filter(&p, &nodes);
            nodes
                .iter()
                .map(|n| filter(&p, st.as_ref(), n).err().map(|s| s.code))
                .collect()
        };
        assert_eq!(
            codes,
            vec![Some(Code::Unschedulable), None, Some(Code::Unresolvable)]
        );
    }

    #[test]
    fn min_domains_forces_zero_minimum() {
        // Only one zone exists; with minDomains 2 the minimum counts as 0.
        let nodes = vec![zn("a1", Some("a"), 1)];
        let mut c = hard("zone", 1);
        assert_eq!(run(&spread_pod(c.clone()), &nodes), vec![None]);
        c["minDomains"] = json!(2);
        assert_eq!(
            run(&spread_pod(c), &nodes),
            vec![Some(ERR_CONSTRAINTS.into())]
        );
    }

    #[test]
    fn non_matching_pods_and_other_namespaces_do_not_count() {
        let mut a = zn("a1", Some("a"), 0);
        a.add_pod(pod("other", json!({"metadata": {"labels": {"app": "db"}}})));
        a.add_pod(pod(
            "elsewhere",
            json!({"metadata": {"namespace": "x", "labels": {"app": "web"}}}),
        ));
        a.add_pod(pod("dying", json!({"metadata": {"labels": {"app": "web"}, "deletionTimestamp": "2024-01-01T00:00:00Z"}})));
        let nodes = vec![a, zn("b1", Some("b"), 0)];
        assert_eq!(run(&spread_pod(hard("zone", 1)), &nodes), vec![None, None]);
    }

    #[test]
    fn node_affinity_policy_limits_domains() {
        // Zone b is excluded by the pod's nodeSelector, so its 0 is not the minimum.
        let mut a = zn("a1", Some("a"), 1);
        let mut labels = a.labels().clone();
        labels.insert("pool".into(), "x".into());
        let mut n = (*a.node).clone();
        n.metadata.labels = Some(labels);
        a.set_node(Arc::new(n));
        let nodes = vec![a, zn("b1", Some("b"), 0)];
        let p = pod(
            "new",
            json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"nodeSelector": {"pool": "x"}, "topologySpreadConstraints": [hard("zone", 1)]}}),
        );
        assert_eq!(run(&p, &nodes)[0], None);
        let mut c = hard("zone", 1);
        c["nodeAffinityPolicy"] = json!("Ignore");
        let p = pod(
            "new",
            json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"nodeSelector": {"pool": "x"}, "topologySpreadConstraints": [c]}}),
        );
        assert_eq!(run(&p, &nodes)[0].as_deref(), Some(ERR_CONSTRAINTS));
    }

    #[test]
    fn soft_constraints_score_emptier_domains_higher() {
        let nodes = vec![
            zn("a1", Some("a"), 3),
            zn("a2", Some("a"), 0),
            zn("b1", Some("b"), 1),
            zn("x", None, 0),
        ];
        let p = spread_pod(
            json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app": "web"}}}),
        );
        assert!(pre_filter(&p, &nodes).is_none());
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let state = pre_score(&p, &feasible, &nodes).expect("soft constraint");
        let mut scores: Vec<i64> = feasible.iter().map(|n| score(&p, &state, n)).collect();
        // 2 domains → weight ln(4) ≈ 1.386: a = 3 pods → 4.16 → 4, b = 1 → 1.39 → 1.
        assert_eq!(scores, vec![4, 4, 1, 0]);
        normalize(&state, &feasible, &mut scores);
        // 100 * (4 + 1 - s) / 4.
        assert_eq!(scores, vec![25, 25, 100, 0]);
    }

    #[test]
    fn hostname_constraints_count_per_node() {
        let nodes = vec![zn("a1", Some("a"), 2), zn("a2", Some("a"), 0)];
        let p = spread_pod(
            json!({"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}),
        );
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        let state = pre_score(&p, &feasible, &nodes).expect("soft");
        let mut scores: Vec<i64> = feasible.iter().map(|n| score(&p, &state, n)).collect();
        // weight ln(4): 2 pods → 2.77 → 3.
        assert_eq!(scores, vec![3, 0]);
        normalize(&state, &feasible, &mut scores);
        assert_eq!(scores, vec![0, 100]);
        // Hard hostname spread: a1 has 2, a2 has 0 → a1 rejected.
        let hp = spread_pod(hard("kubernetes.io/hostname", 1));
        assert_eq!(run(&hp, &nodes), vec![Some(ERR_CONSTRAINTS.into()), None]);
    }
}
