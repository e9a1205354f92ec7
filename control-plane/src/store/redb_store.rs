//! The durable default backend: one redb file with group commit.
//!
//! Three tables (see [`redb_codec`](super::redb_codec) for the layouts): `kv`
//! holds the current value of every key, `log` one entry per revision with the
//! previous value (for reads at a past revision and for watch replay across
//! restarts) and `meta` the current and compacted revisions.
//!
//! Writes go through a bounded queue to one writer thread (see
//! [`redb_writer`](super::redb_writer)), which commits whatever is queued in one
//! durable transaction; a full queue answers [`StoreError::Overloaded`]. Reads
//! open their own read transaction on a blocking thread and never wait for the
//! writer. A list at revision `r` reads the current state and undoes the log
//! entries newer than `r` within the same snapshot. Watches are served from the
//! in-memory [`WatchHub`] window, falling back to the log for older revisions
//! that are not yet compacted. A background compactor trims the log according
//! to [`CompactionPolicy`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use redb::{Database, ReadTransaction, ReadableDatabase};
use tokio::sync::oneshot;

use super::ops::{WriteOp, page, undo_events};
use super::redb_codec::{decode_event, decode_record};
pub use super::redb_writer::CompactionPolicy;
use super::redb_writer::{
    KV, LOG, META, META_COMPACTED, META_REVISION, Request, Shared, Writer, compact_blocking,
    run_compactor, storage,
};
use super::watch_hub::{WatchHub, WatchHubConfig};
use super::{Event, EventStream, KeyValue, ListOptions, ListResult, Revision, Store, StoreError};

/// Tuning of a [`RedbStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbConfig {
    /// Writes that may wait for the writer before callers get `Overloaded`.
    pub queue_capacity: usize,
    /// Most requests committed in one transaction.
    pub max_batch: usize,
    /// redb page cache size in bytes.
    pub cache_size: usize,
    /// In-memory watch window and per-watch buffer.
    pub watch: WatchHubConfig,
    /// Automatic history compaction; `None` compacts only on request.
    pub compaction: Option<CompactionPolicy>,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_batch: 2_000,
            cache_size: 256 * 1024 * 1024,
            watch: WatchHubConfig::default(),
            compaction: Some(CompactionPolicy::default()),
        }
    }
}

/// The redb-backed store. Dropping it finishes queued writes and closes the file.
pub struct RedbStore {
    path: PathBuf,
    db: Arc<Database>,
    hub: WatchHub,
    shared: Arc<Shared>,
    tx: SyncSender<Request>,
    chunk: usize,
    threads: Mutex<Threads>,
}

#[derive(Default)]
struct Threads {
    writer: Option<JoinHandle<()>>,
    compactor: Option<(SyncSender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("revision", &self.shared.revision.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, recovers the revision
    /// counters and refills the watch window from the log. Blocking.
    pub fn open(path: impl AsRef<Path>, config: RedbConfig) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = redb::Builder::new()
            .set_cache_size(config.cache_size)
            .create(&path)
            .map_err(|e| {
                StoreError::backend(format!("open {}", path.display()), redb::Error::from(e))
            })?;
        let db = Arc::new(db);
        // Create the tables once so that readers can always open them.
        let txn = db
            .begin_write()
            .map_err(storage("begin write transaction"))?;
        {
            txn.open_table(KV).map_err(storage("create table"))?;
            txn.open_table(LOG).map_err(storage("create table"))?;
            txn.open_table(META).map_err(storage("create table"))?;
        }
        txn.commit().map_err(storage("commit table creation"))?;

        let read = db.begin_read().map_err(storage("begin read transaction"))?;
        let (revision, compacted) = read_meta(&read)?;
        let window = i64::try_from(config.watch.window).unwrap_or(i64::MAX);
        let floor = compacted.max(revision.saturating_sub(window));
        let recent = read_log(&read, "", floor, revision)?;
        drop(read);
        let hub = WatchHub::new(config.watch.clone(), floor);
        hub.refill(floor, recent);
        let shared = Arc::new(Shared::default());
        shared.revision.store(revision, Ordering::Release);
        shared.compacted.store(compacted, Ordering::Release);
        tracing::info!(path = %path.display(), revision, compacted, "opened redb store");

        let (tx, rx) = mpsc::sync_channel(config.queue_capacity.max(1));
        let writer = Writer {
            db: Arc::clone(&db),
            hub: hub.clone(),
            shared: Arc::clone(&shared),
            max_batch: config.max_batch,
        };
        let writer = spawn("skiff-store-writer", move || writer.run(rx))?;
        let compactor = match config.compaction.clone() {
            Some(policy) => {
                let (stop_tx, stop_rx) = mpsc::sync_channel(1);
                let (shared, tx) = (Arc::clone(&shared), tx.clone());
                let handle = spawn("skiff-store-compactor", move || {
                    run_compactor(policy, shared, tx, stop_rx);
                })?;
                Some((stop_tx, handle))
            }
            None => None,
        };
        let chunk = config
            .compaction
            .as_ref()
            .map_or(CompactionPolicy::default().chunk, |p| p.chunk);
        Ok(Self {
            path,
            db,
            hub,
            shared,
            tx,
            chunk,
            threads: Mutex::new(Threads {
                writer: Some(writer),
                compactor,
            }),
        })
    }

    /// Stops the compactor and the writer (after the writes already queued)
    /// and ends open watches. Later writes fail with `Closed`. Blocking.
    pub fn close(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        if let Some((stop, handle)) = threads.compactor {
            drop(stop);
            if handle.join().is_err() {
                tracing::error!("store compactor panicked");
            }
        }
        if let Some(handle) = threads.writer {
            // Fails only if the writer is already gone.
            let _ = self.tx.send(Request::Shutdown);
            if handle.join().is_err() {
                tracing::error!("store writer panicked");
            }
        }
        self.hub.close();
    }

    async fn submit(&self, key: &str, op: WriteOp) -> Result<KeyValue, StoreError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Write {
            key: key.to_owned(),
            op,
            reply,
        };
        match self.tx.try_send(req) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
        }
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a short read (one key, a few items) against a fresh snapshot on
    /// the calling thread: cheaper than a hand-off to a blocking thread, and
    /// redb's reads do not wait for writers.
    fn read_inline<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(storage("begin read transaction"))?;
        f(&txn)
    }

    /// Runs a read against a fresh snapshot on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(storage("begin read transaction"))?;
            f(&txn)
        })
        .await
        .map_err(|e| {
            if e.is_cancelled() {
                // The runtime is shutting down: not a storage failure.
                StoreError::Closed
            } else {
                StoreError::backend("read task failed", e)
            }
        })?
    }
}

/// Lists of at most this many items (at the latest revision) are read on
/// the calling thread.
const INLINE_LIST_LIMIT: usize = 50;

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map_err(|e| StoreError::backend(format!("spawn {name} thread"), e))
}

/// (current revision, compacted revision) as of this snapshot.
fn read_meta(txn: &ReadTransaction) -> Result<(Revision, Revision), StoreError> {
    let meta = txn.open_table(META).map_err(storage("open meta"))?;
    let get = |name: &str| -> Result<Revision, StoreError> {
        Ok(meta
            .get(name)
            .map_err(storage("read meta"))?
            .map_or(0, |g| g.value()))
    };
    Ok((get(META_REVISION)?, get(META_COMPACTED)?))
}

/// Log events in `(after, upto]` under `prefix`, oldest first.
fn read_log(
    txn: &ReadTransaction,
    prefix: &str,
    after: Revision,
    upto: Revision,
) -> Result<Vec<Event>, StoreError> {
    let log = txn.open_table(LOG).map_err(storage("open log"))?;
    let mut events = Vec::new();
    if upto <= after {
        return Ok(events);
    }
    for entry in log.range(after + 1..=upto).map_err(storage("scan log"))? {
        let (rev, bytes) = entry.map_err(storage("scan log"))?;
        let event = decode_event(rev.value(), bytes.value())?;
        if event.kv.key.starts_with(prefix) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Current values of keys under `prefix`, in key order.
fn read_prefix(
    txn: &ReadTransaction,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<KeyValue>, StoreError> {
    let kv = txn.open_table(KV).map_err(storage("open kv"))?;
    let start = match start_after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    };
    let mut items = Vec::new();
    for entry in kv.range(start..).map_err(storage("scan kv"))? {
        let (key, bytes) = entry.map_err(storage("scan kv"))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if Some(key) == start_after {
            continue;
        }
        items.push(decode_record(key, bytes.value())?);
        // One extra item tells the caller that more remain.
        if limit.is_some_and(|l| items.len() > l) {
            break;
        }
    }
    Ok(items)
}

fn list_snapshot(
    txn: &ReadTransaction,
    prefix: &str,
    opts: &ListOptions,
) -> Result<ListResult, StoreError> {
    let (current, compacted) = read_meta(txn)?;
    let limit = opts.limit.filter(|l| *l > 0);
    match opts.revision {
        None => {
            let items = read_prefix(txn, prefix, opts.start_after.as_deref(), limit)?;
            Ok(page(items.into_iter(), opts, current))
        }
        Some(rev) if rev > current => Err(StoreError::FutureRevision {
            requested: rev,
            current,
        }),
        Some(rev) if rev < compacted => Err(StoreError::Expired {
            requested: rev,
            oldest: compacted,
        }),
        Some(rev) => {
            let newer = read_log(txn, prefix, rev, current)?;
            let mut items: BTreeMap<String, KeyValue> = read_prefix(txn, prefix, None, None)?
                .into_iter()
                .map(|kv| (kv.key.clone(), kv))
                .collect();
            undo_events(&mut items, prefix, newer.iter());
            Ok(page(items.into_values(), opts, rev))
        }
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.read_inline(|txn| {
            let kv = txn.open_table(KV).map_err(storage("open kv"))?;
            let found = kv.get(key).map_err(storage("read key"))?;
            Ok(found.map(|g| decode_record(key, g.value())).transpose()?)
        })
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        // A read at an older revision replays history: not short.
        if opts.revision.is_none() && opts.limit.is_some_and(|n| n > 0 && n <= INLINE_LIST_LIMIT) {
            return self.read_inline(|txn| list_snapshot(txn, prefix, &opts));
        }
        let prefix = prefix.to_owned();
        self.read(move |txn| list_snapshot(txn, &prefix, &opts))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.submit(key, WriteOp::Create(value)).await
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.submit(key, WriteOp::Update(value, expected)).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.submit(key, WriteOp::Delete(expected)).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        let mut replay: Vec<Event> = Vec::new();
        let mut from = after;
        // The hub window covers recent history; older (uncompacted) history
        // comes from the log, after which the hub takes over.
        loop {
            match self.hub.watch(prefix, from) {
                Ok(live) => {
                    if replay.is_empty() {
                        return Ok(live);
                    }
                    return Ok(futures::stream::iter(replay.into_iter().map(Ok))
                        .chain(live)
                        .boxed());
                }
                Err(StoreError::Expired { .. }) => {
                    let owned = prefix.to_owned();
                    let (events, upto) = self
                        .read(move |txn| {
                            let (current, compacted) = read_meta(txn)?;
                            if from < compacted {
                                return Err(StoreError::Expired {
                                    requested: from,
                                    oldest: compacted,
                                });
                            }
                            Ok((read_log(txn, &owned, from, current)?, current))
                        })
                        .await?;
                    replay.extend(events);
                    from = upto;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn current_revision(&self) -> Revision {
        self.shared.revision.load(Ordering::Acquire)
    }

    fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let (tx, chunk) = (self.tx.clone(), self.chunk);
        tokio::task::spawn_blocking(move || compact_blocking(&tx, revision, chunk))
            .await
            .map_err(|e| StoreError::backend("compaction task failed", e))?
    }
}
