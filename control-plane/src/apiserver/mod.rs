//! The Kubernetes API server: an axum router generic over resource kinds.
//!
//! Start reading at [`ApiServer`] (construction, bootstrap, background
//! tasks) and [`router`]. Requests are parsed in [`path`] and [`params`],
//! dispatched by [`handlers`] to the HTTP-free operations in [`ops`]
//! (create/update/patch/delete/list over the [`crate::store::Store`]), and
//! rendered through [`negotiate`] (JSON, YAML, Table, PartialObjectMetadata).
//! Each kind is data: a [`kinds::Resource`] whose [`kinds::KindId`] selects
//! defaulting ([`defaults`]), validation ([`validation`]) and printing
//! ([`table`]). Custom resources come from CRDs ([`crd`]).

pub mod admission;
pub mod body;
pub mod bootstrap;
pub mod componentstatus;
pub mod crd;
pub mod defaults;
pub mod discovery;
pub mod errors;
pub mod events_v1;
pub mod handlers;
pub mod ipalloc;
pub mod kinds;
pub mod kubelet_proxy;
pub mod metrics;
pub mod namespace_finalizer;
pub mod negotiate;
pub mod objects;
pub mod openapi;
pub mod ops;
pub mod params;
pub mod patch;
pub mod path;
pub mod protobuf;
pub mod registry;
pub mod resource;
pub mod schema;
pub mod selectors;
pub mod table;
pub mod validation;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::store::Store;
pub use errors::{ApiError, ApiResult};
pub use handlers::router;

/// A health probe for one control-plane component (`componentstatuses`).
pub type ComponentProbe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// API server settings. Plain data with defaults; the binary fills it from flags.
#[derive(Clone)]
pub struct ApiConfig {
    /// `host:port` clients should use (discovery `serverAddressByClientCIDRs`,
    /// the `kubernetes` Service's endpoint).
    pub advertise_address: String,
    /// Largest accepted request body (Kubernetes: 3 MiB).
    pub max_body_bytes: usize,
    /// Component probes by name (`scheduler`, `controller-manager`); the store
    /// is reported as `etcd-0`.
    pub component_probes: BTreeMap<String, ComponentProbe>,
    /// Service cluster IP range (first address goes to the `kubernetes` Service).
    pub service_cidr: String,
    /// NodePort range, inclusive.
    pub node_port_range: (u16, u16),
    /// Interval of watch BOOKMARK events when the client allows them.
    pub bookmark_interval: Duration,
    /// Watch timeout when the client sets none.
    pub default_watch_timeout: Duration,
    /// How often the built-in namespace finalizer rescans.
    pub namespace_resync: Duration,
    /// `gitVersion` reported by `/version`.
    pub git_version: String,
    /// TLS client config for kubelets (`pods/log`, `exec`, `attach`,
    /// `portforward` are proxied to them); `None` answers 503.
    pub kubelet_client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            advertise_address: "127.0.0.1:6443".to_string(),
            max_body_bytes: 3 * 1024 * 1024,
            component_probes: BTreeMap::new(),
            service_cidr: "10.96.0.0/12".to_string(),
            node_port_range: (30000, 32767),
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            namespace_resync: Duration::from_secs(5),
            git_version: format!("v1.33.0-skiff.{}", env!("CARGO_PKG_VERSION")),
            kubelet_client_tls: None,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("advertise_address", &self.advertise_address)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "component_probes",
                &self.component_probes.keys().collect::<Vec<_>>(),
            )
            .field("service_cidr", &self.service_cidr)
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    config: ApiConfig,
    registry: registry::Registry,
    metrics: metrics::Metrics,
    namespace_wakeup: Notify,
    closed: AtomicBool,
}

/// Shared state of the router and background tasks. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

impl ApiState {
    /// State over a store with the given settings.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        ApiState {
            inner: Arc::new(Inner {
                store,
                config,
                registry: registry::Registry::new(),
                metrics: metrics::Metrics::new(),
                namespace_wakeup: Notify::new(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The resource registry.
    pub fn registry(&self) -> &registry::Registry {
        &self.inner.registry
    }

    /// Request metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// Wakes the namespace finalizer (a namespace started terminating).
    pub fn wake_namespace_finalizer(&self) {
        self.inner.namespace_wakeup.notify_one();
    }

    pub(crate) fn namespace_wakeup(&self) -> &Notify {
        &self.inner.namespace_wakeup
    }

    /// True once [`ApiState::close`] was called: background tasks stop.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Relaxed)
    }

    /// Asks background tasks to stop.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.namespace_wakeup.notify_one();
    }
}

/// Background tasks of an API server; aborted when dropped.
pub struct BackgroundTasks {
    handles: Vec<JoinHandle<()>>,
}

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// The API server: state plus its router and background tasks.
pub struct ApiServer {
    state: ApiState,
}

impl ApiServer {
    /// An API server over `store`. Call [`ApiServer::bootstrap`] and
    /// [`ApiServer::spawn_background`] before serving.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        ApiServer {
            state: ApiState::new(store, config),
        }
    }

    /// The shared state.
    pub fn state(&self) -> ApiState {
        self.state.clone()
    }

    /// The axum router (no TLS); serve it or use it as a tower service.
    pub fn router(&self) -> axum::Router {
        router(self.state.clone())
    }

    /// Creates the default namespaces and the `kubernetes` Service if
    /// missing, and loads stored CRDs into the registry.
    pub async fn bootstrap(&self) -> ApiResult<()> {
        bootstrap::run(&self.state).await
    }

    /// [`ApiServer::new`] + [`ApiServer::bootstrap`] + [`ApiServer::spawn_background`].
    pub async fn start(
        store: Arc<dyn Store>,
        config: ApiConfig,
    ) -> ApiResult<(ApiServer, BackgroundTasks)> {
        let server = ApiServer::new(store, config);
        server.bootstrap().await?;
        let tasks = server.spawn_background();
        Ok((server, tasks))
    }

    /// Starts the CRD registry watch and the built-in namespace finalizer.
    pub fn spawn_background(&self) -> BackgroundTasks {
        let handles = vec![
            tokio::spawn(crd::watch_crds(self.state.clone())),
            tokio::spawn(namespace_finalizer::run(self.state.clone())),
        ];
        BackgroundTasks { handles }
    }
}
