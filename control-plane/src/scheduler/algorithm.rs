//! One scheduling attempt for one pod over a snapshot: PreFilter, find
//! feasible nodes (stopping after `percentageOfNodesToScore`, starting
//! where the previous attempt stopped), score them and pick the best
//! (ties broken at random), or explain why none fits in Kubernetes' words.

use std::collections::BTreeMap;

use rand::Rng;

use super::node_info::{NodeInfo, Snapshot};
use super::plugins::{self, Code, Status};
use super::pod_info::PodInfo;

/// Below this many nodes every node is evaluated (`minFeasibleNodesToFind`).
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this (`minFeasibleNodesPercentageToFind`).
pub const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Message when the cluster has no nodes at all (`ErrNoNodesAvailable`).
pub const NO_NODES_MSG: &str = "no nodes available to schedule pods";

/// How many feasible nodes to find before scoring (`numFeasibleNodesToFind`):
/// all below 100 nodes; else `percentage`% of them (0 = adaptive:
/// 50% − 1% per 125 nodes, at least 5%), at least 100.
pub fn num_feasible_nodes_to_find(percentage: u32, all: usize) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let mut pct = percentage as usize;
    if pct == 0 {
        pct = 50usize
            .saturating_sub(all / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE);
    }
    let pct = pct.min(100);
    (all * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Why a pod fits no node: each rejecting node's status, as Kubernetes'
/// `FitError`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FitError {
    /// Nodes in the snapshot.
    pub num_all_nodes: usize,
    /// Rejecting nodes (index into the snapshot) and why.
    pub failures: Vec<(usize, Status)>,
    /// Nodes never evaluated because PreFilter narrowed the candidates,
    /// with the status they count under.
    pub absent: Option<(usize, Status)>,
    /// What PostFilter (preemption) said, e.g. `preemption: 0/3 nodes ...`.
    pub post_filter_msg: Option<String>,
}

impl FitError {
    /// The reasons histogram, sorted as Kubernetes sorts it (as strings,
    /// count included).
    pub fn histogram(&self) -> Vec<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, status) in &self.failures {
            for r in &status.reasons {
                *counts.entry(r.as_str()).or_insert(0) += 1;
            }
        }
        if let Some((n, status)) = &self.absent {
            for r in &status.reasons {
                *counts.entry(r.as_str()).or_insert(0) += n;
            }
        }
        let mut out: Vec<String> = counts
            .into_iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        out.sort();
        out
    }

    /// The `FailedScheduling` message, e.g. `0/3 nodes are available: 1
    /// Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector.
    /// preemption: 0/3 nodes are available: 3 Preemption is not helpful for
    /// scheduling.`
    pub fn message(&self) -> String {
        let mut msg = format!("0/{} nodes are available", self.num_all_nodes);
        let hist = self.histogram();
        if hist.is_empty() {
            msg.push('.');
        } else {
            msg.push_str(": ");
            msg.push_str(&hist.join(", "));
            msg.push('.');
        }
        if let Some(post) = &self.post_filter_msg {
            msg.push(' ');
            msg.push_str(post.trim_end_matches('.'));
            msg.push('.');
        }
        msg
    }

    /// The inner text of a FitError without its final period (used inside
    /// the preemption message).
    pub fn message_without_period(&self) -> String {
        self.message().trim_end_matches('.').to_string()
    }
}

/// Why an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleError {
    /// The cluster has no nodes.
    NoNodes,
    /// No node passed the filters.
    Fit(FitError),
}

impl ScheduleError {
    /// The user-facing message.
    pub fn message(&self) -> String {
        match self {
            ScheduleError::NoNodes => NO_NODES_MSG.to_string(),
            ScheduleError::Fit(e) => e.message(),
        }
    }
}

/// A successful attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node (index into the snapshot).
    pub node: usize,
    /// Nodes the filters ran on.
    pub evaluated: usize,
    /// Nodes that passed.
    pub feasible: usize,
}

/// The scheduling algorithm and its round-robin position.
#[derive(Debug)]
pub struct Algorithm {
    /// `percentageOfNodesToScore` (0 = adaptive).
    pub percentage_of_nodes_to_score: u32,
    next_start: usize,
}

/// PreFilter of NodeAffinity: when every required term pins node names
/// (`matchFields metadata.name In`), only those nodes are candidates.
fn pinned_candidates(pod: &PodInfo) -> Option<Vec<&str>> {
    let terms = pod.required_node_affinity.as_ref()?;
    let mut names = Vec::new();
    for t in &terms.0 {
        names.extend(t.pinned_names()?.iter().map(String::as_str));
    }
    Some(names)
}

impl Algorithm {
    /// An algorithm evaluating `percentage`% of nodes (0 = adaptive).
    pub fn new(percentage: u32) -> Algorithm {
        Algorithm {
            percentage_of_nodes_to_score: percentage,
            next_start: 0,
        }
    }

    /// Schedules `pod` on the best node of `snapshot`.
    pub fn schedule(
        &mut self,
        pod: &PodInfo,
        snapshot: &Snapshot<'_>,
        rng: &mut impl Rng,
    ) -> Result<ScheduleResult, ScheduleError> {
        let nodes = snapshot.nodes;
        if nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let state = plugins::pre_filter(pod, snapshot);

        // The node preemption nominated is tried first, alone.
        if let Some(nominated) = pod.nominated_node()
            && let Some(idx) = nodes.iter().position(|n| n.name == nominated)
            && plugins::run_filters(pod, &state, &nodes[idx]).is_ok()
        {
            return Ok(ScheduleResult {
                node: idx,
                evaluated: 1,
                feasible: 1,
            });
        }

        let pinned: Option<Vec<usize>> = pinned_candidates(pod).map(|names| {
            let mut idx: Vec<usize> = nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| names.contains(&n.name.as_str()))
                .map(|(i, _)| i)
                .collect();
            idx.sort_unstable();
            idx
        });
        let candidates = pinned.as_ref().map_or(nodes.len(), Vec::len);
        let to_find = num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, candidates);

        let mut feasible: Vec<usize> = Vec::with_capacity(to_find.min(candidates));
        let mut failures = Vec::new();
        let mut evaluated = 0;
        let start = if candidates == 0 {
            0
        } else {
            self.next_start % candidates
        };
        for i in 0..candidates {
            let slot = (start + i) % candidates;
            let idx = pinned.as_ref().map_or(slot, |p| p[slot]);
            evaluated += 1;
            match plugins::run_filters(pod, &state, &nodes[idx]) {
                Ok(()) => {
                    feasible.push(idx);
                    if feasible.len() >= to_find {
                        break;
                    }
                }
                Err(status) => failures.push((idx, status)),
            }
        }
        if candidates > 0 {
            self.next_start = (start + evaluated) % candidates;
        }

        if feasible.is_empty() {
            let absent = pinned.as_ref().and_then(|p| {
                let n = nodes.len() - p.len();
                (n > 0).then(|| {
                    (
                        n,
                        Status::new(
                            Code::Unresolvable,
                            "node(s) didn't satisfy plugin(s) [NodeAffinity]",
                        ),
                    )
                })
            });
            return Err(ScheduleError::Fit(FitError {
                num_all_nodes: nodes.len(),
                failures,
                absent,
                post_filter_msg: None,
            }));
        }
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                node: feasible[0],
                evaluated,
                feasible: 1,
            });
        }
        let infos: Vec<&NodeInfo> = feasible.iter().map(|i| &nodes[*i]).collect();
        let scores = plugins::score_nodes(pod, &infos, snapshot);
        Ok(ScheduleResult {
            node: feasible[select_host(&scores, rng)],
            evaluated,
            feasible: feasible.len(),
        })
    }
}

/// Index of the highest score, ties broken uniformly at random
/// (reservoir sampling, as `selectHost` does).
pub fn select_host(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 1;
    for i in 1..scores.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::count_image_nodes;
    use crate::scheduler::node_info::testing::{node, pod, pod_req};
    use rand::SeedableRng;
    use serde_json::json;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn adaptive_percentage_matches_kubernetes() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        assert_eq!(num_feasible_nodes_to_find(0, 500), 230, "46% of 500");
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500, "10% of 5000");
        assert_eq!(num_feasible_nodes_to_find(0, 10000), 500, "floor of 5%");
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(num_feasible_nodes_to_find(10, 200), 100, "never below 100");
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
        assert_eq!(num_feasible_nodes_to_find(150, 5000), 5000);
    }

    fn nodes(n: usize) -> Vec<NodeInfo> {
        (0..n)
            .map(|i| NodeInfo::new(node(&format!("n{i}"), json!({}))))
            .collect()
    }

    #[test]
    fn round_robin_start_moves_past_evaluated_nodes() {
        let ns = nodes(300);
        let counts = count_image_nodes(&ns);
        let snap = Snapshot::new(&ns, &counts);
        let mut alg = Algorithm::new(0);
        let p = pod_req("p", "100m", "1Mi");
        let r = alg.schedule(&p, &snap, &mut rng()).expect("fits");
        // 300 nodes → 50 - 2 = 48% → 144 nodes to find.
        assert_eq!((r.evaluated, r.feasible), (144, 144));
        assert!(r.node < 144);
        let r = alg.schedule(&p, &snap, &mut rng()).expect("fits");
        assert!(
            (144..288).contains(&r.node),
            "second pass starts at 144: {}",
            r.node
        );
        let r = alg.schedule(&p, &snap, &mut rng()).expect("fits");
        assert_eq!(r.evaluated, 144);
        assert!(r.node >= 288 || r.node < 132, "wraps around: {}", r.node);
    }

    #[test]
    fn best_node_wins() {
        let mut ns = nodes(3);
        ns[0].add_pod(pod_req("a", "3", "20Gi"));
        ns[2].add_pod(pod_req("b", "1", "1Gi"));
        let counts = count_image_nodes(&ns);
        let snap = Snapshot::new(&ns, &counts);
        let r = Algorithm::new(0)
            .schedule(&pod_req("p", "500m", "1Gi"), &snap, &mut rng())
            .expect("fits");
        assert_eq!(r.node, 1);
        assert_eq!((r.evaluated, r.feasible), (3, 3));
    }

    #[test]
    fn ties_are_broken_at_random_but_fairly() {
        let mut seen = [0usize; 3];
        let mut r = rng();
        for _ in 0..300 {
            seen[select_host(&[5, 9, 9, 1][..3], &mut r)] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 100 && seen[2] > 100, "{seen:?}");
        assert_eq!(select_host(&[1, 2, 3], &mut r), 2);
        assert_eq!(select_host(&[7], &mut r), 0);
    }

    #[test]
    fn fit_error_message_has_kubernetes_shape() {
        let mut ns = nodes(3);
        let mut n0 = (*ns[0].node).clone();
        n0.metadata.labels = Some([("disk".to_string(), "ssd".to_string())].into());
        ns[0].set_node(std::sync::Arc::new(n0));
        ns[0].add_pod(pod_req("a", "3900m", "1Gi"));
        let counts = count_image_nodes(&ns);
        let snap = Snapshot::new(&ns, &counts);
        // n0 is full; n1 and n2 don't carry the label.
        let p = pod(
            "p",
            json!({"spec": {"nodeSelector": {"disk": "ssd"},
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "200m"}}}]}}),
        );
        let err = Algorithm::new(0)
            .schedule(&p, &snap, &mut rng())
            .expect_err("no fit");
        let ScheduleError::Fit(mut fe) = err else {
            panic!("fit error expected")
        };
        assert_eq!(
            fe.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        fe.post_filter_msg = Some(
            "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling"
                .into(),
        );
        assert_eq!(
            fe.message(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
             preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
        );
        let empty = Snapshot::new(&[], &counts);
        assert_eq!(
            Algorithm::new(0).schedule(&p, &empty, &mut rng()),
            Err(ScheduleError::NoNodes)
        );
        assert_eq!(
            ScheduleError::NoNodes.message(),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn histogram_sorts_as_strings() {
        let st = |r: &str| Status::new(Code::Unschedulable, r.to_string());
        let mut failures = Vec::new();
        for i in 0..10 {
            failures.push((i, st("b")));
        }
        failures.push((10, st("a")));
        failures.push((11, st("a")));
        let fe = FitError {
            num_all_nodes: 12,
            failures,
            ..Default::default()
        };
        // "10 b" sorts before "2 a", as Go's sort.Strings does.
        assert_eq!(fe.message(), "0/12 nodes are available: 10 b, 2 a.");
    }

    #[test]
    fn pinned_nodes_narrow_the_candidates() {
        let ns = nodes(5);
        let counts = count_image_nodes(&ns);
        let snap = Snapshot::new(&ns, &counts);
        let daemon = |target: &str| {
            pod(
                "ds",
                json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [target]}]}]}}}}}),
            )
        };
        let r = Algorithm::new(0)
            .schedule(&daemon("n3"), &snap, &mut rng())
            .expect("fits");
        assert_eq!((r.node, r.evaluated), (3, 1));
        let err = Algorithm::new(0)
            .schedule(&daemon("gone"), &snap, &mut rng())
            .expect_err("absent");
        assert_eq!(
            err.message(),
            "0/5 nodes are available: 5 node(s) didn't satisfy plugin(s) [NodeAffinity]."
        );
    }

    #[test]
    fn nominated_node_is_tried_first() {
        let ns = nodes(5);
        let counts = count_image_nodes(&ns);
        let snap = Snapshot::new(&ns, &counts);
        let p = pod("p", json!({"status": {"nominatedNodeName": "n4"}}));
        let r = Algorithm::new(0)
            .schedule(&p, &snap, &mut rng())
            .expect("fits");
        assert_eq!((r.node, r.evaluated), (4, 1));
    }
}
