//! The garbage collector (Kubernetes' `garbage-collector-controller`): keeps
//! a graph of every object's ownerReferences, across every served kind
//! (custom resources included, rediscovered every 30 s), and
//!
//! - deletes objects whose owners are all gone (Background propagation),
//! - deletes the dependents of owners in `foregroundDeletion`, removing the
//!   owner's finalizer once no dependent with `blockOwnerDeletion` is left,
//! - strips references to owners in `orphan` deletion, then their finalizer.
//!
//! The watches feed [`Graph`]; changes enqueue work items that a few
//! workers process through the API. The decisions are in [`logic`].

pub mod logic;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::mpsc;

use super::Shared;
use super::discovery::{Kind, served_kinds, split_api_version};
use super::error::{Error, KubeResultExt, is_conflict, is_not_found};
use logic::{FOREGROUND, ORPHAN, OwnerState, Propagation, Verdict};

/// How often new kinds (CRDs) are looked for.
const REDISCOVERY: Duration = Duration::from_secs(30);
/// Concurrent work items.
const WORKERS: usize = 8;
/// Kinds never collected (Kubernetes ignores events too).
const IGNORED: &[&str] = &[
    "events",
    "componentstatuses",
    "bindings",
    "tokenreviews",
    "selfsubjectaccessreviews",
];

/// What the graph knows about one object.
#[derive(Clone, Debug)]
struct Node {
    kind: Arc<Kind>,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }
}

/// The ownership graph: objects by UID, and each owner's dependents.
#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

/// A unit of work on one object (by UID).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// Check the object's owners (Kubernetes' `attemptToDelete`).
    Attempt(String),
    /// Orphan the dependents of an owner in `orphan` deletion.
    Orphan(String),
    /// Drive an owner in `foregroundDeletion`.
    Foreground(String),
}

struct Gc {
    client: Client,
    graph: Mutex<Graph>,
    kinds: Mutex<HashMap<(String, String), Arc<Kind>>>,
    pending: Mutex<HashSet<Work>>,
    tx: mpsc::UnboundedSender<Work>,
}

/// Runs the garbage collector until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let (tx, rx) = mpsc::unbounded_channel();
    let gc = Arc::new(Gc {
        client: shared.client.clone(),
        graph: Mutex::new(Graph::default()),
        kinds: Mutex::new(HashMap::new()),
        pending: Mutex::new(HashSet::new()),
        tx,
    });
    let mut started: HashSet<String> = HashSet::new();
    let mut syncs = Vec::new();
    for kind in discover(&gc).await {
        if started.insert(kind.key()) {
            syncs.push(spawn_watch(gc.clone(), kind));
        }
    }
    // Orphaning needs every dependent known: wait for the first lists.
    let _ = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(syncs)).await;
    tracing::info!("garbage collector graph synced");
    let rediscovery = {
        let gc = gc.clone();
        async move {
            loop {
                tokio::time::sleep(REDISCOVERY).await;
                for kind in discover(&gc).await {
                    if started.insert(kind.key()) {
                        tracing::info!(kind = %kind.resource.kind, "garbage collector watching a new kind");
                        drop(spawn_watch(gc.clone(), kind));
                    }
                }
            }
        }
    };
    let workers = tokio_stream::wrappers::UnboundedReceiverStream::new(rx).for_each_concurrent(
        WORKERS,
        |work| {
            let gc = gc.clone();
            async move {
                gc.pending.lock().remove(&work);
                if let Err(err) = gc.process(&work).await {
                    tracing::debug!(?work, %err, "garbage collection step failed; retrying");
                    let gc = gc.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        gc.push(work);
                    });
                }
            }
        },
    );
    tokio::join!(rediscovery, workers);
    Ok(())
}

async fn discover(gc: &Gc) -> Vec<Arc<Kind>> {
    let kinds = match served_kinds(&gc.client).await {
        Ok(k) => k,
        Err(err) => {
            tracing::warn!(%err, "garbage collector discovery failed");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    let mut map = gc.kinds.lock();
    for kind in kinds {
        let kind = Arc::new(kind);
        map.insert(
            (kind.resource.group.clone(), kind.resource.kind.clone()),
            kind.clone(),
        );
        if kind.supports(&["list", "watch", "delete"])
            && !IGNORED.contains(&kind.resource.plural.as_str())
        {
            out.push(kind);
        }
    }
    out
}

/// Watches one kind into the graph; the returned receiver fires after the
/// first complete list.
fn spawn_watch(gc: Arc<Gc>, kind: Arc<Kind>) -> tokio::sync::oneshot::Receiver<()> {
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let api: Api<DynamicObject> = Api::all_with(gc.client.clone(), &kind.resource);
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut synced_tx = Some(synced_tx);
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Init) => listed.clear(),
                Ok(watcher::Event::InitApply(obj)) => {
                    listed.insert(obj.uid().unwrap_or_default());
                    gc.upsert(&kind, &obj);
                }
                Ok(watcher::Event::InitDone) => {
                    gc.forget_unlisted(&kind, &listed);
                    if let Some(tx) = synced_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(watcher::Event::Apply(obj)) => gc.upsert(&kind, &obj),
                Ok(watcher::Event::Delete(obj)) => gc.remove(&obj.uid().unwrap_or_default()),
                Err(err) => {
                    tracing::debug!(kind = %kind.resource.kind, %err, "garbage collector watch error")
                }
            }
        }
    });
    synced_rx
}

impl Gc {
    fn push(&self, work: Work) {
        if self.pending.lock().insert(work.clone()) {
            let _ = self.tx.send(work);
        }
    }

    /// Records an object and enqueues what its change may require.
    fn upsert(&self, kind: &Arc<Kind>, obj: &DynamicObject) {
        let Some(uid) = obj.uid() else { return };
        let node = Node {
            kind: kind.clone(),
            namespace: obj.namespace(),
            name: obj.name_any(),
            owners: obj.owner_references().to_vec(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
        };
        let mut work = Vec::new();
        {
            let mut g = self.graph.lock();
            let old = g.nodes.insert(uid.clone(), node.clone());
            let old_owners: Vec<String> = old
                .as_ref()
                .map(|o| o.owners.iter().map(|r| r.uid.clone()).collect())
                .unwrap_or_default();
            for o in &old_owners {
                if let Some(set) = g.dependents.get_mut(o) {
                    set.remove(&uid);
                }
            }
            for r in &node.owners {
                g.dependents
                    .entry(r.uid.clone())
                    .or_default()
                    .insert(uid.clone());
            }
            let owners_changed = old.as_ref().is_none_or(|o| o.owners != node.owners);
            if !node.owners.is_empty() && owners_changed {
                work.push(Work::Attempt(uid.clone()));
            }
            // A dependent that dropped an owner may unblock that owner.
            for o in old_owners
                .iter()
                .filter(|o| !node.owners.iter().any(|r| &r.uid == *o))
            {
                if g.nodes
                    .get(o)
                    .is_some_and(|n| n.deleting && n.has_finalizer(FOREGROUND))
                {
                    work.push(Work::Foreground(o.clone()));
                }
            }
            if node.deleting {
                if node.has_finalizer(ORPHAN) {
                    work.push(Work::Orphan(uid.clone()));
                }
                if node.has_finalizer(FOREGROUND) {
                    work.push(Work::Foreground(uid.clone()));
                }
            }
        }
        for w in work {
            self.push(w);
        }
    }

    /// Removes a deleted object; its dependents may now be garbage.
    fn remove(&self, uid: &str) {
        let mut work = Vec::new();
        {
            let mut g = self.graph.lock();
            let Some(node) = g.nodes.remove(uid) else {
                return;
            };
            for r in &node.owners {
                if let Some(set) = g.dependents.get_mut(&r.uid) {
                    set.remove(uid);
                }
                if g.nodes
                    .get(&r.uid)
                    .is_some_and(|n| n.deleting && n.has_finalizer(FOREGROUND))
                {
                    work.push(Work::Foreground(r.uid.clone()));
                }
            }
            if let Some(deps) = g.dependents.get(uid) {
                work.extend(deps.iter().map(|d| Work::Attempt(d.clone())));
            }
        }
        for w in work {
            self.push(w);
        }
    }

    /// After a relist, drops objects of `kind` that no longer exist.
    fn forget_unlisted(&self, kind: &Kind, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .graph
            .lock()
            .nodes
            .iter()
            .filter(|(uid, n)| n.kind.key() == kind.key() && !listed.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.graph.lock().nodes.get(uid).cloned()
    }

    fn dependents(&self, uid: &str) -> Vec<(String, Node)> {
        let g = self.graph.lock();
        g.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| g.nodes.get(d).map(|n| (d.clone(), n.clone())))
            .collect()
    }

    fn api_for(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match (kind.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    async fn process(&self, work: &Work) -> Result<(), Error> {
        match work {
            Work::Attempt(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.orphan_dependents(uid).await,
            Work::Foreground(uid) => self.process_foreground(uid).await,
        }
    }

    /// Kubernetes' `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.node(uid) else {
            return Ok(());
        };
        if node.deleting {
            if node.has_finalizer(FOREGROUND) {
                return self.process_foreground(uid).await;
            }
            return Ok(());
        }
        let mut owners = Vec::with_capacity(node.owners.len());
        for r in &node.owners {
            owners.push((
                r.clone(),
                self.owner_state(node.namespace.as_deref(), r).await?,
            ));
        }
        let has_dependents = !self.dependents(uid).is_empty();
        match logic::attempt_to_delete(&owners, &node.finalizers, has_dependents) {
            Verdict::Keep => Ok(()),
            Verdict::RemoveOwners(uids) => self.remove_owner_refs(&node, uid, &uids).await,
            Verdict::Delete(policy) => {
                tracing::debug!(kind = %node.kind.resource.kind, name = %node.name, policy = policy.as_str(), "collecting garbage");
                let dp = DeleteParams {
                    propagation_policy: Some(match policy {
                        Propagation::Background => PropagationPolicy::Background,
                        Propagation::Foreground => PropagationPolicy::Foreground,
                        Propagation::Orphan => PropagationPolicy::Orphan,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self
                    .api_for(&node.kind, node.namespace.as_deref())
                    .delete(&node.name, &dp)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
                    Err(e) => {
                        Err(e).ctx(|| format!("deleting {} {}", node.kind.resource.kind, node.name))
                    }
                }
            }
        }
    }

    /// Classifies one owner reference, from the graph or a live read.
    async fn owner_state(
        &self,
        namespace: Option<&str>,
        r: &OwnerReference,
    ) -> Result<OwnerState, Error> {
        if let Some(owner) = self.node(&r.uid) {
            return Ok(if owner.deleting && owner.has_finalizer(FOREGROUND) {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            });
        }
        let (group, _) = split_api_version(&r.api_version);
        let kind = self
            .kinds
            .lock()
            .get(&(group.to_string(), r.kind.clone()))
            .cloned();
        let Some(kind) = kind else {
            return Ok(OwnerState::Unknown);
        };
        let api = self.api_for(&kind, namespace);
        let found = api
            .get_opt(&r.name)
            .await
            .ctx(|| format!("looking up owner {} {}", r.kind, r.name))?;
        Ok(match found {
            None => OwnerState::Dangling,
            Some(o) if o.uid().as_deref() != Some(r.uid.as_str()) => OwnerState::Dangling,
            Some(o)
                if o.metadata.deletion_timestamp.is_some()
                    && o.finalizers().iter().any(|f| f == FOREGROUND) =>
            {
                OwnerState::Waiting
            }
            Some(_) => OwnerState::Solid,
        })
    }

    /// Removes references to `owner_uids` from an object (fresh read,
    /// resourceVersion-guarded merge patch).
    async fn remove_owner_refs(
        &self,
        node: &Node,
        uid: &str,
        owner_uids: &[String],
    ) -> Result<(), Error> {
        let api = self.api_for(&node.kind, node.namespace.as_deref());
        let Some(fresh) = api
            .get_opt(&node.name)
            .await
            .ctx(|| format!("reading {}", node.name))?
        else {
            return Ok(());
        };
        if fresh.uid().as_deref() != Some(uid) {
            return Ok(());
        }
        let Some(kept) = logic::without_owners(fresh.owner_references(), owner_uids) else {
            return Ok(());
        };
        let refs = if kept.is_empty() {
            serde_json::Value::Null
        } else {
            json!(kept)
        };
        let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": fresh.resource_version()}});
        api.patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ctx(|| {
                format!(
                    "removing owner references from {} {}",
                    node.kind.resource.kind, node.name
                )
            })?;
        Ok(())
    }

    /// Removes `finalizer` from an object (fresh read, guarded patch).
    async fn remove_finalizer(&self, node: &Node, uid: &str, finalizer: &str) -> Result<(), Error> {
        let api = self.api_for(&node.kind, node.namespace.as_deref());
        let Some(fresh) = api
            .get_opt(&node.name)
            .await
            .ctx(|| format!("reading {}", node.name))?
        else {
            return Ok(());
        };
        if fresh.uid().as_deref() != Some(uid) {
            return Ok(());
        }
        let Some(kept) = logic::without_finalizer(fresh.finalizers(), finalizer) else {
            return Ok(());
        };
        let fins = if kept.is_empty() {
            serde_json::Value::Null
        } else {
            json!(kept)
        };
        let patch =
            json!({"metadata": {"finalizers": fins, "resourceVersion": fresh.resource_version()}});
        match api
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e).ctx(|| format!("removing finalizer {finalizer} from {}", node.name)),
        }
    }

    /// Orphan deletion: strip the owner from every dependent, then drop the
    /// `orphan` finalizer.
    async fn orphan_dependents(&self, uid: &str) -> Result<(), Error> {
        let Some(owner) = self.node(uid) else {
            return Ok(());
        };
        if !owner.deleting || !owner.has_finalizer(ORPHAN) {
            return Ok(());
        }
        for (dep_uid, dep) in self.dependents(uid) {
            self.remove_owner_refs(&dep, &dep_uid, &[uid.to_string()])
                .await?;
        }
        self.remove_finalizer(&owner, uid, ORPHAN).await
    }

    /// Foreground deletion: delete dependents; drop `foregroundDeletion`
    /// once no dependent blocks the owner.
    async fn process_foreground(&self, uid: &str) -> Result<(), Error> {
        let Some(owner) = self.node(uid) else {
            return Ok(());
        };
        if !owner.deleting || !owner.has_finalizer(FOREGROUND) {
            return Ok(());
        }
        let deps = self.dependents(uid);
        let blocking = deps
            .iter()
            .filter(|(_, d)| logic::blocks_owner(&d.owners, uid))
            .count();
        if blocking == 0 {
            return self.remove_finalizer(&owner, uid, FOREGROUND).await;
        }
        for (dep_uid, dep) in deps {
            if !dep.deleting || dep.has_finalizer(FOREGROUND) {
                self.push(Work::Attempt(dep_uid));
            }
        }
        Ok(())
    }
}
