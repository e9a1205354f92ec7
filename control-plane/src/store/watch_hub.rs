//! Watch fan-out shared by the store backends.
//!
//! A [`WatchHub`] keeps a bounded window of the most recent [`Event`]s (for
//! replay and for reads at a past revision) and streams new events to open
//! watches. Watchers are grouped by their exact prefix: each distinct prefix
//! owns one `tokio::sync::broadcast` ring, so a publish does work per
//! *distinct prefix* rather than per watcher, wakes only watchers whose prefix
//! matches, and clones only an `Arc` per group. A watcher that falls more than
//! its ring's capacity behind finds the ring overwritten and catches up from the
//! window; only one that fell behind the window too ends with
//! [`StoreError::Expired`]. Writers never wait for readers.
//!
//! Publishers must publish in revision order and never concurrently (each
//! backend publishes from its single write path). A watch subscribes to the
//! live ring *before* it snapshots the window, and drops live events it has
//! already replayed, so no event is missed or repeated.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream;
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use super::{Event, EventStream, Revision, StoreError};

/// Sizing of a [`WatchHub`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchHubConfig {
    /// How many recent events the window keeps for replay.
    pub window: usize,
    /// How many undelivered events one watch prefix's ring holds; a watcher
    /// further behind catches up from the window instead.
    pub watcher_buffer: usize,
}

impl Default for WatchHubConfig {
    fn default() -> Self {
        Self {
            window: 10_000,
            watcher_buffer: 1_024,
        }
    }
}

/// The replay window: events with contiguous revisions above `floor`.
#[derive(Debug, Default)]
struct Window {
    events: VecDeque<Arc<Event>>,
    /// Every event with a revision > `floor` and <= `latest` is in `events`.
    floor: Revision,
    /// The revision of the last published event (or the starting revision).
    latest: Revision,
}

impl Window {
    /// Index of the first event with revision > `after`.
    fn first_after(&self, after: Revision) -> usize {
        self.events.partition_point(|e| e.revision <= after)
    }
}

/// Shared state behind [`WatchHub`] and its streams.
#[derive(Debug)]
struct Inner {
    config: WatchHubConfig,
    window: RwLock<Window>,
    /// Live rings, one per distinct watch prefix. `None` once closed.
    groups: Mutex<Option<HashMap<String, broadcast::Sender<Arc<Event>>>>>,
}

/// A bounded event window plus live fan-out to watchers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchHub {
    inner: Arc<Inner>,
}

impl WatchHub {
    /// An empty hub whose history starts after `start` (the store's current
    /// revision when the hub is created with no events to refill).
    pub fn new(config: WatchHubConfig, start: Revision) -> Self {
        let config = WatchHubConfig {
            window: config.window.max(1),
            watcher_buffer: config.watcher_buffer.max(1),
        };
        Self {
            inner: Arc::new(Inner {
                config,
                window: RwLock::new(Window {
                    events: VecDeque::new(),
                    floor: start,
                    latest: start,
                }),
                groups: Mutex::new(Some(HashMap::new())),
            }),
        }
    }

    /// Refills the window with already-committed events (e.g. on restart):
    /// `floor` is the revision below which history is gone, `events` the
    /// events after it in revision order. Only the newest `window` are kept.
    /// Call before any watcher exists.
    pub fn refill(&self, floor: Revision, events: Vec<Event>) {
        let mut w = self.inner.window.write();
        w.events.clear();
        w.floor = floor;
        w.latest = floor;
        for event in events {
            w.latest = event.revision;
            w.events.push_back(Arc::new(event));
        }
        self.trim(&mut w);
    }

    /// The revision of the newest event (or the starting revision).
    pub fn latest(&self) -> Revision {
        self.inner.window.read().latest
    }

    /// Every event after this revision is still in the window.
    pub fn floor(&self) -> Revision {
        self.inner.window.read().floor
    }

    /// Number of open watch prefixes (for tests and metrics).
    pub fn prefix_groups(&self) -> usize {
        self.inner.groups.lock().as_ref().map_or(0, HashMap::len)
    }

    fn trim(&self, w: &mut Window) {
        while w.events.len() > self.inner.config.window {
            if let Some(old) = w.events.pop_front() {
                w.floor = old.revision;
            }
        }
    }

    /// Publishes committed events, in revision order, to the window and to
    /// matching watchers. Callers serialize their calls.
    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let events: Vec<Arc<Event>> = events.into_iter().map(Arc::new).collect();
        {
            let mut w = self.inner.window.write();
            for event in &events {
                w.latest = event.revision;
                w.events.push_back(Arc::clone(event));
            }
            self.trim(&mut w);
        }
        // Collect the live rings, then send outside the lock: a send only
        // writes a slot and wakes that ring's waiters.
        let targets: Vec<(String, broadcast::Sender<Arc<Event>>)> = {
            let mut groups = self.inner.groups.lock();
            let Some(groups) = groups.as_mut() else {
                return;
            };
            groups.retain(|_, tx| tx.receiver_count() > 0);
            groups
                .iter()
                .map(|(prefix, tx)| (prefix.clone(), tx.clone()))
                .collect()
        };
        for (prefix, tx) in &targets {
            for event in &events {
                if event.kv.key.starts_with(prefix.as_str()) {
                    // An error only means every receiver has gone.
                    let _ = tx.send(Arc::clone(event));
                }
            }
        }
    }

    /// The events with revision > `after` (all prefixes), oldest first, or
    /// `Expired` if some of them have left the window.
    pub fn events_after(&self, after: Revision) -> Result<Vec<Arc<Event>>, StoreError> {
        let w = self.inner.window.read();
        if after < w.floor {
            return Err(StoreError::Expired {
                requested: after,
                oldest: w.floor,
            });
        }
        Ok(w.events.range(w.first_after(after)..).cloned().collect())
    }

    /// Drops window events at and below `revision`.
    pub fn compact(&self, revision: Revision) {
        let mut w = self.inner.window.write();
        if revision <= w.floor {
            return;
        }
        let cut = w.first_after(revision);
        w.events.drain(..cut);
        w.floor = revision.min(w.latest);
    }

    /// Ends every open watch with `Closed`; later watches fail with `Closed`.
    pub fn close(&self) {
        self.inner.groups.lock().take();
    }

    /// Events under `prefix` with revision > `after`: the window's first, then
    /// live ones. Fails with `Expired` if `after` is below the window.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        let rx = {
            let mut groups = self.inner.groups.lock();
            let groups = groups.as_mut().ok_or(StoreError::Closed)?;
            groups
                .entry(prefix.to_owned())
                .or_insert_with(|| broadcast::channel(self.inner.config.watcher_buffer).0)
                .subscribe()
        };
        let replay: Vec<Event> = {
            let w = self.inner.window.read();
            if after < w.floor {
                return Err(StoreError::Expired {
                    requested: after,
                    oldest: w.floor,
                });
            }
            w.events
                .range(w.first_after(after)..)
                .filter(|e| e.kv.key.starts_with(prefix))
                .map(|e| Event::clone(e))
                .collect()
        };
        let last = replay.last().map_or(after, |e| e.revision);
        let live = LiveState {
            rx,
            last,
            prefix: prefix.to_owned(),
            caught_up: VecDeque::new(),
            hub: Arc::clone(&self.inner),
        };
        let live = stream::unfold(Some(live), |state| async move {
            let mut state = state?;
            loop {
                if let Some(event) = state.caught_up.pop_front() {
                    state.last = event.revision;
                    return Some((Ok(Event::clone(&event)), Some(state)));
                }
                match state.rx.recv().await {
                    Ok(event) if event.revision <= state.last => continue,
                    Ok(event) => {
                        state.last = event.revision;
                        return Some((Ok(Event::clone(&event)), Some(state)));
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        // The ring moved on without this watcher; the window usually still
                        // holds what it missed, so it catches up from there (the ring's
                        // later events it has then seen are skipped by revision).
                        let window = state.hub.window.read();
                        if state.last < window.floor {
                            tracing::debug!(
                                missed,
                                last = state.last,
                                "watcher fell behind the window; ending watch"
                            );
                            let err = StoreError::Expired {
                                requested: state.last,
                                oldest: window.floor,
                            };
                            return Some((Err(err), None));
                        }
                        state.caught_up = window
                            .events
                            .range(window.first_after(state.last)..)
                            .filter(|e| e.kv.key.starts_with(state.prefix.as_str()))
                            .cloned()
                            .collect();
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some((Err(StoreError::Closed), None));
                    }
                }
            }
        });
        Ok(stream::iter(replay.into_iter().map(Ok)).chain(live).boxed())
    }
}

/// What a live watch carries between polls.
struct LiveState {
    rx: broadcast::Receiver<Arc<Event>>,
    /// The last revision delivered (or the starting revision).
    last: Revision,
    /// The watch's key prefix.
    prefix: String,
    /// Events taken from the window after the ring overran this watcher, to deliver first.
    caught_up: VecDeque<Arc<Event>>,
    hub: Arc<Inner>,
}
