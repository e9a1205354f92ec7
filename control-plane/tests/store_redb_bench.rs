//! Durable write throughput and latency of [`RedbStore`] with 1, 10 and 100
//! concurrent writers. Ignored by default (it measures, it does not check
//! behaviour); run with
//! `cargo test -p skiff-control-plane --test store_redb_bench -- --ignored --nocapture`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

const RUN_FOR: Duration = Duration::from_secs(3);

async fn measure(writers: usize) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(RedbStore::open(dir.path().join("bench.redb"), RedbConfig::default()).unwrap());
    let value = Bytes::from(vec![b'x'; 1024]);
    let started = Instant::now();
    let tasks = (0..writers).map(|w| {
        let store = Arc::clone(&store);
        let value = value.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while started.elapsed() < RUN_FOR {
                let t = Instant::now();
                store
                    .create(&format!("/registry/core/pods/w{w}/p{i}"), value.clone())
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        })
    });
    let mut latencies: Vec<Duration> = Vec::new();
    for task in futures::future::join_all(tasks).await {
        latencies.extend(task.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    (
        latencies.len() as f64 / elapsed.as_secs_f64(),
        pct(50),
        pct(99),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --ignored --nocapture"]
async fn durable_create_throughput() {
    for writers in [1, 10, 100] {
        let (rate, p50, p99) = measure(writers).await;
        println!("{writers:>3} writers: {rate:>8.0} durable creates/s, p50 {p50:?}, p99 {p99:?}");
    }
}

/// The floor under the numbers above: one bare redb durable commit (10 × 1 KiB
/// inserts), i.e. this machine's fsync latency.
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bare_redb_commit_latency() {
    const T: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("t");
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("bare.redb")).unwrap();
    let value = vec![b'x'; 1024];
    let mut times: Vec<Duration> = (0..500)
        .map(|n| {
            let t = Instant::now();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(T).unwrap();
                for i in 0..10 {
                    table
                        .insert(format!("k{n}-{i}").as_str(), value.as_slice())
                        .unwrap();
                }
            }
            txn.commit().unwrap();
            t.elapsed()
        })
        .collect();
    times.sort_unstable();
    println!(
        "bare redb commit: p50 {:?}, p99 {:?}",
        times[250], times[495]
    );
}
