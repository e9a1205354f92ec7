//! The Node object the agent registers and the status it posts: pure functions from host
//! facts, usage and configuration to Kubernetes types, as the kubelet reports them.
//!
//! [`desired_status`] builds the full status; [`status_changed`] compares two statuses
//! ignoring heartbeat times, so the heartbeat loop posts only on change (and every
//! `status_report_interval`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeRuntimeHandler,
    NodeRuntimeHandlerFeatures, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use crate::host::{HostInfo, HostUsage};

/// `status.nodeInfo.kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// Memory the kubelet keeps free (its default hard eviction threshold, 100Mi).
pub const MEMORY_EVICTION_THRESHOLD: u64 = 100 << 20;

/// Fraction of the ephemeral storage kept free (the default `nodefs.available<10%`).
pub const DISK_EVICTION_PERCENT: u64 = 10;

/// What the status is built from, besides the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusInputs {
    /// `status.capacity.pods`.
    pub max_pods: u32,
    /// Registered runtime handlers (`wasmtime`, `docker`, ...), in order; the default first.
    pub runtime_handlers: Vec<String>,
    /// Port of the kubelet endpoint.
    pub kubelet_port: u16,
    /// Whether the node can run pods (runtimes and network are up). `false` → Ready=False.
    pub ready: bool,
    /// Why not ready (shown in the Ready condition's message).
    pub not_ready_message: Option<String>,
}

/// Standard labels plus `extra`.
pub fn node_labels(
    node_name: &str,
    host: &HostInfo,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), node_name.to_owned()),
        ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ("kubernetes.io/arch".to_owned(), host.architecture.clone()),
        ("beta.kubernetes.io/os".to_owned(), "linux".to_owned()),
        (
            "beta.kubernetes.io/arch".to_owned(),
            host.architecture.clone(),
        ),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

/// The Node to create on first registration.
pub fn new_node(
    node_name: &str,
    labels: BTreeMap<String, String>,
    pod_cidr: Option<String>,
    status: NodeStatus,
) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(node_name.to_owned()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_owned(),
                "0".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            pod_cidrs: pod_cidr.as_ref().map(|c| vec![c.clone()]),
            pod_cidr,
            ..NodeSpec::default()
        }),
        status: Some(status),
    }
}

fn quantity(value: impl ToString) -> Quantity {
    Quantity(value.to_string())
}

fn kibibytes(bytes: u64) -> Quantity {
    Quantity(format!("{}Ki", bytes / 1024))
}

/// Capacity and allocatable, as the kubelet computes them with default reservations.
pub fn resources(
    host: &HostInfo,
    max_pods: u32,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let capacity = BTreeMap::from([
        ("cpu".to_owned(), quantity(host.cpus)),
        ("memory".to_owned(), kibibytes(host.memory_bytes)),
        ("pods".to_owned(), quantity(max_pods)),
        (
            "ephemeral-storage".to_owned(),
            kibibytes(host.ephemeral_storage_bytes),
        ),
    ]);
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".to_owned(),
        kibibytes(host.memory_bytes.saturating_sub(MEMORY_EVICTION_THRESHOLD)),
    );
    allocatable.insert(
        "ephemeral-storage".to_owned(),
        // Kubernetes reports allocatable ephemeral storage as plain bytes.
        quantity(host.ephemeral_storage_bytes / 100 * (100 - DISK_EVICTION_PERCENT)),
    );
    (capacity, allocatable)
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> NodeCondition {
    NodeCondition {
        type_: type_.to_owned(),
        status: if status { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The four conditions the kubelet reports, from current usage.
pub fn conditions(
    host: &HostInfo,
    usage: &HostUsage,
    inputs: &StatusInputs,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let memory_pressure = usage.memory_available_bytes < MEMORY_EVICTION_THRESHOLD;
    let disk_pressure = usage.disk_total_bytes > 0
        && usage.disk_available_bytes < usage.disk_total_bytes / 100 * DISK_EVICTION_PERCENT;
    let _ = host;
    let mut conditions = vec![
        if memory_pressure {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
            )
        },
        if disk_pressure {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                now,
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
            )
        },
        condition(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            now,
        ),
    ];
    conditions.push(if inputs.ready {
        condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
            now,
        )
    } else {
        condition(
            "Ready",
            false,
            "KubeletNotReady",
            inputs
                .not_ready_message
                .as_deref()
                .unwrap_or("container runtime is not ready"),
            now,
        )
    });
    conditions
}

/// The full status the node should have now. Transition times are kept from `previous`
/// for conditions whose status did not change.
pub fn desired_status(
    host: &HostInfo,
    usage: &HostUsage,
    inputs: &StatusInputs,
    previous: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let (capacity, allocatable) = resources(host, inputs.max_pods);
    let mut conditions = conditions(host, usage, inputs, now);
    if let Some(old) = previous.and_then(|p| p.conditions.as_ref()) {
        for c in &mut conditions {
            if let Some(prev) = old.iter().find(|o| o.type_ == c.type_)
                && prev.status == c.status
                && prev.last_transition_time.is_some()
            {
                c.last_transition_time = prev.last_transition_time.clone();
            }
        }
    }
    let mut handlers: Vec<NodeRuntimeHandler> = Vec::new();
    let handler = |name: &str| NodeRuntimeHandler {
        name: Some(name.to_owned()),
        features: Some(NodeRuntimeHandlerFeatures {
            recursive_read_only_mounts: Some(false),
            user_namespaces: Some(false),
        }),
    };
    if !inputs.runtime_handlers.is_empty() {
        // The kubelet lists the default handler under the empty name too.
        handlers.push(handler(""));
    }
    handlers.extend(inputs.runtime_handlers.iter().map(|h| handler(h)));
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: host.internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: host.hostname.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(inputs.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: host.architecture.clone(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_owned(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".to_owned(),
            os_image: host.os_image.clone(),
            system_uuid: host.system_uuid.clone(),
            swap: None,
        }),
        runtime_handlers: Some(handlers),
        ..NodeStatus::default()
    }
}

/// Whether `new` differs from `old` in anything but heartbeat times.
pub fn status_changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    let Some(old) = old else { return true };
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        if let Some(conditions) = &mut s.conditions {
            for c in conditions.iter_mut() {
                c.last_heartbeat_time = None;
            }
            conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        }
        // Status fields the kubelet does not own.
        s.images = None;
        s.volumes_attached = None;
        s.volumes_in_use = None;
        s.phase = None;
        s.config = None;
        s.features = None;
        s
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "box".into(),
            cpus: 4,
            memory_bytes: 8 << 30,
            ephemeral_storage_bytes: 100 << 30,
            kernel_version: "6.1.0".into(),
            os_image: "Debian".into(),
            architecture: "amd64".into(),
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            internal_ip: "10.0.0.5".parse().expect("ip"),
        }
    }

    fn usage() -> HostUsage {
        HostUsage {
            memory_available_bytes: 4 << 30,
            disk_available_bytes: 50 << 30,
            disk_total_bytes: 100 << 30,
        }
    }

    fn inputs() -> StatusInputs {
        StatusInputs {
            max_pods: 110,
            runtime_handlers: vec!["wasmtime".into(), "docker".into()],
            kubelet_port: 10250,
            ready: true,
            not_ready_message: None,
        }
    }

    fn cond<'a>(s: &'a NodeStatus, t: &str) -> &'a NodeCondition {
        s.conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == t))
            .expect("condition")
    }

    #[test]
    fn capacity_and_allocatable() {
        let (cap, alloc) = resources(&host(), 110);
        assert_eq!(cap["cpu"].0, "4");
        assert_eq!(cap["memory"].0, format!("{}Ki", 8 << 20));
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(cap["ephemeral-storage"].0, format!("{}Ki", 100 << 20));
        assert_eq!(alloc["memory"].0, format!("{}Ki", (8 << 20) - (100 << 10)));
        assert_eq!(
            alloc["ephemeral-storage"].0,
            ((100u64 << 30) / 100 * 90).to_string()
        );
        assert_eq!(alloc["cpu"].0, "4");
    }

    #[test]
    fn ready_node_reports_kubelet_conditions() {
        let now = Timestamp::now();
        let s = desired_status(&host(), &usage(), &inputs(), None, now);
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        for (t, reason) in [
            ("MemoryPressure", "KubeletHasSufficientMemory"),
            ("DiskPressure", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "KubeletHasSufficientPID"),
        ] {
            assert_eq!(cond(&s, t).status, "False", "{t}");
            assert_eq!(cond(&s, t).reason.as_deref(), Some(reason), "{t}");
        }
        let handlers: Vec<_> = s
            .runtime_handlers
            .as_ref()
            .expect("handlers")
            .iter()
            .map(|h| h.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(handlers, ["", "wasmtime", "docker"]);
        let info = s.node_info.as_ref().expect("info");
        assert_eq!(info.kubelet_version, "v1.33.0-skiff");
        assert_eq!(info.operating_system, "linux");
        assert!(info.container_runtime_version.starts_with("skiff://"));
        let addresses = s.addresses.as_ref().expect("addresses");
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.0.0.5");
        assert_eq!(addresses[1].type_, "Hostname");
    }

    #[test]
    fn pressure_and_not_ready() {
        let now = Timestamp::now();
        let low = HostUsage {
            memory_available_bytes: 10 << 20,
            disk_available_bytes: 1 << 30,
            disk_total_bytes: 100 << 30,
        };
        let mut not_ready = inputs();
        not_ready.ready = false;
        not_ready.not_ready_message = Some("network not ready".into());
        let s = desired_status(&host(), &low, &not_ready, None, now);
        assert_eq!(cond(&s, "MemoryPressure").status, "True");
        assert_eq!(cond(&s, "DiskPressure").status, "True");
        let ready = cond(&s, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(ready.message.as_deref(), Some("network not ready"));
    }

    #[test]
    fn heartbeats_alone_are_not_changes_and_transitions_are_kept() {
        let t0 = Timestamp::from_second(1_000).expect("t0");
        let t1 = Timestamp::from_second(2_000).expect("t1");
        let first = desired_status(&host(), &usage(), &inputs(), None, t0);
        let second = desired_status(&host(), &usage(), &inputs(), Some(&first), t1);
        assert!(!status_changed(Some(&first), &second));
        assert_eq!(
            cond(&second, "Ready").last_transition_time,
            Some(Time(t0)),
            "unchanged condition keeps its transition time"
        );
        assert_eq!(cond(&second, "Ready").last_heartbeat_time, Some(Time(t1)));
        let mut not_ready = inputs();
        not_ready.ready = false;
        let third = desired_status(&host(), &usage(), &not_ready, Some(&second), t1);
        assert!(status_changed(Some(&second), &third));
        assert_eq!(cond(&third, "Ready").last_transition_time, Some(Time(t1)));
        assert!(status_changed(None, &third));
    }

    #[test]
    fn labels_include_the_standard_ones() {
        let extra = BTreeMap::from([(
            crate::config::CONTROL_PLANE_ROLE_LABEL.to_owned(),
            String::new(),
        )]);
        let labels = node_labels("n1", &host(), &extra);
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
    }
}
