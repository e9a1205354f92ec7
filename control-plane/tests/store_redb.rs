//! The store behaviour suite against [`RedbStore`] on a real file, plus what
//! only a durable backend does: restart, log replay beyond the watch window,
//! automatic compaction and back-pressure.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod store_suite;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skiff_control_plane::store::redb_store::{CompactionPolicy, RedbConfig, RedbStore};
use skiff_control_plane::store::watch_hub::WatchHubConfig;
use skiff_control_plane::store::{ListOptions, Store, StoreError};
use store_suite::{Backend, Harness, Opts, b, next_event};

struct Redb;

fn config(opts: Opts) -> RedbConfig {
    RedbConfig {
        watch: WatchHubConfig {
            window: opts.window,
            watcher_buffer: opts.watcher_buffer,
        },
        compaction: None,
        cache_size: 16 * 1024 * 1024,
        ..RedbConfig::default()
    }
}

impl Backend for Redb {
    fn open(&self, opts: Opts) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path().join("skiff.redb"), config(opts)).unwrap();
        Harness {
            store: Arc::new(store),
            guard: Box::new(dir),
        }
    }
}

store_suite!(Redb);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_data_revisions_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skiff.redb");
    let before = {
        let s = RedbStore::open(&path, config(Opts::default())).unwrap();
        for i in 0..20 {
            s.create(&format!("/registry/core/pods/a/p{i}"), b(&format!("v{i}")))
                .await
                .unwrap();
        }
        s.update("/registry/core/pods/a/p3", b("changed"), Some(4))
            .await
            .unwrap(); // 21
        s.delete("/registry/core/pods/a/p5", None).await.unwrap(); // 22
        s.compact(2).await.unwrap();
        s.list("/registry/", ListOptions::default()).await.unwrap()
    };
    let s = RedbStore::open(&path, config(Opts::default())).unwrap();
    assert_eq!(s.current_revision(), 22);
    assert_eq!(s.compacted_revision(), 2);
    assert_eq!(
        s.list("/registry/", ListOptions::default()).await.unwrap(),
        before
    );
    let at = ListOptions {
        revision: Some(10),
        ..ListOptions::default()
    };
    assert_eq!(s.list("/registry/", at).await.unwrap().items.len(), 10);
    // Watch from an old revision replays the log written before the restart.
    let mut w = s.watch("/registry/core/pods/", 19).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision, 20);
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.revision, e.kv.value.clone(), e.prev.map(|p| p.value)),
        (21, b("changed"), Some(b("v3")))
    );
    assert_eq!(next_event(&mut w).await.revision, 22);
    assert!(matches!(
        s.watch("/registry/", 1).await,
        Err(StoreError::Expired {
            requested: 1,
            oldest: 2
        })
    ));
    // And it keeps going.
    assert_eq!(
        s.create("/registry/core/pods/a/new", b("n"))
            .await
            .unwrap()
            .mod_revision,
        23
    );
    assert_eq!(next_event(&mut w).await.revision, 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_older_than_the_window_replays_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        window: 5,
        ..Opts::default()
    };
    let s = RedbStore::open(dir.path().join("skiff.redb"), config(opts)).unwrap();
    for i in 0..30 {
        let ns = if i % 2 == 0 { "even" } else { "odd" };
        s.create(&format!("/registry/core/pods/{ns}/p{i}"), b("v"))
            .await
            .unwrap();
    }
    let mut w = s.watch("/registry/core/pods/even/", 0).await.unwrap();
    for rev in (1..=30).step_by(2) {
        assert_eq!(next_event(&mut w).await.revision, rev);
    }
    s.create("/registry/core/pods/even/live", b("v"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut w).await.revision, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_compaction_keeps_the_configured_history() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RedbConfig {
        compaction: Some(CompactionPolicy {
            interval: Duration::from_millis(50),
            keep_revisions: Some(10),
            keep_for: None,
            chunk: 3,
        }),
        ..config(Opts::default())
    };
    let s = RedbStore::open(dir.path().join("skiff.redb"), cfg).unwrap();
    for i in 0..40 {
        s.create(&format!("/registry/core/pods/a/p{i}"), b("v"))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.compacted_revision() < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "compacted only to {}",
            s.compacted_revision()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.compacted_revision(), 30);
    assert!(matches!(
        s.watch("/registry/", 29).await,
        Err(StoreError::Expired { .. })
    ));
    let mut w = s.watch("/registry/", 30).await.unwrap();
    assert_eq!(next_event(&mut w).await.revision, 31);
    let at = ListOptions {
        revision: Some(30),
        ..ListOptions::default()
    };
    assert_eq!(s.list("/registry/", at).await.unwrap().items.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RedbConfig {
        queue_capacity: 2,
        max_batch: 1,
        ..config(Opts::default())
    };
    let s = Arc::new(RedbStore::open(dir.path().join("skiff.redb"), cfg).unwrap());
    let results = futures::stream::iter(0..200)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.create(&format!("/registry/core/pods/a/p{i}"), b("v"))
                    .await
            })
        })
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;
    let mut ok = 0;
    let mut overloaded = 0;
    for res in results {
        match res.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Overloaded) => overloaded += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(overloaded > 0, "no write was refused");
    assert_eq!(s.current_revision(), ok);
    assert_eq!(
        s.list("/registry/", ListOptions::default())
            .await
            .unwrap()
            .items
            .len() as i64,
        ok
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_ends_watches_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = RedbStore::open(dir.path().join("skiff.redb"), config(Opts::default())).unwrap();
    let mut w = s.watch("/registry/", 0).await.unwrap();
    s.create("/registry/core/pods/a/p", b("v")).await.unwrap();
    s.close();
    assert_eq!(next_event(&mut w).await.revision, 1);
    assert!(matches!(
        store_suite::next(&mut w).await,
        Some(Err(StoreError::Closed))
    ));
    assert!(matches!(
        s.create("/registry/core/pods/a/q", b("v")).await,
        Err(StoreError::Closed)
    ));
    // The file is released: it opens again.
    drop(s);
    let again = RedbStore::open(dir.path().join("skiff.redb"), config(Opts::default())).unwrap();
    assert_eq!(again.current_revision(), 1);
}
