//! `skiff bench runtime`, Docker half: how long an OCI container takes from create to running.
//!
//! [`run_docker_bench`] measures through the [`Runtime`] trait, so the figure includes what
//! the kubelet pays (sandbox and image checks, labels, log setup), not just dockerd:
//! - **create → running** (p50/p99): `create_container` + `start_container` of a container
//!   joining a pod sandbox, which returns once Docker reports the process started;
//! - **sandbox create** (p50): a pause container with network mode `none`;
//! - **remove** (p50) of a running container.
//!
//! The workload is the pause image itself (no registry, nothing to pull, no CPU). Put the
//! result beside Wasmtime's create → running figures (`crate::bench`) with [`compare`].

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::DockerRuntime;
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::{Result, Runtime};

/// What to run.
#[derive(Debug, Clone)]
pub struct DockerBenchOptions {
    /// Samples of create → running latency.
    pub latency_samples: usize,
    /// Samples of sandbox creation.
    pub sandbox_samples: usize,
}

impl Default for DockerBenchOptions {
    fn default() -> Self {
        DockerBenchOptions {
            latency_samples: 50,
            sandbox_samples: 10,
        }
    }
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct DockerBenchReport {
    /// dockerd's version and the negotiated API version.
    pub daemon: String,
    /// Samples behind the latency percentiles.
    pub latency_samples: usize,
    /// Median create → running latency, microseconds.
    pub create_to_running_p50_us: f64,
    /// 99th percentile create → running latency, microseconds.
    pub create_to_running_p99_us: f64,
    /// Median time to create and start a pod sandbox (pause container), microseconds.
    pub sandbox_create_p50_us: f64,
    /// Median time to remove a running container, microseconds.
    pub remove_p50_us: f64,
}

impl fmt::Display for DockerBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "docker {}", self.daemon)?;
        writeln!(
            f,
            "OCI create→running latency ({} samples): p50 {:.1} ms, p99 {:.1} ms",
            self.latency_samples,
            self.create_to_running_p50_us / 1e3,
            self.create_to_running_p99_us / 1e3
        )?;
        write!(
            f,
            "pod sandbox create p50 {:.1} ms, container remove p50 {:.1} ms",
            self.sandbox_create_p50_us / 1e3,
            self.remove_p50_us / 1e3
        )
    }
}

/// Docker's create → running latency as a multiple of Wasmtime's, from one bench run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Comparison {
    /// Docker p50 / Wasmtime p50.
    pub p50_ratio: f64,
    /// Docker p99 / Wasmtime p99.
    pub p99_ratio: f64,
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OCI on Docker vs wasm on Wasmtime, create→running: {:.0}× slower at p50, {:.0}× at p99",
            self.p50_ratio, self.p99_ratio
        )
    }
}

/// Put a Docker run beside a Wasmtime run's create → running p50 and p99 (microseconds).
pub fn compare(docker: &DockerBenchReport, wasm_p50_us: f64, wasm_p99_us: f64) -> Comparison {
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    Comparison {
        p50_ratio: ratio(docker.create_to_running_p50_us, wasm_p50_us),
        p99_ratio: ratio(docker.create_to_running_p99_us, wasm_p99_us),
    }
}

/// Run the benchmark against `runtime`'s dockerd. Needs a tokio multi-thread runtime.
pub async fn run_docker_bench(
    runtime: &DockerRuntime,
    options: DockerBenchOptions,
) -> Result<DockerBenchReport> {
    let daemon = runtime.daemon_version().await?;
    let image = runtime.config().pause_image.clone();

    let mut sandbox_times = Vec::with_capacity(options.sandbox_samples);
    for _ in 0..options.sandbox_samples.max(1) {
        let started = Instant::now();
        let id = runtime
            .create_sandbox(&SandboxSpec::new("bench-sandbox"))
            .await?;
        sandbox_times.push(started.elapsed());
        runtime.remove_sandbox(&id).await?;
    }

    let sandbox = runtime.create_sandbox(&SandboxSpec::new("bench")).await?;
    let spec = ContainerSpec::new("idle", &image);
    let result = measure(runtime, &sandbox, &spec, options.latency_samples).await;
    runtime.remove_sandbox(&sandbox).await?;
    let (mut latencies, mut removals) = result?;
    latencies.sort();
    removals.sort();
    sandbox_times.sort();

    Ok(DockerBenchReport {
        daemon,
        latency_samples: latencies.len(),
        create_to_running_p50_us: percentile(&latencies, 0.50),
        create_to_running_p99_us: percentile(&latencies, 0.99),
        sandbox_create_p50_us: percentile(&sandbox_times, 0.50),
        remove_p50_us: percentile(&removals, 0.50),
    })
}

async fn measure(
    runtime: &DockerRuntime,
    sandbox: &str,
    spec: &ContainerSpec,
    samples: usize,
) -> Result<(Vec<Duration>, Vec<Duration>)> {
    // One warm-up round: first-use costs (image layers, cgroup setup) are not the steady state.
    let id = runtime.create_container(sandbox, spec).await?;
    runtime.start_container(&id).await?;
    runtime.remove_container(&id).await?;

    let mut latencies = Vec::with_capacity(samples);
    let mut removals = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let started = Instant::now();
        let id = runtime.create_container(sandbox, spec).await?;
        runtime.start_container(&id).await?;
        latencies.push(started.elapsed());
        let started = Instant::now();
        runtime.remove_container(&id).await?;
        removals.push(started.elapsed());
    }
    Ok((latencies, removals))
}

/// Microseconds at quantile `q` of sorted samples (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_ratios() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), 50_000.0);
        assert_eq!(percentile(&samples, 0.99), 99_000.0);
        assert_eq!(percentile(&[], 0.5), 0.0);

        let docker = DockerBenchReport {
            daemon: "test".into(),
            latency_samples: 1,
            create_to_running_p50_us: 150_000.0,
            create_to_running_p99_us: 300_000.0,
            sandbox_create_p50_us: 0.0,
            remove_p50_us: 0.0,
        };
        let comparison = compare(&docker, 100.0, 1000.0);
        assert_eq!(comparison.p50_ratio, 1500.0);
        assert_eq!(comparison.p99_ratio, 300.0);
        assert!(comparison.to_string().contains("1500×"), "{comparison}");
    }
}
