//! Shared harness for the controller integration tests: an in-process API
//! server over the memory store, a `kube::Client` wired to its router, the
//! controller manager, and a fake kubelet that marks pods Running/Ready.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer, BackgroundTasks};
use skiff_control_plane::controllers::{self, ControllerManagerConfig};
use skiff_control_plane::store::memory::MemoryStore;

/// A running API server plus controller manager.
pub struct Cluster {
    /// Client as the loopback admin.
    pub client: Client,
    _background: Option<BackgroundTasks>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a cluster running the given controllers (`["*"]` for all).
pub async fn start(controllers: &[&str]) -> Result<Cluster> {
    start_with(controllers, |_| {}).await
}

/// Starts a cluster after adjusting the manager's config.
pub async fn start_with(
    controllers: &[&str],
    tweak: impl FnOnce(&mut ControllerManagerConfig),
) -> Result<Cluster> {
    start_full(controllers, true, tweak).await
}

/// Starts a cluster; without `builtin_namespace_finalizer` the API server's
/// stand-in namespace finalizer is not run (only the CRD watch is), so the
/// namespace controller is the one finalizing.
pub async fn start_full(
    controllers: &[&str],
    builtin_namespace_finalizer: bool,
    tweak: impl FnOnce(&mut ControllerManagerConfig),
) -> Result<Cluster> {
    let _ = tracing_subscriber_init();
    let store = Arc::new(MemoryStore::new());
    let server = ApiServer::new(store, ApiConfig::default());
    server
        .bootstrap()
        .await
        .map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    let mut tasks = Vec::new();
    let background = if builtin_namespace_finalizer {
        Some(server.spawn_background())
    } else {
        tasks.push(tokio::spawn(
            skiff_control_plane::apiserver::crd::watch_crds(server.state()),
        ));
        None
    };
    let client = skiff_control_plane::serve::in_process_client(server.router(), "default");
    let mut config = ControllerManagerConfig {
        controllers: controllers.iter().map(|s| s.to_string()).collect(),
        ..ControllerManagerConfig::default()
    };
    tweak(&mut config);
    let mgr_client = client.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = controllers::run(mgr_client, config).await {
            eprintln!("controller manager stopped: {e}");
        }
    }));
    Ok(Cluster {
        client,
        _background: background,
        tasks,
    })
}

fn tracing_subscriber_init() -> Option<()> {
    None
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() > deadline {
            match last_err {
                Some(e) => bail!("timed out waiting for {what}; last error: {e:#}"),
                None => bail!("timed out waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Pods in `ns` matching `selector`, without those being deleted.
pub async fn live_pods(client: &Client, ns: &str, selector: &str) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .context("listing pods")?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

static NEXT_IP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(10);

/// A fresh pod IP for the fake kubelet.
pub fn next_ip() -> String {
    let n = NEXT_IP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("10.244.{}.{}", n / 250, n % 250 + 1)
}

/// The fake kubelet: marks one pod Running and Ready (on `node`).
pub async fn make_ready(client: &Client, pod: &Pod, node: &str) -> Result<()> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "podIP": next_ip(),
        "hostIP": "192.168.0.1",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "lastTransitionTime": now}
        ]
    }});
    let _ = node;
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&status),
    )
    .await
    .with_context(|| format!("marking pod {} ready", pod.name_any()))?;
    Ok(())
}

/// Marks every not-yet-ready live pod in `ns` matching `selector` ready;
/// returns how many it changed.
pub async fn make_all_ready(client: &Client, ns: &str, selector: &str) -> Result<usize> {
    let mut n = 0;
    for pod in live_pods(client, ns, selector).await? {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if !ready {
            make_ready(client, &pod, "node-1").await?;
            n += 1;
        }
    }
    Ok(n)
}
