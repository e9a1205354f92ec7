//! The DaemonSet controller's pure core: which nodes should run a daemon
//! pod and which may keep one (node name, node selector, required node
//! affinity, taints against the template's plus the automatic tolerations),
//! pinning a pod to its node through
//! required node affinity on `metadata.name`, and which node a pod targets.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSetUpdateStrategy;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use kube::ResourceExt;

use crate::controllers::deployment::util::scaled_value;
use crate::controllers::nodelifecycle::logic::{NOT_READY, UNREACHABLE, tolerates};
use crate::controllers::pods::{self, is_available, is_ready, is_terminating};

/// Label with the template hash of a daemon pod.
pub const REVISION_HASH: &str = "controller-revision-hash";

fn tol(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        value: None,
        toleration_seconds: None,
    }
}

/// The tolerations Kubernetes adds to every daemon pod.
pub fn auto_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut t = vec![
        tol(NOT_READY, "NoExecute"),
        tol(UNREACHABLE, "NoExecute"),
        tol("node.kubernetes.io/disk-pressure", "NoSchedule"),
        tol("node.kubernetes.io/memory-pressure", "NoSchedule"),
        tol("node.kubernetes.io/pid-pressure", "NoSchedule"),
        tol("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        t.push(tol("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    t
}

/// Adds the automatic tolerations the spec lacks.
pub fn with_auto_tolerations(spec: &mut PodSpec) {
    let host = spec.host_network.unwrap_or(false);
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in auto_tolerations(host) {
        if !list.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            list.push(t);
        }
    }
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.clone().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let name = node.metadata.name.as_deref();
    let exprs = term.match_expressions.iter().flatten();
    let fields = term.match_fields.iter().flatten();
    let has_any = term
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
        || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
    has_any
        && exprs
            .into_iter()
            .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .into_iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, name))
}

/// Whether a daemon pod belongs on a node (Kubernetes'
/// `NodeShouldRunDaemonPod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should run there: one is created if missing.
    pub should_run: bool,
    /// A daemon pod already there may stay. Differs from `should_run` only
    /// for an untolerated NoSchedule taint, which keeps new pods away but
    /// does not evict (NoExecute does).
    pub should_continue_running: bool,
}

impl Placement {
    const NOWHERE: Placement = Placement {
        should_run: false,
        should_continue_running: false,
    };
}

/// Where the daemon pod spec (with its automatic tolerations) may run on
/// `node`: `spec.nodeName`, node selector and required node affinity must
/// match; NoSchedule and NoExecute taints must be tolerated to start a pod,
/// NoExecute ones to keep it.
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return Placement::NOWHERE;
    }
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return Placement::NOWHERE;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required
        && !req
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
    {
        return Placement::NOWHERE;
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
    };
    let evicts = untolerated("NoExecute");
    Placement {
        should_run: !evicts && !untolerated("NoSchedule"),
        should_continue_running: !evicts,
    }
}

/// True if a daemon pod should run on the node ([`placement`]).
pub fn fits(spec: &PodSpec, node: &Node) -> bool {
    placement(spec, node).should_run
}

/// Kubernetes' `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node
/// affinity becomes exactly one term selecting `node` by name.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod runs on or is pinned to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// What one sync of a DaemonSet does, and the status it reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that get a new daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Nodes that should run the daemon (`desiredNumberScheduled`).
    pub desired: i32,
    /// Of those, nodes running one (`currentNumberScheduled`).
    pub scheduled: i32,
    /// Nodes running one that should not (`numberMisscheduled`).
    pub misscheduled: i32,
    /// Desired nodes whose pod is ready (`numberReady`).
    pub ready: i32,
    /// Desired nodes whose pod is available (`numberAvailable`).
    pub available: i32,
    /// Desired nodes running the current template (`updatedNumberScheduled`).
    pub updated: i32,
}

/// Old-template pods a rolling update may replace, one per node.
struct Old {
    node: String,
    pod: Arc<Pod>,
    available: bool,
    /// The node should run the daemon, so a new pod may surge there.
    may_surge: bool,
}

/// Kubernetes' `manage` and `rollingUpdate` for one DaemonSet: `pods` are
/// the set's pods, `template_spec` its pod spec with the automatic
/// tolerations, `hash` the current revision's hash (pods of other hashes
/// are old). Failed pods and pods where the daemon may not stay are deleted;
/// a node with a terminating pod waits for it to go before getting a new one.
pub fn plan(
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    template_spec: &PodSpec,
    hash: &str,
    strategy: &DaemonSetUpdateStrategy,
    min_ready: i32,
    now: Timestamp,
) -> Plan {
    let mut p = Plan::default();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods {
        if let Some(n) = target_node(pod) {
            by_node.entry(n).or_default().push(pod.clone());
        }
    }
    let is_current = |pod: &Pod| pod.labels().get(REVISION_HASH).map(String::as_str) == Some(hash);
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let mut unavailable_nodes = 0;
    let mut old_pods: Vec<Old> = Vec::new();
    for node in nodes {
        let node_name = node.name_any();
        let place = placement(template_spec, node);
        let (terminating, here): (Vec<_>, Vec<_>) = by_node
            .remove(&node_name)
            .unwrap_or_default()
            .into_iter()
            .partition(|pod| is_terminating(pod));
        if !place.should_continue_running {
            if !here.is_empty() {
                p.misscheduled += 1;
            }
            p.delete.extend(here);
            continue;
        }
        // Failed daemon pods are deleted and replaced.
        let (failed, mut live): (Vec<_>, Vec<_>) = here
            .into_iter()
            .partition(|pod| pods::phase(pod) == "Failed");
        p.delete.extend(failed);
        live.sort_by_key(|pod| pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
        if !place.should_run {
            // An untolerated NoSchedule taint: the oldest pod may stay.
            if !live.is_empty() {
                p.misscheduled += 1;
            }
            p.delete.extend(live.iter().skip(1).cloned());
            if rolling && let Some(first) = live.first().filter(|pod| !is_current(pod)) {
                old_pods.push(Old {
                    node: node_name,
                    pod: first.clone(),
                    available: is_available(first, min_ready, now),
                    may_surge: false,
                });
            }
            continue;
        }
        p.desired += 1;
        if live.is_empty() {
            unavailable_nodes += 1;
            if terminating.is_empty() {
                p.create_on.push(node_name);
            }
            continue;
        }
        p.scheduled += 1;
        if live.iter().any(|pod| is_ready(pod)) {
            p.ready += 1;
        }
        if live.iter().any(|pod| is_available(pod, min_ready, now)) {
            p.available += 1;
        } else {
            unavailable_nodes += 1;
        }
        let (current, old): (Vec<_>, Vec<_>) = live.into_iter().partition(|pod| is_current(pod));
        if !current.is_empty() {
            p.updated += 1;
            // Keep the oldest current pod; extra current pods go, and old
            // ones once a current one is available (after a surge).
            p.delete.extend(current.iter().skip(1).cloned());
            if rolling && current.iter().any(|pod| is_available(pod, min_ready, now)) {
                p.delete.extend(old);
            }
        } else if let Some(first) = old.first() {
            p.delete.extend(old.iter().skip(1).cloned());
            if rolling {
                old_pods.push(Old {
                    node: node_name,
                    pod: first.clone(),
                    available: is_available(first, min_ready, now),
                    may_surge: true,
                });
            }
        }
    }
    // Pods pinned to nodes that no longer exist.
    p.delete.extend(
        by_node
            .into_values()
            .flatten()
            .filter(|pod| !is_terminating(pod)),
    );

    if !old_pods.is_empty() {
        let ru = strategy.rolling_update.clone().unwrap_or_default();
        let max_unavailable = ru
            .max_unavailable
            .as_ref()
            .map_or(Ok(1), |v| scaled_value(v, p.desired, false))
            .unwrap_or(1);
        let max_surge = ru
            .max_surge
            .as_ref()
            .map_or(Ok(0), |v| scaled_value(v, p.desired, true))
            .unwrap_or(0);
        let mut budget_unavailable = (max_unavailable - unavailable_nodes).max(0);
        let mut budget_surge = max_surge;
        for old in old_pods {
            if !old.available {
                // Replacing an unavailable pod costs no availability.
                p.delete.push(old.pod);
            } else if old.may_surge && budget_surge > 0 {
                budget_surge -= 1;
                p.create_on.push(old.node);
            } else if budget_unavailable > 0 {
                budget_unavailable -= 1;
                p.delete.push(old.pod);
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(name: &str, labels: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: None,
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn eligibility_uses_selector_affinity_and_taints() {
        let mut spec = PodSpec::default();
        with_auto_tolerations(&mut spec);
        let plain = node("n1", &[("disk", "ssd")], vec![]);
        assert!(fits(&spec, &plain));
        assert!(
            fits(
                &spec,
                &node(
                    "n2",
                    &[],
                    vec![
                        taint(UNREACHABLE, "NoExecute"),
                        taint("node.kubernetes.io/unschedulable", "NoSchedule")
                    ]
                )
            ),
            "automatic tolerations"
        );
        assert!(!fits(
            &spec,
            &node("n3", &[], vec![taint("dedicated", "NoSchedule")])
        ));
        assert!(fits(
            &spec,
            &node("n4", &[], vec![taint("soft", "PreferNoSchedule")])
        ));
        spec.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        assert!(fits(&spec, &plain));
        assert!(!fits(&spec, &node("n5", &[("disk", "hdd")], vec![])));
        spec.node_selector = None;
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "cpu".into(),
                            operator: "Gt".into(),
                            values: Some(vec!["4".into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        });
        assert!(fits(&spec, &node("big", &[("cpu", "8")], vec![])));
        assert!(!fits(&spec, &node("small", &[("cpu", "2")], vec![])));
    }

    #[test]
    fn no_schedule_keeps_running_pods_and_no_execute_evicts_them() {
        let mut spec = PodSpec::default();
        with_auto_tolerations(&mut spec);
        let kept = placement(
            &spec,
            &node("n1", &[], vec![taint("dedicated", "NoSchedule")]),
        );
        assert_eq!(
            kept,
            Placement {
                should_run: false,
                should_continue_running: true
            }
        );
        let evicted = placement(
            &spec,
            &node(
                "n2",
                &[],
                vec![
                    taint("dedicated", "NoSchedule"),
                    taint("dedicated", "NoExecute"),
                ],
            ),
        );
        assert_eq!(evicted, Placement::NOWHERE);
        assert_eq!(
            placement(&spec, &node("n3", &[], vec![])),
            Placement {
                should_run: true,
                should_continue_running: true
            }
        );
        spec.node_name = Some("n4".into());
        assert_eq!(
            placement(&spec, &node("n3", &[], vec![])),
            Placement::NOWHERE
        );
        assert!(fits(&spec, &node("n4", &[], vec![])));
    }

    #[test]
    fn pods_are_pinned_by_name() {
        let mut spec = PodSpec::default();
        pin_to_node(&mut spec, "n7");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        assert!(fits(&spec, &node("n7", &[], vec![])));
        assert!(!fits(&spec, &node("n8", &[], vec![])));
        let mut bound = pod.clone();
        if let Some(s) = bound.spec.as_mut() {
            s.node_name = Some("n9".into());
        }
        assert_eq!(target_node(&bound).as_deref(), Some("n9"));
        let mut twice = spec.clone();
        pin_to_node(&mut twice, "n8");
        let terms = twice
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|n| n.required_during_scheduling_ignored_during_execution)
            .map(|r| r.node_selector_terms.len());
        assert_eq!(terms, Some(1), "replaced, not appended");
    }

    fn daemon_pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        let at = ready.then(|| Timestamp::from_second(1_000).unwrap_or(Timestamp::UNIX_EPOCH));
        let mut p = crate::controllers::pods::testing::pod(name, "Running", node, at);
        p.metadata.labels = Some([(REVISION_HASH.to_string(), hash.to_string())].into());
        p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(500).unwrap_or(Timestamp::UNIX_EPOCH),
        ));
        Arc::new(p)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    }

    fn now() -> Timestamp {
        Timestamp::from_second(2_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn plan_creates_missing_pods_and_rolls_one_node_at_a_time() {
        let mut spec = PodSpec::default();
        with_auto_tolerations(&mut spec);
        let nodes: Vec<Arc<Node>> = ["a", "b", "c"]
            .iter()
            .map(|n| Arc::new(node(n, &[], vec![])))
            .collect();
        let pods = vec![
            daemon_pod("d-a", "a", "old", true),
            daemon_pod("d-b", "b", "old", true),
        ];
        let strategy = DaemonSetUpdateStrategy::default();
        let p = plan(&nodes, &pods, &spec, "new", &strategy, 0, now());
        assert_eq!(p.create_on, ["c"]);
        assert!(
            p.delete.is_empty(),
            "node c is already unavailable, which uses the budget of 1"
        );
        assert_eq!(
            (p.desired, p.scheduled, p.ready, p.available, p.updated),
            (3, 2, 2, 2, 0)
        );

        let mut pods = pods;
        pods.push(daemon_pod("d-c", "c", "new", true));
        let p = plan(&nodes, &pods, &spec, "new", &strategy, 0, now());
        assert_eq!(names(&p.delete), ["d-a"], "maxUnavailable 1: one old pod");
        assert!(p.create_on.is_empty());
        assert_eq!(p.updated, 1);

        // The deleted pod is terminating: its node waits for it to go.
        let mut terminating = (*pods[0]).clone();
        terminating.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
        pods[0] = Arc::new(terminating);
        let p = plan(&nodes, &pods, &spec, "new", &strategy, 0, now());
        assert!(p.create_on.is_empty(), "{:?}", p.create_on);
        assert!(p.delete.is_empty(), "a is unavailable: b must wait");
        pods.remove(0);
        let p = plan(&nodes, &pods, &spec, "new", &strategy, 0, now());
        assert_eq!(p.create_on, ["a"]);
    }

    #[test]
    fn plan_keeps_pods_under_no_schedule_and_evicts_under_no_execute() {
        let mut spec = PodSpec::default();
        with_auto_tolerations(&mut spec);
        let nodes = vec![
            Arc::new(node("a", &[], vec![taint("dedicated", "NoSchedule")])),
            Arc::new(node("b", &[], vec![taint("dedicated", "NoExecute")])),
            Arc::new(node("c", &[], vec![taint("dedicated", "NoSchedule")])),
        ];
        let pods = vec![
            daemon_pod("d-a", "a", "h", true),
            daemon_pod("d-b", "b", "h", true),
            daemon_pod("d-gone", "gone", "h", true),
        ];
        let strategy = DaemonSetUpdateStrategy::default();
        let p = plan(&nodes, &pods, &spec, "h", &strategy, 0, now());
        assert_eq!(names(&p.delete), ["d-b", "d-gone"]);
        assert!(p.create_on.is_empty(), "no new pod on c");
        assert_eq!((p.desired, p.misscheduled), (0, 2));

        let on_delete = DaemonSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        };
        let mut failed = (*daemon_pod("d-c", "c", "old", false)).clone();
        if let Some(st) = failed.status.as_mut() {
            st.phase = Some("Failed".into());
        }
        let mut with_failed = pods.clone();
        with_failed.push(Arc::new(failed));
        with_failed.push(daemon_pod("d-a2", "a", "old", true));
        let p = plan(&nodes, &with_failed, &spec, "h", &on_delete, 0, now());
        assert_eq!(
            names(&p.delete),
            ["d-a2", "d-b", "d-c", "d-gone"],
            "failed pods and extra pods go, even under OnDelete"
        );
    }
}
