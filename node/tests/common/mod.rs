//! Shared test harness: an in-process API server (memory store) and a node agent running
//! against it through `kube::Client`.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use skiff_control_plane::apiserver::{ApiConfig, ApiServer, BackgroundTasks};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_node::{NodeConfig, run_node};
use skiff_runtimes::RuntimeRegistry;
use tokio::sync::watch;

/// A running API server.
pub struct Cluster {
    pub client: Client,
    pub api: ApiServer,
    _background: BackgroundTasks,
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub async fn cluster() -> Cluster {
    cluster_with(ApiConfig::default()).await
}

pub async fn cluster_with(config: ApiConfig) -> Cluster {
    init_tracing();
    let store = Arc::new(MemoryStore::new());
    let api = ApiServer::new(store, config);
    api.bootstrap().await.expect("bootstrap");
    let background = api.spawn_background();
    let client = in_process_client(api.router(), "default");
    Cluster {
        client,
        api,
        _background: background,
    }
}

/// A node agent running in the background; stopped when dropped.
pub struct RunningNode {
    pub name: String,
    pub data_dir: PathBuf,
    pub task: tokio::task::JoinHandle<Result<(), skiff_node::Error>>,
    pub ready: watch::Receiver<bool>,
    _dir: Option<tempfile::TempDir>,
}

impl RunningNode {
    /// Stop the agent and wait until it is gone (its pod workers with it).
    pub async fn stop(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start a node; `tweak` adjusts the config (data dir and name are filled in).
pub fn start_node(
    client: &Client,
    runtimes: RuntimeRegistry,
    name: &str,
    tweak: impl FnOnce(&mut NodeConfig),
) -> RunningNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ready_tx, ready) = watch::channel(false);
    let mut config = NodeConfig {
        node_name: name.to_owned(),
        data_dir: dir.path().to_owned(),
        heartbeat: Duration::from_secs(1),
        resync: Duration::from_secs(2),
        node_ip: Some("127.0.0.1".parse().expect("ip")),
        ready: Some(ready_tx),
        ..NodeConfig::default()
    };
    config.network.mode = skiff_node::NetworkMode::Host;
    tweak(&mut config);
    let data_dir = config.data_dir.clone();
    let task = tokio::spawn(run_node(client.clone(), runtimes, config));
    RunningNode {
        name: name.to_owned(),
        data_dir,
        task,
        ready,
        _dir: Some(dir),
    }
}

/// Poll `check` until it returns `Some`, or panic after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Create a pod from JSON in `default`.
pub async fn create_pod(client: &Client, pod: serde_json::Value) -> Pod {
    let pod: Pod = serde_json::from_value(pod).expect("pod json");
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

pub async fn get_pod(client: &Client, name: &str) -> Option<Pod> {
    Api::<Pod>::namespaced(client.clone(), "default")
        .get_opt(name)
        .await
        .expect("get pod")
}

/// Wait until the pod satisfies `pred`, returning it.
pub async fn wait_pod(
    client: &Client,
    name: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Pod) -> bool,
) -> Pod {
    eventually(timeout, what, || async {
        get_pod(client, name).await.filter(|p| pred(p))
    })
    .await
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn container_status<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn waiting_reason(pod: &Pod, name: &str) -> Option<String> {
    container_status(pod, name)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

/// Reasons of the events about pod `name`.
pub async fn event_reasons(client: &Client, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// The example guests, built once per test process.
pub fn examples() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm-pods");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for (target, packages) in [
            ("wasm32-wasip1", &["hello", "memory-hog"][..]),
            ("wasm32-wasip2", &["http-server"][..]),
        ] {
            let mut command = Command::new(&cargo);
            command
                .current_dir(&dir)
                .args(["build", "--release", "--quiet", "--target", target])
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
            for p in packages {
                command.args(["-p", p]);
            }
            let status = command.status().expect("run cargo for the wasm examples");
            assert!(
                status.success(),
                "building examples/wasm-pods for {target} failed"
            );
        }
        dir.join("target")
    })
}

pub fn wasm(name: &str) -> Vec<u8> {
    let target = if name.starts_with("http-") {
        "wasm32-wasip2"
    } else {
        "wasm32-wasip1"
    };
    let path = examples().join(format!("{target}/release/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
