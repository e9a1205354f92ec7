//! `skiff bench store`: the durable store alone, without the API server.
//!
//! Two figures. First, durable creates (1 KiB values by default) through
//! [`RedbStore`] with 1, 10 and 100 concurrent writers for a fixed time each:
//! creates/s and per-create latency. Every create returns only once its
//! group-committed redb transaction is fsync'd, so this is the store's write
//! ceiling. Second, the floor under those numbers: bare redb durable commits
//! of 10 inserts each, one after another, i.e. this machine's fsync latency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::json;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

use super::stats::{Samples, round2};

/// Options of `skiff bench store`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreBenchArgs {
    /// Concurrent writers per phase (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub writers: Vec<usize>,
    /// Seconds each writer phase runs.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Bytes in each created value.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
    /// Bare redb commits (10 inserts each) timed one after another; 0 skips them.
    #[arg(long, default_value_t = 500)]
    pub bare_commits: usize,
}

/// One writer phase's result.
struct Phase {
    writers: usize,
    creates: usize,
    per_second: f64,
    latency: Samples,
}

/// `writers` tasks create distinct keys on a fresh store file for `run_for`.
async fn durable_creates(
    writers: usize,
    run_for: Duration,
    value_bytes: usize,
) -> anyhow::Result<Phase> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join("bench.redb");
    let store = Arc::new(
        RedbStore::open(&path, RedbConfig::default())
            .with_context(|| format!("opening {}", path.display()))?,
    );
    let value = Bytes::from(vec![b'x'; value_bytes]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = Arc::clone(&store);
            let value = value.clone();
            tokio::spawn(async move {
                let mut latency = Samples::default();
                let mut i = 0u64;
                while started.elapsed() < run_for {
                    let t = Instant::now();
                    store
                        .create(&format!("/registry/core/pods/w{w}/p{i}"), value.clone())
                        .await
                        .with_context(|| format!("writer {w}: create {i}"))?;
                    latency.push(t.elapsed());
                    i += 1;
                }
                anyhow::Ok(latency)
            })
        })
        .collect();
    let mut latency = Samples::default();
    for task in futures::future::join_all(tasks).await {
        latency.extend(task.context("a writer task panicked")??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Phase {
        writers,
        creates: latency.len(),
        per_second: latency.len() as f64 / elapsed.max(f64::EPSILON),
        latency,
    })
}

/// `count` bare redb durable commits of 10 × `value_bytes` inserts each.
fn bare_commits(count: usize, value_bytes: usize) -> anyhow::Result<Samples> {
    const TABLE: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let db = redb::Database::create(dir.path().join("bare.redb")).context("creating redb file")?;
    let value = vec![b'x'; value_bytes];
    let mut times = Samples::default();
    for n in 0..count {
        let t = Instant::now();
        let txn = db.begin_write().context("begin write")?;
        {
            let mut table = txn.open_table(TABLE).context("open table")?;
            for i in 0..10 {
                table
                    .insert(format!("k{n}-{i}").as_str(), value.as_slice())
                    .context("insert")?;
            }
        }
        txn.commit().context("commit")?;
        times.push(t.elapsed());
    }
    Ok(times)
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: StoreBenchArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        args.seconds.is_finite() && args.seconds > 0.0,
        "--seconds must be a positive number"
    );
    anyhow::ensure!(
        args.writers.iter().all(|w| *w > 0),
        "--writers must all be at least 1"
    );
    let run_for = Duration::from_secs_f64(args.seconds);
    let mut phases = Vec::new();
    for &writers in &args.writers {
        phases.push(durable_creates(writers, run_for, args.value_bytes).await?);
    }
    let (count, value_bytes) = (args.bare_commits, args.value_bytes);
    let bare = tokio::task::spawn_blocking(move || bare_commits(count, value_bytes))
        .await
        .context("the bare-commit thread panicked")??;

    println!(
        "store  redb, durable creates of {} B values, {}s per phase",
        args.value_bytes, args.seconds
    );
    println!(
        "{:<10} {:>10} {:>12} {:>10} {:>10}",
        "writers", "creates", "creates/s", "p50 ms", "p99 ms"
    );
    for p in &phases {
        println!(
            "{:<10} {:>10} {:>12.0} {:>10.2} {:>10.2}",
            p.writers,
            p.creates,
            p.per_second,
            p.latency.percentile_ms(50.0),
            p.latency.percentile_ms(99.0)
        );
    }
    println!(
        "bare redb commit (10 inserts): {} commits, p50 {:.2} ms, p99 {:.2} ms",
        bare.len(),
        bare.percentile_ms(50.0),
        bare.percentile_ms(99.0)
    );
    let durable: Vec<serde_json::Value> = phases
        .iter()
        .map(|p| {
            json!({
                "writers": p.writers,
                "creates": p.creates,
                "creates_per_second": round2(p.per_second),
                "p50_ms": round2(p.latency.percentile_ms(50.0)),
                "p99_ms": round2(p.latency.percentile_ms(99.0)),
            })
        })
        .collect();
    Ok(json!({
        "bench": "store",
        "store": "redb",
        "value_bytes": args.value_bytes,
        "seconds_per_phase": args.seconds,
        "durable_creates": durable,
        "bare_commit": {
            "commits": bare.len(),
            "inserts_per_commit": 10,
            "p50_ms": round2(bare.percentile_ms(50.0)),
            "p99_ms": round2(bare.percentile_ms(99.0)),
        },
    }))
}
