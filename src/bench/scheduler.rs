//! `skiff bench scheduler`: kube-scheduler's scheduler_perf SchedulingBasic
//! through the real API server (in process, over the tower service, on a
//! redb or memory store): 5,000 fake Ready nodes, 1,000 pods scheduled
//! first, then 10,000 measured pods of 100m / 500Mi.
//!
//! `--core` measures the scheduling algorithm alone on the same shape: the
//! nodes in the scheduler's cache, each pod through filter and score and
//! assumed on the chosen node at once, with no API server, queue or binding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use serde_json::json;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer};
use skiff_control_plane::scheduler::algorithm::Algorithm;
use skiff_control_plane::scheduler::bench::{bench_node, bench_pod};
use skiff_control_plane::scheduler::cache::Cache;
use skiff_control_plane::scheduler::pod_info::{PodContext, PodInfo};
use skiff_control_plane::scheduler::{BenchOptions, bench_scheduling_basic};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

use super::stats::{Samples, round2, rss_mib};

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
    /// Measure the scheduling algorithm alone (cache, filter, score, assume): no API server.
    #[arg(long)]
    pub core: bool,
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: SchedulerBenchArgs) -> anyhow::Result<serde_json::Value> {
    if args.core {
        return tokio::task::spawn_blocking(move || run_core(&args))
            .await
            .context("the scheduler core benchmark panicked");
    }
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
        "mode": "api",
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

/// What [`place`] measured.
#[derive(Debug)]
pub struct CoreReport {
    /// Measured pods that found a node.
    pub placed: usize,
    /// Measured pods through the algorithm per second (placed or not).
    pub pods_per_second: f64,
    /// Per-pod time to schedule and assume.
    pub latency: Samples,
}

/// Puts `nodes` scheduler_perf nodes in a fresh cache, places `init_pods`
/// unmeasured, then times `pods` more through the algorithm, each assumed on
/// its chosen node at once (as the scheduler does before binding).
pub fn place(nodes: usize, init_pods: usize, pods: usize) -> CoreReport {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.upsert_node(Arc::new(bench_node(&format!("node-{i}"))));
    }
    let ctx = PodContext::default();
    let info = |i: usize| {
        let mut p = bench_pod(&format!("pod-{i}"));
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some(format!("uid-{i}"));
        Arc::new(PodInfo::new(Arc::new(p), &ctx))
    };
    let mut alg = Algorithm::new(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut one = |cache: &mut Cache, info: Arc<PodInfo>| -> bool {
        let Ok(r) = alg.schedule(&info, &cache.snapshot(), &mut rng) else {
            return false;
        };
        let Some(node) = cache.snapshot().nodes.get(r.node).map(|n| n.name.clone()) else {
            return false;
        };
        cache.assume(info, &node);
        true
    };
    for i in 0..init_pods {
        one(&mut cache, info(i));
    }
    let measured: Vec<Arc<PodInfo>> = (init_pods..init_pods + pods).map(info).collect();
    let mut latency = Samples::default();
    let mut placed = 0;
    let start = Instant::now();
    for pod in measured {
        let t = Instant::now();
        if one(&mut cache, pod) {
            placed += 1;
        }
        latency.push(t.elapsed());
    }
    let elapsed = start.elapsed().as_secs_f64();
    CoreReport {
        placed,
        pods_per_second: pods as f64 / elapsed.max(f64::EPSILON),
        latency,
    }
}

fn run_core(args: &SchedulerBenchArgs) -> serde_json::Value {
    let report = place(args.nodes, args.init_pods, args.pods);
    let (p50, p99) = (
        report.latency.percentile_ms(50.0),
        report.latency.percentile_ms(99.0),
    );
    println!("scheduler SchedulingBasic, algorithm alone (--core)");
    println!("{:<28} {:>12}", "figure", "value");
    println!("{:<28} {:>12}", "nodes", args.nodes);
    println!("{:<28} {:>12}", "init pods", args.init_pods);
    println!("{:<28} {:>12}", "measured pods", args.pods);
    println!("{:<28} {:>12}", "placed", report.placed);
    println!("{:<28} {:>12.0}", "pods/s", report.pods_per_second);
    println!("{:<28} {:>12.3}", "per pod p50 ms", p50);
    println!("{:<28} {:>12.3}", "per pod p99 ms", p99);
    json!({
        "bench": "scheduler",
        "case": "SchedulingBasic",
        "mode": "core",
        "nodes": args.nodes,
        "init_pods": args.init_pods,
        "measured_pods": args.pods,
        "placed": report.placed,
        "pods_per_second": round2(report.pods_per_second),
        "latency_p50_ms": (p50 * 1000.0).round() / 1000.0,
        "latency_p99_ms": (p99 * 1000.0).round() / 1000.0,
    })
}
