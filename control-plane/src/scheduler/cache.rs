//! The scheduler cache: node infos kept up to date incrementally from
//! node and pod watch events, plus assumed pods (placed by the scheduler,
//! binding in flight) so the next pods see the capacity they took at once,
//! and nominations from preemption. The scheduling loop owns it; a cycle
//! reads it in place as its [`Snapshot`], so nothing is copied per pod.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::node_info::{NodeInfo, Snapshot};
use super::pod_info::PodInfo;

#[derive(Debug)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    /// Placed by us, not yet seen bound in a watch event.
    assumed: bool,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<Arc<str>, PodState>,
    /// Pods on nodes the cache does not know (yet): node → pod keys.
    orphans: HashMap<String, Vec<Arc<str>>>,
    image_nodes: HashMap<String, usize>,
    /// Placed pods with pod (anti-)affinity terms.
    affinity_pods: usize,
    /// Placed pods with required anti-affinity terms.
    anti_affinity_pods: usize,
    /// Nominated pod → node and the pod.
    nominations: HashMap<Arc<str>, (String, Arc<PodInfo>)>,
}

/// Whether a node change can make an unschedulable pod schedulable.
fn scheduling_relevant(old: &NodeInfo, new: &NodeInfo) -> bool {
    old.allocatable != new.allocatable
        || old.taints != new.taints
        || old.unschedulable != new.unschedulable
        || old.runtime_handlers != new.runtime_handlers
        || old.labels() != new.labels()
        || old.images.len() != new.images.len()
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// The view a scheduling cycle reads.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            nodes: &self.nodes,
            image_nodes: &self.image_nodes,
            any_pod_affinity: self.affinity_pods > 0,
            any_required_anti_affinity: self.anti_affinity_pods > 0,
        }
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The info of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Node names, in snapshot order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    fn count_images(&mut self, info_idx: usize, delta: isize) {
        for name in self.nodes[info_idx].images.keys() {
            let e = self.image_nodes.entry(name.clone()).or_insert(0);
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    /// Adds or updates a node. Returns whether the change may let pending
    /// pods fit (always for a new node).
    pub fn upsert_node(&mut self, node: Arc<Node>) -> bool {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&idx) = self.index.get(&name) {
            let old = self.nodes[idx].clone_without_pods();
            self.count_images(idx, -1);
            self.nodes[idx].set_node(node);
            self.count_images(idx, 1);
            return scheduling_relevant(&old, &self.nodes[idx]);
        }
        let mut info = NodeInfo::new(node);
        for key in self.orphans.remove(&name).unwrap_or_default() {
            if let Some(p) = self.pods.get(&key).map(|p| p.info.clone()) {
                self.count_affinity(&p, 1);
                info.add_pod(p);
            }
        }
        for (node_name, p) in self.nominations.values() {
            if *node_name == name {
                info.nominated.push(p.clone());
            }
        }
        let idx = self.nodes.len();
        self.index.insert(name, idx);
        self.nodes.push(info);
        self.count_images(idx, 1);
        true
    }

    /// Removes a node; its pods stay known and return if it comes back.
    pub fn remove_node(&mut self, name: &str) {
        let Some(idx) = self.index.remove(name) else {
            return;
        };
        self.count_images(idx, -1);
        let info = self.nodes.swap_remove(idx);
        if idx < self.nodes.len() {
            self.index.insert(self.nodes[idx].name.clone(), idx);
        }
        for p in &info.pods {
            self.count_affinity(p, -1);
        }
        let keys: Vec<Arc<str>> = info.pods.iter().map(|p| p.key.clone()).collect();
        if !keys.is_empty() {
            self.orphans.insert(name.to_string(), keys);
        }
    }

    fn count_affinity(&mut self, pod: &PodInfo, delta: isize) {
        if pod.has_affinity() {
            self.affinity_pods = self.affinity_pods.saturating_add_signed(delta);
        }
        if pod.has_required_anti_affinity() {
            self.anti_affinity_pods = self.anti_affinity_pods.saturating_add_signed(delta);
        }
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str) {
        match self.index.get(node) {
            Some(&idx) => {
                self.count_affinity(&info, 1);
                self.nodes[idx].add_pod(info);
            }
            None => self
                .orphans
                .entry(node.to_string())
                .or_default()
                .push(info.key.clone()),
        }
    }

    fn unplace(&mut self, key: &str, node: &str) {
        match self.index.get(node) {
            Some(&idx) => {
                if let Some(p) = self.nodes[idx].remove_pod(key) {
                    self.count_affinity(&p, -1);
                }
            }
            None => {
                if let Some(list) = self.orphans.get_mut(node) {
                    list.retain(|k| &**k != key);
                    if list.is_empty() {
                        self.orphans.remove(node);
                    }
                }
            }
        }
    }

    /// Records a pod bound to `node` (from a watch event), confirming it if
    /// it was assumed.
    pub fn upsert_bound_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        if let Some(old) = self.pods.remove(&key) {
            self.unplace(&key, &old.node);
        }
        self.place(info.clone(), node);
        self.pods.insert(
            key,
            PodState {
                info,
                node: node.to_string(),
                assumed: false,
            },
        );
    }

    /// Removes a pod (deleted or finished). Returns whether it held a place
    /// on a node.
    pub fn remove_pod(&mut self, key: &str) -> bool {
        self.clear_nomination(key);
        match self.pods.remove(key) {
            Some(old) => {
                self.unplace(key, &old.node);
                true
            }
            None => false,
        }
    }

    /// Places a pod the scheduler chose a node for, before the binding lands.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        self.clear_nomination(&key);
        if let Some(old) = self.pods.remove(&key) {
            self.unplace(&key, &old.node);
        }
        self.place(info.clone(), node);
        self.pods.insert(
            key,
            PodState {
                info,
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Undoes [`Cache::assume`] after a failed binding.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Whether the pod is assumed (binding in flight or not yet confirmed).
    pub fn is_assumed(&self, key: &str) -> bool {
        self.pods.get(key).is_some_and(|p| p.assumed)
    }

    /// The node a known pod is on.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pods.get(key).map(|p| p.node.as_str())
    }

    /// Keys of every pod placed on a node (bound or assumed).
    pub fn pod_keys(&self) -> Vec<Arc<str>> {
        self.pods.keys().cloned().collect()
    }

    /// Nominates a pending pod to a node (preemption made room there).
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key.clone();
        if self.nominations.get(&key).map(|(n, _)| n.as_str()) == Some(node) {
            if let Some(&idx) = self.index.get(node)
                && let Some(slot) = self.nodes[idx].nominated.iter_mut().find(|p| p.key == key)
            {
                *slot = info.clone();
            }
            self.nominations.insert(key, (node.to_string(), info));
            return;
        }
        self.clear_nomination(&key);
        if let Some(&idx) = self.index.get(node) {
            self.nodes[idx].nominated.push(info.clone());
        }
        self.nominations.insert(key, (node.to_string(), info));
    }

    /// Drops a pod's nomination.
    pub fn clear_nomination(&mut self, key: &str) {
        if let Some((node, _)) = self.nominations.remove(key)
            && let Some(&idx) = self.index.get(&node)
        {
            self.nodes[idx].nominated.retain(|p| &*p.key != key);
        }
    }

    /// Pods nominated to `node` with a priority below `priority`.
    pub fn nominated_below(&self, node: &str, priority: i32) -> Vec<Arc<PodInfo>> {
        self.node(node)
            .map(|n| {
                n.nominated
                    .iter()
                    .filter(|p| p.priority < priority)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl NodeInfo {
    /// A copy of the node part only (for change detection).
    fn clone_without_pods(&self) -> NodeInfo {
        NodeInfo::new(self.node.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::{node, pod, pod_req};
    use serde_json::json;

    #[test]
    fn assumed_pods_take_capacity_until_forgotten_or_confirmed() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", json!({})));
        let p = pod_req("p", "1", "1Gi");
        c.assume(p.clone(), "n1");
        assert!(c.is_assumed("uid-p"));
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        c.forget("uid-p");
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(0));
        c.assume(p.clone(), "n1");
        c.upsert_bound_pod(p, "n1");
        assert!(!c.is_assumed("uid-p"));
        c.forget("uid-p");
        assert_eq!(
            c.node("n1").map(|n| n.pods.len()),
            Some(1),
            "confirmed pods are not forgotten"
        );
        assert!(c.remove_pod("uid-p"));
        assert!(!c.remove_pod("uid-p"));
        assert_eq!(c.node("n1").map(|n| n.pods.len()), Some(0));
    }

    #[test]
    fn pods_before_their_node_and_after_its_removal() {
        let mut c = Cache::new();
        c.upsert_bound_pod(pod_req("early", "1", "1"), "n1");
        assert_eq!(c.node_count(), 0);
        c.upsert_node(node("n1", json!({})));
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(1000));
        c.upsert_node(node("n2", json!({})));
        c.remove_node("n1");
        assert_eq!(c.node_names(), vec!["n2"]);
        assert_eq!(c.pod_node("uid-early"), Some("n1"));
        c.upsert_node(node("n1", json!({})));
        assert_eq!(c.node("n1").map(|n| n.pods.len()), Some(1));
        c.remove_node("n1");
        c.remove_pod("uid-early");
        c.upsert_node(node("n1", json!({})));
        assert_eq!(c.node("n1").map(|n| n.pods.len()), Some(0));
    }

    #[test]
    fn node_updates_report_relevance_and_keep_pods() {
        let mut c = Cache::new();
        assert!(c.upsert_node(node("n1", json!({}))));
        c.upsert_bound_pod(pod_req("p", "1", "1"), "n1");
        assert!(
            !c.upsert_node(node("n1", json!({"status": {"nodeInfo": null}}))),
            "heartbeat-like update"
        );
        assert!(c.upsert_node(node("n1", json!({"spec": {"unschedulable": true}}))));
        assert!(c.upsert_node(node("n1", json!({"status": {"allocatable": {"cpu": "8"}}}))));
        assert_eq!(c.node("n1").map(|n| n.pods.len()), Some(1));
    }

    #[test]
    fn affinity_counters_follow_pods() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", json!({})));
        let anti = pod(
            "a",
            json!({"spec": {"affinity": {"podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {}, "topologyKey": "zone"}]}}}}),
        );
        assert!(!c.snapshot().any_pod_affinity);
        c.upsert_bound_pod(anti, "n1");
        let s = c.snapshot();
        assert!(s.any_pod_affinity && s.any_required_anti_affinity);
        c.remove_node("n1");
        assert!(
            !c.snapshot().any_pod_affinity,
            "pods of a removed node do not count"
        );
        c.upsert_node(node("n1", json!({})));
        assert!(
            c.snapshot().any_required_anti_affinity,
            "they count again when it returns"
        );
        c.remove_pod("uid-a");
        assert!(!c.snapshot().any_required_anti_affinity);
    }

    #[test]
    fn image_counts_follow_nodes() {
        let mut c = Cache::new();
        let with_img = |name: &str| {
            node(
                name,
                json!({"status": {"images": [{"names": ["app:1"], "sizeBytes": 5}]}}),
            )
        };
        c.upsert_node(with_img("a"));
        c.upsert_node(with_img("b"));
        assert_eq!(c.snapshot().image_nodes.get("app:1"), Some(&2));
        c.upsert_node(node("a", json!({})));
        assert_eq!(c.snapshot().image_nodes.get("app:1"), Some(&1));
        c.remove_node("b");
        assert!(c.snapshot().image_nodes.is_empty());
    }

    #[test]
    fn nominations() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", json!({})));
        c.upsert_node(node("n2", json!({})));
        let hi = pod("hi", json!({"spec": {"priority": 100}}));
        let lo = pod("lo", json!({"spec": {"priority": 1}}));
        c.nominate(hi.clone(), "n1");
        c.nominate(lo.clone(), "n1");
        assert_eq!(c.node("n1").map(|n| n.nominated.len()), Some(2));
        let below: Vec<_> = c
            .nominated_below("n1", 50)
            .iter()
            .map(|p| p.name.clone())
            .collect();
        assert_eq!(below, vec!["lo"]);
        c.nominate(hi.clone(), "n2");
        assert_eq!(c.node("n1").map(|n| n.nominated.len()), Some(1));
        c.assume(hi, "n2");
        assert_eq!(
            c.node("n2").map(|n| n.nominated.len()),
            Some(0),
            "assuming clears the nomination"
        );
        c.nominate(lo.clone(), "n3");
        assert_eq!(c.node("n1").map(|n| n.nominated.len()), Some(0));
        c.upsert_node(node("n3", json!({})));
        assert_eq!(
            c.node("n3").map(|n| n.nominated.len()),
            Some(1),
            "kept for a node that comes later"
        );
        c.clear_nomination("uid-lo");
        assert_eq!(c.node("n3").map(|n| n.nominated.len()), Some(0));
    }
}
