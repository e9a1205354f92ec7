//! One behaviour suite for every [`Store`] backend. A backend's test file
//! implements [`Backend`] and expands [`store_suite!`] to get one `#[tokio::test]`
//! per behaviour below.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_control_plane::store::{
    Event, EventKind, EventStream, ListOptions, Revision, Store, StoreError,
};

/// Sizes a test asks a backend for.
#[derive(Clone, Copy, Debug)]
pub struct Opts {
    /// Watch window (events).
    pub window: usize,
    /// Per-prefix ring; a watcher further behind catches up from the window.
    pub watcher_buffer: usize,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            window: 10_000,
            watcher_buffer: 1_024,
        }
    }
}

/// A store plus whatever must outlive it (e.g. its temp dir).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn Any + Send>,
}

/// How a backend's tests open a fresh, empty store.
pub trait Backend {
    fn open(&self, opts: Opts) -> Harness;
}

/// Expands to one test per behaviour, for the given `impl Backend` value.
#[macro_export]
macro_rules! store_suite {
    ($backend:expr) => {
        $crate::store_suite!(@tests $backend;
            create_update_delete_follow_cas_rules,
            revisions_grow_by_one_per_write,
            list_filters_by_prefix_and_pages,
            list_at_a_past_revision_is_exact,
            watch_replays_history_then_streams_live,
            compaction_expires_old_revisions,
            lagging_watcher_catches_up_from_the_window,
            lagging_watcher_ends_with_expired,
            concurrent_writers_get_distinct_revisions,
            many_watchers_receive_their_prefix,
        );
    };
    (@tests $backend:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::store_suite::$name(&$backend).await;
            }
        )*
    };
}

pub fn b(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// The next item of a watch, failing the test after 10 s.
pub async fn next(stream: &mut EventStream) -> Option<Result<Event, StoreError>> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("watch produced nothing within 10 s")
}

pub async fn next_event(stream: &mut EventStream) -> Event {
    next(stream)
        .await
        .expect("watch ended")
        .expect("watch failed")
}

pub async fn create_update_delete_follow_cas_rules(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    assert_eq!(s.current_revision(), 0);
    let k = "/registry/core/pods/default/web";
    let created = s.create(k, b("v1")).await.unwrap();
    assert_eq!((created.create_revision, created.mod_revision), (1, 1));
    assert!(
        matches!(s.create(k, b("again")).await, Err(StoreError::AlreadyExists { key }) if key == k)
    );

    let conflict = s.update(k, b("v2"), Some(7)).await;
    assert!(
        matches!(
            conflict,
            Err(StoreError::Conflict {
                expected: 7,
                actual: 1,
                ..
            })
        ),
        "{conflict:?}"
    );
    let updated = s.update(k, b("v2"), Some(1)).await.unwrap();
    assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));
    let blind = s.update(k, b("v3"), None).await.unwrap();
    assert_eq!(blind.mod_revision, 3);
    assert_eq!(s.get(k).await.unwrap().unwrap().value, b("v3"));
    assert!(matches!(
        s.update("/registry/core/pods/default/nope", b("x"), None)
            .await,
        Err(StoreError::NotFound { .. })
    ));

    assert!(matches!(
        s.delete(k, Some(2)).await,
        Err(StoreError::Conflict {
            expected: 2,
            actual: 3,
            ..
        })
    ));
    let deleted = s.delete(k, Some(3)).await.unwrap();
    assert_eq!(deleted.value, b("v3"));
    assert_eq!((deleted.create_revision, deleted.mod_revision), (1, 4));
    assert!(s.get(k).await.unwrap().is_none());
    assert!(matches!(
        s.delete(k, None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update(k, b("x"), Some(4)).await,
        Err(StoreError::NotFound { .. })
    ));

    // Failed writes did not consume revisions; a re-create starts afresh.
    assert_eq!(s.current_revision(), 4);
    let again = s.create(k, b("v4")).await.unwrap();
    assert_eq!((again.create_revision, again.mod_revision), (5, 5));
    let got = s.get(k).await.unwrap().unwrap();
    assert_eq!(got, again);
}

pub async fn revisions_grow_by_one_per_write(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    let mut last = s.current_revision();
    for i in 0..30 {
        let key = format!("/registry/core/configmaps/ns/c{}", i % 7);
        let kv = match s.get(&key).await.unwrap() {
            None => s.create(&key, b("new")).await.unwrap(),
            Some(cur) if i % 3 == 0 => s.delete(&key, Some(cur.mod_revision)).await.unwrap(),
            Some(cur) => s
                .update(&key, b(&i.to_string()), Some(cur.mod_revision))
                .await
                .unwrap(),
        };
        assert_eq!(kv.mod_revision, last + 1, "write {i}");
        last = kv.mod_revision;
        assert_eq!(s.current_revision(), last);
    }
}

async fn seed_pods(s: &dyn Store) {
    for (ns, name) in [
        ("a", "p1"),
        ("a", "p2"),
        ("a", "p3"),
        ("b", "x"),
        ("a", "p4"),
    ] {
        s.create(&format!("/registry/core/pods/{ns}/{name}"), b(name))
            .await
            .unwrap();
    }
    // Shares the string prefix but is another resource.
    s.create("/registry/core/podsecurity/a/z", b("z"))
        .await
        .unwrap();
}

fn keys(items: &[skiff_control_plane::store::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn list_filters_by_prefix_and_pages(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    seed_pods(s.as_ref()).await;
    let all = s
        .list("/registry/core/pods/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(
        keys(&all.items),
        [
            "/registry/core/pods/a/p1",
            "/registry/core/pods/a/p2",
            "/registry/core/pods/a/p3",
            "/registry/core/pods/a/p4",
            "/registry/core/pods/b/x"
        ]
    );
    assert_eq!(all.revision, 6);
    assert!(!all.more);
    let ns_a = s
        .list("/registry/core/pods/a/", ListOptions::default())
        .await
        .unwrap();
    assert_eq!(ns_a.items.len(), 4);
    assert_eq!(ns_a.items[3].value, b("p4"));
    assert_eq!(ns_a.items[3].mod_revision, 5);

    // Page through two at a time with start_after, as `continue` does.
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let opts = ListOptions {
            start_after: after.clone(),
            limit: Some(2),
            revision: None,
        };
        let page = s.list("/registry/core/pods/", opts).await.unwrap();
        assert!(page.items.len() <= 2);
        after = page.items.last().map(|kv| kv.key.clone());
        pages.push(page.items.clone());
        if !page.more {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), all.items);
    let empty = s
        .list("/registry/core/services/", ListOptions::default())
        .await
        .unwrap();
    assert!(empty.items.is_empty() && !empty.more);
    let limit_exact = ListOptions {
        limit: Some(5),
        ..ListOptions::default()
    };
    assert!(
        !s.list("/registry/core/pods/", limit_exact)
            .await
            .unwrap()
            .more
    );
}

pub async fn list_at_a_past_revision_is_exact(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    seed_pods(s.as_ref()).await;
    let before = s
        .list("/registry/core/pods/", ListOptions::default())
        .await
        .unwrap();
    let at = before.revision;
    s.update("/registry/core/pods/a/p1", b("changed"), None)
        .await
        .unwrap();
    s.delete("/registry/core/pods/a/p2", None).await.unwrap();
    s.create("/registry/core/pods/a/p0", b("new"))
        .await
        .unwrap();
    s.delete("/registry/core/pods/b/x", None).await.unwrap();
    s.create("/registry/core/pods/b/x", b("recreated"))
        .await
        .unwrap();
    s.update("/registry/core/podsecurity/a/z", b("other"), None)
        .await
        .unwrap();

    let past = s
        .list(
            "/registry/core/pods/",
            ListOptions {
                revision: Some(at),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(past, before);
    let paged = ListOptions {
        revision: Some(at),
        start_after: Some("/registry/core/pods/a/p1".into()),
        limit: Some(2),
    };
    let page = s.list("/registry/core/pods/", paged).await.unwrap();
    assert_eq!(page.items, before.items[1..3]);
    assert!(page.more);
    assert_eq!(page.revision, at);
    // Between the writes: after the update of p1 only.
    let mid = s
        .list(
            "/registry/core/pods/a/",
            ListOptions {
                revision: Some(at + 1),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        keys(&mid.items),
        [
            "/registry/core/pods/a/p1",
            "/registry/core/pods/a/p2",
            "/registry/core/pods/a/p3",
            "/registry/core/pods/a/p4"
        ]
    );
    assert_eq!(mid.items[0].value, b("changed"));
    let at_zero = ListOptions {
        revision: Some(0),
        ..ListOptions::default()
    };
    let empty = s.list("/registry/", at_zero).await.unwrap();
    assert!(empty.items.is_empty() && empty.revision == 0, "{empty:?}");
    let future = s
        .list(
            "/registry/core/pods/",
            ListOptions {
                revision: Some(999),
                ..ListOptions::default()
            },
        )
        .await;
    assert!(
        matches!(
            future,
            Err(StoreError::FutureRevision {
                requested: 999,
                current: 12
            })
        ),
        "{future:?}"
    );
}

pub async fn watch_replays_history_then_streams_live(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    s.create("/registry/core/pods/a/one", b("1")).await.unwrap(); // 1
    s.create("/registry/core/pods/a/two", b("2")).await.unwrap(); // 2
    s.create("/registry/core/nodes/n1", b("n")).await.unwrap(); // 3
    s.update("/registry/core/pods/a/one", b("1b"), Some(1))
        .await
        .unwrap(); // 4

    let mut w = s.watch("/registry/core/pods/", 1).await.unwrap();
    let mut from_zero = s.watch("/registry/core/pods/", 0).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision, e.kv.key.as_str()),
        (EventKind::Put, 2, "/registry/core/pods/a/two")
    );
    assert!(e.prev.is_none());
    let e = next_event(&mut w).await;
    assert_eq!((e.revision, e.kv.value.clone()), (4, b("1b")));
    assert_eq!(
        e.prev.as_ref().map(|p| (p.mod_revision, p.value.clone())),
        Some((1, b("1")))
    );
    assert_eq!(next_event(&mut from_zero).await.revision, 1);

    // Live: other prefixes are filtered out, deletes carry the last value.
    s.create("/registry/core/nodes/n2", b("n")).await.unwrap(); // 5
    s.delete("/registry/core/pods/a/two", None).await.unwrap(); // 6
    s.create("/registry/core/pods/b/three", b("3"))
        .await
        .unwrap(); // 7
    let e = next_event(&mut w).await;
    assert_eq!(
        (e.kind, e.revision, e.kv.value.clone(), e.kv.mod_revision),
        (EventKind::Delete, 6, b("2"), 6)
    );
    assert_eq!(e.prev.map(|p| p.mod_revision), Some(2));
    assert_eq!(next_event(&mut w).await.revision, 7);
    let mut revs: Vec<Revision> = Vec::new();
    for _ in 0..4 {
        revs.push(next_event(&mut from_zero).await.revision);
    }
    assert_eq!(revs, [2, 4, 6, 7]);
    // A watch from the current revision sees only later writes.
    let mut now = s.watch("/registry/", s.current_revision()).await.unwrap();
    s.create("/registry/core/pods/a/four", b("4"))
        .await
        .unwrap(); // 8
    assert_eq!(next_event(&mut now).await.revision, 8);
}

pub async fn compaction_expires_old_revisions(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    for i in 0..10 {
        s.create(&format!("/registry/core/pods/a/p{i}"), b("v"))
            .await
            .unwrap();
    }
    s.compact(5).await.unwrap();
    assert_eq!(s.compacted_revision(), 5);
    let old = s.watch("/registry/core/pods/", 3).await;
    assert!(
        matches!(old, Err(StoreError::Expired { requested: 3, .. })),
        "{:?}",
        old.err()
    );
    let list = s
        .list(
            "/registry/core/pods/",
            ListOptions {
                revision: Some(4),
                ..ListOptions::default()
            },
        )
        .await;
    assert!(
        matches!(
            list,
            Err(StoreError::Expired {
                requested: 4,
                oldest: 5
            })
        ),
        "{list:?}"
    );
    let at5 = s
        .list(
            "/registry/core/pods/",
            ListOptions {
                revision: Some(5),
                ..ListOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at5.items.len(), 5);
    let mut w = s.watch("/registry/core/pods/", 5).await.unwrap();
    for rev in 6..=10 {
        assert_eq!(next_event(&mut w).await.revision, rev);
    }
    assert!(matches!(
        s.compact(11).await,
        Err(StoreError::FutureRevision { .. })
    ));
    s.compact(3).await.unwrap();
    assert_eq!(s.compacted_revision(), 5, "compaction never goes back");
    s.compact(10).await.unwrap();
    assert_eq!(
        s.list("/registry/core/pods/", ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        10
    );
    s.create("/registry/core/pods/a/after", b("v"))
        .await
        .unwrap();
    assert_eq!(
        next_event(&mut w).await.revision,
        11,
        "open watches survive compaction"
    );
}

/// Opens a watch that never reads, then makes 100 creates while a second watcher keeps up
/// (the writer stays within 4 events of it, so only the idle watcher overruns its ring).
/// Returns the idle watch.
async fn hundred_writes_past_an_idle_watcher(s: &Arc<dyn Store>) -> EventStream {
    let slow = s.watch("/registry/core/pods/", 0).await.unwrap();
    let mut fast = s.watch("/registry/core/pods/", 0).await.unwrap();
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < 100 {
            match next(&mut fast).await {
                Some(Ok(_)) => seen += 1,
                other => panic!("fast watcher stopped: {other:?}"),
            }
            let _ = progress_tx.send(seen);
        }
        seen
    });
    let started = Instant::now();
    for i in 0..100 {
        s.create(&format!("/registry/core/pods/a/p{i}"), b("v"))
            .await
            .unwrap();
        let caught_up = progress.wait_for(|seen| seen + 4 > i);
        tokio::time::timeout(Duration::from_secs(10), caught_up)
            .await
            .unwrap()
            .unwrap();
    }
    // Writers never waited for the slow watcher (generous bound for CI).
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(reader.await.unwrap(), 100);
    slow
}

pub async fn lagging_watcher_catches_up_from_the_window(backend: &impl Backend) {
    let h = backend.open(Opts {
        watcher_buffer: 8,
        ..Opts::default()
    });
    let mut slow = hundred_writes_past_an_idle_watcher(&h.store).await;
    // Its ring was overrun 90 events ago, but the window holds them all: every event
    // arrives, once, in order.
    let mut revisions = Vec::new();
    while revisions.len() < 100 {
        match next(&mut slow).await {
            Some(Ok(event)) => revisions.push(event.revision),
            other => panic!("after {} events: {other:?}", revisions.len()),
        }
    }
    assert!(
        revisions.windows(2).all(|w| w[0] + 1 == w[1]),
        "{revisions:?}"
    );
    // Live events keep coming after the catch-up.
    h.store
        .create("/registry/core/pods/a/late", b("v"))
        .await
        .unwrap();
    assert_eq!(next_event(&mut slow).await.revision, revisions[99] + 1);
}

pub async fn lagging_watcher_ends_with_expired(backend: &impl Backend) {
    let h = backend.open(Opts {
        watcher_buffer: 8,
        window: 20,
    });
    let mut slow = hundred_writes_past_an_idle_watcher(&h.store).await;
    // Behind its ring and behind the window too: the watch ends with Expired (410).
    let mut delivered = 0;
    let end = loop {
        match next(&mut slow).await {
            Some(Ok(_)) => delivered += 1,
            other => break other,
        }
    };
    assert!(
        matches!(end, Some(Err(StoreError::Expired { .. }))),
        "{end:?}"
    );
    assert!(delivered < 100);
    assert!(next(&mut slow).await.is_none(), "stream ends after Expired");
}

pub async fn concurrent_writers_get_distinct_revisions(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    let tasks = (0..20).map(|t| {
        let s = Arc::clone(s);
        tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..25 {
                let kv = s
                    .create(&format!("/registry/core/pods/t{t}/p{i}"), b("v"))
                    .await
                    .unwrap();
                revs.push(kv.mod_revision);
            }
            revs
        })
    });
    let mut all = BTreeSet::new();
    for task in futures::future::join_all(tasks).await {
        for rev in task.unwrap() {
            assert!(all.insert(rev), "revision {rev} handed out twice");
        }
    }
    assert_eq!(all, (1..=500).collect());
    assert_eq!(s.current_revision(), 500);
    assert_eq!(
        s.list("/registry/", ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        500
    );
}

pub async fn many_watchers_receive_their_prefix(backend: &impl Backend) {
    let h = backend.open(Opts::default());
    let s = &h.store;
    let base = Instant::now();
    const WATCHERS: usize = 1_000;
    const PREFIXES: usize = 10;
    const WRITES: usize = 100;
    let mut tasks = Vec::new();
    for w in 0..WATCHERS {
        let mut stream = s
            .watch(&format!("/registry/core/pods/ns{}/", w % PREFIXES), 0)
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for _ in 0..WRITES / PREFIXES {
                let e = next_event(&mut stream).await;
                let sent: u64 = std::str::from_utf8(&e.kv.value).unwrap().parse().unwrap();
                latencies.push(base.elapsed().as_micros() as u64 - sent);
            }
            latencies
        }));
    }
    for i in 0..WRITES {
        let sent = base.elapsed().as_micros().to_string();
        s.create(
            &format!("/registry/core/pods/ns{}/p{i}", i % PREFIXES),
            Bytes::from(sent),
        )
        .await
        .unwrap();
        // Paced, so this measures delivery latency rather than a burst's backlog.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut latencies: Vec<u64> = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort_unstable();
    assert_eq!(latencies.len(), WATCHERS * WRITES / PREFIXES);
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "watch delivery (write call → watcher, {WATCHERS} watchers): p50 {} µs, p99 {} µs, max {} µs",
        pct(50),
        pct(99),
        latencies[latencies.len() - 1]
    );
    assert!(pct(99) < 2_000_000, "p99 delivery {} µs", pct(99));
}
