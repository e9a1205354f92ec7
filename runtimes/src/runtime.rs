//! The [`Runtime`] trait every backend implements, and the [`RuntimeRegistry`] that picks one.
//!
//! The trait mirrors the CRI `RuntimeService` and `ImageService` closely enough that a reader
//! who knows containerd can guess every method, and narrowly enough that a backend only sees
//! Skiff's own spec types. The kubelet holds backends as `Arc<dyn Runtime>`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::spec::{ContainerSpec, SandboxSpec};
use crate::status::{ContainerStats, ContainerStatus, ImageInfo, SandboxStatus};
use crate::streaming::{AttachSpec, ExecSession, ExecSpec};
use crate::{Error, Result};

/// Credentials for a registry pull.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP basic credentials (from an image pull secret).
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
}

/// What [`Runtime::remove_orphans`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemovedOrphans {
    /// Sandboxes of pods that were not kept, removed with their containers.
    pub sandboxes: Vec<SandboxStatus>,
    /// Ids of containers left without their sandbox, removed on their own.
    pub containers: Vec<String>,
}

impl RemovedOrphans {
    /// True if nothing was removed.
    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

/// A container runtime backend, CRI-shaped.
///
/// # Contract (checked by the [conformance suite](crate#the-conformance-suite))
///
/// - **Sandboxes** hold a pod's network namespace. [`create_sandbox`](Runtime::create_sandbox)
///   returns an id; [`stop_sandbox`](Runtime::stop_sandbox) kills every container in it and is
///   idempotent; [`remove_sandbox`](Runtime::remove_sandbox) stops, removes its containers,
///   releases the namespace, and returns `Ok` for unknown ids.
/// - **Containers** are created in a ready sandbox from an image already present locally,
///   started once, and end `Exited` with an exit code and reason. `stop_container(grace)`
///   asks the guest to stop, kills it after `grace`, and returns once it has exited (a guest
///   that cannot receive signals, like wasm, is killed at once). `wait_container` resolves
///   when the container has exited. `remove_container` is idempotent. Operations on unknown
///   ids fail with [`Error::ContainerNotFound`] / [`Error::SandboxNotFound`].
/// - **Logs**: when [`ContainerSpec::log_path`] is set, stdout and stderr go there in the CRI
///   log format ([`crate::logs`]), line order within a stream preserved.
/// - **Images**: `pull_image` fetches into the local store, `image_status` says whether an
///   image is present, `import_image` adds a local file under a name.
/// - **Exec and attach** (optional, [`crate::streaming`]): `exec` runs a command in a running
///   container and `attach` connects to its main process; both return an
///   [`ExecSession`] of byte streams and an exit code. Backends that cannot (wasm guests have
///   no processes to start) keep the defaults, which fail with
///   [`Error::OperationNotSupported`].
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// The handler name this backend registers under (`wasmtime`, `docker`, `fake`).
    fn handler(&self) -> &str;

    /// Create a pod sandbox and its network namespace, with `lo` up (CRI `RunPodSandbox`).
    async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<String>;
    /// Kill all containers of the sandbox and mark it not ready. Idempotent.
    async fn stop_sandbox(&self, id: &str) -> Result<()>;
    /// Stop the sandbox, remove its containers and release its namespace. `Ok` if unknown.
    async fn remove_sandbox(&self, id: &str) -> Result<()>;
    /// The sandbox's state and network namespace path.
    async fn sandbox_status(&self, id: &str) -> Result<SandboxStatus>;
    /// All sandboxes this runtime knows.
    async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>>;

    /// Create a container in a ready sandbox; the image must be present.
    async fn create_container(&self, sandbox_id: &str, spec: &ContainerSpec) -> Result<String>;
    /// Start a created container.
    async fn start_container(&self, id: &str) -> Result<()>;
    /// Stop a container: signal, wait up to `grace`, kill; returns once it has exited.
    /// Stopping an exited container is `Ok`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// Remove a container, killing it first if needed. `Ok` if unknown.
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// The container's current status.
    async fn container_status(&self, id: &str) -> Result<ContainerStatus>;
    /// Containers, optionally only those of one sandbox.
    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>>;
    /// Resolves with the final status once the container has exited.
    async fn wait_container(&self, id: &str) -> Result<ContainerStatus>;
    /// CPU and memory usage of a container.
    async fn container_stats(&self, id: &str) -> Result<ContainerStats>;

    /// Fetch an image from its registry into the local store.
    async fn pull_image(&self, image: &str, auth: &RegistryAuth) -> Result<ImageInfo>;
    /// The image if it is present locally.
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>>;
    /// All local images.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Remove a reference (and its content once nothing refers to it). `Ok` if unknown.
    async fn remove_image(&self, image: &str) -> Result<()>;
    /// Add a local file to the store under `name` (`skiff image import app.wasm app:v1`).
    async fn import_image(&self, file: &Path, name: &str) -> Result<ImageInfo>;

    /// Remove what an earlier kubelet of this node left behind: every sandbox whose pod UID
    /// is not in `keep` (with its containers), then every container whose sandbox no longer
    /// exists. Only this runtime instance's own sandboxes and containers are considered (a
    /// Docker runtime sees only those labelled with its instance name), so other nodes
    /// sharing a daemon are never touched.
    ///
    /// A kubelet calls it once at start-up, before it starts pod workers, with the UIDs of
    /// the pods whose sandboxes it will adopt (an empty set when it adopts none). Backends
    /// whose sandboxes die with the process (Wasmtime) find nothing. Removal is best effort
    /// past the first listing: a sandbox that cannot be removed fails the call after the
    /// others were tried.
    async fn remove_orphans(&self, keep: &HashSet<String>) -> Result<RemovedOrphans> {
        let mut removed = RemovedOrphans::default();
        let mut first_error = None;
        let mut remaining = HashSet::new();
        for sandbox in self.list_sandboxes().await? {
            if keep.contains(&sandbox.uid) {
                remaining.insert(sandbox.id);
                continue;
            }
            match self.remove_sandbox(&sandbox.id).await {
                Ok(()) => {
                    tracing::info!(
                        runtime = self.handler(),
                        sandbox = %sandbox.id,
                        pod = %format!("{}/{}", sandbox.namespace, sandbox.name),
                        uid = %sandbox.uid,
                        "removed orphaned pod sandbox"
                    );
                    removed.sandboxes.push(sandbox);
                }
                Err(error) => {
                    remaining.insert(sandbox.id);
                    first_error.get_or_insert(error);
                }
            }
        }
        for container in self.list_containers(None).await? {
            if remaining.contains(&container.sandbox_id) {
                continue;
            }
            match self.remove_container(&container.id).await {
                Ok(()) => {
                    tracing::info!(
                        runtime = self.handler(),
                        container = %container.id,
                        name = %container.name,
                        sandbox = %container.sandbox_id,
                        "removed container without a sandbox"
                    );
                    removed.containers.push(container.id);
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(removed),
        }
    }

    /// Run a command in a running container (CRI `Exec`, `kubectl exec`), with the
    /// container's environment, working directory and namespaces.
    ///
    /// Fails with [`Error::ContainerNotFound`] for an unknown id and
    /// [`Error::ContainerNotRunning`] unless the container runs. A command that cannot be
    /// started is reported like a shell would: non-zero exit code (126/127) and a message on
    /// stderr, or an error. Optional: the default returns [`Error::OperationNotSupported`].
    async fn exec(&self, container_id: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let _ = (container_id, spec);
        Err(not_supported(self.handler(), "exec"))
    }

    /// Connect to the streams of a running container's main process (CRI `Attach`,
    /// `kubectl attach`, `kubectl run -i`); `exit` resolves when the container exits.
    ///
    /// Errors as for [`exec`](Runtime::exec). Optional: the default returns
    /// [`Error::OperationNotSupported`].
    async fn attach(&self, container_id: &str, spec: &AttachSpec) -> Result<ExecSession> {
        let _ = (container_id, spec);
        Err(not_supported(self.handler(), "attach"))
    }
}

fn not_supported(handler: &str, operation: &'static str) -> Error {
    Error::OperationNotSupported {
        runtime: handler.to_owned(),
        operation,
        reason: format!("the {handler} backend does not implement {operation}"),
    }
}

/// Backends by handler name (`wasmtime`, `docker`, ...), as RuntimeClass handlers name them.
#[derive(Clone, Default)]
pub struct RuntimeRegistry {
    runtimes: BTreeMap<String, Arc<dyn Runtime>>,
    default: Option<String>,
}

impl std::fmt::Debug for RuntimeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeRegistry")
            .field("handlers", &self.runtimes.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

impl RuntimeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `runtime` under its [`Runtime::handler`] name, replacing an earlier one. The
    /// first registered runtime becomes the default.
    pub fn register(&mut self, runtime: Arc<dyn Runtime>) -> &mut Self {
        let name = runtime.handler().to_owned();
        if self.default.is_none() {
            self.default = Some(name.clone());
        }
        self.runtimes.insert(name, runtime);
        self
    }

    /// Make `handler` the default; fails if it is not registered.
    pub fn set_default(&mut self, handler: &str) -> Result<()> {
        if !self.runtimes.contains_key(handler) {
            return Err(self.unknown(handler));
        }
        self.default = Some(handler.to_owned());
        Ok(())
    }

    /// The runtime for `handler`.
    pub fn get(&self, handler: &str) -> Result<Arc<dyn Runtime>> {
        self.runtimes
            .get(handler)
            .cloned()
            .ok_or_else(|| self.unknown(handler))
    }

    /// The runtime for `handler`, or the default one when `None`.
    pub fn get_or_default(&self, handler: Option<&str>) -> Result<Arc<dyn Runtime>> {
        match handler.or(self.default.as_deref()) {
            Some(name) => self.get(name),
            None => Err(self.unknown("<default>")),
        }
    }

    /// Registered handler names, sorted.
    pub fn handlers(&self) -> impl Iterator<Item = &str> {
        self.runtimes.keys().map(String::as_str)
    }

    fn unknown(&self, handler: &str) -> Error {
        Error::Unsupported {
            runtime: "registry".to_owned(),
            what: format!(
                "no runtime handler {handler:?} (registered: {})",
                self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A third-party backend that implements only the required methods.
    struct Minimal;

    /// What the required methods the tests never call answer.
    fn unused<T>() -> Result<T> {
        Err(Error::Unsupported {
            runtime: "minimal".to_owned(),
            what: "not used by these tests".to_owned(),
        })
    }

    #[async_trait]
    impl Runtime for Minimal {
        fn handler(&self) -> &str {
            "minimal"
        }
        async fn create_sandbox(&self, _: &SandboxSpec) -> Result<String> {
            unused()
        }
        async fn stop_sandbox(&self, _: &str) -> Result<()> {
            unused()
        }
        async fn remove_sandbox(&self, _: &str) -> Result<()> {
            unused()
        }
        async fn sandbox_status(&self, _: &str) -> Result<SandboxStatus> {
            unused()
        }
        async fn list_sandboxes(&self) -> Result<Vec<SandboxStatus>> {
            unused()
        }
        async fn create_container(&self, _: &str, _: &ContainerSpec) -> Result<String> {
            unused()
        }
        async fn start_container(&self, _: &str) -> Result<()> {
            unused()
        }
        async fn stop_container(&self, _: &str, _: Duration) -> Result<()> {
            unused()
        }
        async fn remove_container(&self, _: &str) -> Result<()> {
            unused()
        }
        async fn container_status(&self, _: &str) -> Result<ContainerStatus> {
            unused()
        }
        async fn list_containers(&self, _: Option<&str>) -> Result<Vec<ContainerStatus>> {
            unused()
        }
        async fn wait_container(&self, _: &str) -> Result<ContainerStatus> {
            unused()
        }
        async fn container_stats(&self, _: &str) -> Result<ContainerStats> {
            unused()
        }
        async fn pull_image(&self, _: &str, _: &RegistryAuth) -> Result<ImageInfo> {
            unused()
        }
        async fn image_status(&self, _: &str) -> Result<Option<ImageInfo>> {
            unused()
        }
        async fn list_images(&self) -> Result<Vec<ImageInfo>> {
            unused()
        }
        async fn remove_image(&self, _: &str) -> Result<()> {
            unused()
        }
        async fn import_image(&self, _: &Path, _: &str) -> Result<ImageInfo> {
            unused()
        }
    }

    #[tokio::test]
    async fn exec_and_attach_default_to_a_clear_not_supported_error() {
        let runtime: Arc<dyn Runtime> = Arc::new(Minimal);
        let exec = runtime.exec("c1", &ExecSpec::new(["sh"])).await;
        let attach = runtime.attach("c1", &AttachSpec::default()).await;
        for (result, operation) in [(exec, "exec"), (attach, "attach")] {
            let error = result.expect_err(operation);
            assert!(
                matches!(error, Error::OperationNotSupported { operation: op, .. } if op == operation),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                format!(
                    "runtime minimal does not support {operation}: the minimal backend does \
                     not implement {operation}"
                )
            );
        }
    }
}
