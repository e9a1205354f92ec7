//! `WasmtimeRuntime`: WebAssembly containers run in-process on one shared Wasmtime engine.
//!
//! - **Images** are wasm binaries in the [`ImageStore`] (imported or pulled as OCI
//!   artifacts). WASI preview 1 modules (exporting `_start`) and preview 2 components
//!   (`wasi:cli/command`) both run; anything else fails at create with `CreateContainerError`.
//! - **Compilation** happens once per image digest and is cached on disk (see `engine.rs`).
//!   Creating a container links nothing; starting one instantiates from a pooled slot.
//! - **A container** is an async task running its guest: argv (`command` or the image name,
//!   then `args`), env, working dir (`initial-cwd` and `PWD`), mounts as preopened
//!   directories (read-only ones read-only; nothing else of the host is visible),
//!   stdout/stderr into its CRI log.
//! - **Limits** (`guest.rs`): memory (growth past the limit traps, reported `OOMKilled`), CPU
//!   (a busy guest sleeps at epoch ticks to keep its share), and stop: every 10 ms epoch
//!   tick makes a running guest yield, so a stop can drop its future — a guest in an
//!   infinite loop ends within a tick. Wasm has no signals, so the grace period of a stop
//!   is not waited out: the guest is killed at once (exit code 137).
//! - **Exit**: code from `exit(n)` or the command's result; a trap is reason `Error`, exit
//!   code 134, the trap message in the status.
//! - **Networking**: each sandbox creates (or joins) a network namespace and a thread inside it
//!   that runs a tokio runtime ([`Netns::create_with_executor`], [`Netns::executor`]); the
//!   pod's guests run only there, so every socket they open (wasi:sockets, with TCP and
//!   UDP allowed) lives in the pod's namespace: siblings reach each other on `127.0.0.1`,
//!   nothing outside the pod can. A host-network sandbox runs guests on the caller's runtime.
//!   Namespace names carry the data dir and the pid, so a runtime starting on a data dir
//!   removes those a killed or crashed run left behind.
//! - **No exec or attach**: a guest is one instance with no processes to start beside it;
//!   `exec`/`attach` fail with [`Error::OperationNotSupported`] and specs asking for `stdin`
//!   or `tty` are refused at create.

mod engine;
mod guest;
mod precompiled;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use self::engine::{Artifact, ArtifactCache, EpochTicker, wasm_kind};
use self::guest::{GuestExit, GuestSetup, GuestUsage};
use crate::images::{ImageStore, Puller};
use crate::inprocess::{self, PodSandbox, Pods};
use crate::lifecycle::new_id;
use crate::logs::LogConfig;
use crate::netns::{self, Netns};
use crate::spec::{ContainerSpec, NetworkMode, SandboxSpec};
use crate::status::{
    ContainerStats, ContainerStatus, ExitInfo, ExitReason, ImageInfo, SandboxStatus,
};
use crate::streaming::{AttachSpec, ExecSession, ExecSpec};
use crate::{Error, RegistryAuth, Result, Runtime};

/// The handler name of this backend.
pub const HANDLER: &str = "wasmtime";

/// Exit code reported for a trap (like a native process ending in `abort()`).
pub const TRAP_EXIT_CODE: i32 = 134;

/// How the Wasmtime backend runs.
#[derive(Debug, Clone)]
pub struct WasmtimeConfig {
    /// Data dir: `images/` (the store) and `compiled/` (the compile cache) live here.
    pub data_dir: PathBuf,
    /// Where pod network namespaces are bind-mounted.
    pub netns_dir: PathBuf,
    /// Log rotation.
    pub log: LogConfig,
    /// Most guests running at once (sizes the pooling allocator).
    pub max_containers: u32,
    /// Largest linear memory any guest may have, whatever its limit says.
    pub max_memory_bytes: u64,
    /// Wasm stack size per guest.
    pub max_wasm_stack: usize,
    /// Threads per pod network namespace. 1 (the default): one thread creates the namespace
    /// and runs all of the pod's guests, which share it through epoch yields; more: a
    /// multi-thread runtime, so one pod's guests can use several cores.
    pub pod_threads: usize,
    /// Epoch tick: the longest a guest runs without yielding.
    pub epoch_tick: Duration,
    /// If false (the default) a `NetworkMode::Pod` sandbox falls back to host networking
    /// when namespaces cannot be created (not root); if true that is an error.
    pub require_pod_network: bool,
    /// Registries (`host:port`) to pull from over plain HTTP, beyond loopback ones.
    pub insecure_registries: Vec<String>,
}

impl WasmtimeConfig {
    /// Defaults with the given data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        WasmtimeConfig {
            data_dir: data_dir.into(),
            netns_dir: PathBuf::from(netns::DEFAULT_NETNS_DIR),
            log: LogConfig::default(),
            max_containers: 1100,
            max_memory_bytes: 4 << 30,
            max_wasm_stack: 1 << 20,
            pod_threads: 1,
            epoch_tick: Duration::from_millis(10),
            require_pod_network: false,
            insecure_registries: Vec::new(),
        }
    }
}

/// The in-process WebAssembly backend. Cheap to clone.
#[derive(Clone)]
pub struct WasmtimeRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: WasmtimeConfig,
    engine: wasmtime::Engine,
    artifacts: ArtifactCache,
    images: ImageStore,
    puller: Puller,
    pods: Pods<Guest>,
    /// Names of this process's pod namespaces start with it ([`netns_prefix`]).
    netns_prefix: String,
    _ticker: EpochTicker,
}

/// `skiff-<8 hex of the data dir's path>-<pid>-`: the start of the names of this process's
/// pod namespaces (`<prefix><sandbox id>`), so a runtime can tell what a dead process of its
/// data dir left from another live process's pods.
fn netns_prefix(data_dir: &Path) -> String {
    format!("{}{}-", data_dir_prefix(data_dir), std::process::id())
}

fn data_dir_prefix(data_dir: &Path) -> String {
    use sha2::Digest;
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let hash = sha2::Sha256::digest(path.as_os_str().as_encoded_bytes());
    format!(
        "skiff-{:08x}-",
        u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]])
    )
}

/// Wasm sandboxes live and die with their process, so namespaces of this data dir whose
/// process is gone were left by a run that did not stop cleanly (killed, crashed): unmount
/// and remove them. Those of live processes (this one, or another runtime on the same data
/// dir) stay.
fn remove_stale_namespaces(netns_dir: &Path, data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(netns_dir) else {
        return;
    };
    let prefix = data_dir_prefix(data_dir);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match netns::remove_path(&entry.path()) {
            Ok(()) => removed += 1,
            Err(error) => tracing::warn!(%error, "cannot remove a stale pod network namespace"),
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            dir = %netns_dir.display(),
            "removed pod network namespaces a previous run left behind"
        );
    }
}

/// A wasm container.
type Container = crate::inprocess::Container<Guest>;

/// What the Wasmtime backend adds to a container: its compiled image, the signal that ends
/// its task, and what the guest has used.
struct Guest {
    artifact: Arc<Artifact>,
    kill: Notify,
    usage: Arc<GuestUsage>,
}

impl WasmtimeRuntime {
    /// Build the engine, open the image store and compile cache under `config.data_dir`,
    /// and start the epoch ticker.
    pub fn new(config: WasmtimeConfig) -> Result<Self> {
        let engine = engine::build_engine(&config)?;
        let images = ImageStore::open(&config.data_dir)?;
        let artifacts = ArtifactCache::new(&engine, &config.data_dir)?;
        let ticker = EpochTicker::start(engine.clone(), config.epoch_tick)?;
        let netns_prefix = netns_prefix(&config.data_dir);
        remove_stale_namespaces(&config.netns_dir, &config.data_dir);
        Ok(WasmtimeRuntime {
            inner: Arc::new(Inner {
                netns_prefix,
                puller: Puller::new(config.insecure_registries.clone()),
                config,
                engine,
                artifacts,
                images,
                pods: Pods::default(),
                _ticker: ticker,
            }),
        })
    }

    /// The image store this runtime reads.
    pub fn image_store(&self) -> &ImageStore {
        &self.inner.images
    }

    /// Where the compiled artifact of an image digest is cached.
    pub fn compiled_path(&self, digest: &str) -> PathBuf {
        self.inner.artifacts.path_for(digest)
    }

    /// Compile (or load from the disk cache) an image ahead of time.
    pub async fn precompile(&self, image: &str) -> Result<()> {
        self.artifact(image).await.map(drop)
    }

    async fn artifact(&self, image: &str) -> Result<(String, Arc<Artifact>)> {
        let record = self
            .inner
            .images
            .resolve(image)?
            .ok_or_else(|| Error::ImageNotFound {
                image: image.to_owned(),
            })?;
        let store = self.inner.images.clone();
        let digest = record.digest.clone();
        let artifact = self
            .inner
            .artifacts
            .get(image, &record.digest, move || {
                store.read_blob(&digest).map_err(Error::from)
            })
            .await?;
        Ok((record.digest, artifact))
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.inner.pods.container(id)
    }

    fn record_info(record: crate::images::ImageRecord) -> ImageInfo {
        ImageInfo {
            id: record.digest,
            tags: vec![record.name],
            size: record.size,
        }
    }
}

#[async_trait]
impl Runtime for WasmtimeRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<String> {
        let id = new_id();
        let pod = format!("{}/{}", spec.namespace, spec.name);
        let sandbox_error = |context: &str, source: netns::NetnsError| Error::Sandbox {
            pod: pod.clone(),
            context: context.to_owned(),
            source: source.into(),
        };
        let network = spec.network.clone();
        let warn_pod = pod.clone();
        let config = self.inner.config.clone();
        let short_id = id[..8].to_owned();
        let ns_name = format!("{}{id}", self.inner.netns_prefix);
        // Creating a namespace and the pod's threads blocks (helper threads are spawned and
        // joined, `unshare` and `mount` wait in the kernel): on the runtime's few worker
        // threads that stalled every other task of the node during a burst of pod starts.
        let (netns, executor) = tokio::task::spawn_blocking(move || {
            let thread_name = format!("pod-{short_id}");
            let netns = match &network {
                NetworkMode::Host => return Ok((None, None)),
                NetworkMode::Pod if config.pod_threads <= 1 => {
                    if netns::supported() || config.require_pod_network {
                        // One thread creates the namespace and then runs the pod's guests; the
                        // namespace lives as long as the sandbox holds it, with no file in
                        // `netns_dir` (one inode, a mount and an unmount less per pod, and
                        // nothing left when the process is killed).
                        let (netns, executor) = Netns::create_held_with_executor(&thread_name)
                            .map_err(|e| ("create network namespace", e))?;
                        return Ok((Some(netns), Some(executor)));
                    }
                    tracing::warn!(pod = %warn_pod, "cannot create network namespaces (not root): host network");
                    return Ok((None, None));
                }
                NetworkMode::Pod => {
                    if netns::supported() || config.require_pod_network {
                        Netns::create(&config.netns_dir, &ns_name)
                            .map_err(|e| ("create network namespace", e))?
                    } else {
                        tracing::warn!(pod = %warn_pod, "cannot create network namespaces (not root): host network");
                        return Ok((None, None));
                    }
                }
                NetworkMode::Existing(path) => {
                    Netns::open(path).map_err(|e| ("open network namespace", e))?
                }
            };
            let executor = netns.executor(&short_id, config.pod_threads).map_err(|e| {
                let _ = netns.remove();
                ("start pod threads", e)
            })?;
            Ok((Some(netns), Some(executor)))
        })
        .await
        .map_err(|e| Error::internal("set up the pod sandbox", e))?
        .map_err(|(context, e)| sandbox_error(context, e))?;
        let sandbox = PodSandbox::new(id, spec, netns, executor);
        let id = self.inner.pods.add_sandbox(sandbox);
        tracing::debug!(sandbox = %id, %pod, "wasm sandbox created");
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        for container in self.inner.pods.stop_sandbox(id) {
            kill(&container).await?;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.stop_sandbox(id).await?;
        self.inner.pods.remove_sandbox(id).await
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        Ok(self.inner.pods.sandbox(id)?.status())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        Ok(self.inner.pods.sandbox_statuses())
    }

    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        self.inner.pods.ready_sandbox(sandbox_id)?;
        spec.validate()?;
        if spec.stdin || spec.tty {
            return Err(Error::Unsupported {
                runtime: HANDLER.to_owned(),
                what: "stdin and tty (wasm containers cannot be attached to)".to_owned(),
            });
        }
        if let Some(limit) = spec.resources.memory_limit_bytes
            && limit > self.inner.config.max_memory_bytes
        {
            tracing::debug!(
                limit,
                "memory limit above the engine's ceiling; ceiling applies"
            );
        }
        let (image_digest, artifact) = self.artifact(&spec.image).await?;
        let log = inprocess::open_log(spec, self.inner.config.log).await?;
        let guest = Guest {
            artifact,
            kill: Notify::new(),
            usage: Arc::new(GuestUsage::default()),
        };
        let container = Container::new(sandbox_id, spec, image_digest, log, guest);
        Ok(self.inner.pods.add_container(container))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let container = self.container(id)?;
        let sandbox = self.inner.pods.ready_sandbox(&container.sandbox_id)?;
        container.state.start(id)?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let engine = self.inner.engine.clone();
        sandbox
            .handle()
            .spawn(run_container(engine, Arc::clone(&container), ready_tx));
        match ready_rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(Error::Container {
                id: id.to_owned(),
                operation: "start",
                message,
            }),
            // Killed before it was instantiated: a stop won the race; that is no error.
            Err(_) => Ok(()),
        }
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<()> {
        let container = self.container(id)?;
        kill(&container).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let Ok(container) = self.container(id) else {
            return Ok(());
        };
        kill(&container).await?;
        self.inner.pods.remove_container(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        Ok(self.container(id)?.status())
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        Ok(self.inner.pods.container_statuses(sandbox_id))
    }

    async fn wait_container(&self, id: &str) -> Result<ContainerStatus> {
        let container = self.container(id)?;
        container.state.wait_exited().await;
        Ok(container.status())
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let container = self.container(id)?;
        Ok(ContainerStats {
            cpu_usage_nanos: container.usage.cpu.used().as_nanos() as u64,
            memory_bytes: container.usage.memory.load(Ordering::Relaxed),
        })
    }

    async fn pull_image(&self, image: &str, auth: &RegistryAuth) -> Result<ImageInfo> {
        let pull_error = |message: String, source: Option<crate::BoxError>| Error::ImagePull {
            image: image.to_owned(),
            message,
            source,
        };
        let pulled = self
            .inner
            .puller
            .pull(image, auth)
            .await
            .map_err(|e| pull_error(e.to_string(), Some(e.into())))?;
        if wasm_kind(&pulled.bytes).is_none() {
            return Err(pull_error(
                format!("layer {} is not a WebAssembly binary", pulled.media_type),
                None,
            ));
        }
        let record = self.inner.images.import_bytes(&pulled.bytes, image)?;
        Ok(Self::record_info(record))
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(self.inner.images.resolve(image)?.map(Self::record_info))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.inner.images.images()?)
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        if let Some(record) = self.inner.images.resolve(image)? {
            self.inner.artifacts.evict(&record.digest);
        }
        Ok(self.inner.images.remove(image)?)
    }

    async fn import_image(&self, file: &Path, name: &str) -> Result<ImageInfo> {
        import_wasm_file(&self.inner.images, file, name)
    }

    async fn exec(&self, container_id: &str, _spec: &ExecSpec) -> Result<ExecSession> {
        self.container(container_id)?;
        Err(Error::OperationNotSupported {
            runtime: HANDLER.to_owned(),
            operation: "exec",
            reason: "exec is not supported for wasm containers (a WebAssembly guest has no \
                     processes or shell to run a command in)"
                .to_owned(),
        })
    }

    async fn attach(&self, container_id: &str, _spec: &AttachSpec) -> Result<ExecSession> {
        self.container(container_id)?;
        Err(Error::OperationNotSupported {
            runtime: HANDLER.to_owned(),
            operation: "attach",
            reason: "attach is not supported for wasm containers (their output is in the \
                     container log: use kubectl logs)"
                .to_owned(),
        })
    }
}

/// `skiff image import file.wasm name:tag`: check the file is a WebAssembly module or
/// component and add it to `store` under `name`. Needs no engine, so the CLI can call it
/// while a node runs on the same data dir.
pub fn import_wasm_file(store: &ImageStore, file: &Path, name: &str) -> Result<ImageInfo> {
    let bytes = std::fs::read(file).map_err(|e| Error::io("import image", file, e))?;
    if wasm_kind(&bytes).is_none() {
        return Err(Error::InvalidImage {
            image: name.to_owned(),
            reason: format!("{} is not a WebAssembly binary", file.display()),
        });
    }
    let record = store.import_bytes(&bytes, name)?;
    Ok(WasmtimeRuntime::record_info(record))
}

/// The container's task: run the guest until it ends or is killed, then record the exit.
async fn run_container(
    engine: wasmtime::Engine,
    container: Arc<Container>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    let spec = &container.spec;
    let mut argv = if spec.command.is_empty() {
        vec![spec.image.clone()]
    } else {
        spec.command.clone()
    };
    argv.extend(spec.args.iter().cloned());
    let setup = GuestSetup {
        argv,
        env: spec.env.clone(),
        working_dir: spec.working_dir.clone(),
        mounts: spec.mounts.clone(),
        log: container.log.clone(),
        memory_limit: spec.resources.memory_limit_bytes,
        cpu_millicores: spec.resources.cpu_millicores,
    };
    let usage = Arc::clone(&container.usage);
    let outcome = tokio::select! {
        biased;
        () = container.kill.notified() => None,
        exit = guest::run(&engine, &container.artifact, setup, usage, ready) => Some(exit),
    };
    container.log.finish();
    let exit = match outcome {
        None => ExitInfo::killed(),
        Some(GuestExit::Code(code)) => ExitInfo::from_code(code),
        Some(GuestExit::Trap(message)) => ExitInfo::from_code(TRAP_EXIT_CODE)
            .with_reason(ExitReason::Error)
            .with_message(message),
        Some(GuestExit::OutOfMemory(message)) => ExitInfo::from_code(137)
            .with_reason(ExitReason::OomKilled)
            .with_message(message),
        Some(GuestExit::CannotRun(message)) => ExitInfo::from_code(128)
            .with_reason(ExitReason::ContainerCannotRun)
            .with_message(message),
    };
    tracing::debug!(container = %container.id, code = exit.exit_code, reason = %exit.reason, "guest exited");
    container.state.exit(exit);
}

/// Kill a container now and wait until its exit is recorded.
async fn kill(container: &Container) -> Result<()> {
    match container.state.get() {
        crate::ContainerState::Exited { .. } => return Ok(()),
        crate::ContainerState::Created => {
            if container.state.exit(ExitInfo::killed()) {
                return Ok(());
            }
        }
        crate::ContainerState::Running { .. } => {}
    }
    // `notify_one` stores a permit, so a task that has not reached its `select!` yet still
    // sees it.
    container.kill.notify_one();
    if container
        .state
        .wait_exited_for(Duration::from_secs(10))
        .await
    {
        Ok(())
    } else {
        Err(Error::Container {
            id: container.id.clone(),
            operation: "stop",
            message: "guest did not stop within 10s".to_owned(),
        })
    }
}
