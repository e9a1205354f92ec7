//! The controller manager: Kubernetes' reconciliation loops (ReplicaSet,
//! Deployment, …) as kube-runtime `Controller`s, talking to the API server
//! only through a `kube::Client`.
//!
//! Start at [`run`]: it optionally wins the `kube-system/kube-controller-manager`
//! Lease, starts the shared [`informer`]s and every enabled controller, one
//! file (or folder) per controller. Each `reconcile(Arc<Obj>, Arc<Ctx>)` is
//! level-triggered and idempotent; the decisions it makes live in pure,
//! unit-tested functions next to it (`replicaset/logic.rs`, …).

pub mod bench;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod leader;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owners;
pub mod pods;
pub mod replicaset;
pub mod resourcequota;
pub mod serviceaccount;
pub mod statefulset;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, TryFuture};
use kube::Client;
use kube::runtime::controller::{self, Action, Controller};

pub use error::Error;
pub use leader::LeaderElectionConfig;

use informer::Informers;

/// Every controller's name, as `kube-controller-manager --controllers` spells it.
pub const ALL_CONTROLLERS: &[&str] = &[
    "replicaset",
    "deployment",
    "garbagecollector",
    "namespace",
    "serviceaccount",
    "endpoint",
    "endpointslice",
    "job",
    "cronjob",
    "nodelifecycle",
    "nodeipam",
    "daemonset",
    "resourcequota",
    "statefulset",
];

/// Whether the controller manager is healthy, for `componentstatuses` and
/// `/healthz`. Cheap to clone; all clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    /// True once the manager runs its controllers (or waits as a standby).
    pub fn is_healthy(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, healthy: bool) {
        self.0.store(healthy, Ordering::Relaxed);
    }
}

/// Controller manager settings (a plain struct; the binary fills it from flags).
#[derive(Clone, Debug)]
pub struct ControllerManagerConfig {
    /// Controllers to run: `*` for all, a name to enable, `-name` to disable
    /// (as `--controllers`). Default `["*"]`.
    pub controllers: Vec<String>,
    /// Concurrent reconciles per controller (`--concurrent-*-syncs`, default 5).
    pub concurrent_syncs: u16,
    /// After this long without a heartbeat a node becomes `Ready=Unknown` (50 s).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (5 s).
    pub node_monitor_period: Duration,
    /// Default toleration for not-ready/unreachable taints, for pods that
    /// have none (300 s; normally added at admission).
    pub pod_eviction_timeout: Duration,
    /// Pod evictions per second from unhealthy nodes (`--node-eviction-rate`, 0.1).
    pub node_eviction_rate: f64,
    /// Cluster pod CIDR nodes get a `/node_cidr_mask_size` from (10.244.0.0/16).
    pub cluster_cidr: String,
    /// Prefix length of each node's pod CIDR (24).
    pub node_cidr_mask_size: u8,
    /// First delay before a failed Job pod is replaced (10 s); doubles per
    /// consecutive failure.
    pub job_backoff_base: Duration,
    /// Longest delay before a failed Job pod is replaced (6 min).
    pub job_backoff_max: Duration,
    /// How often every ResourceQuota's usage is recounted from scratch
    /// (`--resource-quota-sync-period`, 5 min); deletions and spec changes
    /// trigger a recount at once.
    pub resource_quota_sync_period: Duration,
    /// Run leader election on a Lease before starting controllers.
    pub leader_elect: bool,
    /// Lease settings when `leader_elect` is on.
    pub leader_election: LeaderElectionConfig,
    /// Set while the manager is up.
    pub health: Health,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        ControllerManagerConfig {
            controllers: vec!["*".into()],
            concurrent_syncs: 5,
            node_monitor_grace_period: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
            pod_eviction_timeout: Duration::from_secs(300),
            node_eviction_rate: 0.1,
            cluster_cidr: "10.244.0.0/16".into(),
            node_cidr_mask_size: 24,
            job_backoff_base: Duration::from_secs(10),
            job_backoff_max: Duration::from_secs(360),
            resource_quota_sync_period: Duration::from_secs(300),
            leader_elect: false,
            leader_election: LeaderElectionConfig::default(),
            health: Health::default(),
        }
    }
}

impl ControllerManagerConfig {
    /// True if the controller `name` is enabled by [`Self::controllers`].
    pub fn enabled(&self, name: &str) -> bool {
        let mut on = false;
        for entry in &self.controllers {
            if entry == "*" || entry == name {
                on = true;
            } else if entry.strip_prefix('-') == Some(name) {
                return false;
            }
        }
        on
    }
}

/// What every controller gets: the client, the shared informers and the config.
pub struct Shared {
    /// Client to the API server.
    pub client: Client,
    /// Shared watches.
    pub informers: Informers,
    /// The manager's configuration.
    pub config: ControllerManagerConfig,
}

type ControllerFuture = BoxFuture<'static, Result<(), Error>>;

fn start(name: &str, shared: &Arc<Shared>) -> Option<ControllerFuture> {
    let s = shared.clone();
    Some(match name {
        "replicaset" => replicaset::run(s).boxed(),
        "deployment" => deployment::run(s).boxed(),
        "garbagecollector" => garbagecollector::run(s).boxed(),
        "namespace" => namespace::run(s).boxed(),
        "serviceaccount" => serviceaccount::run(s).boxed(),
        "endpoint" => endpoints::run(s).boxed(),
        "endpointslice" => endpoints::slices::run(s).boxed(),
        "job" => job::run(s).boxed(),
        "cronjob" => cronjob::run(s).boxed(),
        "nodelifecycle" => nodelifecycle::run(s).boxed(),
        "nodeipam" => nodeipam::run(s).boxed(),
        "daemonset" => daemonset::run(s).boxed(),
        "resourcequota" => resourcequota::run(s).boxed(),
        "statefulset" => statefulset::run(s).boxed(),
        _ => return None,
    })
}

/// Runs the controller manager until an error (such as losing the leader
/// lease) or until the future is dropped.
pub async fn run(client: Client, config: ControllerManagerConfig) -> Result<(), Error> {
    let health = config.health.clone();
    let lease = config.leader_election.clone();
    if config.leader_elect {
        // A standby is healthy too.
        health.set(true);
        leader::acquire(&client, &lease).await;
    }
    let shared = Arc::new(Shared {
        client: client.clone(),
        informers: Informers::new(client.clone()),
        config: config.clone(),
    });
    let mut running: Vec<ControllerFuture> = Vec::new();
    for name in ALL_CONTROLLERS {
        if config.enabled(name)
            && let Some(fut) = start(name, &shared)
        {
            tracing::info!(controller = name, "starting controller");
            running.push(fut);
        }
    }
    health.set(true);
    let controllers = futures::future::select_all(
        running
            .into_iter()
            .chain(std::iter::once(futures::future::pending().boxed())),
    );
    let result = if config.leader_elect {
        tokio::select! {
            lost = leader::keep_renewing(&client, &lease) => Err(lost),
            (res, _, _) = controllers => res,
        }
    } else {
        controllers.await.0
    };
    health.set(false);
    result
}

/// Drives one kube-runtime controller with the shared error policy and
/// logging until its trigger streams end.
pub(crate) async fn run_controller<K, Ctx, F, Fut>(
    name: &'static str,
    controller: Controller<K>,
    concurrency: u16,
    reconcile: F,
    ctx: Arc<Ctx>,
) where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    Ctx: Send + Sync + 'static,
    F: FnMut(Arc<K>, Arc<Ctx>) -> Fut + Send + 'static,
    Fut: TryFuture<Ok = Action, Error = Error> + Send + 'static,
{
    controller
        .with_config(controller::Config::default().concurrency(concurrency))
        .run(
            reconcile,
            move |obj: Arc<K>, err: &Error, _ctx| {
                tracing::warn!(controller = name, object = %kube::ResourceExt::name_any(obj.as_ref()), %err, "reconcile failed");
                error::requeue_on_error(err)
            },
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::trace!(controller = name, %err, "controller event");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_selection_matches_the_controllers_flag() {
        let mut c = ControllerManagerConfig::default();
        assert!(c.enabled("replicaset"));
        c.controllers = vec!["*".into(), "-replicaset".into()];
        assert!(!c.enabled("replicaset"));
        assert!(c.enabled("deployment"));
        c.controllers = vec!["deployment".into()];
        assert!(c.enabled("deployment"));
        assert!(!c.enabled("replicaset"));
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(50));
        assert!(!Health::default().is_healthy());
    }
}
