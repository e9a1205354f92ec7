//! The single writer thread of [`RedbStore`](super::redb_store::RedbStore)
//! (group commit) and its background compactor.
//!
//! Callers queue [`Request`]s on a bounded channel. The writer takes the first
//! one, drains everything else already queued (up to `max_batch`), applies the
//! requests in order inside one write transaction, commits it durably (one
//! fsync for the whole batch), publishes the events to the watch hub and only
//! then answers each caller, so an acknowledged write is on disk. A failed
//! precondition fails only its own request; a storage error fails the batch.
//!
//! Compaction runs through the same queue in chunks of at most `chunk` log
//! entries, so it shares transactions with writes instead of stalling them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, Table, TableDefinition};
use tokio::sync::oneshot;

use super::ops::{WriteOp, plan_write};
use super::redb_codec::{decode_record, encode_event, encode_record};
use super::watch_hub::WatchHub;
use super::{Event, EventKind, KeyValue, Revision, StoreError};

/// Current state: key → encoded record.
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// Revision log: revision → encoded event.
pub(crate) const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
/// Counters: [`META_REVISION`] and [`META_COMPACTED`].
pub(crate) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// The revision of the last committed write.
pub(crate) const META_REVISION: &str = "revision";
/// Log entries at and below this revision are gone.
pub(crate) const META_COMPACTED: &str = "compacted";

/// Counters shared by the store handle, the writer and the compactor.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Last committed revision.
    pub revision: AtomicI64,
    /// Last compacted revision.
    pub compacted: AtomicI64,
}

/// Work for the writer thread.
pub(crate) enum Request {
    /// One conditional write.
    Write {
        key: String,
        op: WriteOp,
        reply: oneshot::Sender<Result<KeyValue, StoreError>>,
    },
    /// Drop up to `chunk` log entries at or below `upto`; answers the
    /// revision compaction has reached.
    Compact {
        upto: Revision,
        chunk: usize,
        reply: oneshot::Sender<Result<Revision, StoreError>>,
    },
    /// Finish the current batch and exit.
    Shutdown,
}

enum Reply {
    Write(oneshot::Sender<Result<KeyValue, StoreError>>),
    Compact(oneshot::Sender<Result<Revision, StoreError>>),
}

enum Outcome {
    Write(Result<KeyValue, StoreError>),
    Compact(Revision),
}

/// Maps a redb error into a backend error with context.
pub(crate) fn storage<E: Into<redb::Error>>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |err| StoreError::backend(what, err.into())
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub db: Arc<Database>,
    pub hub: WatchHub,
    pub shared: Arc<Shared>,
    pub max_batch: usize,
}

impl Writer {
    /// Serves requests until `Shutdown` or until every sender is gone.
    pub fn run(self, rx: Receiver<Request>) {
        let max_batch = self.max_batch.max(1);
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            let shutdown = batch.iter().any(|r| matches!(r, Request::Shutdown));
            self.run_batch(batch);
            if shutdown {
                break;
            }
        }
        tracing::debug!("store writer stopped");
    }

    fn run_batch(&self, batch: Vec<Request>) {
        let mut work = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch {
            match req {
                Request::Write { key, op, reply } => {
                    work.push(Work::Write(key, op));
                    replies.push(Reply::Write(reply));
                }
                Request::Compact { upto, chunk, reply } => {
                    work.push(Work::Compact(upto, chunk));
                    replies.push(Reply::Compact(reply));
                }
                Request::Shutdown => {}
            }
        }
        if work.is_empty() {
            return;
        }
        match self.commit(work) {
            Ok((outcomes, events, compacted)) => {
                if let Some(last) = events.last() {
                    self.shared.revision.store(last.revision, Ordering::Release);
                }
                self.hub.publish(events);
                if let Some(compacted) = compacted {
                    self.shared.compacted.store(compacted, Ordering::Release);
                    self.hub.compact(compacted);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // A caller that gave up waiting is not an error.
                    match (reply, outcome) {
                        (Reply::Write(tx), Outcome::Write(res)) => {
                            let _ = tx.send(res);
                        }
                        (Reply::Compact(tx), Outcome::Compact(rev)) => {
                            let _ = tx.send(Ok(rev));
                        }
                        _ => tracing::error!("store writer reply mismatch"),
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "store batch failed");
                let failed = || StoreError::Backend {
                    message: format!("write batch failed: {err}"),
                    source: None,
                };
                for reply in replies {
                    match reply {
                        Reply::Write(tx) => {
                            let _ = tx.send(Err(failed()));
                        }
                        Reply::Compact(tx) => {
                            let _ = tx.send(Err(failed()));
                        }
                    }
                }
            }
        }
    }

    /// Applies the batch in one durable transaction. Returns each request's
    /// outcome, the committed events and the new compacted revision.
    #[allow(clippy::type_complexity)]
    fn commit(
        &self,
        work: Vec<Work>,
    ) -> Result<(Vec<Outcome>, Vec<Event>, Option<Revision>), StoreError> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(storage("begin write transaction"))?;
        txn.set_durability(Durability::Immediate)
            .map_err(storage("set durability"))?;
        let mut outcomes = Vec::with_capacity(work.len());
        let mut events = Vec::new();
        let mut compacted = None;
        {
            let mut kv = txn.open_table(KV).map_err(storage("open table"))?;
            let mut log = txn.open_table(LOG).map_err(storage("open table"))?;
            let mut meta = txn.open_table(META).map_err(storage("open table"))?;
            let mut revision = self.shared.revision.load(Ordering::Acquire);
            for item in work {
                match item {
                    Work::Write(key, op) => {
                        let res = apply_write(&mut kv, &mut log, &key, &op, revision + 1)?;
                        if let Ok(event) = &res {
                            revision = event.revision;
                            events.push(event.clone());
                        }
                        outcomes.push(Outcome::Write(res.map(|e| e.kv)));
                    }
                    Work::Compact(upto, chunk) => {
                        let from =
                            compacted.unwrap_or(self.shared.compacted.load(Ordering::Acquire));
                        let reached = compact_chunk(&mut log, from, upto.min(revision), chunk)?;
                        if reached > from {
                            meta.insert(META_COMPACTED, reached)
                                .map_err(storage("write meta"))?;
                            compacted = Some(reached);
                        }
                        outcomes.push(Outcome::Compact(reached));
                    }
                }
            }
            if !events.is_empty() {
                meta.insert(META_REVISION, revision)
                    .map_err(storage("write meta"))?;
            }
        }
        txn.commit().map_err(storage("commit write transaction"))?;
        Ok((outcomes, events, compacted))
    }
}

enum Work {
    Write(String, WriteOp),
    Compact(Revision, usize),
}

/// Applies one write to the open tables. The outer error is a storage
/// failure (fails the batch); the inner one a failed precondition.
fn apply_write(
    kv: &mut Table<&str, &[u8]>,
    log: &mut Table<i64, &[u8]>,
    key: &str,
    op: &WriteOp,
    revision: Revision,
) -> Result<Result<Event, StoreError>, StoreError> {
    let current = kv
        .get(key)
        .map_err(storage("read key"))?
        .map(|guard| decode_record(key, guard.value()))
        .transpose()?;
    let event = match plan_write(key, current.as_ref(), op, revision) {
        Ok(event) => event,
        Err(err) => return Ok(Err(err)),
    };
    match event.kind {
        EventKind::Put => {
            kv.insert(key, encode_record(&event.kv).as_slice())
                .map_err(storage("write key"))?;
        }
        EventKind::Delete => {
            kv.remove(key).map_err(storage("delete key"))?;
        }
    }
    log.insert(revision, encode_event(&event).as_slice())
        .map_err(storage("append log"))?;
    Ok(Ok(event))
}

/// Removes up to `chunk` log entries in `(from, upto]`; returns the revision
/// compaction reached (`upto` once nothing is left below it).
fn compact_chunk(
    log: &mut Table<i64, &[u8]>,
    from: Revision,
    upto: Revision,
    chunk: usize,
) -> Result<Revision, StoreError> {
    if upto <= from {
        return Ok(from);
    }
    let doomed: Vec<i64> = log
        .range(..=upto)
        .map_err(storage("scan log"))?
        .take(chunk.max(1) + 1)
        .map(|entry| entry.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()
        .map_err(storage("scan log"))?;
    if doomed.len() <= chunk.max(1) {
        for rev in &doomed {
            log.remove(*rev).map_err(storage("compact log"))?;
        }
        return Ok(upto);
    }
    let mut reached = from;
    for rev in doomed.iter().take(chunk.max(1)) {
        log.remove(*rev).map_err(storage("compact log"))?;
        reached = *rev;
    }
    Ok(reached)
}

/// When the background compactor drops history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// How often to check.
    pub interval: Duration,
    /// Keep at most this many revisions of history (`None`: no count limit).
    pub keep_revisions: Option<i64>,
    /// Drop history older than this (`None`: no age limit).
    pub keep_for: Option<Duration>,
    /// Log entries removed per transaction.
    pub chunk: usize,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            keep_revisions: Some(100_000),
            keep_for: Some(Duration::from_secs(5 * 60)),
            chunk: 1_000,
        }
    }
}

impl CompactionPolicy {
    /// The revision to compact to, given the current revision and samples of
    /// (time, revision) taken by the compactor, oldest first.
    pub fn target(
        &self,
        now: Instant,
        current: Revision,
        samples: &[(Instant, Revision)],
    ) -> Revision {
        let by_count = self.keep_revisions.map_or(0, |keep| current - keep);
        let by_age = self.keep_for.map_or(0, |keep| {
            samples
                .iter()
                .rev()
                .find(|(at, _)| now.duration_since(*at) >= keep)
                .map_or(0, |(_, rev)| *rev)
        });
        by_count.max(by_age).max(0)
    }
}

/// Compacts `upto` through the writer queue, one chunk per request. Blocks.
pub(crate) fn compact_blocking(
    tx: &SyncSender<Request>,
    upto: Revision,
    chunk: usize,
) -> Result<(), StoreError> {
    let mut last = None;
    loop {
        let (reply, rx) = oneshot::channel();
        tx.send(Request::Compact { upto, chunk, reply })
            .map_err(|_| StoreError::Closed)?;
        let reached = rx.blocking_recv().map_err(|_| StoreError::Closed)??;
        // Stop once done, or if a chunk made no progress (nothing to drop).
        if reached >= upto || last == Some(reached) {
            return Ok(());
        }
        last = Some(reached);
    }
}

/// The background compactor: every `interval`, samples the revision and
/// compacts what the policy no longer keeps. Stops when `stop` disconnects.
pub(crate) fn run_compactor(
    policy: CompactionPolicy,
    shared: Arc<Shared>,
    tx: SyncSender<Request>,
    stop: Receiver<()>,
) {
    let mut samples: Vec<(Instant, Revision)> = Vec::new();
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(policy.interval) {
        let now = Instant::now();
        let current = shared.revision.load(Ordering::Acquire);
        samples.push((now, current));
        let target = policy.target(now, current, &samples);
        // Samples older than the newest one past the age limit are useless.
        if let Some(keep) = policy.keep_for {
            let old = samples
                .iter()
                .filter(|(at, _)| now.duration_since(*at) >= keep)
                .count();
            samples.drain(..old.saturating_sub(1));
        }
        if target > shared.compacted.load(Ordering::Acquire) {
            let started = Instant::now();
            match compact_blocking(&tx, target, policy.chunk) {
                Ok(()) => {
                    tracing::debug!(target, elapsed = ?started.elapsed(), "compacted store history")
                }
                Err(StoreError::Closed) => break,
                Err(err) => tracing::warn!(error = %err, target, "store compaction failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keeps_the_newer_of_count_and_age() {
        let policy = CompactionPolicy {
            keep_revisions: Some(100),
            keep_for: Some(Duration::from_secs(60)),
            ..CompactionPolicy::default()
        };
        let now = Instant::now();
        let t = |secs| now.checked_sub(Duration::from_secs(secs)).unwrap_or(now);
        let samples = [(t(120), 40), (t(70), 50), (t(30), 900)];
        // Count says 1000 - 100 = 900; age says 50 (newest sample older than 60 s).
        assert_eq!(policy.target(now, 1000, &samples), 900);
        assert_eq!(policy.target(now, 120, &samples), 50);
        let none = CompactionPolicy {
            keep_revisions: None,
            keep_for: None,
            ..policy
        };
        assert_eq!(none.target(now, 1000, &samples), 0);
    }
}
