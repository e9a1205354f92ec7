//! Command-line interface: flags become plain config structs here.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Skiff: a Kubernetes-compatible orchestrator for WebAssembly and containers.
#[derive(Debug, Parser)]
#[command(name = "skiff", version, about)]
pub struct Cli {
    /// More log output (-v info, -vv debug); SKIFF_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a whole cluster in one process: API server, scheduler, controllers and a node.
    Up(UpArgs),
    /// Run the API server alone.
    Apiserver(ServerArgs),
    /// Run the scheduler against an API server.
    Scheduler(ComponentArgs),
    /// Run the controller manager against an API server.
    ControllerManager(ControllerManagerArgs),
    /// Run a node agent (kubelet and pod network) against an API server.
    Node(NodeArgs),
    /// Manage the node's local images.
    #[command(subcommand)]
    Image(crate::image::ImageCommand),
    /// Benchmarks (a table, then one JSON line).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// Where state lives.
#[derive(Debug, Clone, Args)]
pub struct DataDirArgs {
    /// Data directory (store, PKI, images, pod dirs, logs). Default: ~/.local/share/skiff.
    #[arg(long, env = "SKIFF_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArgs {
    /// The data directory to use.
    pub fn resolve(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".local/share/skiff")
    }
}

/// Flags of the API server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Store backend: `redb` (durable file in the data dir) or `memory`.
    #[arg(long, default_value = "redb")]
    pub store: String,
}

/// Flags of a component that talks to an API server.
#[derive(Debug, Clone, Args)]
pub struct ComponentArgs {
    /// Kubeconfig for reaching the API server.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Elect a leader through a Lease, so several copies can run for HA.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
}

/// Flags of the controller manager, in `skiff up` and `skiff controller-manager`.
#[derive(Debug, Clone, Args)]
pub struct ControllerFlags {
    /// How long a node may go without a heartbeat before it is marked NotReady/Unknown
    /// (Kubernetes' `--node-monitor-grace-period`), e.g. `50s`.
    #[arg(long, default_value = "50s", value_parser = parse_seconds)]
    pub node_monitor_grace_period: std::time::Duration,
    /// Pods evicted per second from unreachable nodes (`--node-eviction-rate`).
    #[arg(long, default_value_t = 0.1)]
    pub node_eviction_rate: f64,
}

impl ControllerFlags {
    /// The controller manager's config with these flags applied.
    pub fn apply(
        &self,
        config: skiff_control_plane::controllers::ControllerManagerConfig,
    ) -> skiff_control_plane::controllers::ControllerManagerConfig {
        skiff_control_plane::controllers::ControllerManagerConfig {
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_eviction_rate: self.node_eviction_rate,
            ..config
        }
    }
}

/// `50s`, `2m` or a plain number of seconds.
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match s.strip_suffix('m') {
        Some(n) => (n, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    number
        .parse::<u64>()
        .map(|n| std::time::Duration::from_secs(n * unit))
        .map_err(|_| format!("{s:?} is not a duration like 50s or 2m"))
}

/// Flags of `skiff controller-manager`.
#[derive(Debug, Clone, Args)]
pub struct ControllerManagerArgs {
    #[command(flatten)]
    pub component: ComponentArgs,
    #[command(flatten)]
    pub controllers: ControllerFlags,
    /// The cluster's pod range; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
}

/// Flags of `skiff up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Manifests (a file or a directory of YAML files) to apply once the node is Ready.
    #[arg(long)]
    pub apply: Vec<PathBuf>,
    #[command(flatten)]
    pub node: NodeFlags,
    #[command(flatten)]
    pub controllers: ControllerFlags,
}

/// Flags of the node agent, in `skiff up` and `skiff node`.
#[derive(Debug, Clone, Args)]
pub struct NodeFlags {
    /// The Node's name. Default: the host name.
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's address (advertised as InternalIP; the kubelet server listens on it).
    /// Default: 127.0.0.1.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// Most pods on the node (status.capacity.pods). Kubernetes' default is 110; raise it
    /// for wasm pods.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// HTTPS port of the kubelet (logs, exec, attach, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// Directory of static pod manifests, rescanned (pods with mirror pods in the API).
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// The cluster's pod range; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Pod networking: `auto` (a bridge and an IP per pod when root, else host) or `host`.
    #[arg(long, default_value = "auto")]
    pub pod_network: String,
    /// Name of the node's pod bridge (several clusters on one host need distinct names).
    #[arg(long, default_value = "skiff0")]
    pub pod_bridge: String,
    /// dockerd's socket, for OCI containers.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// Seconds containers get between SIGTERM and SIGKILL when the node shuts down.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_period: u64,
    /// Pod events written per second, as the kubelet's flag; 0 for no limit.
    #[arg(long, default_value_t = 50)]
    pub event_qps: u32,
    /// Pod events written at once before --event-qps applies.
    #[arg(long, default_value_t = 100)]
    pub event_burst: u32,
}

/// Flags of `skiff node`.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// Kubeconfig with the credentials for the API server.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// The API server's URL, overriding the kubeconfig's (e.g. https://127.0.0.1:6443).
    #[arg(long)]
    pub server: Option<String>,
    #[command(flatten)]
    pub node: NodeFlags,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => crate::up::up(args).await,
        Command::Apiserver(args) => crate::up::apiserver(args).await,
        Command::Scheduler(a) => {
            crate::components::scheduler_main(&a.kubeconfig, a.leader_elect).await
        }
        Command::ControllerManager(a) => crate::components::controller_manager_main(a).await,
        Command::Node(args) => crate::node::node_main(args).await,
        Command::Image(cmd) => crate::image::run(cmd).await,
        Command::Bench(cmd) => crate::bench::run(cmd).await,
    }
}
