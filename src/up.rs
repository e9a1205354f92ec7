//! `skiff up` and `skiff apiserver`: compose the store, the API server and
//! (in `up`) the other components in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer};
use skiff_control_plane::pki::{self, Pki};
use skiff_control_plane::serve;
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

use crate::cli::{ServerArgs, UpArgs};

/// A running API server with its addresses and credentials.
pub struct RunningApi {
    /// The API server.
    pub api: ApiServer,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The kubeconfig written for the admin.
    pub kubeconfig: PathBuf,
    /// The HTTPS server task.
    pub task: tokio::task::JoinHandle<()>,
    /// The API server's own background tasks (stopped on drop).
    pub background: skiff_control_plane::apiserver::BackgroundTasks,
    /// The cluster's certificates (the node's kubelet serving certificate comes from its CA).
    pub pki: Pki,
}

fn open_store(args: &ServerArgs, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match args.store.as_str() {
        "redb" => {
            let path = data_dir.join("store.redb");
            Arc::new(
                RedbStore::open(&path, RedbConfig::default())
                    .with_context(|| format!("opening the store {}", path.display()))?,
            )
        }
        "memory" => Arc::new(MemoryStore::new()),
        other => anyhow::bail!("unknown --store {other:?}: use redb or memory"),
    })
}

/// Health of the components that run beside the API server, for `componentstatuses`.
#[derive(Clone, Default)]
pub struct ComponentHealth {
    /// The scheduler's health, if one runs in this process.
    pub scheduler: Option<skiff_control_plane::scheduler::Health>,
    /// The controller manager's health, if one runs in this process.
    pub controller_manager: Option<skiff_control_plane::controllers::Health>,
}

/// Starts the store, the PKI and the API server over HTTPS, and writes the kubeconfig.
pub async fn start_api(args: &ServerArgs, health: ComponentHealth) -> anyhow::Result<RunningApi> {
    let data_dir = args.data.resolve();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let store = open_store(args, &data_dir)?;
    let pki = Pki::load_or_create(&data_dir.join("pki"), &[args.bind_address], &[])
        .context("preparing certificates")?;

    let addr = SocketAddr::new(args.bind_address, args.api_port);
    // The API server's identity towards kubelets (pods/log, exec, attach, portforward),
    // as kube-apiserver's --kubelet-client-certificate.
    let kubelet_client = pki
        .issue_client_cert("kube-apiserver-kubelet-client", Some("system:masters"))
        .context("issuing the kubelet client certificate")?;
    let kubelet_client_tls = skiff_control_plane::apiserver::kubelet_proxy::client_tls(
        &pki.ca.cert_pem,
        &kubelet_client.cert_pem,
        &kubelet_client.key_pem,
    )
    .map_err(|e| anyhow::anyhow!("kubelet client TLS: {e}"))?;
    let mut config = ApiConfig {
        advertise_address: addr.to_string(),
        kubelet_client_tls: Some(kubelet_client_tls),
        ..ApiConfig::default()
    };
    if let Some(h) = health.scheduler {
        config
            .component_probes
            .insert("scheduler".into(), Arc::new(move || h.check()));
    }
    if let Some(h) = health.controller_manager {
        config.component_probes.insert(
            "controller-manager".into(),
            Arc::new(move || {
                if h.is_healthy() {
                    Ok(())
                } else {
                    Err("controller manager not running".into())
                }
            }),
        );
    }
    let api = ApiServer::new(store, config);
    api.bootstrap()
        .await
        .context("bootstrapping the API server")?;
    let background = api.spawn_background();
    let tls = serve::tls_config(&pki.ca.cert_pem, &pki.apiserver)?;
    let (addr, task) = serve::serve_https(addr, api.router(), tls).await?;

    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let server_url = format!("https://{host}:{}", addr.port());
    let kubeconfig = data_dir.join("kubeconfig");
    pki::write_private_file(
        &kubeconfig,
        &pki::kubeconfig(
            &server_url,
            &pki.ca.cert_pem,
            &pki.admin,
            "skiff",
            "skiff-admin",
        ),
    )?;
    Ok(RunningApi {
        api,
        addr,
        kubeconfig,
        task,
        background,
        pki,
    })
}

impl RunningApi {
    /// Stops serving and the background tasks.
    pub fn shutdown(self) {
        self.api.state().close();
        self.task.abort();
        drop(self.background);
    }
}

fn print_started(what: &str, running: &RunningApi, started: Instant) {
    println!(
        "skiff: {what} ready in {} ms — API server on https://{}",
        started.elapsed().as_millis(),
        running.addr
    );
    println!(
        "skiff: kubeconfig written to {}",
        running.kubeconfig.display()
    );
    println!(
        "skiff: try   export KUBECONFIG={}; kubectl get namespaces",
        running.kubeconfig.display()
    );
}

/// `skiff apiserver`.
pub async fn apiserver(args: ServerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let running = start_api(&args, ComponentHealth::default()).await?;
    print_started("API server", &running, started);
    wait_for_shutdown().await;
    running.shutdown();
    Ok(())
}

/// `skiff up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let scheduler = skiff_control_plane::scheduler::SchedulerConfig::default();
    let controllers =
        args.controllers
            .apply(skiff_control_plane::controllers::ControllerManagerConfig {
                cluster_cidr: args.node.cluster_cidr.clone(),
                ..Default::default()
            });
    let health = ComponentHealth {
        scheduler: Some(scheduler.health.clone()),
        controller_manager: Some(controllers.health.clone()),
    };
    let running = start_api(&args.server, health).await?;
    let client = serve::in_process_client(running.api.router(), "default");
    let mut components = tokio::task::JoinSet::new();
    components.spawn(crate::components::run_scheduler(client.clone(), scheduler));
    components.spawn(crate::components::run_controller_manager(
        client.clone(),
        controllers,
    ));
    print_started("control plane", &running, started);
    ensure_runtime_classes(&client).await?;

    // The node: same process, same client, its kubelet certificate from the cluster CA.
    let data_dir = args.server.data.resolve();
    let name = crate::node::node_name(&args.node);
    let node_ip = args.node.node_ip.unwrap_or(args.server.bind_address);
    let serving = crate::node::serving_cert(&running.pki, &name, node_ip)?;
    let mut config =
        crate::node::node_config(&args.node, &name, &data_dir, node_ip, Some(serving))?;
    config.labels.insert(
        skiff_node::CONTROL_PLANE_ROLE_LABEL.to_owned(),
        String::new(),
    );
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    config.ready = Some(ready_tx);
    let runtimes = crate::node::build_runtimes(&data_dir, &name, &args.node.docker_socket).await?;
    println!("skiff: node {name} runtimes:");
    for line in &runtimes.report {
        println!("skiff:   {line}");
    }
    let registry = runtimes.registry.clone();
    let grace = std::time::Duration::from_secs(args.node.shutdown_grace_period);
    let node_client = client.clone();
    let mut node_task = tokio::task::JoinSet::new();
    node_task.spawn(async move {
        if let Err(err) = skiff_node::run_node(node_client, runtimes.registry, config).await {
            tracing::error!(%err, "node agent stopped");
            eprintln!("skiff: node agent stopped: {err:#}");
        }
    });
    tokio::select! {
        changed = ready_rx.wait_for(|ready| *ready) => {
            changed.context("the node agent stopped before it was Ready")?;
            println!("skiff: node {name} Ready in {} ms", started.elapsed().as_millis());
        }
        () = wait_for_shutdown() => {
            shutdown(node_task, &registry, grace, components, running).await;
            return Ok(());
        }
    }
    for path in &args.apply {
        crate::apply::apply_path(&client, path)
            .await
            .with_context(|| format!("applying {}", path.display()))?;
    }
    wait_for_shutdown().await;
    shutdown(node_task, &registry, grace, components, running).await;
    Ok(())
}

/// Ctrl-C: the node stops its pods (SIGTERM, then SIGKILL after the grace period), then the
/// control plane stops.
async fn shutdown(
    mut node: tokio::task::JoinSet<()>,
    runtimes: &skiff_runtimes::RuntimeRegistry,
    grace: std::time::Duration,
    mut components: tokio::task::JoinSet<()>,
    running: RunningApi,
) {
    println!("skiff: shutting down: stopping pods");
    // The node agent ends first (its pod workers with it), so no worker starts a sandbox
    // while the pods are being stopped.
    node.abort_all();
    while node.join_next().await.is_some() {}
    crate::node::stop_all_pods(runtimes, grace).await;
    components.abort_all();
    running.shutdown();
    println!("skiff: stopped");
}

/// The RuntimeClasses of the runtimes every Skiff node can offer (`wasmtime`, `docker`),
/// created when missing, like k3s ships one per detected runtime.
pub async fn ensure_runtime_classes(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::api::node::v1::RuntimeClass;
    let api: kube::Api<RuntimeClass> = kube::Api::all(client.clone());
    for handler in ["wasmtime", "docker"] {
        let class = RuntimeClass {
            metadata: kube::api::ObjectMeta {
                name: Some(handler.to_owned()),
                ..Default::default()
            },
            handler: handler.to_owned(),
            ..Default::default()
        };
        match api.create(&kube::api::PostParams::default(), &class).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => {
                return Err(err).with_context(|| format!("creating RuntimeClass {handler}"));
            }
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn wait_for_shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
