//! One pod worker: a task that owns everything about one pod on this node and syncs it,
//! level-triggered, whenever the pod changes, a container exits, a probe result changes, a
//! back-off ends, or the resync period passes.
//!
//! A sync walks the same steps every time and does only what is
//! missing: pick runtimes, create the sandbox, prepare volumes, run init containers in order,
//! start or restart containers, then post the status if it changed. A pod with a
//! `deletionTimestamp` is stopped with its grace period and deleted for good; a pod removed
//! from the API is cleaned up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HostIP, Pod, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::mpsc;

use super::backoff::{self, Backoff, Verdict};
use super::events::EventType;
use super::phase::{self, ConditionInputs, RestartPolicy};
use super::probes::{ProbeKind, ProbeSet, ProbeTarget};
use super::record::{self, ContainerRecord, RecordState, Termination};
use super::sandbox::{self, PodSandbox};
use super::start::{self, StartRequest};
use super::volumes::{self, Volumes};
use super::{Kubelet, PodEntry};

mod containers;
mod report;
mod teardown;

/// What a worker is told.
#[derive(Debug)]
pub enum Message {
    /// The pod object changed.
    Update(Arc<Pod>),
    /// The pod is gone from the API: clean up and stop.
    Removed,
    /// A container run ended.
    Exited {
        /// Container name.
        name: String,
        /// Runtime id of the run.
        id: String,
    },
    /// A probe's result changed.
    Probe {
        /// Container name.
        name: String,
        /// Runtime id of the run probed.
        id: String,
        /// Which probe.
        kind: ProbeKind,
        /// Passed or not.
        success: bool,
    },
}

/// The worker of one pod.
pub struct PodWorker {
    kubelet: Arc<Kubelet>,
    pod: Arc<Pod>,
    tx: mpsc::UnboundedSender<Message>,
    uid: String,
    handlers: BTreeMap<String, String>,
    sandbox: Option<PodSandbox>,
    sandbox_error: Option<(String, String)>,
    volumes: Option<Volumes>,
    init: Vec<ContainerRecord>,
    containers: Vec<ContainerRecord>,
    backoff: Backoff,
    /// Earliest next attempt after a failed sandbox / volume / start step.
    retry_at: BTreeMap<String, Timestamp>,
    probes: BTreeMap<String, ProbeSet>,
    start_time: Option<Timestamp>,
    last_status: Option<serde_json::Value>,
    terminal: bool,
    /// The pod was already Succeeded or Failed when this worker started (a restarted
    /// kubelet): it is never run again and its status is left as it is.
    adopted_terminal: bool,
    removed: bool,
    warned: BTreeSet<String>,
    /// When this worker first saw the pod (`kubelet_pod_start_duration_seconds`).
    first_seen: std::time::Instant,
    /// The pod's start was observed (or happened before this worker: not observable).
    start_observed: bool,
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn records_for(containers: &[Container], reason: &str) -> Vec<ContainerRecord> {
    containers
        .iter()
        .map(|c| ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or_default(), reason))
        .collect()
}

impl PodWorker {
    /// A worker for `pod`; run it with [`PodWorker::run`].
    pub fn new(kubelet: Arc<Kubelet>, pod: Arc<Pod>, tx: mpsc::UnboundedSender<Message>) -> Self {
        let spec = pod.spec.clone().unwrap_or_default();
        let init_reason = record::POD_INITIALIZING;
        let has_init = spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
        let backoff = Backoff::new(kubelet.config.backoff_initial, kubelet.config.backoff_max);
        // A pod that already has a startTime started under an earlier kubelet run.
        let started_before = pod.status.as_ref().is_some_and(|s| s.start_time.is_some());
        let adopted_terminal = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        PodWorker {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            init: records_for(
                spec.init_containers.as_deref().unwrap_or_default(),
                init_reason,
            ),
            containers: records_for(
                &spec.containers,
                if has_init {
                    init_reason
                } else {
                    record::CONTAINER_CREATING
                },
            ),
            start_time: pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0),
            kubelet,
            pod,
            tx,
            handlers: BTreeMap::new(),
            sandbox: None,
            sandbox_error: None,
            volumes: None,
            backoff,
            retry_at: BTreeMap::new(),
            probes: BTreeMap::new(),
            last_status: None,
            terminal: adopted_terminal,
            adopted_terminal,
            removed: false,
            warned: BTreeSet::new(),
            first_seen: std::time::Instant::now(),
            start_observed: started_before,
        }
    }

    /// Sync until the pod is deleted or removed.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let span = tracing::info_span!("pod", pod = %key_of(&self.pod), uid = %self.uid);
        let _ = tracing::Instrument::instrument(
            async move {
                loop {
                    let wake = match self.sync().await {
                        Next::Done => break,
                        Next::At(wake) => wake,
                    };
                    let now = Timestamp::now();
                    let resync = self.kubelet.config.resync;
                    let sleep = match wake {
                        Some(w) if w <= now => Duration::from_millis(1),
                        Some(w) => now.duration_until(w).unsigned_abs().min(resync),
                        None => resync,
                    };
                    let first = tokio::select! {
                        message = rx.recv() => message,
                        _ = tokio::time::sleep(sleep) => None,
                    };
                    if let Some(message) = first {
                        self.handle(message).await;
                        while let Ok(message) = rx.try_recv() {
                            self.handle(message).await;
                        }
                    }
                }
            },
            span,
        )
        .await;
    }

    async fn handle(&mut self, message: Message) {
        match message {
            Message::Update(pod) => self.pod = pod,
            Message::Removed => self.removed = true,
            Message::Exited { name, id } => self.container_exited(&name, &id).await,
            Message::Probe {
                name,
                id,
                kind,
                success,
            } => self.probe_result(&name, &id, kind, success).await,
        }
    }

    fn record_mut(&mut self, name: &str) -> Option<&mut ContainerRecord> {
        self.init
            .iter_mut()
            .chain(self.containers.iter_mut())
            .find(|r| r.name == name)
    }

    fn container_spec(&self, name: &str) -> Option<Container> {
        let spec = self.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .cloned()
    }

    fn grace_period(&self) -> Duration {
        let seconds = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(30);
        Duration::from_secs(seconds.max(0) as u64)
    }

    fn warn_once(&mut self, key: &str, reason: &str, message: &str) {
        if self.warned.insert(format!("{key}/{message}")) {
            self.kubelet.recorder.pod_event(
                &self.pod,
                None,
                EventType::Warning,
                reason,
                message.to_owned(),
            );
        }
    }

    fn retry_due(&self, step: &str, now: Timestamp) -> bool {
        self.retry_at.get(step).is_none_or(|t| *t <= now)
    }

    fn schedule_retry(&mut self, step: &str, now: Timestamp) -> Timestamp {
        let attempts = self.retry_at.len() as u32;
        let delay = Duration::from_secs(1 << attempts.min(3)).min(self.kubelet.config.resync);
        let at = now + delay;
        self.retry_at.insert(step.to_owned(), at);
        at
    }

    /// One level-triggered pass.
    async fn sync(&mut self) -> Next {
        if self.removed {
            self.cleanup().await;
            return Next::Done;
        }
        if self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate().await;
        }
        if self.start_time.is_none() {
            self.start_time = Some(Timestamp::now());
        }
        if self.terminal {
            if !self.adopted_terminal {
                self.post_status().await;
            }
            return Next::At(None);
        }
        let now = Timestamp::now();
        let mut wake: Option<Timestamp> = None;
        let earliest = |t: Timestamp, wake: &mut Option<Timestamp>| {
            *wake = Some(wake.map_or(t, |w| w.min(t)));
        };

        // 1. Runtimes and sandbox.
        if self.sandbox.is_none() {
            if !self.retry_due("sandbox", now) {
                earliest(self.retry_at["sandbox"], &mut wake);
                self.post_status().await;
                return Next::At(wake);
            }
            match self.create_sandbox().await {
                Ok(()) => {
                    self.retry_at.remove("sandbox");
                    self.sandbox_error = None;
                }
                Err(message) => {
                    self.warn_once("sandbox", "FailedCreatePodSandBox", &message);
                    self.sandbox_error = Some(("FailedCreatePodSandBox".to_owned(), message));
                    let at = self.schedule_retry("sandbox", now);
                    self.post_status().await;
                    return Next::At(Some(at));
                }
            }
        }

        // 2. Volumes.
        if self.volumes.is_none() {
            if !self.retry_due("volumes", now) {
                self.post_status().await;
                return Next::At(self.retry_at.get("volumes").copied());
            }
            match self.prepare_volumes().await {
                Ok(v) => {
                    self.retry_at.remove("volumes");
                    self.volumes = Some(v);
                }
                Err(message) => {
                    self.warn_once("volumes", "FailedMount", &message);
                    let at = self.schedule_retry("volumes", now);
                    self.post_status().await;
                    return Next::At(Some(at));
                }
            }
        }

        let spec = self.pod.spec.clone().unwrap_or_default();
        let policy = RestartPolicy::of(&spec);

        // 3. Init containers, in order.
        let mut initialized = true;
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        for (i, c) in init_specs.iter().enumerate() {
            let r = self.init[i].clone();
            if r.succeeded() {
                continue;
            }
            initialized = false;
            match &r.state {
                RecordState::Running { .. } => {}
                RecordState::Terminated(t) => {
                    if policy.should_restart_init(t.exit_code) {
                        if let Some(at) = self.restart_or_wait(c, true, t.finished_at, now).await {
                            earliest(at, &mut wake);
                        }
                    } else {
                        self.terminal = true;
                    }
                }
                RecordState::Waiting { .. } => {
                    if let Some(at) = self.resume(c, true, &r, now).await {
                        earliest(at, &mut wake);
                    }
                }
            }
            break;
        }

        // 4. Containers.
        if initialized {
            for c in &spec.containers {
                let Some(r) = self.containers.iter().find(|r| r.name == c.name).cloned() else {
                    continue;
                };
                match &r.state {
                    RecordState::Running { .. } => {}
                    RecordState::Waiting { .. } => {
                        if let Some(at) = self.resume(c, false, &r, now).await {
                            earliest(at, &mut wake);
                        }
                    }
                    RecordState::Terminated(t) => {
                        if policy.should_restart(t.exit_code)
                            && let Some(at) =
                                self.restart_or_wait(c, false, t.finished_at, now).await
                        {
                            earliest(at, &mut wake);
                        }
                    }
                }
            }
        }

        // 5. Status, and terminal pods release their sandbox.
        let phase = self.post_status().await;
        self.observe_start(&phase);
        if phase == "Succeeded" || phase == "Failed" {
            self.terminal = true;
            self.stop_all(Duration::ZERO).await;
            if let Some(sandbox) = self.sandbox.take() {
                sandbox::stop(&self.kubelet, &sandbox).await;
                sandbox::remove(&self.kubelet, &self.uid, &sandbox).await;
            }
            self.publish();
            return Next::At(None);
        }
        self.publish();
        Next::At(wake)
    }

    async fn create_sandbox(&mut self) -> Result<(), String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let class = spec.runtime_class_name.clone().filter(|c| !c.is_empty());
        let all: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .cloned()
            .collect();
        let mut handlers = BTreeMap::new();
        for c in &all {
            let handler = match &class {
                Some(class) => self.kubelet.selector.runtime_class_handler(class).await,
                None => {
                    self.kubelet
                        .selector
                        .by_image(c.image.as_deref().unwrap_or_default())
                        .await
                }
            }
            .map_err(|e| e.0)?;
            handlers.insert(c.name.clone(), handler);
        }
        let set: BTreeSet<String> = handlers.values().cloned().collect();
        let sandbox = sandbox::create(&self.kubelet, &self.pod, &set)
            .await
            .map_err(|e| e.to_string())?;
        for r in self.init.iter_mut().chain(self.containers.iter_mut()) {
            r.handler = handlers.get(&r.name).cloned();
        }
        self.handlers = handlers;
        self.sandbox = Some(sandbox);
        Ok(())
    }

    async fn prepare_volumes(&mut self) -> Result<Volumes, String> {
        let namespace = self.pod.metadata.namespace.clone().unwrap_or_default();
        let (cms, secrets) = volumes::referenced(&self.pod);
        let sources = start::fetch_sources(&self.kubelet, &namespace, &cms, &secrets).await?;
        let facts = start::node_facts(&self.kubelet, self.sandbox.as_ref().map(|s| s.ip));
        let plans = volumes::plan(&self.pod, &sources, &facts).map_err(|e| e.to_string())?;
        let pods_dir = self.kubelet.config.pods_dir.clone();
        let uid = self.uid.clone();
        tokio::task::spawn_blocking(move || Volumes::prepare(&pods_dir, &uid, &plans))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// What a sync asks for next.
enum Next {
    /// Wake at this time at the latest (`None`: on a message or resync).
    At(Option<Timestamp>),
    /// The worker is finished.
    Done,
}
