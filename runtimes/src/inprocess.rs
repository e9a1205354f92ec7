//! Bookkeeping for a backend whose pods live in this process: `wasmtime` (guests are tasks)
//! and `fake` (host processes forked from here). Both keep the same two tables, so they
//! share them:
//!
//! - a [`PodSandbox`] is a network namespace (none for host networking) plus the threads
//!   inside it ([`NetnsExecutor`]) on which the pod's tasks run;
//! - a [`Container`] is what every backend records of a container (ids, spec, state, log)
//!   plus what the backend itself needs to run it (`X`: a process group, a compiled guest);
//! - [`Pods`] holds both, answers lookups with the trait's not-found errors, and builds the
//!   statuses the kubelet reads.
//!
//! Stopping is the backend's own (a signal, a dropped future); [`Pods::stop_sandbox`] hands
//! it the containers to stop, and [`Pods::remove_sandbox`] then forgets the pod and gives
//! its namespace back.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::Timestamp;
use parking_lot::Mutex;

use crate::lifecycle::{StateCell, container_not_found, new_id, sandbox_not_found};
use crate::logs::{LogConfig, LogWriter};
use crate::netns::{Netns, NetnsExecutor};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::status::{ContainerStatus, SandboxState, SandboxStatus};
use crate::{Error, Result};

/// A pod sandbox: its spec, its network namespace and the threads inside it.
pub struct PodSandbox {
    id: String,
    spec: SandboxSpec,
    created_at: Timestamp,
    ready: AtomicBool,
    netns: Option<Netns>,
    executor: Mutex<Option<NetnsExecutor>>,
    handle: tokio::runtime::Handle,
}

impl PodSandbox {
    /// The ready sandbox `id`. Without an executor (host networking) the pod's tasks run on
    /// the caller's runtime.
    pub fn new(
        id: String,
        spec: &SandboxSpec,
        netns: Option<Netns>,
        executor: Option<NetnsExecutor>,
    ) -> Self {
        let handle = match &executor {
            Some(executor) => executor.handle().clone(),
            None => tokio::runtime::Handle::current(),
        };
        PodSandbox {
            id,
            spec: spec.clone(),
            created_at: Timestamp::now(),
            ready: AtomicBool::new(true),
            netns,
            executor: Mutex::new(executor),
            handle,
        }
    }

    /// The sandbox id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where to spawn the pod's tasks (and fork its processes): on threads inside its
    /// network namespace.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// `Ok` while the sandbox is ready, else [`Error::SandboxNotReady`]: a stopped sandbox
    /// takes no new containers and starts none.
    pub fn ensure_ready(&self) -> Result<()> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(Error::SandboxNotReady {
                id: self.id.clone(),
            })
        }
    }

    /// What `sandbox_status` reports.
    pub fn status(&self) -> SandboxStatus {
        SandboxStatus {
            id: self.id.clone(),
            name: self.spec.name.clone(),
            namespace: self.spec.namespace.clone(),
            uid: self.spec.uid.clone(),
            state: if self.ready.load(Ordering::SeqCst) {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            netns_path: self.netns.as_ref().map(|n| n.path().to_owned()),
            created_at: self.created_at,
        }
    }

    /// Stop the pod's threads, wait until they are gone (a held namespace lives as long as
    /// its thread), then remove the namespace if the sandbox made it.
    async fn release(&self) -> Result<()> {
        let executor = self.executor.lock().take();
        if let Some(executor) = executor {
            executor.shutdown().await;
        }
        if let Some(ns) = &self.netns {
            ns.remove()
                .map_err(|e| Error::internal("remove network namespace", e))?;
        }
        Ok(())
    }
}

impl Drop for PodSandbox {
    // A sandbox dropped without `remove_sandbox` (a panicking caller, a dropped runtime) must
    // not panic by dropping a tokio runtime in async context, nor leak its namespace.
    fn drop(&mut self) {
        drop(self.executor.get_mut().take());
        if let Some(ns) = &self.netns
            && let Err(error) = ns.remove()
        {
            tracing::warn!(sandbox = %self.id, %error, "cannot remove network namespace");
        }
    }
}

/// A container: what every in-process backend records of it, and the backend's own part
/// `X`, reached through `Deref` (`container.pgid` for the fake backend's process group).
pub struct Container<X> {
    /// The container id.
    pub id: String,
    /// Its sandbox.
    pub sandbox_id: String,
    /// What it was created from.
    pub spec: ContainerSpec,
    /// The image's digest (`sha256:...`).
    pub image_digest: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Created, running or exited.
    pub state: StateCell,
    /// Its CRI log.
    pub log: LogWriter,
    backend: X,
}

impl<X> Container<X> {
    /// A created container with a fresh id.
    pub fn new(
        sandbox_id: &str,
        spec: &ContainerSpec,
        image_digest: String,
        log: LogWriter,
        backend: X,
    ) -> Self {
        Container {
            id: new_id(),
            sandbox_id: sandbox_id.to_owned(),
            spec: spec.clone(),
            image_digest,
            created_at: Timestamp::now(),
            state: StateCell::new(),
            log,
            backend,
        }
    }

    /// What `container_status` reports.
    pub fn status(&self) -> ContainerStatus {
        ContainerStatus {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            name: self.spec.name.clone(),
            image: self.spec.image.clone(),
            image_digest: Some(self.image_digest.clone()),
            state: self.state.get(),
            created_at: self.created_at,
            log_path: self.log.path(),
        }
    }
}

/// Open the CRI log of a container created from `spec` (none if it names no path), on a
/// blocking thread: creating a file waits on the filesystem (on ext4 without a journal, its
/// inode allocator skips every recently deleted inode of the group), not on a worker thread.
pub async fn open_log(spec: &ContainerSpec, config: LogConfig) -> Result<LogWriter> {
    let path = spec.log_path.clone();
    let opened = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || LogWriter::open_optional(path.as_deref(), config))
    };
    opened
        .await
        .map_err(|e| Error::internal("open container log", e))?
        .map_err(|e| Error::io("open container log", path.unwrap_or_default(), e))
}

impl<X> Deref for Container<X> {
    type Target = X;

    fn deref(&self) -> &X {
        &self.backend
    }
}

/// The sandboxes and containers of one backend.
pub struct Pods<X> {
    sandboxes: Mutex<HashMap<String, Arc<PodSandbox>>>,
    containers: Mutex<HashMap<String, Arc<Container<X>>>>,
}

impl<X> Default for Pods<X> {
    fn default() -> Self {
        Pods {
            sandboxes: Mutex::default(),
            containers: Mutex::default(),
        }
    }
}

impl<X> Pods<X> {
    /// Keep `sandbox`; returns its id.
    pub fn add_sandbox(&self, sandbox: PodSandbox) -> String {
        let id = sandbox.id.clone();
        self.sandboxes.lock().insert(id.clone(), Arc::new(sandbox));
        id
    }

    /// Keep `container`; returns its id.
    pub fn add_container(&self, container: Container<X>) -> String {
        let id = container.id.clone();
        self.containers
            .lock()
            .insert(id.clone(), Arc::new(container));
        id
    }

    /// The sandbox `id`, or [`Error::NotFound`].
    pub fn sandbox(&self, id: &str) -> Result<Arc<PodSandbox>> {
        self.sandboxes
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| sandbox_not_found(id))
    }

    /// The sandbox `id` if it is ready: [`Error::NotFound`] or [`Error::SandboxNotReady`].
    pub fn ready_sandbox(&self, id: &str) -> Result<Arc<PodSandbox>> {
        let sandbox = self.sandbox(id)?;
        sandbox.ensure_ready()?;
        Ok(sandbox)
    }

    /// The container `id`, or [`Error::NotFound`].
    pub fn container(&self, id: &str) -> Result<Arc<Container<X>>> {
        self.containers
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| container_not_found(id))
    }

    /// Forget the container `id` (the backend has stopped it).
    pub fn remove_container(&self, id: &str) {
        self.containers.lock().remove(id);
    }

    fn containers_of(&self, sandbox_id: &str) -> Vec<Arc<Container<X>>> {
        self.containers
            .lock()
            .values()
            .filter(|c| c.sandbox_id == sandbox_id)
            .cloned()
            .collect()
    }

    /// Mark the sandbox `id` not ready and return its containers, for the backend to stop.
    /// Nothing for an unknown id: stopping is idempotent.
    pub fn stop_sandbox(&self, id: &str) -> Vec<Arc<Container<X>>> {
        let Ok(sandbox) = self.sandbox(id) else {
            return Vec::new();
        };
        sandbox.ready.store(false, Ordering::SeqCst);
        self.containers_of(id)
    }

    /// Forget the sandbox `id` and its containers (the backend has stopped them), stop its
    /// threads and remove its namespace. Nothing for an unknown id.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.containers.lock().retain(|_, c| c.sandbox_id != id);
        let Some(sandbox) = self.sandboxes.lock().remove(id) else {
            return Ok(());
        };
        sandbox.release().await
    }

    /// Every sandbox's status.
    pub fn sandbox_statuses(&self) -> Vec<SandboxStatus> {
        self.sandboxes.lock().values().map(|s| s.status()).collect()
    }

    /// The status of every container, or of those of one sandbox.
    pub fn container_statuses(&self, sandbox_id: Option<&str>) -> Vec<ContainerStatus> {
        self.containers
            .lock()
            .values()
            .filter(|c| sandbox_id.is_none_or(|s| s == c.sandbox_id))
            .map(|c| c.status())
            .collect()
    }
}
