//! The scheduling loop: kube-runtime watchers for nodes, pods,
//! RuntimeClasses, PriorityClasses and namespaces feed one task that owns
//! the cache and the queue; it schedules pods in batches between event
//! drains, assumes each placement at once and binds on spawned tasks.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use rand::{Rng, SeedableRng};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::algorithm::{Algorithm, NO_NODES_MSG, ScheduleError};
use super::cache::Cache;
use super::effects::{
    BindOutcome, Effects, NORMAL, Nomination, WARNING, is_final_bind_error, scheduled_message,
};
use super::pod_info::{PodContext, PodInfo, key_of};
use super::preemption::{self, Outcome};
use super::queue::{Popped, SchedulingQueue};
use super::{Error, Health, SchedulerConfig, plugins};

/// Most inputs handled before the loop schedules again.
const MAX_DRAIN: usize = 4096;
/// Most pods scheduled before the loop drains inputs again.
const MAX_BATCH: usize = 256;
/// Longest stretch of scheduling before the loop drains inputs again.
const MAX_BATCH_TIME: Duration = Duration::from_millis(20);

/// A watch event for the loop.
enum Input {
    Pod(Box<watcher::Event<Pod>>),
    Node(Box<watcher::Event<Node>>),
    RuntimeClass(Box<watcher::Event<RuntimeClass>>),
    PriorityClass(Box<watcher::Event<PriorityClass>>),
    Namespace(Box<watcher::Event<Namespace>>),
}

/// Aborts the watcher tasks when the loop ends.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

fn spawn_watch<K>(
    api: Api<K>,
    tx: mpsc::Sender<Input>,
    wrap: fn(watcher::Event<K>) -> Input,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => {
                    if tx.send(wrap(ev)).await.is_err() {
                        return;
                    }
                }
                Err(err) => tracing::warn!(%kind, %err, "watch failed; retrying"),
            }
        }
    })
}

/// Whether the API server serves `K` (PriorityClass and RuntimeClass are optional).
async fn served<K>(api: &Api<K>) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(err) => {
            tracing::warn!(%err, "probing an optional resource failed; watching it anyway");
            true
        }
    }
}

/// A small mirror of a cluster-scoped kind, replaced atomically on relist.
struct Mirror<T> {
    live: HashMap<String, T>,
    pending: Option<HashMap<String, T>>,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Mirror {
            live: HashMap::new(),
            pending: None,
        }
    }
}

impl<T> Mirror<T> {
    /// Applies an event; returns whether `live` changed.
    fn apply<K: ResourceExt>(&mut self, ev: watcher::Event<K>, conv: impl Fn(K) -> T) -> bool {
        match ev {
            watcher::Event::Apply(o) => {
                self.live.insert(o.name_any(), conv(o));
                true
            }
            watcher::Event::Delete(o) => self.live.remove(&o.name_any()).is_some(),
            watcher::Event::Init => {
                self.pending = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(o) => {
                let name = o.name_any();
                let v = conv(o);
                match &mut self.pending {
                    Some(p) => {
                        p.insert(name, v);
                    }
                    None => {
                        self.live.insert(name, v);
                    }
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(p) = self.pending.take() {
                    self.live = p;
                }
                true
            }
        }
    }
}

struct Loop<'a> {
    config: &'a SchedulerConfig,
    health: Health,
    cache: Cache,
    queue: SchedulingQueue,
    algorithm: Algorithm,
    ctx: PodContext,
    runtime_classes: Mirror<Arc<RuntimeClass>>,
    priority_classes: Mirror<(i32, bool)>,
    namespaces: Mirror<BTreeLabels>,
    effects: Effects,
    bind_tx: mpsc::UnboundedSender<BindOutcome>,
    rng: rand::rngs::StdRng,
    pods_seen: Option<HashSet<Arc<str>>>,
    nodes_seen: Option<HashSet<String>>,
    pods_synced: bool,
    nodes_synced: bool,
    /// When each pending pod was first seen (for latency logs).
    first_seen: HashMap<Arc<str>, Instant>,
}

type BTreeLabels = std::collections::BTreeMap<String, String>;

impl Loop<'_> {
    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .filter(|n| !n.is_empty())
            .unwrap_or("default-scheduler");
        name == self.config.scheduler_name
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Pod(ev) => self.on_pod_event(*ev, now),
            Input::Node(ev) => self.on_node_event(*ev, now),
            Input::RuntimeClass(ev) => {
                if self.runtime_classes.apply(*ev, Arc::new) {
                    self.ctx.runtime_classes = self.runtime_classes.live.clone();
                    self.queue.move_all_to_active_or_backoff(now);
                }
            }
            Input::PriorityClass(ev) => {
                let changed = self.priority_classes.apply(*ev, |pc: PriorityClass| {
                    (pc.value, pc.global_default.unwrap_or(false))
                });
                if changed {
                    let live = &self.priority_classes.live;
                    self.ctx.priority_classes =
                        live.iter().map(|(k, (v, _))| (k.clone(), *v)).collect();
                    self.ctx.default_priority = live.values().find(|(_, d)| *d).map(|(v, _)| *v);
                }
            }
            Input::Namespace(ev) => {
                if self
                    .namespaces
                    .apply(*ev, |ns: Namespace| ns.metadata.labels.unwrap_or_default())
                {
                    self.ctx.namespace_labels = self.namespaces.live.clone();
                }
            }
        }
    }

    fn on_node_event(&mut self, ev: watcher::Event<Node>, now: Instant) {
        match ev {
            watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                if let Some(seen) = &mut self.nodes_seen {
                    seen.insert(node.name_any());
                }
                if self.cache.upsert_node(Arc::new(node)) {
                    self.queue.move_all_to_active_or_backoff(now);
                }
            }
            watcher::Event::Delete(node) => self.cache.remove_node(&node.name_any()),
            watcher::Event::Init => self.nodes_seen = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = self.nodes_seen.take() {
                    for name in self.cache.node_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_node(&name);
                        }
                    }
                }
                self.nodes_synced = true;
                self.queue.move_all_to_active_or_backoff(now);
            }
        }
    }

    fn on_pod_event(&mut self, ev: watcher::Event<Pod>, now: Instant) {
        match ev {
            watcher::Event::Apply(pod) => self.on_pod(pod, now),
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = &mut self.pods_seen {
                    seen.insert(key_of(&pod));
                }
                self.on_pod(pod, now);
            }
            watcher::Event::Delete(pod) => self.on_pod_deleted(&key_of(&pod), now),
            watcher::Event::Init => self.pods_seen = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = self.pods_seen.take() {
                    for key in self.cache.pod_keys() {
                        if !seen.contains(&key) && !self.cache.is_assumed(&key) {
                            self.on_pod_deleted(&key, now);
                        }
                    }
                    for key in self.queue.keys() {
                        if !seen.contains(&key) {
                            self.on_pod_deleted(&key, now);
                        }
                    }
                }
                self.pods_synced = true;
            }
        }
    }

    fn on_pod(&mut self, pod: Pod, now: Instant) {
        let ours = self.is_ours(&pod);
        let info = Arc::new(PodInfo::new(Arc::new(pod), &self.ctx));
        let key = info.key.clone();
        if info.is_terminal() {
            self.queue.delete(&key);
            self.first_seen.remove(&key);
            if self.cache.remove_pod(&key) {
                self.queue.move_all_to_active_or_backoff(now);
            }
            return;
        }
        if let Some(node) = info.node_name().map(str::to_string) {
            self.queue.delete(&key);
            self.first_seen.remove(&key);
            let was_assumed = self.cache.is_assumed(&key);
            let known = self.cache.pod_node(&key).is_some();
            self.cache.upsert_bound_pod(info, &node);
            if !was_assumed && known {
                // Labels of a running pod may matter to affinity rules.
                self.queue.move_all_to_active_or_backoff(now);
            }
            return;
        }
        if !ours || self.cache.is_assumed(&key) {
            return;
        }
        if let Some(node) = info.nominated_node().map(str::to_string) {
            self.cache.nominate(info.clone(), &node);
        }
        self.first_seen.entry(key.clone()).or_insert(now);
        // Our own status writes (conditions, nomination) come back as
        // updates; only a change to what the pod asks for earns a retry.
        let significant = self
            .queue
            .get(&key)
            .is_none_or(|old| scheduling_inputs_changed(&old.pod, &info.pod));
        if significant {
            self.queue.add_or_update(info, now);
        } else {
            self.queue.refresh(info);
        }
    }

    fn on_pod_deleted(&mut self, key: &str, now: Instant) {
        self.queue.delete(key);
        self.first_seen.remove(key);
        if self.cache.remove_pod(key) {
            self.queue.move_all_to_active_or_backoff(now);
        }
    }

    fn on_bound(&mut self, outcome: BindOutcome) {
        let now = Instant::now();
        let key = outcome.pod.key.clone();
        match outcome.error {
            None => {
                self.queue.delete(&key);
                self.health
                    .inner
                    .scheduled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let waited = self.first_seen.remove(&key).map(|t| now.duration_since(t));
                tracing::debug!(pod = %outcome.pod.full_name(), node = %outcome.node, ?waited, "bound");
                self.effects.event(
                    &outcome.pod,
                    "Scheduled",
                    NORMAL,
                    "Binding",
                    scheduled_message(&outcome.pod, &outcome.node),
                );
            }
            Some(err) => {
                tracing::info!(pod = %outcome.pod.full_name(), node = %outcome.node, %err, "binding failed");
                self.health
                    .inner
                    .bind_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.cache.forget(&key);
                self.queue.move_all_to_active_or_backoff(now);
                if is_final_bind_error(&err) {
                    self.queue.delete(&key);
                    self.first_seen.remove(&key);
                } else {
                    self.queue.retry_after_backoff(&key, now);
                    self.effects.event(
                        &outcome.pod,
                        "FailedScheduling",
                        WARNING,
                        "Scheduling",
                        format!("Binding rejected: {err}"),
                    );
                }
            }
        }
    }

    fn schedule_one(&mut self, popped: Popped) {
        let info = popped.info;
        let key = info.key.clone();
        if self.cache.pod_node(&key).is_some() || info.terminating {
            self.queue.delete(&key);
            return;
        }
        let result = {
            let snapshot = self.cache.snapshot();
            self.algorithm.schedule(&info, &snapshot, &mut self.rng)
        };
        match result {
            Ok(r) => {
                let node = self.cache.snapshot().nodes[r.node].name.clone();
                tracing::trace!(pod = %info.full_name(), %node, evaluated = r.evaluated, feasible = r.feasible, "placed");
                self.cache.assume(info.clone(), &node);
                self.effects.bind(info, node, self.bind_tx.clone());
            }
            Err(ScheduleError::NoNodes) => {
                self.fail(&info, NO_NODES_MSG.to_string(), Nomination::Keep)
            }
            Err(ScheduleError::Fit(mut fit)) => {
                let outcome = {
                    let snapshot = self.cache.snapshot();
                    let state = plugins::pre_filter(&info, &snapshot);
                    let offset = self.rng.random_range(0..snapshot.nodes.len().max(1));
                    preemption::preempt(&info, &snapshot, &state, &fit, offset)
                };
                let nomination = match outcome {
                    Outcome::Preempt(c) => {
                        let node = self.cache.snapshot().nodes[c.node].name.clone();
                        tracing::info!(pod = %info.full_name(), %node, victims = c.victims.len(), "preempting");
                        for lower in self.cache.nominated_below(&node, info.priority) {
                            self.cache.clear_nomination(&lower.key);
                            self.effects.clear_nomination(&lower);
                        }
                        self.cache.nominate(info.clone(), &node);
                        self.effects.evict(&info, &node, c.victims);
                        Nomination::Set(node)
                    }
                    Outcome::Failed(msg) => {
                        fit.post_filter_msg = Some(msg);
                        if info.nominated_node().is_some() {
                            self.cache.clear_nomination(&key);
                            Nomination::Clear
                        } else {
                            Nomination::Keep
                        }
                    }
                };
                self.fail(&info, fit.message(), nomination);
            }
        }
    }

    fn fail(&mut self, info: &Arc<PodInfo>, message: String, nomination: Nomination) {
        tracing::debug!(pod = %info.full_name(), %message, "unschedulable");
        self.health
            .inner
            .unschedulable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.unschedulable(&info.key, Instant::now());
        self.effects.failed_scheduling(info, message, nomination);
    }
}

/// Whether an update changed anything scheduling reads (Kubernetes'
/// `isPodUpdated`: status and bookkeeping metadata do not count).
fn scheduling_inputs_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
}

/// Runs the scheduling loop until a watch channel closes.
pub(crate) async fn run_loop(client: kube::Client, config: &SchedulerConfig) -> Result<(), Error> {
    let (tx, mut rx) = mpsc::channel::<Input>(16384);
    let (bind_tx, mut bind_rx) = mpsc::unbounded_channel::<BindOutcome>();
    let mut tasks = Tasks(vec![
        spawn_watch(Api::<Node>::all(client.clone()), tx.clone(), |e| {
            Input::Node(Box::new(e))
        }),
        spawn_watch(Api::<Pod>::all(client.clone()), tx.clone(), |e| {
            Input::Pod(Box::new(e))
        }),
        spawn_watch(Api::<Namespace>::all(client.clone()), tx.clone(), |e| {
            Input::Namespace(Box::new(e))
        }),
    ]);
    let rc_api = Api::<RuntimeClass>::all(client.clone());
    if served(&rc_api).await {
        tasks.0.push(spawn_watch(rc_api, tx.clone(), |e| {
            Input::RuntimeClass(Box::new(e))
        }));
    }
    let pc_api = Api::<PriorityClass>::all(client.clone());
    if served(&pc_api).await {
        tasks.0.push(spawn_watch(pc_api, tx.clone(), |e| {
            Input::PriorityClass(Box::new(e))
        }));
    }
    drop(tx);
    let identity = config.leader_election.identity.clone();
    let mut s = Loop {
        config,
        health: config.health.clone(),
        cache: Cache::new(),
        queue: SchedulingQueue::new(config.pod_initial_backoff, config.pod_max_backoff),
        algorithm: Algorithm::new(config.percentage_of_nodes_to_score),
        ctx: PodContext::default(),
        runtime_classes: Mirror::default(),
        priority_classes: Mirror::default(),
        namespaces: Mirror::default(),
        effects: Effects::new(
            client,
            &config.scheduler_name,
            &identity,
            config.bind_parallelism,
        ),
        bind_tx,
        rng: rand::rngs::StdRng::from_os_rng(),
        pods_seen: None,
        nodes_seen: None,
        pods_synced: false,
        nodes_synced: false,
        first_seen: HashMap::new(),
    };
    tracing::info!(scheduler = %config.scheduler_name, "scheduler started");
    loop {
        s.health.beat();
        while let Ok(o) = bind_rx.try_recv() {
            s.on_bound(o);
        }
        let mut drained = 0;
        while drained < MAX_DRAIN {
            match rx.try_recv() {
                Ok(input) => {
                    s.on_input(input);
                    drained += 1;
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(Error::WatchEnded),
            }
        }
        let now = Instant::now();
        s.queue.flush(now);
        if s.pods_synced && s.nodes_synced && s.queue.active_len() > 0 {
            let until = Instant::now() + MAX_BATCH_TIME;
            for _ in 0..MAX_BATCH {
                let Some(p) = s.queue.pop() else { break };
                s.schedule_one(p);
                if Instant::now() >= until {
                    break;
                }
            }
            tokio::task::yield_now().await;
            continue;
        }
        let wake = s
            .queue
            .next_backoff_expiry()
            .map_or(now + Duration::from_secs(1), |t| {
                t.min(now + Duration::from_secs(1))
            });
        tokio::select! {
            input = rx.recv() => match input {
                Some(input) => s.on_input(input),
                None => return Err(Error::WatchEnded),
            },
            Some(o) = bind_rx.recv() => s.on_bound(o),
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn status_writes_are_not_scheduling_changes() {
        let a = pod(
            json!({"metadata": {"name": "p", "resourceVersion": "1"}, "spec": {"containers": []}}),
        );
        let b = pod(
            json!({"metadata": {"name": "p", "resourceVersion": "2"}, "spec": {"containers": []},
            "status": {"conditions": [{"type": "PodScheduled", "status": "False"}]}}),
        );
        assert!(!scheduling_inputs_changed(&a, &b));
        let c = pod(
            json!({"metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"containers": []}}),
        );
        assert!(scheduling_inputs_changed(&a, &c));
        let d = pod(
            json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeSelector": {"a": "b"}}}),
        );
        assert!(scheduling_inputs_changed(&a, &d));
    }

    fn ns(name: &str) -> Namespace {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"n": name}}}))
            .expect("ns")
    }

    #[test]
    fn mirrors_replace_their_contents_on_relist() {
        let mut m: Mirror<String> = Mirror::default();
        let conv = |n: Namespace| n.metadata.name.unwrap_or_default();
        assert!(m.apply(watcher::Event::Apply(ns("a")), conv));
        assert!(m.apply(watcher::Event::Apply(ns("b")), conv));
        assert!(!m.apply(watcher::Event::Init, conv));
        assert!(!m.apply(watcher::Event::InitApply(ns("b")), conv));
        assert_eq!(
            m.live.len(),
            2,
            "old contents stay until the relist is done"
        );
        assert!(m.apply(watcher::Event::InitDone, conv));
        assert_eq!(m.live.keys().collect::<Vec<_>>(), vec!["b"]);
        assert!(m.apply(watcher::Event::Delete(ns("b")), conv));
        assert!(!m.apply(watcher::Event::Delete(ns("b")), conv));
        assert!(m.live.is_empty());
    }
}
