//! `skiff bench runtime`: how fast and how small Wasmtime containers are.
//!
//! [`run_runtime_bench`] measures, on a fresh [`WasmtimeRuntime`] over a temporary data dir:
//! - **create → running latency** (p50/p99) of a precompiled module: `create_container` +
//!   `start_container`, which returns once the guest is instantiated and running;
//! - **start/stop cycles per second**: create, start, stop, remove, back to back;
//! - **memory per idle container**: RSS growth of this process per idle running guest (its
//!   touched linear memory included, so an upper bound of the overhead beyond it);
//! - **N concurrently running containers** (default 1,000) in one process: all started, all
//!   observed running at once, then all stopped.
//!
//! The guest is a tiny WASI module blocked in `poll_oneoff`, so "running" costs no CPU.
//! Run it from a release build; debug builds are 5–8× slower.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::spec::{ContainerSpec, NetworkMode, SandboxSpec};
use crate::wasmtime::{WasmtimeConfig, WasmtimeRuntime};
use crate::{Error, Result, Runtime};

/// An idle guest: one 64 KiB page of linear memory, asleep in `poll_oneoff` forever.
pub const IDLE_GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (loop $forever
      (drop (call $poll_oneoff (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
      (br $forever))))
"#;

/// [`IDLE_GUEST`] assembled (a test checks it against the text), so the
/// binary needs no WAT parser.
pub const IDLE_GUEST_WASM: &[u8] = &[
    0, 97, 115, 109, 1, 0, 0, 0, 1, 12, 2, 96, 4, 127, 127, 127, 127, 1, 127, 96, 0, 0, 2, 38, 1,
    22, 119, 97, 115, 105, 95, 115, 110, 97, 112, 115, 104, 111, 116, 95, 112, 114, 101, 118, 105,
    101, 119, 49, 11, 112, 111, 108, 108, 95, 111, 110, 101, 111, 102, 102, 0, 0, 3, 2, 1, 1, 5, 3,
    1, 0, 1, 7, 19, 2, 6, 109, 101, 109, 111, 114, 121, 2, 0, 6, 95, 115, 116, 97, 114, 116, 0, 1,
    10, 49, 1, 47, 0, 65, 8, 65, 0, 58, 0, 0, 65, 16, 65, 1, 54, 2, 0, 65, 24, 66, 128, 192, 226,
    133, 227, 232, 0, 55, 3, 0, 3, 64, 65, 0, 65, 192, 0, 65, 1, 65, 128, 1, 16, 0, 26, 12, 0, 11,
    11, 0, 35, 4, 110, 97, 109, 101, 1, 14, 1, 0, 11, 112, 111, 108, 108, 95, 111, 110, 101, 111,
    102, 102, 3, 12, 1, 1, 1, 0, 7, 102, 111, 114, 101, 118, 101, 114,
];

/// Linear memory of [`IDLE_GUEST`].
const IDLE_GUEST_LINEAR_BYTES: u64 = 64 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Data dir for images and the compile cache; a temporary one if `None`.
    pub data_dir: Option<PathBuf>,
    /// Samples of create → running latency.
    pub latency_samples: usize,
    /// Create/start/stop/remove cycles for the throughput figure.
    pub cycles: usize,
    /// Containers running at once for the memory and concurrency figures.
    pub concurrent: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            data_dir: None,
            latency_samples: 1000,
            cycles: 2000,
            concurrent: 1000,
        }
    }
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Samples behind the latency percentiles.
    pub latency_samples: usize,
    /// Median create → running latency, microseconds.
    pub create_to_running_p50_us: f64,
    /// 99th percentile create → running latency, microseconds.
    pub create_to_running_p99_us: f64,
    /// Full create/start/stop/remove cycles per second.
    pub start_stop_cycles_per_sec: f64,
    /// Containers running at once in the concurrency run.
    pub concurrent_running: usize,
    /// Containers requested for the concurrency run.
    pub concurrent_requested: usize,
    /// Time to create and start all of them.
    pub concurrent_start_ms: f64,
    /// Time to stop and remove all of them.
    pub concurrent_stop_ms: f64,
    /// Process RSS growth per idle running container, KiB. It includes the resident part of
    /// the guest's linear memory, so it bounds the overhead beyond linear memory from above.
    pub rss_per_container_kib: f64,
    /// Linear memory each benchmark guest has (reserved, mostly untouched), KiB.
    pub guest_linear_memory_kib: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "create→running latency ({} samples): p50 {:.0} µs, p99 {:.0} µs",
            self.latency_samples, self.create_to_running_p50_us, self.create_to_running_p99_us
        )?;
        writeln!(
            f,
            "start/stop cycles: {:.0}/s",
            self.start_stop_cycles_per_sec
        )?;
        writeln!(
            f,
            "concurrent: {}/{} running (start all {:.0} ms, stop all {:.0} ms)",
            self.concurrent_running,
            self.concurrent_requested,
            self.concurrent_start_ms,
            self.concurrent_stop_ms
        )?;
        write!(
            f,
            "memory per idle container: {:.0} KiB RSS including its touched linear memory \
             (guest has {:.0} KiB)",
            self.rss_per_container_kib, self.guest_linear_memory_kib
        )
    }
}

/// Run the benchmark. Needs a tokio multi-thread runtime.
pub async fn run_runtime_bench(options: BenchOptions) -> Result<BenchReport> {
    let data_dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => tempdir()?,
    };
    let mut config = WasmtimeConfig::new(&data_dir);
    config.max_containers = (options.concurrent as u32).saturating_add(64);
    let runtime = WasmtimeRuntime::new(config)?;
    runtime
        .image_store()
        .import_bytes(IDLE_GUEST_WASM, "skiff-bench/idle:v1")?;
    let image = "skiff-bench/idle:v1";
    runtime.precompile(image).await?;
    let sandbox = runtime
        .create_sandbox(&SandboxSpec::new("bench").with_network(NetworkMode::Host))
        .await?;
    let spec = ContainerSpec::new("idle", image);

    // Warm up the pool and caches.
    for _ in 0..50 {
        cycle(&runtime, &sandbox, &spec).await?;
    }

    let mut latencies = Vec::with_capacity(options.latency_samples);
    for _ in 0..options.latency_samples {
        let started = Instant::now();
        let id = runtime.create_container(&sandbox, &spec).await?;
        runtime.start_container(&id).await?;
        latencies.push(started.elapsed());
        runtime.remove_container(&id).await?;
    }
    latencies.sort();

    let started = Instant::now();
    for _ in 0..options.cycles {
        cycle(&runtime, &sandbox, &spec).await?;
    }
    let cycles_per_sec = options.cycles as f64 / started.elapsed().as_secs_f64();

    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(options.concurrent);
    for _ in 0..options.concurrent {
        let id = runtime.create_container(&sandbox, &spec).await?;
        runtime.start_container(&id).await?;
        ids.push(id);
    }
    let concurrent_start = started.elapsed();
    // Let every guest reach its poll and the allocator settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut running = 0;
    for id in &ids {
        if runtime.container_status(id).await?.state.is_running() {
            running += 1;
        }
    }
    let rss_after = rss_bytes();
    let per_container = rss_after.saturating_sub(rss_before) as f64 / ids.len().max(1) as f64;
    let started = Instant::now();
    for id in &ids {
        runtime.remove_container(id).await?;
    }
    let concurrent_stop = started.elapsed();
    runtime.remove_sandbox(&sandbox).await?;
    if options.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }

    Ok(BenchReport {
        latency_samples: latencies.len(),
        create_to_running_p50_us: percentile(&latencies, 0.50),
        create_to_running_p99_us: percentile(&latencies, 0.99),
        start_stop_cycles_per_sec: cycles_per_sec,
        concurrent_running: running,
        concurrent_requested: options.concurrent,
        concurrent_start_ms: concurrent_start.as_secs_f64() * 1e3,
        concurrent_stop_ms: concurrent_stop.as_secs_f64() * 1e3,
        rss_per_container_kib: per_container / 1024.0,
        guest_linear_memory_kib: IDLE_GUEST_LINEAR_BYTES as f64 / 1024.0,
    })
}

async fn cycle(runtime: &WasmtimeRuntime, sandbox: &str, spec: &ContainerSpec) -> Result<()> {
    let id = runtime.create_container(sandbox, spec).await?;
    runtime.start_container(&id).await?;
    runtime.stop_container(&id, Duration::ZERO).await?;
    runtime.remove_container(&id).await
}

/// Microseconds at quantile `q` of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e6
}

/// Resident set size of this process, from `/proc/self/statm`.
fn rss_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    pages * page
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("skiff-bench-{}", crate::lifecycle::new_id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("create bench dir", &dir, e))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_guest_bytes_are_the_assembled_text() {
        let assembled = wat::parse_str(IDLE_GUEST).expect("wat");
        assert_eq!(IDLE_GUEST_WASM, assembled.as_slice(), "{assembled:?}");
    }

    #[test]
    fn percentiles_pick_the_right_sample() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&samples, 0.5), 50.0);
        assert_eq!(percentile(&samples, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_run_reports_sane_numbers() {
        let report = run_runtime_bench(BenchOptions {
            data_dir: None,
            latency_samples: 20,
            cycles: 20,
            concurrent: 20,
        })
        .await
        .expect("bench");
        assert_eq!(report.concurrent_running, 20, "{report}");
        assert!(report.create_to_running_p50_us > 0.0);
        assert!(report.create_to_running_p99_us >= report.create_to_running_p50_us);
        assert!(report.start_stop_cycles_per_sec > 1.0, "{report}");
    }
}
