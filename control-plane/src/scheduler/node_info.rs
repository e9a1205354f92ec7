//! `NodeInfo`: one node plus the aggregate of the pods on it (requested
//! resources, used host ports, pods with affinity), kept up to date
//! incrementally as pods are added, assumed and removed, and the
//! `Snapshot` the filters and scores read.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::{HostPort, PodInfo, normalize_image};
use super::resources::{Resources, node_allocatable};
use super::selectors::Labels;

/// Taint key of nodes whose Ready condition is False or missing.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint key of nodes whose Ready condition is Unknown.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taint key of cordoned nodes.
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

static EMPTY_LABELS: Labels = Labels::new();

/// A node and the pods on it, as the scheduler sees them.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    /// The node object.
    pub node: Arc<Node>,
    /// The node's name.
    pub name: String,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Sum of the effective requests of the pods on the node.
    pub requested: Resources,
    /// CPU requested, with defaults for pods naming none (for scoring).
    pub non_zero_milli_cpu: i64,
    /// Memory requested, with defaults for pods naming none (for scoring).
    pub non_zero_memory: i64,
    /// The pods on the node (bound or assumed).
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have any pod (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// How many of `pods` have a required anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
    /// Host ports in use (one entry per pod port).
    pub used_ports: Vec<HostPort>,
    /// Images present on the node: normalised name → size in bytes.
    pub images: HashMap<String, i64>,
    /// Taints with effect NoSchedule/NoExecute/PreferNoSchedule, plus the
    /// not-ready / unreachable taint a node without Ready=True carries.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// Names in `status.runtimeHandlers` (`None` when not reported).
    pub runtime_handlers: Option<Vec<String>>,
    /// Pending pods nominated to this node by preemption.
    pub nominated: Vec<Arc<PodInfo>>,
}

fn effective_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    let pseudo = match ready {
        Some("True") => None,
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        _ => Some(TAINT_NOT_READY),
    };
    if let Some(key) = pseudo
        && !taints.iter().any(|t| t.key == key)
    {
        taints.push(Taint {
            key: key.to_string(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        });
    }
    taints
}

impl NodeInfo {
    /// A node with no pods.
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            images: HashMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            runtime_handlers: None,
            nominated: Vec::new(),
        };
        info.set_node(node);
        info
    }

    /// Replaces the node object (its pods stay) and recomputes what derives from it.
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = node_allocatable(&node);
        self.taints = effective_taints(&node);
        self.unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let status = node.status.as_ref();
        self.runtime_handlers = status
            .and_then(|s| s.runtime_handlers.as_ref())
            .filter(|h| !h.is_empty())
            .map(|h| {
                h.iter()
                    .map(|r| r.name.clone().unwrap_or_default())
                    .collect()
            });
        self.images = status
            .and_then(|s| s.images.as_ref())
            .map(|imgs| {
                imgs.iter()
                    .flat_map(|img| {
                        let size = img.size_bytes.unwrap_or(0);
                        img.names
                            .iter()
                            .flatten()
                            .map(move |n| (normalize_image(n), size))
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.node = node;
    }

    /// The node's labels.
    pub fn labels(&self) -> &Labels {
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
    }

    /// Accounts for a pod on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requested);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
    }

    /// Removes the pod with `key`, undoing its accounting; returns it.
    pub fn remove_pod(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let idx = self.pods.iter().position(|p| &*p.key == key)?;
        let pod = self.pods.swap_remove(idx);
        self.requested.sub(&pod.requests.requested);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if pod.has_required_anti_affinity() {
            self.pods_with_required_anti_affinity -= 1;
        }
        for hp in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(i);
            }
        }
        Some(pod)
    }

    /// Whether `key` is among the node's pods.
    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.iter().any(|p| &*p.key == key)
    }
}

/// What one scheduling cycle reads: every node's info and how many nodes
/// have each image (for ImageLocality's spread factor).
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a> {
    /// All schedulable-candidate nodes, in a stable order.
    pub nodes: &'a [NodeInfo],
    /// Number of nodes that have each normalised image.
    pub image_nodes: &'a HashMap<String, usize>,
    /// Whether any pod on any node has pod (anti-)affinity terms.
    pub any_pod_affinity: bool,
    /// Whether any pod on any node has required anti-affinity terms.
    pub any_required_anti_affinity: bool,
}

impl<'a> Snapshot<'a> {
    /// A snapshot over `nodes`, scanning them for affinity terms.
    pub fn new(nodes: &'a [NodeInfo], image_nodes: &'a HashMap<String, usize>) -> Snapshot<'a> {
        Snapshot {
            nodes,
            image_nodes,
            any_pod_affinity: nodes.iter().any(|n| n.pods_with_affinity > 0),
            any_required_anti_affinity: nodes
                .iter()
                .any(|n| n.pods_with_required_anti_affinity > 0),
        }
    }
}

/// Counts, for each image, the nodes that have it.
pub fn count_image_nodes(nodes: &[NodeInfo]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for n in nodes {
        for name in n.images.keys() {
            *out.entry(name.clone()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for tests of the filters and scores.
    use super::*;
    use crate::scheduler::pod_info::PodContext;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::{Value, json};

    /// A Ready node with 4 cpu, 32Gi, 110 pods and the given extra JSON merged in.
    pub fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    /// Merges JSON `b` into `a` (objects recursively, everything else replaced).
    pub fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    /// A pod named `name` with one container and `extra` merged in.
    pub fn pod(name: &str, extra: Value) -> Arc<PodInfo> {
        pod_in(name, extra, &PodContext::default())
    }

    /// Like `pod`, in a given context.
    pub fn pod_in(name: &str, extra: Value, ctx: &PodContext) -> Arc<PodInfo> {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        });
        merge(&mut v, extra);
        let pod: Pod = serde_json::from_value(v).expect("pod");
        Arc::new(PodInfo::new(Arc::new(pod), ctx))
    }

    /// A pod requesting cpu/memory.
    pub fn pod_req(name: &str, cpu: &str, mem: &str) -> Arc<PodInfo> {
        pod(
            name,
            json!({"spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn accounting_follows_adds_and_removes() {
        let mut n = NodeInfo::new(node("n1", json!({})));
        assert_eq!(n.allocatable.milli_cpu, 4000);
        assert!(n.taints.is_empty());
        let a = pod_req("a", "100m", "500Mi");
        let b = pod(
            "b",
            json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": 80}]}],
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {}, "topologyKey": "zone"}]}}}}),
        );
        n.add_pod(a.clone());
        n.add_pod(b.clone());
        assert_eq!(n.requested.milli_cpu, 100);
        assert_eq!(n.non_zero_milli_cpu, 200, "b counts the 100m default");
        assert_eq!(
            (n.pods_with_affinity, n.pods_with_required_anti_affinity),
            (1, 1)
        );
        assert_eq!(n.used_ports.len(), 1);
        assert!(n.has_pod("uid-b"));
        assert!(n.remove_pod("uid-b").is_some());
        assert!(n.remove_pod("uid-b").is_none());
        assert_eq!(
            (
                n.pods_with_affinity,
                n.used_ports.len(),
                n.non_zero_milli_cpu
            ),
            (0, 0, 100)
        );
        n.remove_pod("uid-a");
        assert!(n.requested.is_zero());
    }

    #[test]
    fn readiness_becomes_a_taint() {
        let not_ready = NodeInfo::new(node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ));
        assert_eq!(not_ready.taints[0].key, TAINT_NOT_READY);
        assert_eq!(not_ready.taints[0].effect, "NoSchedule");
        let unknown = NodeInfo::new(node(
            "n",
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        ));
        assert_eq!(unknown.taints[0].key, TAINT_UNREACHABLE);
        let no_conditions = NodeInfo::new(node("n", json!({"status": {"conditions": []}})));
        assert_eq!(no_conditions.taints[0].key, TAINT_NOT_READY);
        let already = NodeInfo::new(node(
            "n",
            json!({"spec": {"taints": [
            {"key": TAINT_NOT_READY, "effect": "NoExecute"}]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        ));
        assert_eq!(already.taints.len(), 1, "no duplicate pseudo-taint");
    }

    #[test]
    fn node_fields_are_read() {
        let n = NodeInfo::new(node(
            "n",
            json!({"spec": {"unschedulable": true},
            "status": {"runtimeHandlers": [{"name": "wasmtime"}, {"name": "docker"}],
                "images": [{"names": ["docker.io/library/nginx:1.25", "nginx"], "sizeBytes": 1000}]}}),
        ));
        assert!(n.unschedulable);
        assert_eq!(
            n.runtime_handlers,
            Some(vec!["wasmtime".to_string(), "docker".to_string()])
        );
        assert_eq!(n.images.get("nginx:latest"), Some(&1000));
        assert_eq!(n.images.get("docker.io/library/nginx:1.25"), Some(&1000));
        let counts = count_image_nodes(&[n.clone(), n]);
        assert_eq!(counts.get("nginx:latest"), Some(&2));
    }
}
