//! `FakeRuntime`: a complete, minimal backend that runs containers as **host processes**.
//!
//! It exists for two reasons: the kubelet's tests need a runtime that starts in milliseconds
//! and needs nothing installed, and a third-party backend author needs one readable example
//! that passes the conformance suite (`crate::conformance`). Read it top to bottom:
//!
//! - an *image* is an entrypoint argv ([`FakeImage`]); a "registry" is a map you fill with
//!   [`FakeRuntime::add_remote_image`]; `import_image` turns a shell script into an image;
//! - a *sandbox* is a network namespace (when root; host networking otherwise) plus a tokio
//!   runtime whose threads live in it ([`Netns::executor`]), so processes forked there start
//!   inside the pod's namespace; sandboxes and containers are kept in a
//!   [`Pods`](crate::inprocess::Pods) table, shared with the Wasmtime backend;
//! - a *container* is a process group: `stop` sends `SIGTERM`, waits the grace period, then
//!   `SIGKILL`s the group; stdout and stderr are pumped into a CRI log ([`LogWriter`]);
//! - limits are enforced from user space ([`procfs`]): a group over its memory limit is
//!   killed with reason `OOMKilled`, one over its CPU share is paused with `SIGSTOP`.
//!
//! - `exec` forks the command beside the container, `attach` taps its output and stdin
//!   (`exec.rs`).
//!
//! Mounts and terminals are not supported (a host process sees the host file system and runs
//! on pipes): a spec with mounts or `tty` fails with [`Error::Unsupported`].

mod exec;
pub mod procfs;
mod supervise;
pub mod test_images;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

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

/// The handler name of the fake backend.
pub const HANDLER: &str = "fake";

/// `PATH` of containers and exec'd commands.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output chunks kept for attached clients that fall behind.
const ATTACH_BACKLOG: usize = 1024;

/// How the fake backend runs.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Where pod network namespaces are bind-mounted.
    pub netns_dir: PathBuf,
    /// Log rotation.
    pub log: LogConfig,
    /// If false (the default) a `NetworkMode::Pod` sandbox falls back to host networking when
    /// namespaces cannot be created (not root); if true that is an error.
    pub require_pod_network: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            netns_dir: PathBuf::from(netns::DEFAULT_NETNS_DIR),
            log: LogConfig::default(),
            require_pod_network: false,
        }
    }
}

/// A fake image: the argv a container runs when its spec has no `command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeImage {
    /// Program and leading arguments.
    pub entrypoint: Vec<String>,
}

impl FakeImage {
    /// An image running `sh -c script` (extra container args become `$1...`).
    pub fn shell(script: &str) -> Self {
        FakeImage {
            entrypoint: vec!["/bin/sh".into(), "-c".into(), script.into(), "sh".into()],
        }
    }

    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for part in &self.entrypoint {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        format!("sha256:{:x}", hasher.finalize())
    }
}

/// The host-process backend. Cheap to clone.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    config: FakeConfig,
    images: Mutex<BTreeMap<String, FakeImage>>,
    remote: Mutex<BTreeMap<String, FakeImage>>,
    pods: Pods<Process>,
}

/// A container of the fake backend.
type Container = crate::inprocess::Container<Process>;

/// What the fake backend adds to a container: its process group and what watches it.
struct Process {
    argv: Vec<String>,
    pgid: Mutex<Option<Pid>>,
    stop_requested: AtomicBool,
    oom_killed: AtomicBool,
    usage: Mutex<procfs::GroupUsage>,
    /// The main process's stdin, kept when the spec has `stdin` (for attach).
    stdin: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    /// Output as the supervisor pumps it, for attached clients.
    output: tokio::sync::broadcast::Sender<(crate::logs::Stream, bytes::Bytes)>,
}

impl FakeRuntime {
    /// A fake runtime with default configuration and no images.
    pub fn new() -> Self {
        Self::with_config(FakeConfig::default())
    }

    /// A fake runtime with the given configuration.
    pub fn with_config(config: FakeConfig) -> Self {
        FakeRuntime {
            inner: Arc::new(Inner {
                config,
                ..Inner::default()
            }),
        }
    }

    /// Make `image` present locally under `reference`.
    pub fn add_image(&self, reference: &str, image: FakeImage) {
        self.inner.images.lock().insert(reference.to_owned(), image);
    }

    /// Make `image` pullable under `reference` (the fake "registry").
    pub fn add_remote_image(&self, reference: &str, image: FakeImage) {
        self.inner.remote.lock().insert(reference.to_owned(), image);
    }

    fn sandbox(&self, id: &str) -> Result<Arc<PodSandbox>> {
        self.inner.pods.sandbox(id)
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.inner.pods.container(id)
    }

    fn image_info(reference: &str, image: &FakeImage) -> ImageInfo {
        ImageInfo {
            id: image.digest(),
            tags: vec![reference.to_owned()],
            size: image.entrypoint.iter().map(|p| p.len() as u64).sum(),
        }
    }

    fn new_netns(&self, id: &str, pod: &str) -> Result<Option<Netns>> {
        if !netns::supported() && !self.inner.config.require_pod_network {
            tracing::warn!(
                pod,
                "cannot create network namespaces (not root): host network"
            );
            return Ok(None);
        }
        Netns::create(&self.inner.config.netns_dir, &format!("skiff-fake-{id}"))
            .map(Some)
            .map_err(|source| Error::Sandbox {
                pod: pod.to_owned(),
                context: "create network namespace".to_owned(),
                source: source.into(),
            })
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
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
        let netns = match &spec.network {
            NetworkMode::Host => None,
            NetworkMode::Pod => self.new_netns(&id, &pod)?,
            NetworkMode::Existing(path) => {
                Some(Netns::open(path).map_err(|e| sandbox_error("open network namespace", e))?)
            }
        };
        let executor = match &netns {
            Some(ns) => Some(ns.executor(&id[..8], 1).map_err(|e| {
                let _ = ns.remove();
                sandbox_error("start pod threads", e)
            })?),
            None => None,
        };
        let sandbox = PodSandbox::new(id, spec, netns, executor);
        let id = self.inner.pods.add_sandbox(sandbox);
        tracing::debug!(sandbox = %id, %pod, "fake sandbox created");
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        for container in self.inner.pods.stop_sandbox(id) {
            supervise::stop(&container, Duration::ZERO).await?;
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.stop_sandbox(id).await?;
        self.inner.pods.remove_sandbox(id).await
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        Ok(self.sandbox(id)?.status())
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        Ok(self.inner.pods.sandbox_statuses())
    }

    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        self.inner.pods.ready_sandbox(sandbox_id)?;
        spec.validate()?;
        if !spec.mounts.is_empty() {
            return Err(Error::Unsupported {
                runtime: HANDLER.to_owned(),
                what: "volume mounts (host processes see the host file system)".to_owned(),
            });
        }
        if spec.tty {
            return Err(exec::tty_unsupported());
        }
        let image = self
            .inner
            .images
            .lock()
            .get(&spec.image)
            .cloned()
            .ok_or_else(|| Error::ImageNotFound {
                image: spec.image.clone(),
            })?;
        let mut argv = if spec.command.is_empty() {
            image.entrypoint.clone()
        } else {
            spec.command.clone()
        };
        argv.extend(spec.args.iter().cloned());
        if argv.is_empty() {
            return Err(Error::InvalidImage {
                image: spec.image.clone(),
                reason: "no entrypoint and no command".to_owned(),
            });
        }
        let log = inprocess::open_log(spec, self.inner.config.log).await?;
        let process = Process {
            argv,
            pgid: Mutex::new(None),
            stop_requested: AtomicBool::new(false),
            oom_killed: AtomicBool::new(false),
            usage: Mutex::new(procfs::GroupUsage::default()),
            stdin: tokio::sync::Mutex::new(None),
            output: tokio::sync::broadcast::channel(ATTACH_BACKLOG).0,
        };
        let container = Container::new(sandbox_id, spec, image.digest(), log, process);
        Ok(self.inner.pods.add_container(container))
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let container = self.container(id)?;
        let sandbox = self.inner.pods.ready_sandbox(&container.sandbox_id)?;
        container.state.start(id)?;
        let mut command = tokio::process::Command::new(&container.argv[0]);
        command
            .args(&container.argv[1..])
            .env_clear()
            .env("PATH", HOST_PATH)
            .envs(container.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if container.spec.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &container.spec.working_dir {
            command.current_dir(dir);
        }
        // Fork on the sandbox's threads: the child inherits their network namespace.
        let spawned = sandbox
            .handle()
            .spawn(async move { command.spawn() })
            .await
            .map_err(|e| Error::internal("spawn task", e))?;
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let message = format!("exec {:?}: {error}", container.argv[0]);
                container.state.exit(ExitInfo {
                    exit_code: 128,
                    reason: ExitReason::ContainerCannotRun,
                    message: Some(message.clone()),
                    finished_at: Timestamp::now(),
                });
                return Err(Error::Container {
                    id: id.to_owned(),
                    operation: "start",
                    message,
                });
            }
        };
        *container.stdin.lock().await = child.stdin.take();
        let pgid = child.id().map(|pid| Pid::from_raw(pid as i32));
        *container.pgid.lock() = pgid;
        // A stop that arrived while we were forking found no process group to signal.
        if let (Some(pgid), true) = (pgid, container.stop_requested.load(Ordering::SeqCst)) {
            procfs::signal_group(pgid, Signal::SIGKILL);
        }
        sandbox
            .handle()
            .spawn(supervise::supervise(Arc::clone(&container), child, pgid));
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let container = self.container(id)?;
        supervise::stop(&container, grace).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let Ok(container) = self.container(id) else {
            return Ok(());
        };
        supervise::stop(&container, Duration::ZERO).await?;
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
        let pgid = *container.pgid.lock();
        if let (Some(pgid), true) = (pgid, container.state.get().is_running()) {
            let now = procfs::group_usage(pgid);
            let mut usage = container.usage.lock();
            // Keep the maximum: members that exited take their CPU time with them.
            usage.cpu = usage.cpu.max(now.cpu);
            usage.rss_bytes = now.rss_bytes;
        }
        let usage = *container.usage.lock();
        Ok(ContainerStats {
            cpu_usage_nanos: usage.cpu.as_nanos() as u64,
            memory_bytes: usage.rss_bytes,
        })
    }

    async fn pull_image(&self, image: &str, _auth: &RegistryAuth) -> Result<ImageInfo> {
        let remote = self.inner.remote.lock().get(image).cloned();
        let Some(found) = remote else {
            return Err(Error::ImagePull {
                image: image.to_owned(),
                message: "not found in the fake registry".to_owned(),
                source: None,
            });
        };
        self.add_image(image, found.clone());
        Ok(Self::image_info(image, &found))
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        let images = self.inner.images.lock();
        Ok(images.get(image).map(|i| Self::image_info(image, i)))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let images = self.inner.images.lock();
        Ok(images
            .iter()
            .map(|(name, image)| Self::image_info(name, image))
            .collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.inner.images.lock().remove(image);
        Ok(())
    }

    async fn import_image(&self, file: &Path, name: &str) -> Result<ImageInfo> {
        let path = std::fs::canonicalize(file).map_err(|e| Error::io("import image", file, e))?;
        let image = FakeImage {
            entrypoint: vec!["/bin/sh".into(), path.display().to_string()],
        };
        self.add_image(name, image.clone());
        Ok(Self::image_info(name, &image))
    }

    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        exec::exec(self, container_id, spec).await
    }

    async fn attach(&self, container_id: &str, spec: &AttachSpec) -> Result<ExecSession> {
        exec::attach(self, container_id, spec).await
    }
}
