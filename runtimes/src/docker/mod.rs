//! `DockerRuntime`: OCI containers on dockerd through bollard, one pause container per pod.
//!
//! - **Sandbox** = a pause container ([`pause`]: Skiff's own static program, imported into
//!   Docker on first use, no registry) started with network mode `none`, so Docker creates a
//!   network namespace with only `lo` that the pause process holds. Its path,
//!   `/proc/<pid>/ns/net`, is the sandbox's [`netns_path`](SandboxStatus::netns_path): the
//!   kubelet wires the pod's interfaces into it, and a wasm container of the same pod joins
//!   it through [`NetworkMode::Existing`](crate::NetworkMode::Existing) in the Wasmtime
//!   backend — that is how mixed pods share `localhost`. The pod's OCI containers join
//!   `container:<pause id>` (network and IPC).
//! - **Containers** carry everything Skiff knows about them in labels ([`labels`]): owner
//!   instance, sandbox id, pod name/namespace/UID, container name, log path. Docker is the
//!   source of truth; a restarted node finds its sandboxes and containers with
//!   `list_sandboxes` / `list_containers` and resumes their logs ([`DockerRuntime::recover`]);
//!   what no live pod owns any more (a kubelet killed without stopping its pods) goes with
//!   [`Runtime::remove_orphans`].
//! - **Logs** are copied from Docker into the CRI log file by a `logs` pump per container.
//! - **Exec and attach** are Docker's exec instances and attach endpoint (`exec`), with the
//!   container's `stdin`/`stdinOnce`/`tty` from its spec; an exec with a terminal starts at
//!   the client's first size and follows its resizes.
//! - **Stop** is Docker's stop: SIGTERM, SIGKILL when the grace period (rounded up to whole
//!   seconds) ends. An OOM kill is read from inspect (`State.OOMKilled`) → `OOMKilled`.
//! - **Images** live in Docker's store: pull/push with per-layer progress ([`images`]),
//!   import of root file system tarballs or `docker save` archives.
//! - **No daemon**: construction never fails; every operation connects (and negotiates the
//!   API version) lazily and fails with an error recognised by [`is_daemon_unavailable`]
//!   while dockerd is away. [`DockerRuntime::available`] is a cheap health check to poll.
//!
//! State Docker cannot hold — a created container that was stopped before it started (Docker
//! leaves it `created`; the trait calls it exited) — is kept in memory only.

pub mod bench;
mod client;
mod convert;
mod exec;
pub mod images;
mod logs;
pub mod pause;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use parking_lot::Mutex;

pub use self::client::{DockerError, is_daemon_unavailable};
pub use self::convert::labels;
pub use self::images::{ProgressEvent, TransferProgress};
pub use self::pause::PAUSE_IMAGE;

use self::client::{Connection, is_not_found, message_of, status_of};
use self::logs::LogPump;
use crate::lifecycle::{container_not_found, new_id, sandbox_not_found};
use crate::logs::{LogConfig, LogWriter};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::status::{
    ContainerState, ContainerStats, ContainerStatus, ExitInfo, ImageInfo, SandboxState,
    SandboxStatus,
};
use crate::streaming::{AttachSpec, ExecSession, ExecSpec};
use crate::{Error, RegistryAuth, Result, Runtime};

/// The handler name of this backend.
pub const HANDLER: &str = "docker";

/// Where dockerd listens by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long a wait or stop lets the log pump finish writing a stopped container's output.
const LOG_DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How the Docker backend runs.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    /// dockerd's Unix socket.
    pub socket: PathBuf,
    /// Names this runtime instance (the node name): the value of the
    /// [`labels::MANAGED_BY`] label on everything it creates, and the only containers it
    /// lists or touches. Several nodes (or test harnesses) can share one dockerd.
    pub instance: String,
    /// The sandbox image; imported from the embedded pause program when absent.
    pub pause_image: String,
    /// Log rotation of the CRI log files.
    pub log: LogConfig,
    /// Deadline of an ordinary Docker API request.
    pub request_timeout: Duration,
}

impl DockerConfig {
    /// Defaults (`/var/run/docker.sock`, [`PAUSE_IMAGE`]) for the runtime instance `instance`.
    pub fn new(instance: impl Into<String>) -> Self {
        DockerConfig {
            socket: PathBuf::from(DEFAULT_SOCKET),
            instance: instance.into(),
            pause_image: PAUSE_IMAGE.to_owned(),
            log: LogConfig::default(),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// The Docker backend. Cheap to clone.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    config: DockerConfig,
    connection: Connection,
    /// Whether the pause image was checked since the daemon was last reached.
    pause_ready: tokio::sync::Mutex<bool>,
    /// Log pumps of started containers, by container id.
    pumps: Mutex<HashMap<String, Arc<LogPump>>>,
    /// Exits of containers stopped before they started, by container id.
    cancelled: Mutex<HashMap<String, ExitInfo>>,
    /// Whether log pumps of running containers were resumed after connecting.
    recovered: AtomicBool,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("endpoint", &self.inner.connection.endpoint())
            .field("instance", &self.inner.config.instance)
            .finish()
    }
}

impl DockerRuntime {
    /// A runtime for `config`. Does no I/O: dockerd may be absent and come later.
    pub fn new(config: DockerConfig) -> Self {
        DockerRuntime {
            inner: Arc::new(Inner {
                connection: Connection::new(&config.socket, config.request_timeout),
                config,
                pause_ready: tokio::sync::Mutex::new(false),
                pumps: Mutex::new(HashMap::new()),
                cancelled: Mutex::new(HashMap::new()),
                recovered: AtomicBool::new(false),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DockerConfig {
        &self.inner.config
    }

    /// `unix:///var/run/docker.sock`.
    pub fn endpoint(&self) -> String {
        self.inner.connection.endpoint()
    }

    /// Cheap health check for the kubelet to poll: true if dockerd answers a ping within
    /// two seconds.
    pub async fn available(&self) -> bool {
        let ping = async {
            let docker = self.client().await.ok()?;
            docker.ping().await.ok()
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), ping).await,
            Ok(Some(_))
        )
    }

    /// The daemon's version and negotiated API version, e.g. `20.10.24+dfsg1 (API 1.41)`.
    pub async fn daemon_version(&self) -> Result<String> {
        let docker = self.client().await?;
        let version = docker
            .version()
            .await
            .map_err(|e| self.inner.connection.error("version", e))?;
        Ok(format!(
            "{} (API {})",
            version.version.unwrap_or_default(),
            docker.client_version()
        ))
    }

    /// Resume copying logs of this instance's running containers (after a node restart or
    /// a daemon restart); returns how many pumps were started. Runs by itself the first
    /// time the daemon is reached.
    pub async fn recover(&self) -> Result<usize> {
        let docker = self.inner.connection.client().await?;
        self.resume_log_pumps(&docker).await
    }

    /// Pull `image`, calling `progress` with Docker's per-layer messages (fold them with
    /// [`TransferProgress`] to draw one bar).
    pub async fn pull_image_with_progress(
        &self,
        image: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(&ProgressEvent) + Send),
    ) -> Result<ImageInfo> {
        let docker = match self.client().await {
            Ok(docker) => docker,
            Err(error) => {
                return Err(Error::ImagePull {
                    image: image.to_owned(),
                    message: error.to_string(),
                    source: Some(error.into()),
                });
            }
        };
        images::pull(&self.inner.connection, &docker, image, auth, progress).await
    }

    /// Push a local image to the registry its name points at (`127.0.0.1:5000/app:v1`).
    pub async fn push_image(
        &self,
        image: &str,
        auth: &RegistryAuth,
        progress: &mut (dyn FnMut(&ProgressEvent) + Send),
    ) -> Result<()> {
        let docker = self.client().await?;
        images::push(&self.inner.connection, &docker, image, auth, progress).await
    }

    /// Give local image `source` the additional name `target` (`docker tag`).
    pub async fn tag_image(&self, source: &str, target: &str) -> Result<()> {
        let docker = self.client().await?;
        let target = images::normalize(target)?;
        let (repo, tag) = pause::split_tag(&target);
        let options = bollard::query_parameters::TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        match docker.tag_image(source, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Err(Error::ImageNotFound {
                image: source.to_owned(),
            }),
            Err(e) => Err(self.inner.connection.error("tag image", e)),
        }
    }

    async fn client(&self) -> Result<Docker> {
        let docker = self.inner.connection.client().await?;
        if !self.inner.recovered.swap(true, Ordering::SeqCst)
            && let Err(error) = self.resume_log_pumps(&docker).await
        {
            self.inner.recovered.store(false, Ordering::SeqCst);
            tracing::warn!(%error, "cannot resume container log copying yet");
        }
        Ok(docker)
    }

    async fn resume_log_pumps(&self, docker: &Docker) -> Result<usize> {
        let ids = self
            .list_ids(docker, labels::KIND_CONTAINER, None, false)
            .await?;
        let mut resumed = 0;
        for id in ids {
            if self.inner.pumps.lock().contains_key(&id) {
                continue;
            }
            let Ok((_, status)) = self.inspect_container(docker, &id).await else {
                continue;
            };
            let Some(path) = status.log_path.filter(|_| status.state.is_running()) else {
                continue;
            };
            // Skip what the file already has: its last record was written after Docker
            // stamped that line. (Not the file's mtime: that clock is coarser than Docker's.)
            let since = logs::last_record_time(&path);
            let writer = LogWriter::open(&path, self.inner.config.log)
                .map_err(|e| Error::io("open container log", &path, e))?;
            let pump = LogPump::spawn(docker.clone(), id.clone(), writer, since);
            self.inner.pumps.lock().insert(id.clone(), pump);
            resumed += 1;
            tracing::info!(container = %id, path = %path.display(), "resumed log copying");
        }
        Ok(resumed)
    }

    async fn ensure_pause_image(&self, docker: &Docker) -> Result<()> {
        let mut ready = self.inner.pause_ready.lock().await;
        if !*ready {
            pause::ensure_image(
                &self.inner.connection,
                docker,
                &self.inner.config.pause_image,
            )
            .await?;
            *ready = true;
        }
        Ok(())
    }

    /// Inspect `id`; `None` if Docker does not know it.
    async fn inspect(&self, docker: &Docker, id: &str) -> Result<Option<ContainerInspectResponse>> {
        // Only full ids: Docker also resolves names and id prefixes, which must not match.
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match docker.inspect_container(id, None).await {
            Ok(found) => Ok(Some(found)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.inner.connection.error("inspect container", e)),
        }
    }

    async fn inspect_sandbox(
        &self,
        docker: &Docker,
        id: &str,
    ) -> Result<(ContainerInspectResponse, SandboxStatus)> {
        let found = self.inspect(docker, id).await?;
        found
            .and_then(|inspect| {
                let status = convert::sandbox_status(&inspect, &self.inner.config.instance)?;
                Some((inspect, status))
            })
            .ok_or_else(|| sandbox_not_found(id))
    }

    async fn inspect_container(
        &self,
        docker: &Docker,
        id: &str,
    ) -> Result<(ContainerInspectResponse, ContainerStatus)> {
        let found = self.inspect(docker, id).await?;
        let cancelled = self.inner.cancelled.lock().get(id).cloned();
        found
            .and_then(|inspect| {
                let status = convert::container_status(
                    &inspect,
                    &self.inner.config.instance,
                    cancelled.as_ref(),
                )?;
                Some((inspect, status))
            })
            .ok_or_else(|| container_not_found(id))
    }

    /// Ids of this instance's containers of `kind`, optionally of one sandbox.
    async fn list_ids(
        &self,
        docker: &Docker,
        kind: &str,
        sandbox_id: Option<&str>,
        all: bool,
    ) -> Result<Vec<String>> {
        let mut label_filters = vec![
            format!("{}={}", labels::MANAGED_BY, self.inner.config.instance),
            format!("{}={kind}", labels::KIND),
        ];
        if let Some(sandbox) = sandbox_id {
            label_filters.push(format!("{}={sandbox}", labels::SANDBOX_ID));
        }
        let filters = HashMap::from([("label".to_owned(), label_filters)]);
        let options = ListContainersOptionsBuilder::default()
            .all(all)
            .filters(&filters)
            .build();
        let found = docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.inner.connection.error("list containers", e))?;
        Ok(found.into_iter().filter_map(|c| c.id).collect())
    }

    /// Docker stop with `grace`, returning once the container has exited.
    async fn docker_stop(&self, docker: &Docker, id: &str, grace: Duration) -> Result<()> {
        let options = StopContainerOptionsBuilder::default()
            .t(convert::stop_timeout_secs(grace))
            .build();
        // The stop request answers only when the container is down: allow the whole grace.
        let patient = docker
            .clone()
            .with_timeout(self.inner.config.request_timeout + grace);
        match patient.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Err(container_not_found(id)),
            Err(e) => Err(self.inner.connection.error("stop container", e)),
        }
    }

    /// Docker's wait for a running container to stop (any exit code).
    async fn docker_wait(&self, docker: &Docker, id: &str) -> Result<()> {
        let options = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut wait = docker.wait_container(id, Some(options));
        match wait.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { .. })) => Ok(()),
            Some(Err(e)) if is_not_found(&e) => Err(container_not_found(id)),
            Some(Err(e)) => Err(self.inner.connection.error("wait for container", e)),
        }
    }

    async fn drain_logs(&self, id: &str) {
        let pump = self.inner.pumps.lock().get(id).cloned();
        if let Some(pump) = pump
            && !pump.drained(LOG_DRAIN_LIMIT).await
        {
            tracing::warn!(container = id, "log copy did not finish in time");
        }
    }

    fn forget(&self, id: &str) {
        if let Some(pump) = self.inner.pumps.lock().remove(id) {
            pump.abort();
        }
        self.inner.cancelled.lock().remove(id);
    }

    /// Force-remove a Docker container; gone already is fine.
    async fn docker_remove(&self, docker: &Docker, id: &str) -> Result<()> {
        self.forget(id);
        let options = RemoveContainerOptionsBuilder::default().force(true).build();
        match docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // Docker is already removing it.
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            Err(e) => Err(self.inner.connection.error("remove container", e)),
        }
    }

    fn create_error(&self, spec: &ContainerSpec, error: bollard::errors::Error) -> Error {
        match status_of(&error) {
            Some(404) => Error::ImageNotFound {
                image: spec.image.clone(),
            },
            Some(400) => Error::InvalidSpec {
                container: spec.name.clone(),
                reason: message_of(&error),
            },
            Some(_) => Error::Container {
                id: spec.name.clone(),
                operation: "create",
                message: message_of(&error),
            },
            None => self.inner.connection.error("create container", error),
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn handler(&self) -> &str {
        HANDLER
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<String> {
        let pod = format!("{}/{}", spec.namespace, spec.name);
        let body = convert::sandbox_body(
            spec,
            &self.inner.config.instance,
            &self.inner.config.pause_image,
        )
        .map_err(|what| Error::Unsupported {
            runtime: HANDLER.to_owned(),
            what,
        })?;
        let docker = self.client().await?;
        self.ensure_pause_image(&docker).await?;
        let suffix = new_id();
        let name = convert::container_name(&["POD", &spec.name, &spec.namespace], &suffix[..8]);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let sandbox_error = |context: &str, source: bollard::errors::Error| Error::Sandbox {
            pod: pod.clone(),
            context: context.to_owned(),
            source: self.inner.connection.source(context, source).into(),
        };
        let created = match docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Ok(created) => created,
            Err(e) if is_not_found(&e) => {
                // The pause image vanished since it was checked (someone pruned images).
                *self.inner.pause_ready.lock().await = false;
                self.ensure_pause_image(&docker).await?;
                docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| sandbox_error("create pause container", e))?
            }
            Err(e) => return Err(sandbox_error("create pause container", e)),
        };
        let id = created.id;
        if let Err(e) = docker.start_container(&id, None).await {
            let _ = self.docker_remove(&docker, &id).await;
            return Err(sandbox_error("start pause container", e));
        }
        tracing::debug!(sandbox = %id, %pod, "docker sandbox created");
        Ok(id)
    }

    async fn stop_sandbox(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        let Ok((inspect, _)) = self.inspect_sandbox(&docker, id).await else {
            return Ok(());
        };
        let ids = self
            .list_ids(&docker, labels::KIND_CONTAINER, Some(id), true)
            .await?;
        let stops = ids.iter().map(|c| self.stop_container(c, Duration::ZERO));
        for result in futures::future::join_all(stops).await {
            match result {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let running = inspect.state.and_then(|s| s.running).unwrap_or(false);
        if running {
            match self.docker_stop(&docker, id, Duration::ZERO).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        if self.inspect_sandbox(&docker, id).await.is_err() {
            return Ok(());
        }
        let ids = self
            .list_ids(&docker, labels::KIND_CONTAINER, Some(id), true)
            .await?;
        let removals = ids.iter().map(|c| self.docker_remove(&docker, c));
        for result in futures::future::join_all(removals).await {
            result?;
        }
        self.docker_remove(&docker, id).await
    }

    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        let docker = self.client().await?;
        Ok(self.inspect_sandbox(&docker, id).await?.1)
    }

    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
        let docker = self.client().await?;
        let ids = self
            .list_ids(&docker, labels::KIND_SANDBOX, None, true)
            .await?;
        let mut sandboxes = Vec::with_capacity(ids.len());
        for id in ids {
            match self.inspect_sandbox(&docker, &id).await {
                Ok((_, status)) => sandboxes.push(status),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(sandboxes)
    }

    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String> {
        spec.validate()?;
        let docker = self.client().await?;
        let (sandbox, status) = self.inspect_sandbox(&docker, sandbox_id).await?;
        if status.state != SandboxState::Ready {
            return Err(Error::SandboxNotReady {
                id: sandbox_id.to_owned(),
            });
        }
        if images::status(&self.inner.connection, &docker, &spec.image)
            .await?
            .is_none()
        {
            return Err(Error::ImageNotFound {
                image: spec.image.clone(),
            });
        }
        let sandbox_labels = sandbox.config.and_then(|c| c.labels).unwrap_or_default();
        let body = convert::container_body(
            spec,
            sandbox_id,
            &sandbox_labels,
            &self.inner.config.instance,
        );
        let suffix = new_id();
        let name =
            convert::container_name(&[&spec.name, &status.name, &status.namespace], &suffix[..8]);
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| self.create_error(spec, e))?;
        for warning in &created.warnings {
            tracing::warn!(container = %created.id, %warning, "docker warning at create");
        }
        tracing::debug!(container = %created.id, sandbox = sandbox_id, name = %spec.name, "docker container created");
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        let (_, status) = self.inspect_container(&docker, id).await?;
        if !matches!(status.state, ContainerState::Created) {
            return Err(Error::InvalidState {
                id: id.to_owned(),
                state: status.state.name(),
                operation: "start",
            });
        }
        let writer = match &status.log_path {
            Some(path) => LogWriter::open(path, self.inner.config.log)
                .map_err(|e| Error::io("open container log", path, e))?,
            None => LogWriter::discard(),
        };
        match docker.start_container(id, None).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Err(container_not_found(id)),
            Err(e) if status_of(&e).is_some() => {
                return Err(Error::Container {
                    id: id.to_owned(),
                    operation: "start",
                    message: message_of(&e),
                });
            }
            Err(e) => return Err(self.inner.connection.error("start container", e)),
        }
        if status.log_path.is_some() {
            let pump = LogPump::spawn(docker, id.to_owned(), writer, None);
            self.inner.pumps.lock().insert(id.to_owned(), pump);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let docker = self.client().await?;
        let (_, status) = self.inspect_container(&docker, id).await?;
        match status.state {
            ContainerState::Exited { .. } => Ok(()),
            ContainerState::Created => {
                self.inner
                    .cancelled
                    .lock()
                    .entry(id.to_owned())
                    .or_insert_with(ExitInfo::killed);
                Ok(())
            }
            ContainerState::Running { .. } => {
                self.docker_stop(&docker, id, grace).await?;
                self.drain_logs(id).await;
                Ok(())
            }
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let docker = self.client().await?;
        match self.inspect_container(&docker, id).await {
            Ok(_) => self.docker_remove(&docker, id).await,
            Err(e) if e.is_not_found() => {
                self.forget(id);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let docker = self.client().await?;
        Ok(self.inspect_container(&docker, id).await?.1)
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let docker = self.client().await?;
        let ids = self
            .list_ids(&docker, labels::KIND_CONTAINER, sandbox_id, true)
            .await?;
        let mut containers = Vec::with_capacity(ids.len());
        for id in ids {
            match self.inspect_container(&docker, &id).await {
                Ok((_, status)) => containers.push(status),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(containers)
    }

    async fn wait_container(&self, id: &str) -> Result<ContainerStatus> {
        let docker = self.client().await?;
        loop {
            let (_, status) = self.inspect_container(&docker, id).await?;
            match status.state {
                ContainerState::Exited { .. } => {
                    self.drain_logs(id).await;
                    return Ok(status);
                }
                ContainerState::Running { .. } => self.docker_wait(&docker, id).await?,
                // Docker's wait cannot tell "not started yet" from "stopped": poll until it
                // starts (or is stopped before starting).
                ContainerState::Created => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn container_stats(&self, id: &str) -> Result<ContainerStats> {
        let docker = self.client().await?;
        self.inspect_container(&docker, id).await?;
        let options = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let mut stats = docker.stats(id, Some(options));
        let sample = match stats.next().await {
            Some(Ok(sample)) => sample,
            Some(Err(e)) if is_not_found(&e) => return Err(container_not_found(id)),
            Some(Err(e)) => return Err(self.inner.connection.error("container stats", e)),
            None => return Ok(ContainerStats::default()),
        };
        Ok(ContainerStats {
            cpu_usage_nanos: sample
                .cpu_stats
                .and_then(|c| c.cpu_usage)
                .and_then(|u| u.total_usage)
                .unwrap_or(0),
            memory_bytes: sample.memory_stats.and_then(|m| m.usage).unwrap_or(0),
        })
    }

    async fn pull_image(&self, image: &str, auth: &RegistryAuth) -> Result<ImageInfo> {
        self.pull_image_with_progress(image, auth, &mut |_| {})
            .await
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        let docker = self.client().await?;
        images::status(&self.inner.connection, &docker, image).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let docker = self.client().await?;
        images::list(&self.inner.connection, &docker).await
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let docker = self.client().await?;
        images::remove(&self.inner.connection, &docker, image).await
    }

    async fn import_image(&self, file: &Path, name: &str) -> Result<ImageInfo> {
        let docker = self.client().await?;
        images::import(&self.inner.connection, &docker, file, name).await
    }

    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        exec::exec(self, container_id, spec).await
    }

    async fn attach(&self, container_id: &str, spec: &AttachSpec) -> Result<ExecSession> {
        exec::attach(self, container_id, spec).await
    }
}
