//! `skiff bench runtime`: the Wasmtime backend's container lifecycle figures.

use serde_json::json;
use skiff_runtimes::bench::{BenchOptions, run_runtime_bench};

use super::stats::round2;

/// Options of `skiff bench runtime`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeBenchArgs {
    /// Create→running samples.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Start/stop cycles.
    #[arg(long, default_value_t = 2000)]
    pub cycles: usize,
    /// Containers running at once.
    #[arg(long, default_value_t = 1000)]
    pub concurrent: usize,
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: RuntimeBenchArgs) -> anyhow::Result<serde_json::Value> {
    let report = run_runtime_bench(BenchOptions {
        data_dir: None,
        latency_samples: args.samples,
        cycles: args.cycles,
        concurrent: args.concurrent,
    })
    .await?;
    println!("runtime  wasmtime");
    println!("{report}");
    Ok(json!({
        "bench": "runtime",
        "wasmtime": {
            "create_to_running_p50_ms": round2(report.create_to_running_p50_us / 1000.0),
            "create_to_running_p99_ms": round2(report.create_to_running_p99_us / 1000.0),
            "start_stop_cycles_per_sec": round2(report.start_stop_cycles_per_sec),
            "concurrent_running": report.concurrent_running,
            "concurrent_requested": report.concurrent_requested,
            "concurrent_start_ms": round2(report.concurrent_start_ms),
            "rss_per_container_kib": round2(report.rss_per_container_kib),
            "rss_per_container_beyond_linear_kib": round2(report.rss_per_container_beyond_linear_kib),
        }
    }))
}
