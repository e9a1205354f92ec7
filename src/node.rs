//! The node agent: inside `skiff up` (over the in-process client) and as its
//! own process, `skiff node --kubeconfig K [--server URL]` over HTTPS.
//!
//! This module builds the runtimes the node offers (Wasmtime always, Docker
//! when a daemon answers, and later when one comes back) and the node's
//! config from flags; `skiff_node::run_node` does the rest.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use skiff_control_plane::pki::Pki;
use skiff_node::{NetworkConfig, NetworkMode, NodeConfig, ServerConfig};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::docker::{DockerConfig, DockerRuntime};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};

use crate::cli::{NodeArgs, NodeFlags};

/// The node's runtimes and a line per runtime for the start-up output.
pub struct Runtimes {
    /// Handler name → runtime.
    pub registry: RuntimeRegistry,
    /// E.g. `wasmtime: yes`, `docker: no (no daemon at unix:///var/run/docker.sock ...)`.
    pub report: Vec<String>,
}

/// Wasmtime (images and compile cache under `data_dir`) and Docker on `docker_socket`.
///
/// Docker is registered even when its daemon is down: OCI pods then report a clear reason
/// and start once dockerd is back.
pub async fn build_runtimes(
    data_dir: &Path,
    node_name: &str,
    docker_socket: &Path,
) -> anyhow::Result<Runtimes> {
    let mut registry = RuntimeRegistry::new();
    let mut report = Vec::new();
    let wasmtime = WasmtimeRuntime::new(WasmtimeConfig::new(data_dir))
        .context("starting the Wasmtime runtime")?;
    registry.register(Arc::new(wasmtime));
    report.push("wasmtime: yes".to_owned());

    let docker = DockerRuntime::new(DockerConfig {
        socket: docker_socket.to_path_buf(),
        ..DockerConfig::new(node_name)
    });
    let line = if !docker_socket.exists() {
        format!(
            "docker: no (no socket at {}; install docker.io and start dockerd for OCI pods)",
            docker_socket.display()
        )
    } else if docker.available().await {
        match docker.daemon_version().await {
            Ok(version) => format!("docker: yes (dockerd {version})"),
            Err(_) => "docker: yes".to_owned(),
        }
    } else {
        format!(
            "docker: no (dockerd does not answer at {}; OCI pods wait for it)",
            docker.endpoint()
        )
    };
    report.push(line);
    registry.register(Arc::new(docker));
    registry
        .set_default("wasmtime")
        .context("choosing the default runtime")?;
    Ok(Runtimes { registry, report })
}

/// Stops every container of the node's runtimes (SIGTERM, then SIGKILL after `grace`) and
/// removes their sandboxes, so no pod outlives the process. A restart on the same data dir
/// starts the pods again.
pub async fn stop_all_pods(registry: &RuntimeRegistry, grace: std::time::Duration) {
    let runtimes: Vec<_> = registry
        .handlers()
        .filter_map(|h| registry.get(h).ok())
        .collect();
    // Pod workers that were just aborted may still finish a sandbox they were starting, so
    // passes repeat until one finds nothing left (a sandbox left at exit keeps its network
    // namespace mounted).
    for _ in 0..20 {
        let stops = runtimes.iter().map(|runtime| async move {
            let containers = runtime.list_containers(None).await.unwrap_or_default();
            futures::future::join_all(containers.iter().map(|c| async move {
                match runtime.stop_container(&c.id, grace).await {
                    // Removed since it was listed (its pod's deletion finished meanwhile).
                    Ok(()) | Err(skiff_runtimes::Error::ContainerNotFound { .. }) => {}
                    Err(err) => tracing::warn!(container = %c.name, %err, "cannot stop container"),
                }
                let _ = runtime.remove_container(&c.id).await;
            }))
            .await;
            let sandboxes = runtime.list_sandboxes().await.unwrap_or_default();
            for sandbox in &sandboxes {
                let _ = runtime.stop_sandbox(&sandbox.id).await;
                match runtime.remove_sandbox(&sandbox.id).await {
                    Ok(()) | Err(skiff_runtimes::Error::SandboxNotFound { .. }) => {}
                    Err(err) => {
                        tracing::warn!(pod = %sandbox.name, %err, "cannot remove pod sandbox")
                    }
                }
            }
            containers.len() + sandboxes.len()
        });
        let found: usize = futures::future::join_all(stops).await.into_iter().sum();
        if found == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The node's name from `--node-name` or the host name.
pub fn node_name(flags: &NodeFlags) -> String {
    flags
        .node_name
        .clone()
        .unwrap_or_else(skiff_node::host::default_node_name)
}

/// A [`NodeConfig`] from the flags. `node_ip` is the address the node advertises and the
/// kubelet server listens on; `serving` its certificate.
pub fn node_config(
    flags: &NodeFlags,
    name: &str,
    data_dir: &Path,
    node_ip: IpAddr,
    serving: Option<Serving>,
) -> anyhow::Result<NodeConfig> {
    let cluster_cidr = flags.cluster_cidr.parse().with_context(|| {
        format!(
            "--cluster-cidr {:?} is not an IPv4 CIDR",
            flags.cluster_cidr
        )
    })?;
    let mode = match flags.pod_network.as_str() {
        "auto" => NetworkMode::Auto,
        "host" => NetworkMode::Host,
        other => anyhow::bail!("unknown --pod-network {other:?}: use auto or host"),
    };
    Ok(NodeConfig {
        node_name: name.to_owned(),
        // Per node: several `skiff node` processes may share one data dir (and its CA).
        data_dir: data_dir.join("nodes").join(name),
        max_pods: flags.max_pods,
        node_ip: Some(node_ip),
        network: NetworkConfig {
            mode,
            bridge: flags.pod_bridge.clone(),
            cluster_cidr,
            ..NetworkConfig::default()
        },
        server: serving.map(|s| ServerConfig {
            addr: SocketAddr::new(node_ip, flags.kubelet_port),
            cert_pem: s.cert_pem,
            key_pem: s.key_pem,
            // Only the cluster's own clients (the API server) may use the kubelet API.
            client_ca_pem: Some(s.ca_pem),
        }),
        kubelet_port: flags.kubelet_port,
        pod_manifest_path: flags.pod_manifest_path.clone(),
        events: skiff_node::EventLimit {
            qps: flags.event_qps,
            burst: flags.event_burst,
        },
        ..NodeConfig::default()
    })
}

/// The kubelet server's certificate and the CA its clients must present certificates of.
pub struct Serving {
    /// Serving certificate, PEM.
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
    /// The cluster CA, PEM.
    pub ca_pem: String,
}

/// The kubelet's serving certificate, signed by the cluster CA so the API server trusts it.
pub fn serving_cert(pki: &Pki, name: &str, node_ip: IpAddr) -> anyhow::Result<Serving> {
    let mut ips = vec![node_ip];
    if !node_ip.is_loopback() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    let pair = pki
        .issue_serving_cert(name, &ips, &[name.to_owned(), "localhost".to_owned()])
        .context("issuing the kubelet serving certificate")?;
    Ok(Serving {
        cert_pem: pair.cert_pem,
        key_pem: pair.key_pem,
        ca_pem: pki.ca.cert_pem.clone(),
    })
}

/// `skiff node --kubeconfig K`: a node agent in its own process.
pub async fn node_main(args: NodeArgs) -> anyhow::Result<()> {
    let data_dir = args.data.resolve();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let client = match &args.server {
        Some(server) => client_for_server(&args.kubeconfig, server).await?,
        None => crate::components::client_from_kubeconfig(&args.kubeconfig).await?,
    };
    let name = node_name(&args.node);
    let node_ip = args.node.node_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    // The CA under the data dir signs the kubelet's serving certificate: share the API
    // server's data dir (or copy its pki/) so the API server trusts it.
    let pki_dir = data_dir.join("pki");
    if !pki_dir.join("ca.key").exists() {
        tracing::warn!(
            dir = %pki_dir.display(),
            "no cluster CA here: a new one signs the kubelet certificate, and the API server \
             will not trust it for logs, exec and port-forward; pass the API server's --data-dir"
        );
    }
    let pki = Pki::load_or_create(&pki_dir, &[node_ip], &[]).context("preparing certificates")?;
    let serving = serving_cert(&pki, &name, node_ip)?;
    let config = node_config(&args.node, &name, &data_dir, node_ip, Some(serving))?;
    let runtimes = build_runtimes(&data_dir, &name, &args.node.docker_socket).await?;
    println!("skiff: node {name} starting");
    for line in &runtimes.report {
        println!("skiff:   {line}");
    }
    let registry = runtimes.registry.clone();
    tokio::select! {
        result = skiff_node::run_node(client, runtimes.registry, config) => {
            result.context("node agent stopped")?;
        }
        () = crate::up::wait_for_shutdown() => {
            println!("skiff: node shutting down: stopping its pods");
            stop_all_pods(
                &registry,
                std::time::Duration::from_secs(args.node.shutdown_grace_period),
            )
            .await;
        }
    }
    Ok(())
}

async fn client_for_server(kubeconfig: &PathBuf, server: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading kubeconfig")?;
    config.cluster_url = server
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    Ok(kube::Client::try_from(config)?)
}
