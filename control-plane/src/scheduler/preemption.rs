//! DefaultPreemption, pure: when a pod fits nowhere, find the node where
//! evicting the fewest / least important lower-priority pods makes it fit,
//! or explain why preemption cannot help (the `preemption: ...` half of the
//! `FailedScheduling` message).
//!
//! Known simplifications: PodDisruptionBudgets are not consulted, and the
//! victims' share of inter-pod affinity / topology spread counts is not
//! subtracted (the filters reuse the cycle's PreFilter state).

use std::cmp::Ordering;
use std::sync::Arc;

use super::algorithm::FitError;
use super::node_info::{NodeInfo, Snapshot};
use super::plugins::{self, Code, CycleState, Status};
use super::pod_info::PodInfo;

/// Status of nodes where preemption cannot help.
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
/// Status of nodes without lower-priority pods.
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
/// At least this many candidate nodes are dry-run (`minCandidateNodesAbsolute`).
pub const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;
/// Share of nodes dry-run (`minCandidateNodesPercentage`).
pub const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;

/// A node where preemption makes the pod fit, and whom it evicts.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Index of the node in the snapshot.
    pub node: usize,
    /// Pods to delete.
    pub victims: Vec<Arc<PodInfo>>,
}

/// What preemption decided.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Evict these pods and nominate the node.
    Preempt(Candidate),
    /// Preemption cannot help; the `preemption: ...` message.
    Failed(String),
}

/// Whether the pod may preempt at all; `Err` carries the message.
fn eligible(pod: &PodInfo, snapshot: &Snapshot<'_>) -> Result<(), String> {
    if pod.never_preempts {
        return Err("preemption: not eligible due to preemptionPolicy=Never".into());
    }
    if let Some(nominated) = pod.nominated_node()
        && let Some(node) = snapshot.nodes.iter().find(|n| n.name == nominated)
        && node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < pod.priority)
    {
        return Err(
            "preemption: not eligible due to a terminating pod on the nominated node".into(),
        );
    }
    Ok(())
}

/// `MoreImportantPod`: higher priority first, then the one started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (a.start_time, b.start_time) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// Dry-runs preemption on one node (`SelectVictimsOnNode`): remove every
/// lower-priority pod, check the pod fits, then reprieve the most
/// important victims while it still fits.
pub fn select_victims(
    pod: &PodInfo,
    state: &CycleState,
    node: &NodeInfo,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let mut sim = node.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::new(Code::Unresolvable, NO_VICTIMS));
    }
    for p in &potential {
        sim.remove_pod(&p.key);
    }
    plugins::run_filters(pod, state, &sim)?;
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for p in potential {
        sim.add_pod(p.clone());
        if plugins::run_filters(pod, state, &sim).is_err() {
            sim.remove_pod(&p.key);
            victims.push(p);
        }
    }
    Ok(victims)
}

/// Orders candidates as `pickOneNodeForPreemption` does (best first):
/// lowest highest-victim priority, lowest priority sum, fewest victims,
/// latest start among the highest-priority victims.
fn better(a: &Candidate, b: &Candidate) -> Ordering {
    let top = |c: &Candidate| {
        c.victims
            .iter()
            .map(|v| v.priority)
            .max()
            .unwrap_or(i32::MIN)
    };
    let sum = |c: &Candidate| -> i64 {
        c.victims
            .iter()
            .map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1)
            .sum()
    };
    let earliest_top = |c: &Candidate| {
        let t = top(c);
        c.victims
            .iter()
            .filter(|v| v.priority == t)
            .filter_map(|v| v.start_time)
            .min()
    };
    top(a)
        .cmp(&top(b))
        .then_with(|| sum(a).cmp(&sum(b)))
        .then_with(|| a.victims.len().cmp(&b.victims.len()))
        .then_with(|| earliest_top(b).cmp(&earliest_top(a)))
}

/// Runs preemption for `pod` after `fit` rejected every node. `offset`
/// picks where the dry run starts (random in production).
pub fn preempt(
    pod: &PodInfo,
    snapshot: &Snapshot<'_>,
    state: &CycleState,
    fit: &FitError,
    offset: usize,
) -> Outcome {
    if let Err(msg) = eligible(pod, snapshot) {
        return Outcome::Failed(msg);
    }
    let mut statuses: Vec<(usize, Status)> = Vec::new();
    let mut potential: Vec<usize> = Vec::new();
    for (idx, status) in &fit.failures {
        if status.code == Code::Unschedulable {
            potential.push(*idx);
        } else {
            statuses.push((*idx, Status::new(Code::Unresolvable, NOT_HELPFUL)));
        }
    }
    let absent = fit
        .absent
        .as_ref()
        .map(|(n, _)| (*n, Status::new(Code::Unresolvable, NOT_HELPFUL)));
    let num_all = snapshot.nodes.len();
    let wanted = (num_all * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential.len());
    let mut candidates: Vec<Candidate> = Vec::new();
    let n = potential.len();
    for i in 0..n {
        if candidates.len() >= wanted {
            break;
        }
        let idx = potential[(offset + i) % n];
        match select_victims(pod, state, &snapshot.nodes[idx]) {
            Ok(victims) => candidates.push(Candidate { node: idx, victims }),
            Err(status) => statuses.push((idx, status)),
        }
    }
    if candidates.is_empty() {
        let inner = FitError {
            num_all_nodes: num_all,
            failures: statuses,
            absent,
            post_filter_msg: None,
        };
        return Outcome::Failed(format!("preemption: {}", inner.message_without_period()));
    }
    candidates.sort_by(better);
    Outcome::Preempt(candidates.swap_remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::algorithm::{Algorithm, ScheduleError};
    use crate::scheduler::node_info::count_image_nodes;
    use crate::scheduler::node_info::testing::{node, pod};
    use rand::SeedableRng;
    use serde_json::json;

    fn prio_pod(name: &str, priority: i32, cpu: &str, start: &str) -> Arc<PodInfo> {
        pod(
            name,
            json!({"spec": {"priority": priority, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"startTime": start}}),
        )
    }

    fn run(p: &PodInfo, nodes: &[NodeInfo]) -> Outcome {
        let counts = count_image_nodes(nodes);
        let snap = Snapshot::new(nodes, &counts);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let err = Algorithm::new(0)
            .schedule(p, &snap, &mut rng)
            .expect_err("no fit");
        let ScheduleError::Fit(fe) = err else {
            panic!("fit error")
        };
        let state = plugins::pre_filter(p, &snap);
        preempt(p, &snap, &state, &fe, 0)
    }

    fn full_node(name: &str, pods: &[(&str, i32, &str, &str)]) -> NodeInfo {
        let mut n = NodeInfo::new(node(name, json!({})));
        for (pn, prio, cpu, start) in pods {
            n.add_pod(prio_pod(pn, *prio, cpu, start));
        }
        n
    }

    const T1: &str = "2024-01-01T00:00:00Z";
    const T2: &str = "2024-01-02T00:00:00Z";

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let nodes = vec![
            full_node("n0", &[("a", 10, "2", T1), ("b", 10, "2", T1)]),
            full_node(
                "n1",
                &[("c", 5, "1", T1), ("d", 5, "1", T1), ("e", 5, "2", T1)],
            ),
            full_node("n2", &[("f", 100, "4", T1)]),
        ];
        let p = prio_pod("p", 50, "2", T2);
        let Outcome::Preempt(c) = run(&p, &nodes) else {
            panic!("should preempt")
        };
        // n1's victims have priority 5 < 10; reprieve keeps c and d (2 cpu) and evicts e.
        assert_eq!(c.node, 1);
        let names: Vec<_> = c.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["e"]);
    }

    #[test]
    fn fewer_victims_break_priority_ties() {
        let nodes = vec![
            full_node(
                "n0",
                &[("a", 10, "1", T1), ("b", 10, "1", T1), ("c", 10, "2", T1)],
            ),
            full_node("n1", &[("d", 10, "2", T1), ("e", 10, "2", T1)]),
        ];
        // Needs 3 cpu: n0 evicts b... at least two pods (sum 20); n1 evicts both (sum 20) too.
        let p = prio_pod("p", 50, "3", T2);
        let Outcome::Preempt(c) = run(&p, &nodes) else {
            panic!("should preempt")
        };
        assert_eq!(c.victims.len(), 2);
        let needs_one = prio_pod("p", 50, "2", T2);
        let Outcome::Preempt(c) = run(&needs_one, &nodes) else {
            panic!("should preempt")
        };
        assert_eq!(c.victims.len(), 1);
    }

    #[test]
    fn later_started_victims_are_preferred() {
        let nodes = vec![
            full_node("old", &[("a", 10, "4", T1)]),
            full_node("new", &[("b", 10, "4", T2)]),
        ];
        let Outcome::Preempt(c) = run(&prio_pod("p", 50, "1", T2), &nodes) else {
            panic!()
        };
        assert_eq!(c.node, 1, "evict the pod that started later");
    }

    #[test]
    fn explains_when_preemption_cannot_help() {
        let mut tainted = NodeInfo::new(node(
            "t",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ));
        tainted.add_pod(prio_pod("x", 1, "4", T1));
        let nodes = vec![
            tainted,
            full_node("same", &[("a", 50, "4", T1)]),
            full_node("big", &[("b", 1, "1", T1)]),
        ];
        let p = prio_pod("p", 50, "5", T2);
        let Outcome::Failed(msg) = run(&p, &nodes) else {
            panic!("no candidate")
        };
        assert_eq!(
            msg,
            "preemption: 0/3 nodes are available: 1 Insufficient cpu, \
             1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling"
        );
        let never = pod(
            "p",
            json!({"spec": {"preemptionPolicy": "Never", "priority": 50,
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "5"}}}]}}),
        );
        let Outcome::Failed(msg) = run(&never, &nodes) else {
            panic!()
        };
        assert_eq!(
            msg,
            "preemption: not eligible due to preemptionPolicy=Never"
        );
    }

    #[test]
    fn waits_for_terminating_victims_on_the_nominated_node() {
        let mut n = full_node("n0", &[]);
        n.add_pod(pod(
            "dying",
            json!({"metadata": {"deletionTimestamp": T1}, "spec": {"priority": 1,
            "containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "4"}}}]}}),
        ));
        let p = pod(
            "p",
            json!({"spec": {"priority": 50, "containers": [{"name": "c", "image": "x",
            "resources": {"requests": {"cpu": "1"}}}]}, "status": {"nominatedNodeName": "n0"}}),
        );
        let Outcome::Failed(msg) = run(&p, &[n]) else {
            panic!()
        };
        assert_eq!(
            msg,
            "preemption: not eligible due to a terminating pod on the nominated node"
        );
    }
}
