//! The DaemonSet controller's pure core: which nodes should run a daemon
//! pod (node selector, required node affinity, taints against the template's
//! plus the automatic tolerations), pinning a pod to its node through
//! required node affinity on `metadata.name`, and which node a pod targets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};

use crate::controllers::nodelifecycle::logic::{NOT_READY, UNREACHABLE, tolerates};

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

/// True if the pod spec may run on the node: node selector, required node
/// affinity, and every NoSchedule/NoExecute taint tolerated.
pub fn fits(spec: &PodSpec, node: &Node) -> bool {
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
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
        return false;
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
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
}
