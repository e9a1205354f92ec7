//! InterPodAffinity: required pod affinity / anti-affinity (a filter, with
//! the symmetric check of existing pods' anti-affinity) and preferred
//! terms (a score), counted per topology domain `(topologyKey, value)`.

use std::collections::HashMap;

use crate::scheduler::node_info::NodeInfo;
use crate::scheduler::pod_info::{AffinityTerm, PodInfo};

use super::{Code, FilterResult, MAX_NODE_SCORE, Status};

/// Reason when the pod's required affinity is not met.
pub const ERR_AFFINITY: &str = "node(s) didn't match pod affinity rules";
/// Reason when the pod's required anti-affinity is not met.
pub const ERR_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
/// Reason when an existing pod's anti-affinity rejects the pod.
pub const ERR_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts per topology domain: key → value → count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, node: &NodeInfo, key: &str, delta: i64) {
        if let Some(value) = node.labels().get(key) {
            *self
                .0
                .entry(key.to_string())
                .or_default()
                .entry(value.clone())
                .or_insert(0) += delta;
        }
    }

    /// The count of the domain `key` has on `node` (0 without the label).
    pub fn get(&self, node: &NodeInfo, key: &str) -> i64 {
        node.labels()
            .get(key)
            .and_then(|v| self.0.get(key)?.get(v))
            .copied()
            .unwrap_or(0)
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|m| m.is_empty())
    }

    /// Whether any domain of `node` has a positive count.
    fn any_positive_on(&self, node: &NodeInfo) -> bool {
        if self.is_empty() {
            return false;
        }
        node.labels()
            .iter()
            .any(|(k, v)| self.0.get(k).and_then(|m| m.get(v)).is_some_and(|c| *c > 0))
    }
}

/// What the filter precomputes once per pod.
#[derive(Clone, Debug, Default)]
pub struct FilterState {
    /// Domains where existing pods' required anti-affinity matches the pod.
    existing_anti: TopologyCounts,
    /// Domains with pods matching all of the pod's required affinity terms.
    affinity: TopologyCounts,
    /// Domains with pods matching each required anti-affinity term.
    anti: TopologyCounts,
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    terms.iter().all(|t| t.matches(pod))
}

/// PreFilter: counts once over the cluster; `None` when nothing can reject the pod.
pub fn pre_filter(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<FilterState> {
    let mut state = FilterState::default();
    let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
    for node in nodes {
        if !own_terms && node.pods_with_required_anti_affinity == 0 {
            continue;
        }
        for existing in &node.pods {
            for term in &existing.required_anti_affinity {
                if term.matches(pod) {
                    state.existing_anti.add(node, &term.topology_key, 1);
                }
            }
            if !own_terms {
                continue;
            }
            if !pod.required_affinity.is_empty() && matches_all(&pod.required_affinity, existing) {
                for term in &pod.required_affinity {
                    state.affinity.add(node, &term.topology_key, 1);
                }
            }
            for term in &pod.required_anti_affinity {
                if term.matches(existing) {
                    state.anti.add(node, &term.topology_key, 1);
                }
            }
        }
    }
    let nothing = state.existing_anti.is_empty() && !own_terms;
    (!nothing).then_some(state)
}

/// The InterPodAffinity filter.
pub fn filter(pod: &PodInfo, state: Option<&FilterState>, node: &NodeInfo) -> FilterResult {
    let Some(state) = state else {
        return Ok(());
    };
    if !pod.required_affinity.is_empty() {
        let labels = node.labels();
        if !pod
            .required_affinity
            .iter()
            .all(|t| labels.contains_key(&t.topology_key))
        {
            return Err(Status::new(Code::Unresolvable, ERR_AFFINITY));
        }
        let pods_exist = pod
            .required_affinity
            .iter()
            .all(|t| state.affinity.get(node, &t.topology_key) > 0);
        // The first pod of a group with affinity to itself may go anywhere
        // its topology keys exist.
        let first_of_group = state.affinity.is_empty() && matches_all(&pod.required_affinity, pod);
        if !pods_exist && !first_of_group {
            return Err(Status::new(Code::Unresolvable, ERR_AFFINITY));
        }
    }
    if pod
        .required_anti_affinity
        .iter()
        .any(|t| state.anti.get(node, &t.topology_key) > 0)
    {
        return Err(Status::new(Code::Unschedulable, ERR_ANTI_AFFINITY));
    }
    if state.existing_anti.any_positive_on(node) {
        return Err(Status::new(Code::Unschedulable, ERR_EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

/// Weight of an existing pod's required affinity term in scoring
/// (`hardPodAffinityWeight`).
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// PreScore: per-domain preference sums; `None` when no term is involved.
pub fn pre_score(pod: &PodInfo, nodes: &[NodeInfo]) -> Option<TopologyCounts> {
    let own = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    let mut scores = TopologyCounts::default();
    for node in nodes {
        if !own && node.pods_with_affinity == 0 {
            continue;
        }
        if node.labels().is_empty() {
            continue;
        }
        for existing in &node.pods {
            if !own && !existing.has_affinity() {
                continue;
            }
            for t in &pod.preferred_affinity {
                if t.matches(existing) {
                    scores.add(node, &t.topology_key, i64::from(t.weight));
                }
            }
            for t in &pod.preferred_anti_affinity {
                if t.matches(existing) {
                    scores.add(node, &t.topology_key, -i64::from(t.weight));
                }
            }
            for t in &existing.required_affinity {
                if t.matches(pod) {
                    scores.add(node, &t.topology_key, HARD_POD_AFFINITY_WEIGHT);
                }
            }
            for t in &existing.preferred_affinity {
                if t.matches(pod) {
                    scores.add(node, &t.topology_key, i64::from(t.weight));
                }
            }
            for t in &existing.preferred_anti_affinity {
                if t.matches(pod) {
                    scores.add(node, &t.topology_key, -i64::from(t.weight));
                }
            }
        }
    }
    (!scores.is_empty()).then_some(scores)
}

/// Score (raw): the sum of the preference of each of the node's domains.
pub fn score(state: &TopologyCounts, node: &NodeInfo) -> i64 {
    node.labels()
        .iter()
        .filter_map(|(k, v)| state.0.get(k)?.get(v))
        .sum()
}

/// Min–max normalisation to 0–100 (InterPodAffinity's NormalizeScore).
pub fn normalize(scores: &mut [i64]) {
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod};
    use serde_json::{Value, json};
    use std::sync::Arc;

    fn zone_node(name: &str, zone: &str, pods: Vec<Arc<PodInfo>>) -> NodeInfo {
        let mut n = NodeInfo::new(node(name, json!({"metadata": {"labels": {"zone": zone}}})));
        for p in pods {
            n.add_pod(p);
        }
        n
    }

    fn labelled(name: &str, app: &str) -> Arc<PodInfo> {
        pod(name, json!({"metadata": {"labels": {"app": app}}}))
    }

    fn with_affinity(
        name: &str,
        labels: Value,
        kind: &str,
        required: bool,
        app: &str,
        key: &str,
    ) -> Arc<PodInfo> {
        let term = json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key});
        let body = if required {
            json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]})
        } else {
            json!({"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term}]})
        };
        pod(
            name,
            json!({"metadata": {"labels": labels}, "spec": {"affinity": {kind: body}}}),
        )
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
    fn required_affinity_follows_matching_pods_zone() {
        let nodes = vec![
            zone_node("a1", "a", vec![labelled("db", "db")]),
            zone_node("a2", "a", vec![]),
            zone_node("b1", "b", vec![labelled("web0", "web")]),
        ];
        let p = with_affinity(
            "web",
            json!({"app": "web"}),
            "podAffinity",
            true,
            "db",
            "zone",
        );
        assert_eq!(run(&p, &nodes), vec![None, None, Some(ERR_AFFINITY.into())]);
        // A node without the topology key never matches.
        let mut nodes = nodes;
        nodes.push(NodeInfo::new(node("bare", json!({}))));
        assert_eq!(run(&p, &nodes)[3].as_deref(), Some(ERR_AFFINITY));
    }

    #[test]
    fn first_pod_of_a_self_affine_group_goes_anywhere_with_the_key() {
        let nodes = vec![
            zone_node("a1", "a", vec![]),
            NodeInfo::new(node("bare", json!({}))),
        ];
        let p = with_affinity(
            "web",
            json!({"app": "web"}),
            "podAffinity",
            true,
            "web",
            "zone",
        );
        assert_eq!(run(&p, &nodes), vec![None, Some(ERR_AFFINITY.into())]);
        let not_self = with_affinity(
            "web",
            json!({"app": "web"}),
            "podAffinity",
            true,
            "db",
            "zone",
        );
        assert_eq!(run(&not_self, &nodes)[0].as_deref(), Some(ERR_AFFINITY));
    }

    #[test]
    fn required_anti_affinity_and_its_symmetry() {
        let nodes = vec![
            zone_node("a1", "a", vec![labelled("web0", "web")]),
            zone_node("b1", "b", vec![]),
        ];
        let p = with_affinity(
            "web1",
            json!({"app": "web"}),
            "podAntiAffinity",
            true,
            "web",
            "zone",
        );
        assert_eq!(run(&p, &nodes), vec![Some(ERR_ANTI_AFFINITY.into()), None]);
        // An existing pod that repels "web" pods rejects a plain web pod too.
        let nodes = vec![
            zone_node(
                "a1",
                "a",
                vec![with_affinity(
                    "guard",
                    json!({"app": "guard"}),
                    "podAntiAffinity",
                    true,
                    "web",
                    "zone",
                )],
            ),
            zone_node("a2", "a", vec![]),
            zone_node("b1", "b", vec![]),
        ];
        assert_eq!(
            run(&labelled("web", "web"), &nodes),
            vec![
                Some(ERR_EXISTING_ANTI_AFFINITY.into()),
                Some(ERR_EXISTING_ANTI_AFFINITY.into()),
                None
            ]
        );
        assert_eq!(run(&labelled("db", "db"), &nodes), vec![None, None, None]);
        assert!(
            pre_filter(&labelled("db", "db"), &nodes).is_none(),
            "nothing to check"
        );
    }

    #[test]
    fn anti_affinity_codes() {
        let nodes = vec![zone_node("a1", "a", vec![labelled("web0", "web")])];
        let p = with_affinity(
            "web1",
            json!({"app": "web"}),
            "podAntiAffinity",
            true,
            "web",
            "zone",
        );
        let state = pre_filter(&p, &nodes);
        let status = filter(&p, state.as_ref(), &nodes[0]).expect_err("rejected");
        assert_eq!(status.code, Code::Unschedulable, "preemption may help");
    }

    #[test]
    fn preferred_terms_score_by_domain() {
        let nodes = vec![
            zone_node("a1", "a", vec![labelled("db", "db")]),
            zone_node("a2", "a", vec![]),
            zone_node("b1", "b", vec![]),
        ];
        let p = with_affinity(
            "web",
            json!({"app": "web"}),
            "podAffinity",
            false,
            "db",
            "zone",
        );
        let state = pre_score(&p, &nodes).expect("has terms");
        let mut scores: Vec<i64> = nodes.iter().map(|n| score(&state, n)).collect();
        assert_eq!(scores, vec![10, 10, 0]);
        normalize(&mut scores);
        assert_eq!(scores, vec![100, 100, 0]);
        let anti = with_affinity(
            "web",
            json!({"app": "web"}),
            "podAntiAffinity",
            false,
            "db",
            "zone",
        );
        let state = pre_score(&anti, &nodes).expect("has terms");
        let mut scores: Vec<i64> = nodes.iter().map(|n| score(&state, n)).collect();
        assert_eq!(scores, vec![-10, -10, 0]);
        normalize(&mut scores);
        assert_eq!(scores, vec![0, 0, 100]);
        assert!(pre_score(&labelled("x", "x"), &nodes).is_none());
    }

    #[test]
    fn existing_pods_preferences_attract_the_pod() {
        let nodes = vec![
            zone_node(
                "a1",
                "a",
                vec![with_affinity(
                    "cache",
                    json!({"app": "cache"}),
                    "podAffinity",
                    false,
                    "web",
                    "zone",
                )],
            ),
            zone_node(
                "b1",
                "b",
                vec![with_affinity(
                    "lb",
                    json!({"app": "lb"}),
                    "podAffinity",
                    true,
                    "web",
                    "zone",
                )],
            ),
            zone_node("c1", "c", vec![]),
        ];
        let state = pre_score(&labelled("web", "web"), &nodes).expect("existing terms");
        let scores: Vec<i64> = nodes.iter().map(|n| score(&state, n)).collect();
        assert_eq!(scores, vec![10, HARD_POD_AFFINITY_WEIGHT, 0]);
    }

    #[test]
    fn normalize_flat_scores_is_zero() {
        let mut s = vec![5, 5];
        normalize(&mut s);
        assert_eq!(s, vec![0, 0]);
        let mut empty: Vec<i64> = vec![];
        normalize(&mut empty);
    }
}
