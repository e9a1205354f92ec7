//! scheduler_perf SchedulingBasic through the in-process API server, small.
//! The full case (5,000 nodes, 1,000 + 10,000 pods) is `skiff bench scheduler`
//! (tested small in tests/bench_cli.rs; figures in BENCHMARKS.md).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer};
use skiff_control_plane::scheduler::{BenchOptions, bench_scheduling_basic};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::memory::MemoryStore;

async fn run(opts: BenchOptions) -> Result<skiff_control_plane::scheduler::BenchReport> {
    let server = ApiServer::new(Arc::new(MemoryStore::new()), ApiConfig::default());
    server.bootstrap().await?;
    let _bg = server.spawn_background();
    let client = in_process_client(server.router(), "default");
    Ok(bench_scheduling_basic(client, opts).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduling_basic_small() -> Result<()> {
    let report = run(BenchOptions {
        nodes: 200,
        init_pods: 100,
        measured_pods: 500,
        timeout: Duration::from_secs(60),
        ..Default::default()
    })
    .await?;
    println!("{report}");
    assert_eq!(report.measured_pods, 500);
    assert!(report.pods_per_second > 0.0);
    assert!(report.latency_p50 <= report.latency_p99);
    Ok(())
}
