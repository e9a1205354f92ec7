//! Runs the Wasmtime runtime benchmark and prints the report (what `skiff bench runtime`
//! does). Use a release build: `cargo run --release -p skiff-runtimes --example runtime_bench`.
//! Optional arguments: latency samples, cycles, concurrent containers.

use skiff_runtimes::bench::{BenchOptions, run_runtime_bench};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let defaults = BenchOptions::default();
    let options = BenchOptions {
        latency_samples: args.next().transpose()?.unwrap_or(defaults.latency_samples),
        cycles: args.next().transpose()?.unwrap_or(defaults.cycles),
        concurrent: args.next().transpose()?.unwrap_or(defaults.concurrent),
        data_dir: None,
    };
    let report = run_runtime_bench(options).await?;
    println!("{report}");
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
