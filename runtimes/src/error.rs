//! The one error type of the [`Runtime`](crate::Runtime) boundary.
//!
//! Each variant maps to the reason the kubelet shows for it ([`Error::reason`]): a missing
//! image is `ErrImageNeverPull` or `ErrImagePull`, an invalid spec is
//! `CreateContainerConfigError`, an unrunnable image is `CreateContainerError`, and so on.
//! Module-level errors (image store, network namespaces) convert into it with their context.

use std::path::PathBuf;

/// A boxed source error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`Runtime`](crate::Runtime) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No sandbox has this id (it was never created or was removed).
    #[error("sandbox {id} not found")]
    SandboxNotFound {
        /// The id asked for.
        id: String,
    },
    /// No container has this id.
    #[error("container {id} not found")]
    ContainerNotFound {
        /// The id asked for.
        id: String,
    },
    /// The image is not in the local store.
    #[error("image {image:?} not found locally")]
    ImageNotFound {
        /// The reference asked for.
        image: String,
    },
    /// The image reference cannot be parsed.
    #[error("invalid image name {image:?}: {reason}")]
    InvalidImageName {
        /// The reference given.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Pulling from a registry failed.
    #[error("failed to pull image {image:?}: {message}")]
    ImagePull {
        /// The reference being pulled.
        image: String,
        /// What went wrong, for humans.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The pull policy is `Never` and the image is not present.
    #[error("image {image:?} is not present with pull policy of Never")]
    ImageNeverPull {
        /// The reference asked for.
        image: String,
    },
    /// The image exists but its content cannot run on this backend (invalid or truncated
    /// wasm, an artifact of the wrong kind, ...).
    #[error("image {image:?} cannot run: {reason}")]
    InvalidImage {
        /// The reference.
        image: String,
        /// Why, e.g. the validation or compilation error.
        reason: String,
    },
    /// The container spec is invalid (relative paths, missing mount source, zero limits).
    #[error("invalid spec for container {container:?}: {reason}")]
    InvalidSpec {
        /// The container's name.
        container: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend does not support something the spec asks for.
    #[error("unsupported by runtime {runtime}: {what}")]
    Unsupported {
        /// The backend's handler name.
        runtime: String,
        /// What is unsupported.
        what: String,
    },
    /// The backend does not implement an optional operation of the trait (`exec`, `attach`):
    /// what [`Runtime::exec`](crate::Runtime::exec) and
    /// [`Runtime::attach`](crate::Runtime::attach) return unless a backend overrides them.
    #[error("runtime {runtime} does not support {operation}: {reason}")]
    OperationNotSupported {
        /// The backend's handler name.
        runtime: String,
        /// The operation asked for (`exec`, `attach`, `exec with a terminal`, ...).
        operation: &'static str,
        /// Why, for humans.
        reason: String,
    },
    /// The container exists but is not running, so nothing can be executed in or attached
    /// to it (Kubernetes: `container not found ("name")`).
    #[error("cannot {operation} in container {id}: it is not running (state {state})")]
    ContainerNotRunning {
        /// The container id.
        id: String,
        /// Its current state name (`created`, `exited`).
        state: &'static str,
        /// The refused operation (`exec`, `attach`).
        operation: &'static str,
    },
    /// The operation is not legal in the container's current state.
    #[error("cannot {operation} container {id}: it is {state}")]
    InvalidState {
        /// The container id.
        id: String,
        /// Its current state name.
        state: &'static str,
        /// The refused operation.
        operation: &'static str,
    },
    /// The sandbox was stopped; containers can no longer be created or started in it.
    #[error("sandbox {id} is not ready")]
    SandboxNotReady {
        /// The sandbox id.
        id: String,
    },
    /// Setting up the pod sandbox (its network namespace, its threads) failed.
    #[error("failed to create sandbox for pod {pod}: {context}")]
    Sandbox {
        /// `namespace/name` of the pod.
        pod: String,
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// Creating or starting the container failed for a reason other than its image or spec.
    #[error("failed to {operation} container {id}: {message}")]
    Container {
        /// The container id or name.
        id: String,
        /// `create` or `start`.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// A file-system operation failed.
    #[error("{context} ({}): {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Any other internal failure of the backend.
    #[error("{context}: {source}")]
    Internal {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// The reason the kubelet reports for this error (`ErrImagePull`,
    /// `CreateContainerConfigError`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::SandboxNotFound { .. } | Error::ContainerNotFound { .. } => "NotFound",
            Error::ImageNotFound { .. } => "ErrImageNotFound",
            Error::InvalidImageName { .. } => "InvalidImageName",
            Error::ImagePull { .. } => "ErrImagePull",
            Error::ImageNeverPull { .. } => "ErrImageNeverPull",
            Error::InvalidImage { .. } | Error::Unsupported { .. } | Error::Container { .. } => {
                "CreateContainerError"
            }
            Error::SandboxNotReady { .. } => "CreateContainerError",
            Error::InvalidSpec { .. } => "CreateContainerConfigError",
            Error::InvalidState { .. } => "RunContainerError",
            Error::OperationNotSupported { .. } => "NotSupported",
            Error::ContainerNotRunning { .. } => "ContainerNotRunning",
            Error::Sandbox { .. } => "FailedCreatePodSandBox",
            Error::Io { .. } | Error::Internal { .. } => "RuntimeError",
        }
    }

    /// True for the "no such sandbox / container / image" errors, which callers usually treat
    /// as "already gone".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::SandboxNotFound { .. }
                | Error::ContainerNotFound { .. }
                | Error::ImageNotFound { .. }
        )
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Internal`].
    pub fn internal(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_match_the_kubelet() {
        let cases = [
            (
                Error::ImageNeverPull { image: "a".into() },
                "ErrImageNeverPull",
            ),
            (
                Error::InvalidImage {
                    image: "a".into(),
                    reason: "truncated".into(),
                },
                "CreateContainerError",
            ),
            (
                Error::InvalidSpec {
                    container: "c".into(),
                    reason: "x".into(),
                },
                "CreateContainerConfigError",
            ),
            (
                Error::ImagePull {
                    image: "a".into(),
                    message: "refused".into(),
                    source: None,
                },
                "ErrImagePull",
            ),
            (Error::ContainerNotFound { id: "x".into() }, "NotFound"),
            (
                Error::OperationNotSupported {
                    runtime: "wasmtime".into(),
                    operation: "exec",
                    reason: "no processes".into(),
                },
                "NotSupported",
            ),
            (
                Error::ContainerNotRunning {
                    id: "c".into(),
                    state: "exited",
                    operation: "exec",
                },
                "ContainerNotRunning",
            ),
        ];
        for (err, reason) in cases {
            assert_eq!(err.reason(), reason, "{err}");
        }
        assert!(Error::SandboxNotFound { id: "s".into() }.is_not_found());
        assert!(!Error::ImageNeverPull { image: "a".into() }.is_not_found());
    }
}
