//! The outputs of the [`Runtime`](crate::Runtime) trait and the container state machine.
//!
//! A container moves `Created → Running → Exited`, or `Created → Exited` when it is stopped
//! before it ever ran. [`ContainerState::start`] and [`ContainerState::exit`] are the only legal
//! transitions; backends call them instead of assigning states by hand, so every backend
//! reports the same states for the same history.

use std::fmt;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Why a container exited, using the reason strings Kubernetes shows in
/// `status.containerStatuses[].state.terminated.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitReason {
    /// Exit code 0.
    Completed,
    /// Non-zero exit code, a trap, or killed by a stop.
    Error,
    /// The container tried to use more memory than its limit allows.
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// The container could not be started at all (e.g. instantiation failed).
    ContainerCannotRun,
}

impl ExitReason {
    /// The Kubernetes reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OomKilled => "OOMKilled",
            ExitReason::ContainerCannotRun => "ContainerCannotRun",
        }
    }

    /// The reason Kubernetes derives from an exit code when nothing more specific is known.
    pub fn from_exit_code(code: i32) -> Self {
        if code == 0 {
            ExitReason::Completed
        } else {
            ExitReason::Error
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitInfo {
    /// Process-style exit code: the guest's own code, `128 + signal` when killed (137 for a
    /// forced stop, as Docker and containerd report).
    pub exit_code: i32,
    /// Kubernetes-style reason.
    pub reason: ExitReason,
    /// Human-readable detail, e.g. the trap message.
    pub message: Option<String>,
    /// When it ended.
    pub finished_at: Timestamp,
}

impl ExitInfo {
    /// Exit info for a guest that ended on its own with `code`.
    pub fn from_code(code: i32) -> Self {
        ExitInfo {
            exit_code: code,
            reason: ExitReason::from_exit_code(code),
            message: None,
            finished_at: Timestamp::now(),
        }
    }

    /// Exit info for a container ended by a stop (`SIGKILL` semantics, code 137).
    pub fn killed() -> Self {
        ExitInfo {
            exit_code: 137,
            reason: ExitReason::Error,
            message: Some("stopped".to_owned()),
            finished_at: Timestamp::now(),
        }
    }

    /// Builder-style setter for the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Builder-style setter for the reason.
    pub fn with_reason(mut self, reason: ExitReason) -> Self {
        self.reason = reason;
        self
    }
}

/// The lifecycle state of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContainerState {
    /// Created but not started.
    Created,
    /// Running since the given time.
    Running {
        /// When the guest started.
        started_at: Timestamp,
    },
    /// Finished; never changes again.
    Exited {
        /// When it started, if it ever did.
        started_at: Option<Timestamp>,
        /// How it ended.
        exit: ExitInfo,
    },
}

impl ContainerState {
    /// A short name for messages: `created`, `running` or `exited`.
    pub fn name(&self) -> &'static str {
        match self {
            ContainerState::Created => "created",
            ContainerState::Running { .. } => "running",
            ContainerState::Exited { .. } => "exited",
        }
    }

    /// `Created → Running`. Any other starting state is an [`Error::InvalidState`].
    pub fn start(&self, id: &str, now: Timestamp) -> Result<ContainerState, Error> {
        match self {
            ContainerState::Created => Ok(ContainerState::Running { started_at: now }),
            other => Err(Error::InvalidState {
                id: id.to_owned(),
                state: other.name(),
                operation: "start",
            }),
        }
    }

    /// `Created | Running → Exited`. Exiting twice keeps the first exit (the first writer
    /// wins, so a stop racing with a natural exit reports whichever happened first).
    pub fn exit(&self, exit: ExitInfo) -> ContainerState {
        match self {
            ContainerState::Created => ContainerState::Exited {
                started_at: None,
                exit,
            },
            ContainerState::Running { started_at } => ContainerState::Exited {
                started_at: Some(*started_at),
                exit,
            },
            exited @ ContainerState::Exited { .. } => exited.clone(),
        }
    }

    /// True once the container has exited.
    pub fn is_exited(&self) -> bool {
        matches!(self, ContainerState::Exited { .. })
    }

    /// True while the container runs.
    pub fn is_running(&self) -> bool {
        matches!(self, ContainerState::Running { .. })
    }

    /// The exit details, if exited.
    pub fn exit_info(&self) -> Option<&ExitInfo> {
        match self {
            ContainerState::Exited { exit, .. } => Some(exit),
            _ => None,
        }
    }

    /// When the container started, if it did.
    pub fn started_at(&self) -> Option<Timestamp> {
        match self {
            ContainerState::Created => None,
            ContainerState::Running { started_at } => Some(*started_at),
            ContainerState::Exited { started_at, .. } => *started_at,
        }
    }
}

/// What [`Runtime::container_status`](crate::Runtime::container_status) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    /// Runtime-assigned container id.
    pub id: String,
    /// The sandbox it belongs to.
    pub sandbox_id: String,
    /// Name from the spec.
    pub name: String,
    /// Image reference from the spec.
    pub image: String,
    /// Content digest of the image that runs (`sha256:...`), if the backend knows it.
    pub image_digest: Option<String>,
    /// Lifecycle state.
    pub state: ContainerState,
    /// When the container was created.
    pub created_at: Timestamp,
    /// Where its CRI-format log is written.
    pub log_path: Option<PathBuf>,
}

/// Resource usage of one container (CRI `ContainerStats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Cumulative CPU time the container used, in nanoseconds.
    pub cpu_usage_nanos: u64,
    /// Memory the container holds now, in bytes (linear memory for wasm, RSS for processes).
    pub memory_bytes: u64,
}

/// Whether a sandbox can run containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// Created and not stopped.
    Ready,
    /// Stopped: its containers were killed, its network may be gone; only removal is left.
    NotReady,
}

/// What [`Runtime::sandbox_status`](crate::Runtime::sandbox_status) reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStatus {
    /// Runtime-assigned sandbox id.
    pub id: String,
    /// Pod name from the spec.
    pub name: String,
    /// Pod namespace from the spec.
    pub namespace: String,
    /// Pod UID from the spec.
    pub uid: String,
    /// Ready or not.
    pub state: SandboxState,
    /// The network namespace the pod's containers live in (a bind-mounted file or
    /// `/proc/<pid>/ns/net`); `None` for host networking.
    pub netns_path: Option<PathBuf>,
    /// When it was created.
    pub created_at: Timestamp,
}

/// An image the runtime has locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageInfo {
    /// Content digest (`sha256:<hex>`) identifying the image.
    pub id: String,
    /// References that resolve to it (`hello:latest`, `127.0.0.1:5000/app:v1`).
    pub tags: Vec<String>,
    /// Size in bytes.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_transitions() {
        let now = Timestamp::now();
        let created = ContainerState::Created;
        let running = created.start("c", now).expect("created can start");
        assert_eq!(running.started_at(), Some(now));
        let exited = running.exit(ExitInfo::from_code(3));
        let info = exited.exit_info().expect("exited");
        assert_eq!(info.exit_code, 3);
        assert_eq!(info.reason, ExitReason::Error);
        assert_eq!(exited.started_at(), Some(now));
    }

    #[test]
    fn illegal_starts_are_errors() {
        let now = Timestamp::now();
        let running = ContainerState::Running { started_at: now };
        let err = running.start("c1", now).expect_err("cannot start twice");
        assert!(err.to_string().contains("running"), "{err}");
        let exited = running.exit(ExitInfo::killed());
        assert!(exited.start("c1", now).is_err());
    }

    #[test]
    fn stopping_a_created_container_exits_it_without_start_time() {
        let exited = ContainerState::Created.exit(ExitInfo::killed());
        assert!(exited.is_exited());
        assert_eq!(exited.started_at(), None);
    }

    #[test]
    fn first_exit_wins() {
        let exited = ContainerState::Created.exit(ExitInfo::from_code(0));
        let again = exited.exit(ExitInfo::killed());
        assert_eq!(again.exit_info().map(|e| e.exit_code), Some(0));
    }

    #[test]
    fn reasons_follow_kubernetes() {
        assert_eq!(ExitReason::from_exit_code(0).as_str(), "Completed");
        assert_eq!(ExitReason::from_exit_code(1).as_str(), "Error");
        assert_eq!(ExitReason::OomKilled.as_str(), "OOMKilled");
        assert_eq!(ExitInfo::killed().exit_code, 137);
    }
}
