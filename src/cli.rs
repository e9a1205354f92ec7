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
    ControllerManager(ComponentArgs),
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

/// Flags of `skiff up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Manifests (a file or a directory of YAML files) to apply once the cluster is ready.
    #[arg(long)]
    pub apply: Vec<PathBuf>,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => crate::up::up(args).await,
        Command::Apiserver(args) => crate::up::apiserver(args).await,
        Command::Scheduler(a) => {
            crate::components::scheduler_main(&a.kubeconfig, a.leader_elect).await
        }
        Command::ControllerManager(a) => {
            crate::components::controller_manager_main(&a.kubeconfig, a.leader_elect).await
        }
        Command::Image(cmd) => crate::image::run(cmd).await,
        Command::Bench(cmd) => crate::bench::run(cmd).await,
    }
}
