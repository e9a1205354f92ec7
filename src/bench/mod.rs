//! `skiff bench ...`: each benchmark prints a human table, then one JSON
//! object with its figures as the last line.

pub mod api;
pub mod deployment;
pub mod network;
pub mod pods;
pub mod runtime;
pub mod scheduler;
pub mod stats;
pub mod store;
pub mod up;

use std::path::Path;
use std::sync::Arc;

use clap::Subcommand;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer, BackgroundTasks};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// API server + redb store: create/get/list throughput and latency, watch delivery, RSS, start time.
    Api(api::ApiBenchArgs),
    /// Wasmtime runtime: create→running latency, start/stop cycles, memory per container, 1,000 concurrent; OCI on Docker beside it.
    Runtime(runtime::RuntimeBenchArgs),
    /// Pods: startup latency of wasm and OCI pods side by side, and 1,000 wasm pods on one node.
    Pods(pods::PodsBenchArgs),
    /// Pod network alone: namespaces created and attached to a node bridge, 1,000 at several parallelisms.
    Network(network::NetworkBenchArgs),
    /// `skiff up`: time to a Ready node and to the first wasm pod Running, idle RSS, binary size.
    Up(up::UpBenchArgs),
    /// Deployment: 1,000 wasm replicas on fake nodes to available, then a rolling update.
    Deployment(deployment::DeploymentBenchArgs),
    /// Scheduler: kube-scheduler's scheduler_perf SchedulingBasic (5,000 fake nodes, 10,000 pods) through the API server, or the algorithm alone (`--core`).
    Scheduler(scheduler::SchedulerBenchArgs),
    /// Store alone: durable creates through the redb store with 1, 10 and 100 writers, and bare redb commit latency.
    Store(store::StoreBenchArgs),
}

/// Runs one benchmark and prints its JSON line last.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let figures = match cmd {
        BenchCommand::Api(args) => api::run(args).await?,
        BenchCommand::Runtime(args) => runtime::run(args).await?,
        BenchCommand::Scheduler(args) => scheduler::run(args).await?,
        BenchCommand::Pods(args) => pods::run(args).await?,
        BenchCommand::Up(args) => up::run(args).await?,
        BenchCommand::Network(args) => network::run(args).await?,
        BenchCommand::Deployment(args) => deployment::run(args).await?,
        BenchCommand::Store(args) => store::run(args).await?,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// The control plane of a benchmark, all in this process: the API server on a redb store
/// under a directory, the scheduler and the controller manager (without leader election).
pub(crate) struct ControlPlane {
    pub api: ApiServer,
    pub client: kube::Client,
    /// The scheduler and the controller manager; a benchmark adds its nodes here.
    pub tasks: tokio::task::JoinSet<()>,
    _background: BackgroundTasks,
}

impl ControlPlane {
    /// Starts one with its store at `dir/store.redb`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let store = Arc::new(RedbStore::open(
            dir.join("store.redb"),
            RedbConfig::default(),
        )?);
        let api = ApiServer::new(store, ApiConfig::default());
        api.bootstrap().await?;
        let background = api.spawn_background();
        let client = in_process_client(api.router(), "default");
        let mut tasks = tokio::task::JoinSet::new();
        let mut scheduler = skiff_control_plane::scheduler::SchedulerConfig::default();
        scheduler.leader_election.enabled = false;
        tasks.spawn(crate::components::run_scheduler(client.clone(), scheduler));
        tasks.spawn(crate::components::run_controller_manager(
            client.clone(),
            skiff_control_plane::controllers::ControllerManagerConfig {
                leader_elect: false,
                ..Default::default()
            },
        ));
        Ok(ControlPlane {
            api,
            client,
            tasks,
            _background: background,
        })
    }
}
