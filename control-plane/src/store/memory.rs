//! An in-memory [`Store`] for tests and throwaway clusters.
//!
//! The current state is a `BTreeMap` under one mutex; every write bumps the
//! revision and publishes its event to a [`WatchHub`] while still holding the
//! mutex, so events reach the hub in revision order. The hub's window doubles
//! as the history for reads at a past revision: the state at revision `r` is
//! the current state with every newer event undone. Nothing survives a drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::ops::{WriteOp, page, plan_write, undo_events};
use super::watch_hub::{WatchHub, WatchHubConfig};
use super::{
    Event, EventKind, EventStream, KeyValue, ListOptions, ListResult, Revision, Store, StoreError,
};

/// The in-memory store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    hub: WatchHub,
}

#[derive(Debug, Default)]
struct State {
    kv: BTreeMap<String, KeyValue>,
    revision: Revision,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with the default history window (10,000 events).
    pub fn new() -> Self {
        Self::with_config(WatchHubConfig::default())
    }

    /// An empty store keeping the last `window` events for watches and reads
    /// at past revisions.
    pub fn with_history(window: usize) -> Self {
        Self::with_config(WatchHubConfig {
            window,
            ..WatchHubConfig::default()
        })
    }

    /// An empty store with explicit window and per-watch buffer sizes.
    pub fn with_config(config: WatchHubConfig) -> Self {
        Self {
            state: Mutex::new(State::default()),
            hub: WatchHub::new(config, 0),
        }
    }

    /// The store as a shareable trait object.
    pub fn shared(self) -> Arc<dyn Store> {
        Arc::new(self)
    }

    /// Ends every open watch with `Closed`.
    pub fn close(&self) {
        self.hub.close();
    }

    /// Applies one checked write under the state lock.
    fn write(
        &self,
        key: &str,
        op: impl FnOnce(Option<&KeyValue>, Revision) -> Result<Event, StoreError>,
    ) -> Result<KeyValue, StoreError> {
        let mut state = self.state.lock();
        let next = state.revision + 1;
        let event = op(state.kv.get(key), next)?;
        state.revision = next;
        match event.kind {
            EventKind::Put => {
                state.kv.insert(key.to_owned(), event.kv.clone());
            }
            EventKind::Delete => {
                state.kv.remove(key);
            }
        }
        let result = event.kv.clone();
        self.hub.publish(vec![event]);
        Ok(result)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.state.lock().kv.get(key).cloned())
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        let state = self.state.lock();
        let current = state.revision;
        let range = state
            .kv
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix));
        match opts.revision {
            None => Ok(page(range.map(|(_, v)| v.clone()), &opts, current)),
            Some(rev) if rev > current => Err(StoreError::FutureRevision {
                requested: rev,
                current,
            }),
            Some(rev) => {
                let newer = self.hub.events_after(rev)?;
                let mut items: BTreeMap<String, KeyValue> =
                    range.map(|(k, v)| (k.clone(), v.clone())).collect();
                drop(state);
                undo_events(&mut items, prefix, newer.iter().map(|e| e.as_ref()));
                Ok(page(items.into_values(), &opts, rev))
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Create(value);
        self.write(key, |cur, rev| plan_write(key, cur, &op, rev))
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Update(value, expected);
        self.write(key, |cur, rev| plan_write(key, cur, &op, rev))
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        let op = WriteOp::Delete(expected);
        self.write(key, |cur, rev| plan_write(key, cur, &op, rev))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        self.hub.watch(prefix, after)
    }

    fn current_revision(&self) -> Revision {
        self.state.lock().revision
    }

    fn compacted_revision(&self) -> Revision {
        self.hub.floor()
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let current = self.current_revision();
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        self.hub.compact(revision);
        Ok(())
    }
}
