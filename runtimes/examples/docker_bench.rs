//! Runs the OCI-on-Docker and the wasm-on-Wasmtime create→running benchmarks in one run and
//! prints both with their ratio (the Docker half of `skiff bench runtime`). Needs dockerd.
//! Use a release build: `cargo run --release -p skiff-runtimes --example docker_bench`.
//! Optional arguments: Docker latency samples, Wasmtime latency samples.

use skiff_runtimes::bench::{BenchOptions, run_runtime_bench};
use skiff_runtimes::docker::bench::{DockerBenchOptions, compare, run_docker_bench};
use skiff_runtimes::docker::{DockerConfig, DockerRuntime};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let docker_samples = args.next().transpose()?.unwrap_or(100);
    let wasm_samples = args.next().transpose()?.unwrap_or(1000);

    let runtime = DockerRuntime::new(DockerConfig::new(format!("bench-{}", std::process::id())));
    anyhow::ensure!(
        runtime.available().await,
        "no Docker daemon answers at {}",
        runtime.endpoint()
    );
    let docker = run_docker_bench(
        &runtime,
        DockerBenchOptions {
            latency_samples: docker_samples,
            ..DockerBenchOptions::default()
        },
    )
    .await?;
    let wasm = run_runtime_bench(BenchOptions {
        latency_samples: wasm_samples,
        cycles: 200,
        concurrent: 100,
        data_dir: None,
    })
    .await?;
    println!("{docker}\n\nwasm (Wasmtime):\n{wasm}\n");
    println!(
        "{}",
        compare(
            &docker,
            wasm.create_to_running_p50_us,
            wasm.create_to_running_p99_us
        )
    );
    Ok(())
}
