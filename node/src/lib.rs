//! Skiff node agent: the kubelet and the pod network.
//!
//! [`run_node`] is the whole agent: it registers the Node ([`heartbeat`], built by the pure
//! [`node_status`]), sets up the pod network ([`network`]), and runs the pod workers
//! ([`kubelet`]) that turn pods bound to the node into containers on the registered runtimes.
//! [`run_fake_nodes`] simulates many nodes without running anything ([`fake_nodes`]).
//! The kubelet's HTTPS [`server`] serves container logs and port-forward to the API server,
//! which proxies `pods/log` and `pods/portforward` to it.
//!
//! Start reading at [`kubelet::worker`] (one pod's lifecycle) and the pure modules it uses:
//! [`kubelet::phase`], [`kubelet::record`], [`kubelet::backoff`].
//!
//! The agent talks to the API server only through `kube::Client`; it never links the control
//! plane.
//!
//! # Running a node
//!
//! ```ignore
//! let node_ip = skiff_node::host::default_node_ip();
//! // The API server checks the kubelet's certificate against the node's InternalIP.
//! let serving = pki.issue_serving_cert(&name, &[node_ip], &[name.clone()])?;
//! let mut runtimes = RuntimeRegistry::new();
//! runtimes.register(Arc::new(WasmtimeRuntime::new(WasmtimeConfig::new(&wasm_dir))?));
//! runtimes.register(Arc::new(DockerRuntime::new(DockerConfig::new(&name))));
//! let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
//! let config = NodeConfig {
//!     node_name: name,
//!     data_dir: data_dir.join("node"),
//!     node_ip: Some(node_ip),
//!     server: Some(ServerConfig {
//!         addr: "0.0.0.0:10250".parse()?,
//!         cert_pem: serving.cert_pem,
//!         key_pem: serving.key_pem,
//!         // Only clients with a certificate from the cluster CA (the API server's
//!         // kubelet-client certificate, `ApiConfig::kubelet_client_tls`).
//!         client_ca_pem: Some(pki.ca.cert_pem.clone()),
//!     }),
//!     ready: Some(ready_tx),
//!     ..NodeConfig::default()
//! };
//! tokio::spawn(skiff_node::run_node(client, runtimes, config));
//! ready.wait_for(|ready| *ready).await?; // Node Ready=True (needs its pod CIDR first)
//! ```

pub mod config;
mod error;
pub mod fake_nodes;
pub mod heartbeat;
pub mod host;
pub mod kubelet;
pub mod network;
pub mod node_status;
pub mod server;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use skiff_runtimes::RuntimeRegistry;
use tokio::sync::watch;

pub use config::{
    CONTROL_PLANE_ROLE_LABEL, FakeNodesConfig, NetworkConfig, NetworkMode, NodeConfig,
    PodCidrSource, ServerConfig,
};
pub use error::Error;
pub use fake_nodes::run_fake_nodes;
pub use kubelet::events::EventLimit;

use crate::heartbeat::{NodeRegistrar, Readiness};
use crate::host::HostInfo;
use crate::kubelet::{Kubelet, KubeletConfig, PodIndex};
use crate::network::{BridgeNetwork, HostNetwork, PodNetwork};
use crate::node_status::StatusInputs;

fn pod_cidr_of(node: &Node) -> Option<ipnet::Ipv4Net> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .and_then(|c| c.parse().ok())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Run the node agent until the returned future is dropped or a fatal error happens.
///
/// Starts the kubelet HTTPS server (when [`NodeConfig::server`] is set), registers the Node
/// (retrying until the API server answers), renews its Lease, sets up the pod network, and
/// runs the pods bound to it. [`NodeConfig::ready`] is set to `true` once the Node is
/// registered with condition Ready=True (runtimes registered and, with a pod network, the
/// bridge configured for the node's pod CIDR).
pub async fn run_node(
    client: Client,
    runtimes: RuntimeRegistry,
    config: NodeConfig,
) -> Result<(), Error> {
    if config.node_name.is_empty() {
        return Err(Error::Config("node name must not be empty".to_owned()));
    }
    for dir in [config.pods_dir(), config.logs_dir(), config.network_dir()] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            context: "create directory",
            path: dir.clone(),
            source,
        })?;
    }
    let host = HostInfo::detect(&config.data_dir, config.node_ip);
    let mut tasks = tokio::task::JoinSet::new();
    let index = PodIndex::default();
    let metrics = Arc::new(kubelet::metrics::KubeletMetrics::new());

    // The kubelet HTTPS server first: the port it bound is the one the Node advertises.
    let kubelet_port = match &config.server {
        Some(server_config) => {
            let tls = server::tls_config(
                &server_config.cert_pem,
                &server_config.key_pem,
                server_config.client_ca_pem.as_deref(),
            )?;
            let state = server::ServerState {
                index: index.clone(),
                logs_dir: config.logs_dir(),
                runtimes: runtimes.clone(),
                metrics: metrics.clone(),
            };
            let (addr, serving) =
                server::serve(server_config.addr, server::router(state), tls).await?;
            tracing::info!(%addr, "kubelet server listening");
            tasks.spawn(serving);
            addr.port()
        }
        None => config.kubelet_port,
    };

    // Pod network.
    let pod_network_possible = skiff_runtimes::netns::supported();
    let bridge = match config.network.mode {
        NetworkMode::Host => None,
        NetworkMode::Auto if !pod_network_possible => {
            tracing::warn!(
                "cannot create network namespaces (not root?): pods use host networking"
            );
            None
        }
        NetworkMode::Auto => Some(BridgeNetwork::new(network::bridge::BridgeConfig {
            bridge: config.network.bridge.clone(),
            state_dir: config.network_dir(),
            masquerade: config.network.masquerade,
            cluster_cidr: config.network.cluster_cidr,
        })),
    };
    let network: Arc<dyn PodNetwork> = match &bridge {
        Some(b) => Arc::new(b.clone()),
        None => Arc::new(HostNetwork {
            node_ip: host.internal_ip,
        }),
    };

    // Readiness: runtimes registered and, with a pod network, the bridge configured.
    let handlers: Vec<String> = runtimes.handlers().map(str::to_owned).collect();
    let runtimes_ready = !handlers.is_empty();
    let initial = if !runtimes_ready {
        Readiness::not_ready("container runtime is not ready: no runtime is registered")
    } else if bridge.is_some() {
        Readiness::not_ready(
            "container runtime network not ready: pod network not configured yet \
             (waiting for node.spec.podCIDR)",
        )
    } else {
        Readiness::ready()
    };
    let (readiness_tx, readiness_rx) = watch::channel(initial.clone());

    // Node registration and heartbeats.
    let inputs = StatusInputs {
        max_pods: config.max_pods,
        runtime_handlers: handlers.clone(),
        kubelet_port,
        ready: initial.ready,
        not_ready_message: initial.message.clone(),
    };
    let mut registrar = NodeRegistrar::new(
        client.clone(),
        config.node_name.clone(),
        host.clone(),
        inputs,
    );
    registrar.labels = node_status::node_labels(&config.node_name, &host, &config.labels);
    registrar.data_dir = config.data_dir.clone();
    registrar.heartbeat = config.heartbeat;
    registrar.report_interval = config.status_report_interval;
    if let PodCidrSource::Static(cidr) = &config.network.pod_cidr {
        registrar.static_pod_cidr = Some(cidr.to_string());
    }
    let (node_tx, mut node_rx) = watch::channel::<Option<Node>>(None);
    tasks.spawn(registrar.run(readiness_rx, node_tx));

    // The pod CIDR configures the bridge: a static one at once, an assigned one when the
    // node gets it (or it changes).
    if let Some(bridge) = bridge.clone() {
        let client = client.clone();
        let node_name = config.node_name.clone();
        let source = config.network.pod_cidr.clone();
        tasks.spawn(async move {
            let configure = |cidr: ipnet::Ipv4Net| {
                let bridge = bridge.clone();
                let readiness = readiness_tx.clone();
                async move {
                    match bridge.configure(cidr).await {
                        Ok(()) if runtimes_ready => {
                            readiness.send_if_modified(|r| {
                                let changed = !r.ready;
                                *r = Readiness::ready();
                                changed
                            });
                        }
                        Ok(()) => {}
                        Err(error) => {
                            tracing::error!(%error, "pod network setup failed");
                            readiness.send_replace(Readiness::not_ready(format!(
                                "container runtime network not ready: {error}"
                            )));
                        }
                    }
                }
            };
            match source {
                PodCidrSource::Static(cidr) => configure(cidr).await,
                PodCidrSource::Assigned => {
                    let api: Api<Node> = Api::all(client);
                    let watch_config =
                        watcher::Config::default().fields(&format!("metadata.name={node_name}"));
                    let mut stream = watcher::watcher(api, watch_config)
                        .default_backoff()
                        .applied_objects()
                        .boxed();
                    while let Some(event) = stream.next().await {
                        match event {
                            Ok(node) => {
                                if let Some(cidr) = pod_cidr_of(&node) {
                                    configure(cidr).await;
                                }
                            }
                            Err(error) => tracing::debug!(%error, "node watch failed; retrying"),
                        }
                    }
                }
            }
            std::future::pending::<()>().await;
        });
    }

    // Ready signal.
    if let Some(ready) = config.ready.clone() {
        tasks.spawn(async move {
            if node_rx
                .wait_for(|node| node.as_ref().is_some_and(is_ready))
                .await
                .is_ok()
            {
                ready.send_replace(true);
            }
            std::future::pending::<()>().await;
        });
    }

    // Sandboxes an earlier agent of this node left behind (killed before it could stop its
    // pods) belong to no worker: remove them before the workers start their own.
    remove_orphans(&runtimes).await;

    // Pod workers.
    let mut kubelet_config =
        KubeletConfig::new(&config.node_name, host.internal_ip, &config.data_dir);
    kubelet_config.resync = config.resync;
    (kubelet_config.backoff_initial, kubelet_config.backoff_max) = config.crash_loop_backoff;
    kubelet_config.allocatable_cpu = f64::from(host.cpus);
    kubelet_config.allocatable_memory = host.memory_bytes as f64;
    let kubelet = Arc::new(Kubelet {
        client: client.clone(),
        config: kubelet_config,
        selector: kubelet::select::Selector::new(client.clone(), runtimes.clone()),
        network,
        recorder: kubelet::events::Recorder::new(
            client.clone(),
            config.node_name.clone(),
            config.events,
        ),
        index,
        metrics,
    });
    tasks.spawn(kubelet::pods::run(kubelet.clone()));

    // Static pods.
    if let Some(dir) = config.pod_manifest_path.clone() {
        tasks.spawn(kubelet::static_pods::run(
            client.clone(),
            config.node_name.clone(),
            dir,
            config.static_pod_rescan,
        ));
    }

    tracing::info!(
        node = %config.node_name,
        runtimes = %handlers.join(","),
        pod_network = bridge.is_some(),
        kubelet_port,
        "node agent started"
    );
    while let Some(result) = tasks.join_next().await {
        if let Err(e) = result
            && e.is_panic()
        {
            return Err(Error::Panicked(e.to_string()));
        }
    }
    Ok(())
}

/// Removes every sandbox (and container) an earlier agent of this node left in each runtime.
/// No sandbox is adopted across restarts, so none is kept; a runtime that cannot be asked (a
/// Docker daemon that is down) is logged and skipped.
async fn remove_orphans(runtimes: &RuntimeRegistry) {
    let keep = std::collections::HashSet::new();
    for handler in runtimes.handlers() {
        let Ok(runtime) = runtimes.get(handler) else {
            continue;
        };
        match runtime.remove_orphans(&keep).await {
            Ok(removed) => tracing::debug!(runtime = handler, ?removed, "orphans removed"),
            Err(err) => {
                tracing::warn!(runtime = handler, %err, "could not remove sandboxes left by an earlier agent")
            }
        }
    }
}
