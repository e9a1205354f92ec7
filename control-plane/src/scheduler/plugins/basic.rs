//! Per-node filters that look at one pod and one node only: NodeName,
//! NodeUnschedulable, TaintToleration, NodeAffinity (with `nodeSelector`)
//! and NodePorts, plus the NodeAffinity and TaintToleration scores.

use crate::scheduler::node_info::{NodeInfo, TAINT_UNSCHEDULABLE};
use crate::scheduler::pod_info::PodInfo;
use crate::scheduler::selectors::tolerated;

use super::{Code, FilterResult, Status};

/// NodeName's reason.
pub const ERR_NODE_NAME: &str = "node(s) didn't match the requested node name";
/// NodeUnschedulable's reason.
pub const ERR_UNSCHEDULABLE: &str = "node(s) were unschedulable";
/// NodeAffinity's reason.
pub const ERR_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
/// NodePorts' reason.
pub const ERR_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";

/// NodeName: a pod naming a node fits only that node.
pub fn node_name(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    match pod.node_name() {
        Some(n) if n != node.name => Err(Status::new(Code::Unresolvable, ERR_NODE_NAME)),
        _ => Ok(()),
    }
}

/// NodeUnschedulable: cordoned nodes take only pods tolerating
/// `node.kubernetes.io/unschedulable:NoSchedule`.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    if !node.unschedulable {
        return Ok(());
    }
    let taint = k8s_openapi::api::core::v1::Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        value: None,
        effect: "NoSchedule".into(),
        time_added: None,
    };
    if tolerated(&pod.tolerations, &taint) {
        Ok(())
    } else {
        Err(Status::new(Code::Unresolvable, ERR_UNSCHEDULABLE))
    }
}

/// TaintToleration: every NoSchedule/NoExecute taint (including the
/// not-ready / unreachable taint of a node that is not Ready) must be
/// tolerated. Reports the first untolerated taint, as Kubernetes does.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    for taint in &node.taints {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerated(&pod.tolerations, taint)
        {
            return Err(Status::new(
                Code::Unresolvable,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

/// NodeAffinity: `nodeSelector` and required node affinity must both match.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let labels = node.labels();
    let selector_ok = pod.node_selector.as_ref().is_none_or(|s| s.matches(labels));
    let affinity_ok = pod
        .required_node_affinity
        .as_ref()
        .is_none_or(|t| t.matches(&node.name, labels));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Status::new(Code::Unresolvable, ERR_NODE_AFFINITY))
    }
}

/// NodePorts: the pod's host ports must be free on the node.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> FilterResult {
    let clash = pod
        .host_ports
        .iter()
        .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
    if clash {
        Err(Status::new(Code::Unschedulable, ERR_NODE_PORTS))
    } else {
        Ok(())
    }
}

/// NodeAffinity score (raw): the sum of the weights of the preferred terms
/// the node matches. Normalised to 0–100 across nodes afterwards.
pub fn node_affinity_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let labels = node.labels();
    pod.preferred_node_affinity
        .iter()
        .filter(|(_, term)| term.matches(&node.name, labels))
        .map(|(w, _)| i64::from(*w))
        .sum()
}

/// TaintToleration score (raw): how many PreferNoSchedule taints the pod
/// does not tolerate. Normalised in reverse (fewer is better).
pub fn taint_score(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let prefer_tols: Vec<_> = pod
        .tolerations
        .iter()
        .filter(|t| {
            t.effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        })
        .cloned()
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&prefer_tols, t))
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod};
    use serde_json::json;

    fn ni(extra: serde_json::Value) -> NodeInfo {
        NodeInfo::new(node("n1", extra))
    }

    fn reason(r: FilterResult) -> Option<(Code, String)> {
        r.err().map(|s| (s.code, s.reasons.join("|")))
    }

    #[test]
    fn node_name_filter() {
        let n = ni(json!({}));
        assert!(node_name(&pod("p", json!({})), &n).is_ok());
        assert!(node_name(&pod("p", json!({"spec": {"nodeName": "n1"}})), &n).is_ok());
        assert_eq!(
            reason(node_name(
                &pod("p", json!({"spec": {"nodeName": "n2"}})),
                &n
            )),
            Some((Code::Unresolvable, ERR_NODE_NAME.into()))
        );
    }

    #[test]
    fn cordoned_nodes_need_the_toleration() {
        let cordoned = ni(json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            reason(node_unschedulable(&pod("p", json!({})), &cordoned)),
            Some((Code::Unresolvable, ERR_UNSCHEDULABLE.into()))
        );
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [
            {"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert!(node_unschedulable(&tolerant, &cordoned).is_ok());
        assert!(node_unschedulable(&pod("p", json!({})), &ni(json!({}))).is_ok());
    }

    #[test]
    fn taints_and_tolerations() {
        let n = ni(json!({"spec": {"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "evict", "effect": "NoExecute"}]}}));
        assert_eq!(
            reason(taint_toleration(&pod("p", json!({})), &n)),
            Some((
                Code::Unresolvable,
                "node(s) had untolerated taint {dedicated: gpu}".into()
            ))
        );
        let half = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "dedicated", "value": "gpu"}]}}),
        );
        assert_eq!(
            reason(taint_toleration(&half, &n)),
            Some((
                Code::Unresolvable,
                "node(s) had untolerated taint {evict: }".into()
            ))
        );
        let all = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "dedicated", "value": "gpu"},
            {"key": "evict", "operator": "Exists", "effect": "NoExecute"}]}}),
        );
        assert!(
            taint_toleration(&all, &n).is_ok(),
            "PreferNoSchedule never filters"
        );
        let not_ready =
            ni(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            reason(taint_toleration(&pod("p", json!({})), &not_ready)),
            Some((
                Code::Unresolvable,
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into()
            ))
        );
        let daemon = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}}),
        );
        assert!(taint_toleration(&daemon, &not_ready).is_ok());
    }

    #[test]
    fn taint_score_counts_intolerable_prefer_no_schedule() {
        let n = ni(json!({"spec": {"taints": [
            {"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"},
            {"key": "c", "effect": "NoSchedule"}]}}));
        assert_eq!(taint_score(&pod("p", json!({})), &n), 2);
        let p = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"},
            {"key": "b", "operator": "Exists", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            taint_score(&p, &n),
            1,
            "a NoSchedule toleration does not cover PreferNoSchedule"
        );
    }

    #[test]
    fn node_selector_and_required_affinity() {
        let n = ni(json!({"metadata": {"labels": {"zone": "a", "disk": "ssd", "gen": "5"}}}));
        let ok = |extra: serde_json::Value| node_affinity(&pod("p", extra), &n).is_ok();
        assert!(ok(json!({})));
        assert!(ok(json!({"spec": {"nodeSelector": {"zone": "a"}}})));
        assert!(!ok(
            json!({"spec": {"nodeSelector": {"zone": "a", "disk": "hdd"}}})
        ));
        let aff = |terms: serde_json::Value| {
            json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}})
        };
        assert!(ok(aff(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])
        )));
        assert!(!ok(aff(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["4"]}]}])
        )));
        assert!(ok(aff(
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        )));
        assert!(!ok(aff(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
        )));
        // nodeSelector and affinity must both hold.
        let mut both = aff(json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}]));
        both["spec"]["nodeSelector"] = json!({"disk": "hdd"});
        assert!(!ok(both));
        assert_eq!(
            reason(node_affinity(
                &pod("p", json!({"spec": {"nodeSelector": {"x": "y"}}})),
                &n
            )),
            Some((Code::Unresolvable, ERR_NODE_AFFINITY.into()))
        );
    }

    #[test]
    fn preferred_node_affinity_score() {
        let n = ni(json!({"metadata": {"labels": {"zone": "a", "disk": "ssd"}}}));
        let p = pod(
            "p",
            json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
            {"weight": 7, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}}}),
        );
        assert_eq!(node_affinity_score(&p, &n), 15);
        assert_eq!(node_affinity_score(&pod("q", json!({})), &n), 0);
    }

    #[test]
    fn host_ports() {
        let mut n = ni(json!({}));
        let web = |name: &str, ip: Option<&str>, proto: &str| {
            let mut port = json!({"containerPort": 80, "hostPort": 8080, "protocol": proto});
            if let Some(ip) = ip {
                port["hostIP"] = json!(ip);
            }
            pod(
                name,
                json!({"spec": {"containers": [{"name": "c", "image": "x", "ports": [port]}]}}),
            )
        };
        assert!(node_ports(&web("a", None, "TCP"), &n).is_ok());
        n.add_pod(web("a", Some("10.0.0.1"), "TCP"));
        assert_eq!(
            reason(node_ports(&web("b", None, "TCP"), &n)),
            Some((Code::Unschedulable, ERR_NODE_PORTS.into()))
        );
        assert!(node_ports(&web("b", Some("10.0.0.2"), "TCP"), &n).is_ok());
        assert!(node_ports(&web("b", None, "UDP"), &n).is_ok());
        assert!(node_ports(&pod("c", json!({})), &n).is_ok());
    }
}
