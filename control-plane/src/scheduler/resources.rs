//! Resource arithmetic: what a node offers (`status.allocatable`) and what a
//! pod asks for, computed the way Kubernetes computes a pod's effective
//! request (`resource.PodRequests`): the larger of the sum of the app
//! containers (plus sidecars) and the largest init container (plus the
//! sidecars started before it), plus `spec.overhead`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity;

/// CPU assumed for a container that requests none, for scoring only
/// (`DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory assumed for a container that requests none, for scoring only
/// (`DefaultMemoryRequest`, 200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource the scheduler accounts for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (meaningful for allocatable only).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`), hugepages and attachable
    /// volumes, by name.
    pub scalar: BTreeMap<String, i64>,
}

/// Whether `name` is a resource the scheduler counts as a scalar
/// (Kubernetes' `IsScalarResourceName`).
pub fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

impl Resources {
    /// Reads a resource list (`requests`, `limits`, `allocatable`).
    /// Malformed quantities count as zero (the API server validates them).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, q: &str) {
        let parsed = if name == "cpu" {
            quantity::milli_value(q)
        } else {
            quantity::value(q)
        };
        let v = match parsed {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(resource = name, %err, "ignoring malformed quantity");
                0
            }
        };
        match name {
            "cpu" => self.milli_cpu = v,
            "memory" => self.memory = v,
            "ephemeral-storage" => self.ephemeral_storage = v,
            "pods" => self.pods = v,
            n if is_scalar_resource(n) => {
                self.scalar.insert(n.to_string(), v);
            }
            _ => {}
        }
    }

    /// Adds `other` to `self`, resource by resource.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_add(*v);
        }
    }

    /// Subtracts `other` from `self`, resource by resource.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = e.saturating_sub(*v);
        }
    }

    /// Raises each resource of `self` to at least `other`'s.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    /// The amount of a named scalar resource.
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }

    /// Whether every resource is zero.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.pods == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// What a pod asks for: the real effective request (for fitting) and the
/// one with defaults for containers that name no CPU or memory (for
/// scoring, so best-effort pods still spread).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Effective request, used by NodeResourcesFit's filter.
    pub requested: Resources,
    /// CPU with defaults for containers without a CPU request.
    pub non_zero_milli_cpu: i64,
    /// Memory with defaults for containers without a memory request.
    pub non_zero_memory: i64,
}

/// A container's requests, taking limits for resources that have a limit
/// but no request (the API server's defaulting does the same).
fn container_requests(c: &Container) -> (Resources, bool, bool) {
    let res = c.resources.as_ref();
    let empty = BTreeMap::new();
    let requests = res.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
    let limits = res.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
    let mut out = Resources::from_list(requests);
    for (name, q) in limits {
        if !requests.contains_key(name) {
            out.set(name, &q.0);
        }
    }
    let has = |n: &str| requests.contains_key(n) || limits.contains_key(n);
    (out, has("cpu"), has("memory"))
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Computes a pod's effective request (see the module comment).
pub fn pod_requests(pod: &Pod) -> PodRequests {
    let Some(spec) = pod.spec.as_ref() else {
        return PodRequests::default();
    };
    // Two passes of the same rule: one with real requests, one where a
    // missing cpu/memory request counts as the scoring default.
    let compute = |non_zero: bool| -> Resources {
        let req_of = |c: &Container| {
            let (mut r, has_cpu, has_mem) = container_requests(c);
            if non_zero {
                if !has_cpu {
                    r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
                }
                if !has_mem {
                    r.memory = DEFAULT_MEMORY_REQUEST;
                }
            }
            r
        };
        let mut reqs = Resources::default();
        for c in &spec.containers {
            reqs.add(&req_of(c));
        }
        let mut sidecars = Resources::default();
        let mut init_max = Resources::default();
        for c in spec.init_containers.iter().flatten() {
            let mut r = req_of(c);
            if is_sidecar(c) {
                // Sidecars keep running next to the app containers.
                reqs.add(&r);
                sidecars.add(&r);
                r = sidecars.clone();
            } else {
                r.add(&sidecars);
            }
            init_max.set_max(&r);
        }
        reqs.set_max(&init_max);
        if let Some(overhead) = spec.overhead.as_ref() {
            reqs.add(&Resources::from_list(overhead));
        }
        reqs
    };
    let requested = compute(false);
    let non_zero = compute(true);
    PodRequests {
        requested,
        non_zero_milli_cpu: non_zero.milli_cpu,
        non_zero_memory: non_zero.memory,
    }
}

/// A node's allocatable resources (`status.allocatable`, else `capacity`).
pub fn node_allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .map(Resources::from_list)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("valid pod")
    }

    fn c(requests: serde_json::Value) -> serde_json::Value {
        json!({"name": "c", "image": "i", "resources": {"requests": requests}})
    }

    #[test]
    fn sums_app_containers() {
        let p = pod(
            json!({"containers": [c(json!({"cpu": "100m", "memory": "1Gi"})), c(json!({"cpu": "250m"}))]}),
        );
        let r = pod_requests(&p);
        assert_eq!(r.requested.milli_cpu, 350);
        assert_eq!(r.requested.memory, 1 << 30);
        assert_eq!(r.non_zero_milli_cpu, 350);
        assert_eq!(r.non_zero_memory, (1 << 30) + DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn best_effort_pod_requests_nothing_but_scores_with_defaults() {
        let p =
            pod(json!({"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}));
        let r = pod_requests(&p);
        assert!(r.requested.is_zero());
        assert_eq!(r.non_zero_milli_cpu, 200);
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn explicit_zero_is_not_defaulted() {
        let p = pod(json!({"containers": [c(json!({"cpu": "0", "memory": "0"}))]}));
        let r = pod_requests(&p);
        assert_eq!((r.non_zero_milli_cpu, r.non_zero_memory), (0, 0));
    }

    #[test]
    fn limits_stand_in_for_missing_requests() {
        let p = pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "100m", "memory": "500Mi"}, "requests": {"cpu": "50m"}}}]}));
        let r = pod_requests(&p);
        assert_eq!(r.requested.milli_cpu, 50);
        assert_eq!(r.requested.memory, 500 << 20);
    }

    #[test]
    fn init_container_maximum_wins_when_larger() {
        let p = pod(json!({
            "initContainers": [c(json!({"cpu": "2", "memory": "1Gi"})), c(json!({"cpu": "500m", "memory": "3Gi"}))],
            "containers": [c(json!({"cpu": "1", "memory": "2Gi"})), c(json!({"cpu": "500m"}))]
        }));
        let r = pod_requests(&p);
        // cpu: max(1.5 app, 2 init) = 2; memory: max(2Gi app, 3Gi init) = 3Gi.
        assert_eq!(r.requested.milli_cpu, 2000);
        assert_eq!(r.requested.memory, 3 << 30);
    }

    #[test]
    fn sidecars_add_to_app_containers_and_later_init_containers() {
        let sidecar = json!({"name": "s", "image": "i", "restartPolicy": "Always",
            "resources": {"requests": {"cpu": "200m"}}});
        let p = pod(json!({
            "initContainers": [c(json!({"cpu": "1"})), sidecar, c(json!({"cpu": "900m"}))],
            "containers": [c(json!({"cpu": "300m"}))]
        }));
        // app: 300m + 200m sidecar = 500m; init: max(1000m, 200m, 900m+200m) = 1100m.
        assert_eq!(pod_requests(&p).requested.milli_cpu, 1100);
    }

    #[test]
    fn overhead_and_extended_resources() {
        let p = pod(json!({
            "overhead": {"cpu": "10m", "memory": "10Mi"},
            "containers": [c(json!({"cpu": "100m", "example.com/gpu": "2", "hugepages-2Mi": "4Mi", "storage": "1"}))]
        }));
        let r = pod_requests(&p).requested;
        assert_eq!(r.milli_cpu, 110);
        assert_eq!(r.memory, 10 << 20);
        assert_eq!(r.scalar("example.com/gpu"), 2);
        assert_eq!(r.scalar("hugepages-2Mi"), 4 << 20);
        assert_eq!(r.scalar.len(), 2, "non-scalar unknown names are ignored");
    }

    #[test]
    fn allocatable_falls_back_to_capacity() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"}}}))
        .expect("node");
        let a = node_allocatable(&n);
        assert_eq!((a.milli_cpu, a.memory, a.pods), (4000, 32 << 30, 110));
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"},
            "status": {"capacity": {"cpu": "4"}, "allocatable": {"cpu": "3500m"}}}))
        .expect("node");
        assert_eq!(node_allocatable(&n).milli_cpu, 3500);
    }

    #[test]
    fn arithmetic() {
        let mut a = Resources {
            milli_cpu: 1,
            memory: 2,
            scalar: [("x/y".to_string(), 3)].into(),
            ..Default::default()
        };
        let b = Resources {
            milli_cpu: 5,
            pods: 1,
            scalar: [("x/y".to_string(), 1)].into(),
            ..Default::default()
        };
        a.add(&b);
        assert_eq!(
            (a.milli_cpu, a.memory, a.pods, a.scalar("x/y")),
            (6, 2, 1, 4)
        );
        a.sub(&b);
        assert_eq!(
            (a.milli_cpu, a.memory, a.pods, a.scalar("x/y")),
            (1, 2, 0, 3)
        );
        a.set_max(&b);
        assert_eq!((a.milli_cpu, a.pods, a.scalar("x/y")), (5, 1, 3));
        assert!(!a.is_zero());
        assert!(Resources::default().is_zero());
    }
}
