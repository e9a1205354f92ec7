//! Shared harness for the controller integration tests: an in-process API
//! server over the memory store (or a real redb file in a tempdir), a
//! `kube::Client` wired to its router, the controller manager, a fake
//! kubelet that marks pods Running/Ready, and the stock kubectl served the
//! same router over loopback HTTP.
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
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};

/// A running API server plus controller manager.
pub struct Cluster {
    /// Client as the loopback admin.
    pub client: Client,
    /// The API server's router (for serving kubectl).
    pub router: axum::Router,
    _background: Option<BackgroundTasks>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
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
    start_on(
        Arc::new(MemoryStore::new()),
        None,
        controllers,
        builtin_namespace_finalizer,
        tweak,
    )
    .await
}

/// Starts a cluster whose API server stores into a real redb file in a
/// fresh temporary directory.
pub async fn start_redb(controllers: &[&str]) -> Result<Cluster> {
    let dir = tempfile::tempdir().context("tempdir")?;
    let cfg = RedbConfig {
        cache_size: 8 * 1024 * 1024,
        ..RedbConfig::default()
    };
    let store = RedbStore::open(dir.path().join("skiff.redb"), cfg).context("opening redb")?;
    start_on(Arc::new(store), Some(dir), controllers, true, |_| {}).await
}

async fn start_on(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    controllers: &[&str],
    builtin_namespace_finalizer: bool,
    tweak: impl FnOnce(&mut ControllerManagerConfig),
) -> Result<Cluster> {
    let _ = tracing_subscriber_init();
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
        router: server.router(),
        _background: background,
        tasks,
        _dir: dir,
    })
}

/// The stock kubectl bound to a served API server.
pub struct Kubectl {
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    /// Runs kubectl; returns (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output();
        match out {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (false, String::new(), format!("spawning kubectl: {e}")),
        }
    }

    /// Runs kubectl and fails unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let (ok, out, err) = self.run(args);
        if !ok {
            bail!("kubectl {args:?} failed: {err}\n{out}");
        }
        Ok(out)
    }
}

/// True if a kubectl binary is on the PATH (required when `CI` is set).
pub fn kubectl_available() -> bool {
    let found = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var("CI").is_err(),
        "kubectl is required in CI"
    );
    found
}

impl Cluster {
    /// Serves the API over plain HTTP on loopback and returns a kubectl
    /// configured for it (no authentication).
    pub async fn kubectl(&self) -> Result<Kubectl> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding loopback")?;
        let port = listener.local_addr().context("local addr")?.port();
        let router = self.router.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let dir = tempfile::tempdir().context("tempdir")?;
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: u\n    namespace: default\ncurrent-context: skiff\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .context("writing kubeconfig")?;
        Ok(Kubectl {
            kubeconfig,
            cache: dir.path().join("cache"),
            _dir: dir,
        })
    }
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

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Marks every not-yet-ready live pod in `ns` matching `selector` ready;
/// returns how many it changed.
pub async fn make_all_ready(client: &Client, ns: &str, selector: &str) -> Result<usize> {
    let mut n = 0;
    for pod in live_pods(client, ns, selector).await? {
        if !is_ready(&pod) {
            make_ready(client, &pod, "node-1").await?;
            n += 1;
        }
    }
    Ok(n)
}
