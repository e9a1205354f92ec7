//! Node agent configuration: plain structs with `Default`, filled from CLI flags by the binary.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// Label `skiff up` puts on its node: the node runs the control plane too. Like k3s (and unlike
/// kubeadm) Skiff does not taint it, so ordinary pods schedule there; `kubectl get nodes`
/// shows the role `control-plane`.
pub const CONTROL_PLANE_ROLE_LABEL: &str = "node-role.kubernetes.io/control-plane";

/// Where the node's pod CIDR (the range pod IPs come from) comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PodCidrSource {
    /// `node.spec.podCIDR`, assigned by the control plane (one /24 per node from
    /// 10.244.0.0/16). Pods wait for it before their network is set up.
    #[default]
    Assigned,
    /// A fixed range (tests, single-node setups without the node IPAM controller). The node
    /// also writes it into `spec.podCIDR` when that is empty.
    Static(ipnet::Ipv4Net),
}

/// How pods get their network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A pod network (bridge, veth, one IP per pod) when the process may create network
    /// namespaces (root), host networking with a warning otherwise.
    #[default]
    Auto,
    /// Every pod shares the node's network namespace and IP.
    Host,
}

/// Settings of the pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Pod network or host networking.
    pub mode: NetworkMode,
    /// Source of the pod CIDR.
    pub pod_cidr: PodCidrSource,
    /// Name of the node bridge (several nodes on one host need distinct names).
    pub bridge: String,
    /// Add an iptables MASQUERADE rule for pod traffic leaving the pod CIDR.
    pub masquerade: bool,
    /// The whole cluster pod range (traffic inside it is not masqueraded).
    pub cluster_cidr: ipnet::Ipv4Net,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Auto,
            pod_cidr: PodCidrSource::Assigned,
            bridge: "skiff0".to_owned(),
            masquerade: true,
            cluster_cidr: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16)
                .unwrap_or_default(),
        }
    }
}

/// The kubelet's HTTPS server (logs, exec, attach, port-forward), which the API server
/// reaches at the node's InternalIP and the port advertised in
/// `status.daemonEndpoints.kubeletEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Listen address (`0.0.0.0:10250` in Kubernetes). Port 0 picks a free port, which is
    /// then the one advertised.
    pub addr: SocketAddr,
    /// Serving certificate chain, PEM. Its subject alternative names must include the node's
    /// InternalIP ([`NodeConfig::node_ip`]): the API server verifies it by that address.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// CA bundle, PEM, that client certificates must chain to (`--client-ca-file`); `None`
    /// accepts clients without certificates.
    pub client_ca_pem: Option<String>,
}

/// Everything [`run_node`](crate::run_node) needs besides its client and runtimes.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The Node's name; defaults to the host name, lower-cased.
    pub node_name: String,
    /// Data dir: pod dirs under `pods/`, container logs under `logs/`, IPAM state under
    /// `network/`.
    pub data_dir: PathBuf,
    /// `status.capacity.pods`. Kubernetes' default is 110; raise it for wasm-only nodes.
    pub max_pods: u32,
    /// How often the Lease is renewed (and the status recomputed).
    pub heartbeat: Duration,
    /// The status is posted at least this often even when nothing changed.
    pub status_report_interval: Duration,
    /// The node's address (`InternalIP`, `status.hostIP` of its pods, where the API server
    /// reaches the kubelet); [`host::default_node_ip`](crate::host::default_node_ip) when
    /// `None`.
    pub node_ip: Option<IpAddr>,
    /// Extra node labels (e.g. [`CONTROL_PLANE_ROLE_LABEL`] for `skiff up`'s node).
    pub labels: BTreeMap<String, String>,
    /// Pod network settings.
    pub network: NetworkConfig,
    /// The HTTPS server; `None` serves nothing (tests). The port is advertised in
    /// `status.daemonEndpoints` either way.
    pub server: Option<ServerConfig>,
    /// Port advertised in `status.daemonEndpoints.kubeletEndpoint` when no server runs.
    pub kubelet_port: u16,
    /// Directory of static pod manifests (`--pod-manifest-path`), rescanned.
    pub pod_manifest_path: Option<PathBuf>,
    /// How often the manifest directory is rescanned.
    pub static_pod_rescan: Duration,
    /// How often every pod worker resyncs even without changes.
    pub resync: Duration,
    /// CrashLoopBackOff bounds: initial and maximum delay (10 s and 300 s, as Kubernetes).
    pub crash_loop_backoff: (Duration, Duration),
    /// How fast pod events are written (`--event-qps`, `--event-burst`: 50 and 100).
    pub events: crate::kubelet::events::EventLimit,
    /// Set to `true` once the Node is registered and Ready (for "node ready in N ms").
    pub ready: Option<watch::Sender<bool>>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_name: crate::host::default_node_name(),
            data_dir: PathBuf::from("/var/lib/skiff/node"),
            max_pods: 110,
            heartbeat: Duration::from_secs(10),
            status_report_interval: Duration::from_secs(300),
            node_ip: None,
            labels: BTreeMap::new(),
            network: NetworkConfig::default(),
            server: None,
            kubelet_port: 10250,
            pod_manifest_path: None,
            static_pod_rescan: Duration::from_secs(20),
            resync: Duration::from_secs(10),
            crash_loop_backoff: (
                crate::kubelet::backoff::INITIAL,
                crate::kubelet::backoff::MAX,
            ),
            events: crate::kubelet::events::EventLimit::default(),
            ready: None,
        }
    }
}

impl NodeConfig {
    /// Where pod directories (volumes) live.
    pub fn pods_dir(&self) -> PathBuf {
        self.data_dir.join("pods")
    }

    /// Where container logs live.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// Where the pod network keeps its state (IPAM allocations).
    pub fn network_dir(&self) -> PathBuf {
        self.data_dir.join("network")
    }
}

/// Settings of [`run_fake_nodes`](crate::run_fake_nodes): kwok-like simulated nodes.
#[derive(Debug, Clone)]
pub struct FakeNodesConfig {
    /// How many nodes.
    pub count: u32,
    /// Nodes are named `<name_prefix>-<i>` (i from 0).
    pub name_prefix: String,
    /// `status.capacity.cpu` per node, in cores.
    pub cpu: u32,
    /// `status.capacity.memory` per node, in bytes.
    pub memory_bytes: u64,
    /// `status.capacity.pods` per node.
    pub max_pods: u32,
    /// Lease renewal interval.
    pub heartbeat: Duration,
    /// Extra labels on every node.
    pub labels: BTreeMap<String, String>,
    /// `status.runtimeHandlers` every node advertises, so RuntimeClass scheduling behaves
    /// as on real nodes (default `wasmtime` and `docker`, what a Skiff node offers).
    pub runtime_handlers: Vec<String>,
    /// Set to `true` once every fake node is registered and Ready.
    pub ready: Option<watch::Sender<bool>>,
}

impl Default for FakeNodesConfig {
    fn default() -> Self {
        FakeNodesConfig {
            count: 1,
            name_prefix: "fake-node".to_owned(),
            cpu: 32,
            memory_bytes: 256 << 30,
            max_pods: 110,
            heartbeat: Duration::from_secs(10),
            labels: BTreeMap::new(),
            runtime_handlers: vec!["wasmtime".to_owned(), "docker".to_owned()],
            ready: None,
        }
    }
}
