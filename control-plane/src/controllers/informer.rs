//! Shared informers: one kube-runtime `watcher` + reflector store per kind,
//! whose changes fan out to every controller that needs them.
//!
//! kube-runtime's own shared streams (`reflect_shared`) do not forward
//! deletions, but a ReplicaSet must hear that one of its pods is gone. So each
//! informer here drives a reflector `Writer` itself and broadcasts the object
//! of every change, deletions included (also the ones implied by a relist).
//! Controllers subscribe with [`Informer::stream`], which plugs straight into
//! `Controller::for_stream`, `owns_stream` and `watches_stream`.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

/// Buffered changes per informer before a slow subscriber is resynced from
/// the store instead.
const BROADCAST_CAPACITY: usize = 8192;

/// A kind the informers can watch: a typed, cluster-listable resource.
pub trait Watchable:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Watchable for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// One watched kind: a read-only cache plus a change feed.
pub struct Informer<K: Watchable> {
    reader: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
}

impl<K: Watchable> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            reader: self.reader.clone(),
            tx: self.tx.clone(),
        }
    }
}

impl<K: Watchable> Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Starts watching `api`; the returned handle aborts the watch task.
    pub fn spawn(api: Api<K>, config: watcher::Config) -> (Self, AbortHandle) {
        let (reader, writer) = reflector::store::<K>();
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let task = tokio::spawn(drive(api, config, writer, reader.clone(), tx.clone()));
        (Informer { reader, tx }, task.abort_handle())
    }

    /// The cache. Empty until the first list completes ([`Self::ready`]).
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// Waits until the first list has filled the cache.
    pub async fn ready(&self) {
        let _ = self.reader.wait_until_ready().await;
    }

    /// A stream of every object already in the cache, then of every object
    /// that changes (its new state, or its last state if it was deleted). A
    /// subscriber that falls too far behind receives the whole cache instead
    /// of the missed changes.
    ///
    /// Replaying the cache matters when the first list completed before the
    /// subscription (a busy machine can run the informer's task first): the
    /// listed objects were broadcast to nobody.
    pub fn stream(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let rx = self.tx.subscribe();
        let reader = self.reader.clone();
        let cached: VecDeque<Arc<K>> = reader.state().into();
        futures::stream::unfold(
            (rx, reader, cached),
            |(mut rx, reader, mut pending)| async move {
                loop {
                    if let Some(obj) = pending.pop_front() {
                        return Some((Ok((*obj).clone()), (rx, reader, pending)));
                    }
                    match rx.recv().await {
                        Ok(obj) => return Some((Ok((*obj).clone()), (rx, reader, pending))),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::debug!(kind = %K::kind(&()), missed, "subscriber lagged; resyncing from cache");
                            pending.extend(reader.state());
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        )
    }
}

/// Runs the watch: applies each event to the store first, then broadcasts
/// the changed objects, so a controller that reacts finds the cache current.
async fn drive<K: Watchable>(
    api: Api<K>,
    config: watcher::Config,
    mut writer: reflector::store::Writer<K>,
    reader: Store<K>,
    tx: broadcast::Sender<Arc<K>>,
) where
    K::DynamicType: Eq + Hash + Clone,
{
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut listed: Vec<Arc<K>> = Vec::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(kind = %K::kind(&()), %err, "watch failed; retrying with backoff");
                continue;
            }
        };
        match &event {
            watcher::Event::Init => {
                listed.clear();
                writer.apply_watcher_event(&event);
            }
            watcher::Event::InitApply(obj) => {
                listed.push(Arc::new(obj.clone()));
                writer.apply_watcher_event(&event);
            }
            watcher::Event::InitDone => {
                let seen: HashSet<ObjectRef<K>> = listed
                    .iter()
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect();
                // Objects in the old cache but not in the relist were deleted
                // while the watch was down.
                let vanished: Vec<Arc<K>> = reader
                    .state()
                    .into_iter()
                    .filter(|o| !seen.contains(&ObjectRef::from_obj(o.as_ref())))
                    .collect();
                writer.apply_watcher_event(&event);
                for obj in listed.drain(..).chain(vanished) {
                    let _ = tx.send(obj);
                }
            }
            watcher::Event::Apply(obj) | watcher::Event::Delete(obj) => {
                let obj = Arc::new(obj.clone());
                writer.apply_watcher_event(&event);
                let _ = tx.send(obj);
            }
        }
    }
}

/// Lazily started informers, one per kind (and per extra key), shared by all
/// controllers of one manager. Dropping it stops every watch.
pub struct Informers {
    client: Client,
    map: Mutex<HashMap<(TypeId, String), Box<dyn Any + Send + Sync>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

impl Informers {
    /// No watch starts until a kind is first asked for.
    pub fn new(client: Client) -> Self {
        Informers {
            client,
            map: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The client the informers watch through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The informer over all objects of `K` in every namespace.
    pub fn get<K: Watchable>(&self) -> Informer<K> {
        self.get_with("", || {
            (
                Api::<K>::all(self.client.clone()),
                watcher::Config::default(),
            )
        })
    }

    /// The informer named `key` for `K`, created by `make` on first use
    /// (e.g. Leases of one namespace only).
    pub fn get_with<K: Watchable>(
        &self,
        key: &str,
        make: impl FnOnce() -> (Api<K>, watcher::Config),
    ) -> Informer<K> {
        let id = (TypeId::of::<K>(), key.to_string());
        let mut map = self.map.lock();
        if let Some(existing) = map.get(&id).and_then(|b| b.downcast_ref::<Informer<K>>()) {
            return existing.clone();
        }
        let (api, config) = make();
        let (informer, task) = Informer::spawn(api, config);
        self.tasks.lock().push(task);
        map.insert(id, Box::new(informer.clone()));
        informer
    }
}

impl Drop for Informers {
    fn drop(&mut self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}
