//! `PodInfo`: everything the filters and scores need from a pod, parsed
//! once when the pod enters the scheduler (requests, ports, selectors,
//! affinity terms, spread constraints, runtime needs, priority), with the
//! pod's RuntimeClass `scheduling` and `overhead` and its PriorityClass
//! applied, as Kubernetes' admission plugins would have done.
//!
//! Runtime rule (Skiff's, documented in the scheduler module): a pod needs
//! the handler of its RuntimeClass when `runtimeClassName` is set (an
//! unknown class name is taken as the handler name itself); else the
//! handler named by annotation `skiff.dev/runtime`; else each container's
//! image decides: an image whose name ends in `.wasm` needs `wasmtime`,
//! any other image needs an OCI runtime.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod, PodAffinityTerm, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::jiff::Timestamp;

use super::resources::{PodRequests, Resources, pod_requests};
use super::selectors::{Labels, NodeTerm, NodeTerms, Op, Requirement, Selector};

/// Annotation naming the runtime handler a pod needs.
pub const RUNTIME_ANNOTATION: &str = "skiff.dev/runtime";
/// The Wasmtime runtime handler's name.
pub const WASMTIME_HANDLER: &str = "wasmtime";

static EMPTY_LABELS: Labels = BTreeMap::new();

/// Cluster objects a pod's scheduling inputs depend on.
#[derive(Clone, Debug, Default)]
pub struct PodContext {
    /// RuntimeClasses by name.
    pub runtime_classes: HashMap<String, Arc<RuntimeClass>>,
    /// PriorityClass values by name (`None` when the API serves none).
    pub priority_classes: HashMap<String, i32>,
    /// The value of the PriorityClass marked `globalDefault`, if any.
    pub default_priority: Option<i32>,
    /// Namespace labels by namespace name (for `namespaceSelector`).
    pub namespace_labels: HashMap<String, Labels>,
}

/// The runtime a pod needs on its node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RuntimeNeed {
    /// A named handler the node must list in `status.runtimeHandlers`.
    pub handler: Option<String>,
    /// Some container is a WebAssembly image (needs `wasmtime`).
    pub wasm: bool,
    /// Some container is an OCI image (needs an OCI handler).
    pub oci: bool,
}

/// A host port a pod binds on its node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host IP, `0.0.0.0` when unset.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number.
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports collide (same protocol and port, and either
    /// binds all addresses or both bind the same one).
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// Which namespaces an affinity term looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace (`namespaceSelector: {}`).
    All,
    /// These namespaces.
    Some(Vec<String>),
}

/// A parsed pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinityTerm {
    /// Namespaces whose pods the term selects.
    pub namespaces: Namespaces,
    /// Label selector over those pods.
    pub selector: Selector,
    /// The node label defining the topology domain.
    pub topology_key: String,
    /// Weight, for preferred terms (1 for required ones).
    pub weight: i32,
}

impl AffinityTerm {
    fn parse(
        term: &PodAffinityTerm,
        weight: i32,
        pod_ns: &str,
        pod_labels: &Labels,
        ctx: &PodContext,
    ) -> AffinityTerm {
        let mut selector = Selector::from_label_selector(term.label_selector.as_ref());
        // matchLabelKeys / mismatchLabelKeys take the values from the pod itself.
        for key in term.match_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(key) {
                selector.push(Requirement {
                    key: key.clone(),
                    op: Op::In,
                    values: vec![v.clone()],
                });
            }
        }
        for key in term.mismatch_label_keys.iter().flatten() {
            if let Some(v) = pod_labels.get(key) {
                selector.push(Requirement {
                    key: key.clone(),
                    op: Op::NotIn,
                    values: vec![v.clone()],
                });
            }
        }
        let mut names: Vec<String> = term.namespaces.clone().unwrap_or_default();
        let namespaces = match term.namespace_selector.as_ref() {
            None if names.is_empty() => Namespaces::Some(vec![pod_ns.to_string()]),
            None => Namespaces::Some(names),
            Some(ns_sel) => {
                let sel = Selector::from_label_selector(Some(ns_sel));
                if sel.is_everything() {
                    Namespaces::All
                } else {
                    for (ns, labels) in &ctx.namespace_labels {
                        if sel.matches(labels) && !names.contains(ns) {
                            names.push(ns.clone());
                        }
                    }
                    Namespaces::Some(names)
                }
            }
        };
        AffinityTerm {
            namespaces,
            selector,
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is selected by this term.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let ns_ok = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Some(list) => list.contains(&pod.namespace),
        };
        ns_ok && self.selector.matches(pod.labels())
    }
}

/// A parsed topology spread constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpreadConstraint {
    /// Maximum allowed skew.
    pub max_skew: i32,
    /// Node label defining the domains.
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// Pods counted (in the pod's namespace), `matchLabelKeys` merged in.
    pub selector: Selector,
    /// `minDomains` (hard constraints only).
    pub min_domains: Option<i32>,
    /// Count only nodes matching the pod's node affinity/selector (default).
    pub honor_node_affinity: bool,
    /// Count only nodes whose taints the pod tolerates (default: ignore).
    pub honor_node_taints: bool,
}

/// Everything the scheduler needs from one pod.
#[derive(Debug)]
pub struct PodInfo {
    /// The pod object.
    pub pod: Arc<Pod>,
    /// Identity in the scheduler (uid, else namespace/name).
    pub key: Arc<str>,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Effective priority.
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub never_preempts: bool,
    /// What the pod asks for.
    pub requests: PodRequests,
    /// Host ports of containers and sidecars.
    pub host_ports: Vec<HostPort>,
    /// `nodeSelector`, with the RuntimeClass's merged in.
    pub node_selector: Option<Selector>,
    /// Required node affinity terms.
    pub required_node_affinity: Option<NodeTerms>,
    /// Preferred node affinity terms with weights.
    pub preferred_node_affinity: Vec<(i32, NodeTerm)>,
    /// Tolerations, with the RuntimeClass's appended.
    pub tolerations: Vec<Toleration>,
    /// Required pod affinity.
    pub required_affinity: Vec<AffinityTerm>,
    /// Required pod anti-affinity.
    pub required_anti_affinity: Vec<AffinityTerm>,
    /// Preferred pod affinity.
    pub preferred_affinity: Vec<AffinityTerm>,
    /// Preferred pod anti-affinity.
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    /// Topology spread constraints.
    pub spread: Vec<SpreadConstraint>,
    /// Images of the init and app containers, normalised (`:latest` added
    /// when untagged).
    pub images: Vec<String>,
    /// The runtime the pod needs.
    pub runtime: RuntimeNeed,
    /// The pod is being deleted.
    pub terminating: bool,
    /// `spec.schedulingGates` is not empty.
    pub gated: bool,
    /// `status.startTime` (else creation time), for picking preemption victims.
    pub start_time: Option<Timestamp>,
}

/// Normalises an image reference the way the scheduler's ImageLocality
/// does: an image without tag or digest gets `:latest`.
pub fn normalize_image(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// Whether an image reference names a WebAssembly module (`*.wasm`, with
/// any tag or digest).
pub fn is_wasm_image(image: &str) -> bool {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    let repo = last.split(':').next().unwrap_or(last);
    repo.ends_with(".wasm")
}

fn pod_key(pod: &Pod) -> Arc<str> {
    match pod.metadata.uid.as_deref() {
        Some(uid) if !uid.is_empty() => Arc::from(uid),
        _ => Arc::from(format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or("")
        )),
    }
}

/// The scheduler's key for a pod object.
pub fn key_of(pod: &Pod) -> Arc<str> {
    pod_key(pod)
}

/// Built-in PriorityClasses every API server has.
fn builtin_priority(name: &str) -> Option<i32> {
    match name {
        "system-node-critical" => Some(2_000_001_000),
        "system-cluster-critical" => Some(2_000_000_000),
        _ => None,
    }
}

impl PodInfo {
    /// Parses `pod` in the given cluster context.
    pub fn new(pod: Arc<Pod>, ctx: &PodContext) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
        let name = meta.name.clone().unwrap_or_default();
        let labels = meta.labels.as_ref().unwrap_or(&EMPTY_LABELS);
        let spec = pod.spec.clone().unwrap_or_default();

        let runtime_class = spec
            .runtime_class_name
            .as_deref()
            .and_then(|n| ctx.runtime_classes.get(n));
        let mut requests = pod_requests(&pod);
        if spec.overhead.is_none()
            && let Some(fixed) = runtime_class
                .and_then(|rc| rc.overhead.as_ref())
                .and_then(|o| o.pod_fixed.as_ref())
        {
            let extra = Resources::from_list(fixed);
            requests.requested.add(&extra);
            requests.non_zero_milli_cpu += extra.milli_cpu;
            requests.non_zero_memory += extra.memory;
        }
        let scheduling = runtime_class.and_then(|rc| rc.scheduling.as_ref());

        let mut selector_map = spec.node_selector.clone().unwrap_or_default();
        if let Some(extra) = scheduling.and_then(|s| s.node_selector.as_ref()) {
            for (k, v) in extra {
                selector_map.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let node_selector = (!selector_map.is_empty()).then(|| Selector::from_map(&selector_map));
        let mut tolerations = spec.tolerations.clone().unwrap_or_default();
        tolerations.extend(
            scheduling
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default(),
        );

        let affinity = spec.affinity.as_ref();
        let node_aff = affinity.and_then(|a| a.node_affinity.as_ref());
        let required_node_affinity = node_aff
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeTerms::parse);
        let preferred_node_affinity = node_aff
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|terms| {
                terms
                    .iter()
                    .filter(|t| t.weight != 0)
                    .map(|t| (t.weight, NodeTerm::parse(&t.preference)))
                    .collect()
            })
            .unwrap_or_default();
        let parse_req = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, 1, &namespace, labels, ctx))
                .collect()
        };
        let pod_aff = affinity.and_then(|a| a.pod_affinity.as_ref());
        let pod_anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required_affinity = parse_req(pod_aff.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let required_anti_affinity = parse_req(pod_anti.and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let parse_pref =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|t| {
                        AffinityTerm::parse(&t.pod_affinity_term, t.weight, &namespace, labels, ctx)
                    })
                    .collect::<Vec<_>>()
            };
        let preferred_affinity = parse_pref(pod_aff.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));
        let preferred_anti_affinity = parse_pref(pod_anti.and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        }));

        let spread = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = Selector::from_label_selector(c.label_selector.as_ref());
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = labels.get(key) {
                        selector.push(Requirement {
                            key: key.clone(),
                            op: Op::In,
                            values: vec![v.clone()],
                        });
                    }
                }
                SpreadConstraint {
                    max_skew: c.max_skew.max(1),
                    topology_key: c.topology_key.clone(),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    selector,
                    min_domains: c.min_domains,
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                    honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
                }
            })
            .collect();

        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let host_ports = spec
            .containers
            .iter()
            .chain(sidecars)
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|hp| hp > 0))
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();

        let all_containers = || {
            spec.init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
        };
        let images = all_containers()
            .filter_map(|c: &Container| c.image.as_deref())
            .map(normalize_image)
            .collect();
        let runtime = if let Some(rc_name) = spec.runtime_class_name.as_deref() {
            RuntimeNeed {
                handler: Some(
                    runtime_class
                        .map(|rc| rc.handler.clone())
                        .unwrap_or_else(|| rc_name.to_string()),
                ),
                ..Default::default()
            }
        } else if let Some(h) = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUNTIME_ANNOTATION))
        {
            RuntimeNeed {
                handler: Some(h.clone()),
                ..Default::default()
            }
        } else {
            let mut need = RuntimeNeed::default();
            for c in all_containers() {
                if c.image.as_deref().is_some_and(is_wasm_image) {
                    need.wasm = true;
                } else {
                    need.oci = true;
                }
            }
            need
        };

        let priority = spec
            .priority_class_name
            .as_deref()
            .and_then(|n| {
                ctx.priority_classes
                    .get(n)
                    .copied()
                    .or_else(|| builtin_priority(n))
            })
            .or(spec.priority)
            .or(ctx.default_priority)
            .unwrap_or(0);

        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(meta.creation_timestamp.as_ref())
            .map(|t| t.0);

        PodInfo {
            key: pod_key(&pod),
            namespace,
            name,
            priority,
            never_preempts: spec.preemption_policy.as_deref() == Some("Never"),
            requests,
            host_ports,
            node_selector,
            required_node_affinity,
            preferred_node_affinity,
            tolerations,
            required_affinity,
            required_anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread,
            images,
            runtime,
            terminating: meta.deletion_timestamp.is_some(),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            start_time,
            pod,
        }
    }

    /// The pod's labels.
    pub fn labels(&self) -> &Labels {
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
    }

    /// `spec.nodeName`, if set.
    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// `status.nominatedNodeName`, if set.
    pub fn nominated_node(&self) -> Option<&str> {
        self.pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
    }

    /// Whether the pod has any (anti-)affinity term.
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Whether the pod has required anti-affinity terms.
    pub fn has_required_anti_affinity(&self) -> bool {
        !self.required_anti_affinity.is_empty()
    }

    /// Whether the pod has finished (`Succeeded` or `Failed`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
    }

    /// The `namespace/name` of the pod, for messages.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn info(v: serde_json::Value, ctx: &PodContext) -> PodInfo {
        let pod: Pod = serde_json::from_value(v).expect("pod");
        PodInfo::new(Arc::new(pod), ctx)
    }

    #[test]
    fn images_are_normalised() {
        assert_eq!(normalize_image("nginx"), "nginx:latest");
        assert_eq!(normalize_image("nginx:1.25"), "nginx:1.25");
        assert_eq!(normalize_image("reg:5000/app"), "reg:5000/app:latest");
        assert_eq!(normalize_image("app@sha256:abc"), "app@sha256:abc");
    }

    #[test]
    fn wasm_images_are_recognised() {
        assert!(is_wasm_image("hello.wasm"));
        assert!(is_wasm_image("registry:5000/apps/hello.wasm:v1"));
        assert!(is_wasm_image("hello.wasm@sha256:abc"));
        assert!(!is_wasm_image("nginx:1.25"));
        assert!(!is_wasm_image("wasm.example.com/app:v1"));
        assert!(!is_wasm_image("app:wasm"));
    }

    #[test]
    fn runtime_need_follows_the_documented_rule() {
        let ctx = PodContext::default();
        let by_image = info(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "image": "hello.wasm"}, {"name": "b", "image": "nginx"}]}}),
            &ctx,
        );
        assert_eq!(
            by_image.runtime,
            RuntimeNeed {
                handler: None,
                wasm: true,
                oci: true
            }
        );
        let annotated = info(
            json!({"metadata": {"name": "p", "annotations": {"skiff.dev/runtime": "wasmtime"}},
            "spec": {"containers": [{"name": "a", "image": "ghcr.io/x/app:1"}]}}),
            &ctx,
        );
        assert_eq!(annotated.runtime.handler.as_deref(), Some("wasmtime"));
        let unknown_class = info(
            json!({"metadata": {"name": "p"},
            "spec": {"runtimeClassName": "docker", "containers": [{"name": "a", "image": "x.wasm"}]}}),
            &ctx,
        );
        assert_eq!(unknown_class.runtime.handler.as_deref(), Some("docker"));
    }

    #[test]
    fn runtime_class_scheduling_and_overhead_apply() {
        let rc: RuntimeClass = serde_json::from_value(json!({
            "metadata": {"name": "wasm"}, "handler": "wasmtime",
            "overhead": {"podFixed": {"cpu": "10m", "memory": "1Mi"}},
            "scheduling": {"nodeSelector": {"skiff.dev/wasm": "true"},
                "tolerations": [{"key": "wasm-only", "operator": "Exists"}]}
        }))
        .expect("rc");
        let mut ctx = PodContext::default();
        ctx.runtime_classes.insert("wasm".into(), Arc::new(rc));
        let p = info(
            json!({"metadata": {"name": "p"}, "spec": {"runtimeClassName": "wasm",
            "nodeSelector": {"zone": "a"},
            "containers": [{"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}}}]}}),
            &ctx,
        );
        assert_eq!(p.runtime.handler.as_deref(), Some("wasmtime"));
        assert_eq!(p.requests.requested.milli_cpu, 110);
        assert_eq!(p.requests.requested.memory, 1 << 20);
        let sel = p.node_selector.expect("selector");
        assert!(
            sel.matches(
                &[
                    ("zone".to_string(), "a".to_string()),
                    ("skiff.dev/wasm".to_string(), "true".to_string())
                ]
                .into()
            )
        );
        assert!(!sel.matches(&[("zone".to_string(), "a".to_string())].into()));
        assert_eq!(p.tolerations.len(), 1);
    }

    #[test]
    fn priority_resolution() {
        let mut ctx = PodContext::default();
        let p = |spec: serde_json::Value, ctx: &PodContext| {
            let mut spec = spec;
            spec["containers"] = json!([{"name": "a", "image": "x"}]);
            info(json!({"metadata": {"name": "p"}, "spec": spec}), ctx).priority
        };
        assert_eq!(p(json!({}), &ctx), 0);
        assert_eq!(p(json!({"priority": 7}), &ctx), 7);
        assert_eq!(
            p(json!({"priorityClassName": "high", "priority": 7}), &ctx),
            7,
            "unknown class: spec.priority"
        );
        assert_eq!(
            p(json!({"priorityClassName": "system-node-critical"}), &ctx),
            2_000_001_000
        );
        ctx.priority_classes.insert("high".into(), 1000);
        assert_eq!(p(json!({"priorityClassName": "high"}), &ctx), 1000);
        ctx.default_priority = Some(5);
        assert_eq!(p(json!({}), &ctx), 5, "globalDefault class");
    }

    #[test]
    fn host_ports_and_affinity_terms() {
        let mut ctx = PodContext::default();
        ctx.namespace_labels.insert(
            "prod".into(),
            [("env".to_string(), "prod".to_string())].into(),
        );
        ctx.namespace_labels.insert(
            "dev".into(),
            [("env".to_string(), "dev".to_string())].into(),
        );
        let p = info(
            json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "ver": "1"}},
            "spec": {
                "initContainers": [{"name": "s", "image": "x", "restartPolicy": "Always",
                    "ports": [{"containerPort": 9, "hostPort": 9000, "protocol": "UDP"}]},
                    {"name": "i", "image": "x", "ports": [{"containerPort": 1, "hostPort": 1}]}],
                "containers": [{"name": "a", "image": "x", "ports": [
                    {"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}, {"containerPort": 81}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname",
                     "matchLabelKeys": ["ver"]}]},
                    "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 5, "podAffinityTerm": {"labelSelector": {}, "topologyKey": "zone",
                     "namespaceSelector": {"matchLabels": {"env": "prod"}}}}]}}
            }}),
            &ctx,
        );
        assert_eq!(
            p.host_ports,
            vec![
                HostPort {
                    ip: "10.0.0.1".into(),
                    protocol: "TCP".into(),
                    port: 8080
                },
                HostPort {
                    ip: "0.0.0.0".into(),
                    protocol: "UDP".into(),
                    port: 9000
                },
            ]
        );
        assert!(p.has_affinity() && p.has_required_anti_affinity());
        let anti = &p.required_anti_affinity[0];
        assert_eq!(anti.namespaces, Namespaces::Some(vec!["ns".into()]));
        let other = |labels: serde_json::Value, ns: &str| {
            info(
                json!({"metadata": {"name": "o", "namespace": ns, "labels": labels},
                "spec": {"containers": [{"name": "a", "image": "x"}]}}),
                &PodContext::default(),
            )
        };
        assert!(anti.matches(&other(json!({"app": "web", "ver": "1"}), "ns")));
        assert!(
            !anti.matches(&other(json!({"app": "web", "ver": "2"}), "ns")),
            "matchLabelKeys"
        );
        assert!(!anti.matches(&other(json!({"app": "web", "ver": "1"}), "other")));
        let pref = &p.preferred_affinity[0];
        assert_eq!(pref.weight, 5);
        assert_eq!(pref.namespaces, Namespaces::Some(vec!["prod".into()]));
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, proto: &str, port| HostPort {
            ip: ip.into(),
            protocol: proto.into(),
            port,
        };
        assert!(hp("0.0.0.0", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.1", "TCP", 80)));
        assert!(!hp("10.0.0.1", "TCP", 80).conflicts(&hp("10.0.0.2", "TCP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "UDP", 80)));
        assert!(!hp("0.0.0.0", "TCP", 80).conflicts(&hp("0.0.0.0", "TCP", 81)));
    }
}
