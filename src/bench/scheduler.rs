//! `skiff bench scheduler`: kube-scheduler's scheduler_perf SchedulingBasic
//! through the real API server (in process, over the tower service, on a
//! redb or memory store): 5,000 fake Ready nodes, 1,000 pods scheduled
//! first, then 10,000 measured pods of 100m / 500Mi.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer};
use skiff_control_plane::scheduler::{BenchOptions, bench_scheduling_basic};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

use super::stats::{round2, rss_mib};

/// kube-scheduler's CI floor for SchedulingBasic (5000Nodes, pods/s).
const KUBE_SCHEDULER_FLOOR: f64 = 680.0;

/// Options of `skiff bench scheduler`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerBenchArgs {
    /// Fake nodes (4 cpu, 32Gi, 110 pods, Ready).
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods scheduled before measuring.
    #[arg(long, default_value_t = 1000)]
    pub init_pods: usize,
    /// Pods measured.
    #[arg(long, default_value_t = 10000)]
    pub pods: usize,
    /// The API server's store: redb (a durable file in a temporary directory) or memory.
    #[arg(long, default_value = "redb")]
    pub store: String,
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = match args.store.as_str() {
        "redb" => Arc::new(
            RedbStore::open(dir.path().join("store.redb"), RedbConfig::default())
                .context("opening the benchmark's redb store")?,
        ),
        "memory" => Arc::new(MemoryStore::new()),
        other => anyhow::bail!("unknown --store {other:?}: use redb or memory"),
    };
    let server = ApiServer::new(store, ApiConfig::default());
    server.bootstrap().await?;
    let _background = server.spawn_background();
    let client = in_process_client(server.router(), "default");
    let report = bench_scheduling_basic(
        client,
        BenchOptions {
            nodes: args.nodes,
            init_pods: args.init_pods,
            measured_pods: args.pods,
            timeout: Duration::from_secs(1800),
            ..Default::default()
        },
    )
    .await?;
    let ms = |d: Duration| round2(d.as_secs_f64() * 1e3);
    println!("scheduler SchedulingBasic ({} store)", args.store);
    println!("{:<28} {:>12}", "figure", "value");
    println!("{:<28} {:>12}", "nodes", report.nodes);
    println!("{:<28} {:>12}", "init pods", report.init_pods);
    println!("{:<28} {:>12}", "measured pods", report.measured_pods);
    println!("{:<28} {:>12.0}", "pods/s", report.pods_per_second);
    println!(
        "{:<28} {:>11.2}x",
        "ratio to kube-scheduler 680",
        report.pods_per_second / KUBE_SCHEDULER_FLOOR
    );
    println!("{:<28} {:>12}", "latency p50 ms", ms(report.latency_p50));
    println!("{:<28} {:>12}", "latency p90 ms", ms(report.latency_p90));
    println!("{:<28} {:>12}", "latency p99 ms", ms(report.latency_p99));
    println!(
        "{:<28} {:>12}",
        "creating pods s",
        round2(report.create_elapsed.as_secs_f64())
    );
    println!(
        "{:<28} {:>12}",
        "setup s",
        round2(report.setup.as_secs_f64())
    );
    Ok(json!({
        "bench": "scheduler",
        "case": "SchedulingBasic",
        "store": args.store,
        "nodes": report.nodes,
        "init_pods": report.init_pods,
        "measured_pods": report.measured_pods,
        "pods_per_second": round2(report.pods_per_second),
        "ratio_to_kube_scheduler_floor": round2(report.pods_per_second / KUBE_SCHEDULER_FLOOR),
        "latency_p50_ms": ms(report.latency_p50),
        "latency_p90_ms": ms(report.latency_p90),
        "latency_p99_ms": ms(report.latency_p99),
        "create_elapsed_s": round2(report.create_elapsed.as_secs_f64()),
        "setup_s": round2(report.setup.as_secs_f64()),
        "rss_mib": rss_mib(std::process::id()).map(round2),
    }))
}
