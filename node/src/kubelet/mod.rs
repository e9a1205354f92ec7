//! The kubelet: pod workers that turn pods bound to this node into running containers.
//!
//! Start at [`pods::run`], which watches the pods with `spec.nodeName` = this node and keeps
//! one [`worker`] per pod. A worker syncs level-triggered: from the pod spec and what its
//! runtimes report it decides what to do next (create the [`sandbox`], set up volumes, start
//! init containers in order, then containers, restart with [`backoff`]), and posts the status
//! computed by the pure modules [`record`] and [`phase`]. Events go through [`events`].

pub mod backoff;
pub mod env;
pub mod events;
pub mod metrics;
pub mod phase;
pub mod pods;
pub mod probes;
pub mod pull;
pub mod record;
pub mod sandbox;
pub mod select;
mod start;
pub mod static_pods;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use parking_lot::RwLock;

use crate::network::PodNetwork;

/// Settings of the pod workers.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// This node's name.
    pub node_name: String,
    /// The node's IP (`status.hostIP`).
    pub node_ip: IpAddr,
    /// Pod directories (volumes).
    pub pods_dir: PathBuf,
    /// Container logs: `<logs>/<ns>_<pod>_<uid>/<container>/<restart>.log`.
    pub logs_dir: PathBuf,
    /// Resync period of every worker.
    pub resync: Duration,
    /// Back-off bounds (10 s / 300 s in Kubernetes; tests shorten them).
    pub backoff_initial: Duration,
    /// Maximum back-off.
    pub backoff_max: Duration,
    /// Allocatable CPU cores (resourceFieldRef defaults).
    pub allocatable_cpu: f64,
    /// Allocatable memory bytes.
    pub allocatable_memory: f64,
}

impl KubeletConfig {
    /// Defaults for node `node_name` with data under `data_dir`.
    pub fn new(node_name: &str, node_ip: IpAddr, data_dir: &std::path::Path) -> Self {
        KubeletConfig {
            node_name: node_name.to_owned(),
            node_ip,
            pods_dir: data_dir.join("pods"),
            logs_dir: data_dir.join("logs"),
            resync: Duration::from_secs(10),
            backoff_initial: backoff::INITIAL,
            backoff_max: backoff::MAX,
            allocatable_cpu: 1.0,
            allocatable_memory: 1024.0 * 1024.0 * 1024.0,
        }
    }
}

/// What the kubelet server needs to know about a running pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEntry {
    /// The pod's UID.
    pub uid: String,
    /// Its IP.
    pub ip: Option<IpAddr>,
    /// Its network namespace.
    pub netns: Option<PathBuf>,
    /// Container name → (handler, runtime id of the current run, restart count, running).
    pub containers: BTreeMap<String, (String, String, i32, bool)>,
}

/// Pods this kubelet runs, by `(namespace, name)`; read by the kubelet server.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    inner: Arc<RwLock<HashMap<(String, String), PodEntry>>>,
}

impl PodIndex {
    /// Replace the entry of a pod.
    pub fn set(&self, namespace: &str, name: &str, entry: PodEntry) {
        self.inner
            .write()
            .insert((namespace.to_owned(), name.to_owned()), entry);
    }

    /// Remove a pod.
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let mut map = self.inner.write();
        let key = (namespace.to_owned(), name.to_owned());
        if map.get(&key).is_some_and(|e| e.uid == uid) {
            map.remove(&key);
        }
    }

    /// How many pods have a sandbox, and their containers by state.
    pub fn census(&self) -> Census {
        let map = self.inner.read();
        let mut census = Census::default();
        for entry in map.values().filter(|e| e.ip.is_some()) {
            census.pods += 1;
            for (_, _, _, running) in entry.containers.values() {
                if *running {
                    census.running_containers += 1;
                } else {
                    census.exited_containers += 1;
                }
            }
        }
        census
    }

    /// The entry of a pod.
    pub fn get(&self, namespace: &str, name: &str) -> Option<PodEntry> {
        self.inner
            .read()
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// Counts over the [`PodIndex`] ([`PodIndex::census`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Pods with a sandbox.
    pub pods: usize,
    /// Their running containers.
    pub running_containers: usize,
    /// Their containers that ran and ended (waiting for a restart, or done).
    pub exited_containers: usize,
}

/// Everything a pod worker shares with the others.
pub struct Kubelet {
    /// The API client.
    pub client: Client,
    /// Settings.
    pub config: KubeletConfig,
    /// Runtime choice and access.
    pub selector: select::Selector,
    /// The pod network.
    pub network: Arc<dyn PodNetwork>,
    /// Events.
    pub recorder: events::Recorder,
    /// Running pods, for the server.
    pub index: PodIndex,
    /// Prometheus metrics (`/metrics` on the kubelet server).
    pub metrics: Arc<metrics::KubeletMetrics>,
}

impl Kubelet {
    /// The log directory of a pod.
    pub fn pod_log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.config
            .logs_dir
            .join(format!("{namespace}_{name}_{uid}"))
    }
}
