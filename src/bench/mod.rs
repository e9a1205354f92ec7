//! `skiff bench ...`: each benchmark prints a human table, then one JSON
//! object with its figures as the last line.

pub mod api;
pub mod runtime;
pub mod stats;

use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// API server + redb store: create/get/list throughput and latency, watch delivery, RSS, start time.
    Api(api::ApiBenchArgs),
    /// Wasmtime runtime: create→running latency, start/stop cycles, memory per container, 1,000 concurrent.
    Runtime(runtime::RuntimeBenchArgs),
}

/// Runs one benchmark and prints its JSON line last.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let figures = match cmd {
        BenchCommand::Api(args) => api::run(args).await?,
        BenchCommand::Runtime(args) => runtime::run(args).await?,
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}
