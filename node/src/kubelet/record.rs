//! What the kubelet remembers about each container of a pod, independent of the runtime, and
//! its conversion to a Kubernetes `ContainerStatus`.
//!
//! A [`ContainerRecord`] is updated by the pod worker from runtime events (created, started,
//! exited, failed to pull, ...) through small pure methods; the status the API sees is always
//! derived from it ([`ContainerRecord::to_status`]).

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// Waiting reason of a container whose pod is still initializing.
pub const POD_INITIALIZING: &str = "PodInitializing";
/// Waiting reason of a container being created.
pub const CONTAINER_CREATING: &str = "ContainerCreating";
/// Waiting reason of a container in restart back-off.
pub const CRASH_LOOP_BACK_OFF: &str = "CrashLoopBackOff";
/// Waiting reason after a failed pull.
pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
/// Waiting reason while a failed pull is in back-off.
pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";

/// How a container run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// Exit code (137 when killed).
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    /// Detail (a trap message).
    pub message: Option<String>,
    /// When it started, if it did.
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// `handler://id` of that run.
    pub container_id: Option<String>,
}

/// The current state of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// Not running: being created, initializing, in back-off, or failed to start.
    Waiting {
        /// `ContainerCreating`, `CrashLoopBackOff`, `ErrImagePull`, ...
        reason: String,
        /// Detail.
        message: Option<String>,
    },
    /// Running since `started_at`.
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// Ended and not (yet) restarted.
    Terminated(Termination),
}

/// Everything the kubelet tracks about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// Name from the spec.
    pub name: String,
    /// Image from the spec.
    pub image: String,
    /// Runtime handler running it, once chosen.
    pub handler: Option<String>,
    /// The runtime's id of the current run.
    pub runtime_id: Option<String>,
    /// `image@digest` of the image that runs.
    pub image_id: Option<String>,
    /// Current state.
    pub state: RecordState,
    /// The previous run's end.
    pub last_termination: Option<Termination>,
    /// Restarts so far.
    pub restart_count: i32,
    /// Readiness (probe passed, or no readiness probe and running).
    pub ready: bool,
    /// Started (startup probe passed, or none and running).
    pub started: bool,
}

impl ContainerRecord {
    /// A new record, waiting with `reason`.
    pub fn new(name: &str, image: &str, reason: &str) -> Self {
        ContainerRecord {
            name: name.to_owned(),
            image: image.to_owned(),
            handler: None,
            runtime_id: None,
            image_id: None,
            state: RecordState::Waiting {
                reason: reason.to_owned(),
                message: None,
            },
            last_termination: None,
            restart_count: 0,
            ready: false,
            started: false,
        }
    }

    /// `handler://id` of the current run, if any.
    pub fn container_id(&self) -> Option<String> {
        match (&self.handler, &self.runtime_id) {
            (Some(h), Some(id)) => Some(format!("{h}://{id}")),
            _ => None,
        }
    }

    /// True while running.
    pub fn is_running(&self) -> bool {
        matches!(self.state, RecordState::Running { .. })
    }

    /// The termination if the container is terminated now.
    pub fn terminated(&self) -> Option<&Termination> {
        match &self.state {
            RecordState::Terminated(t) => Some(t),
            _ => None,
        }
    }

    /// True if it has run to completion with exit code 0 (init containers).
    pub fn succeeded(&self) -> bool {
        self.terminated().is_some_and(|t| t.exit_code == 0)
    }

    /// A new run was created and started at `started_at` with runtime id `id`. A previous
    /// termination becomes `lastState` and counts as a restart.
    pub fn started_run(&mut self, id: String, started_at: Timestamp) {
        if let RecordState::Terminated(t) = &self.state {
            self.last_termination = Some(t.clone());
            self.restart_count += 1;
        } else if self.last_termination.is_some() && self.runtime_id.is_some() {
            // Restarted out of a waiting state (back-off) after a run.
            self.restart_count += 1;
        }
        self.runtime_id = Some(id);
        self.state = RecordState::Running { started_at };
        self.ready = false;
        self.started = false;
    }

    /// The current run ended.
    pub fn exited(&mut self, termination: Termination) {
        self.state = RecordState::Terminated(termination);
        self.ready = false;
        self.started = false;
    }

    /// Waiting with `reason` (back-off, pull failure, ...). A termination moves to
    /// `lastState`, as `kubectl describe` shows for a crash-looping container.
    pub fn wait(&mut self, reason: &str, message: Option<String>) {
        if let RecordState::Terminated(t) = &self.state {
            self.last_termination = Some(t.clone());
        }
        self.state = RecordState::Waiting {
            reason: reason.to_owned(),
            message,
        };
        self.ready = false;
        self.started = false;
    }

    /// The Kubernetes status of this container.
    pub fn to_status(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone().unwrap_or_default(),
            container_id: match &self.state {
                RecordState::Waiting { .. } => None,
                RecordState::Running { .. } => self.container_id(),
                RecordState::Terminated(t) => {
                    t.container_id.clone().or_else(|| self.container_id())
                }
            },
            state: Some(state_of(&self.state)),
            last_state: Some(
                self.last_termination
                    .as_ref()
                    .map(|t| ContainerState {
                        terminated: Some(terminated(t)),
                        ..ContainerState::default()
                    })
                    .unwrap_or_default(),
            ),
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(self.started),
            ..ContainerStatus::default()
        }
    }
}

fn terminated(t: &Termination) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        reason: Some(t.reason.clone()),
        message: t.message.clone(),
        started_at: t.started_at.map(Time),
        finished_at: Some(Time(t.finished_at)),
        container_id: t.container_id.clone(),
        signal: None,
    }
}

fn state_of(state: &RecordState) -> ContainerState {
    match state {
        RecordState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        RecordState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..ContainerState::default()
        },
        RecordState::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..ContainerState::default()
        },
    }
}

/// `repo@digest` for an image reference and its digest (the tag dropped), as `imageID`.
pub fn image_id(image: &str, digest: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (head, last) = match without_digest.rsplit_once('/') {
        Some((head, last)) => (Some(head), last),
        None => (None, without_digest),
    };
    let name = last.split(':').next().unwrap_or(last);
    match head {
        Some(head) => format!("{head}/{name}@{digest}"),
        None => format!("{name}@{digest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).expect("time")
    }

    fn term(code: i32, reason: &str) -> Termination {
        Termination {
            exit_code: code,
            reason: reason.into(),
            message: None,
            started_at: Some(at(0)),
            finished_at: at(5),
            container_id: Some("fake://c1".into()),
        }
    }

    #[test]
    fn lifecycle_of_a_crashing_container() {
        let mut r = ContainerRecord::new("app", "img:v1", CONTAINER_CREATING);
        r.handler = Some("fake".into());
        let s = r.to_status();
        assert_eq!(
            s.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("ContainerCreating")
        );
        assert_eq!(s.container_id, None);
        assert_eq!(s.started, Some(false));

        r.started_run("c1".into(), at(0));
        assert_eq!(r.restart_count, 0);
        let s = r.to_status();
        assert_eq!(s.container_id.as_deref(), Some("fake://c1"));
        assert!(s.state.as_ref().and_then(|s| s.running.as_ref()).is_some());

        r.exited(term(1, "Error"));
        let s = r.to_status();
        let t = s
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("terminated");
        assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));

        // Back-off: waiting CrashLoopBackOff with lastState terminated.
        r.wait(CRASH_LOOP_BACK_OFF, Some("back-off 10s".into()));
        let s = r.to_status();
        assert_eq!(
            s.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        let last = s
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last");
        assert_eq!(last.exit_code, 1);
        assert_eq!(s.restart_count, 0);

        // Restart from back-off counts one restart.
        r.started_run("c2".into(), at(20));
        assert_eq!(r.restart_count, 1);
        // Exit and restart at once (first restarts are immediate) counts another.
        r.exited(term(2, "Error"));
        r.started_run("c3".into(), at(30));
        assert_eq!(r.restart_count, 2);
        assert_eq!(r.last_termination.as_ref().map(|t| t.exit_code), Some(2));
    }

    #[test]
    fn failures_before_any_run_are_not_restarts() {
        let mut r = ContainerRecord::new("app", "img:v1", CONTAINER_CREATING);
        r.wait(ERR_IMAGE_PULL, Some("not found".into()));
        r.wait(IMAGE_PULL_BACK_OFF, None);
        r.started_run("c1".into(), at(1));
        assert_eq!(r.restart_count, 0);
        assert!(r.last_termination.is_none());
    }

    #[test]
    fn succeeded_means_exit_zero() {
        let mut r = ContainerRecord::new("init", "img", POD_INITIALIZING);
        assert!(!r.succeeded());
        r.exited(term(0, "Completed"));
        assert!(r.succeeded());
        r.exited(term(3, "Error"));
        assert!(!r.succeeded());
    }

    #[test]
    fn image_ids_drop_the_tag() {
        assert_eq!(image_id("busybox:1.36", "sha256:ab"), "busybox@sha256:ab");
        assert_eq!(
            image_id("127.0.0.1:5000/app:v2", "sha256:ab"),
            "127.0.0.1:5000/app@sha256:ab"
        );
        assert_eq!(image_id("app@sha256:cd", "sha256:cd"), "app@sha256:cd");
        assert_eq!(
            image_id("docker.io/library/hello", "sha256:ab"),
            "docker.io/library/hello@sha256:ab"
        );
    }
}
