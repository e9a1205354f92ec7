//! One pod worker: a task that owns everything about one pod on this node and syncs it,
//! level-triggered, whenever the pod changes, a container exits, a probe result changes, a
//! back-off ends, or the resync period passes.
//!
//! A sync ([`PodWorker::sync`]) walks the same steps every time and does only what is
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
use super::probes::{ProbeKind, ProbeSet};
use super::record::{self, ContainerRecord, RecordState, Termination};
use super::sandbox::{self, PodSandbox};
use super::start::{self, StartRequest};
use super::volumes::{self, Volumes};
use super::{Kubelet, PodEntry};

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
        /// Failure detail.
        message: Option<String>,
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
                message,
            } => self.probe_result(&name, &id, kind, success, message).await,
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

    async fn container_exited(&mut self, name: &str, id: &str) {
        let Some(handler) = self.handlers.get(name).cloned() else {
            return;
        };
        let Ok(runtime) = self.kubelet.selector.runtime(&handler) else {
            return;
        };
        let status = match runtime.container_status(id).await {
            Ok(status) => status,
            Err(error) => {
                tracing::debug!(container = name, %error, "exited container vanished");
                return;
            }
        };
        let Some(exit) = status.state.exit_info().cloned() else {
            return;
        };
        let started_at = status.state.started_at();
        if let Some(probes) = self.probes.remove(name) {
            probes.stop();
        }
        let container_id = format!("{handler}://{id}");
        if let Some(r) = self.record_mut(name)
            && r.runtime_id.as_deref() == Some(id)
            && !matches!(r.state, RecordState::Terminated(_))
        {
            r.exited(Termination {
                exit_code: exit.exit_code,
                reason: exit.reason.as_str().to_owned(),
                message: exit.message.clone(),
                started_at,
                finished_at: exit.finished_at,
                container_id: Some(container_id),
            });
        }
    }

    async fn probe_result(
        &mut self,
        name: &str,
        id: &str,
        kind: ProbeKind,
        success: bool,
        message: Option<String>,
    ) {
        let pod = self.pod.clone();
        let Some(r) = self.record_mut(name) else {
            return;
        };
        if r.runtime_id.as_deref() != Some(id) || !r.is_running() {
            return;
        }
        match kind {
            ProbeKind::Readiness => r.ready = success && r.started,
            ProbeKind::Startup => {
                r.started = success;
                if success {
                    // Without a readiness probe, started means ready.
                    let has_readiness = self
                        .container_spec(name)
                        .is_some_and(|c| c.readiness_probe.is_some());
                    if let Some(r) = self.record_mut(name)
                        && !has_readiness
                    {
                        r.ready = true;
                    }
                }
                if let Some(probes) = self.probes.get(name) {
                    probes.set_started(success);
                }
            }
            ProbeKind::Liveness => {}
        }
        if success {
            return;
        }
        let detail = message.unwrap_or_default();
        self.kubelet.recorder.pod_event(
            &pod,
            Some(name),
            EventType::Warning,
            "Unhealthy",
            format!("{} probe failed: {detail}", kind.as_str()),
        );
        if matches!(kind, ProbeKind::Liveness | ProbeKind::Startup) {
            let message = format!(
                "Container {name} failed {} probe, will be restarted",
                kind.as_str().to_lowercase()
            );
            self.kubelet.recorder.pod_event(
                &pod,
                Some(name),
                EventType::Normal,
                "Killing",
                message,
            );
            let grace = self.grace_period();
            let handler = self.handlers.get(name).cloned().unwrap_or_default();
            if let Ok(runtime) = self.kubelet.selector.runtime(&handler)
                && let Err(error) = runtime.stop_container(id, grace).await
            {
                tracing::warn!(container = name, %error, "cannot stop unhealthy container");
            }
            self.container_exited(name, id).await;
        }
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

    /// A dead container that should restart: restart now, or wait in `CrashLoopBackOff`.
    /// Returns when to look again.
    async fn restart_or_wait(
        &mut self,
        c: &Container,
        init: bool,
        finished_at: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        match self.backoff.check(&c.name, finished_at, now) {
            Verdict::Restart => self.try_start(c, init, now).await,
            Verdict::Wait { delay, until } => {
                let message = backoff::crash_loop_message(
                    delay,
                    &c.name,
                    self.pod.metadata.name.as_deref().unwrap_or_default(),
                    self.pod.metadata.namespace.as_deref().unwrap_or_default(),
                    &self.uid,
                );
                let pod = self.pod.clone();
                let pod_name = format!(
                    "{}_{}({})",
                    pod.metadata.name.as_deref().unwrap_or_default(),
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    self.uid
                );
                if let Some(r) = self.record_mut(&c.name)
                    && !matches!(&r.state, RecordState::Waiting { reason, .. } if reason == record::CRASH_LOOP_BACK_OFF)
                {
                    r.wait(record::CRASH_LOOP_BACK_OFF, Some(message));
                    self.kubelet.recorder.pod_event(
                        &pod,
                        Some(&c.name),
                        EventType::Warning,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {pod_name}",
                            c.name
                        ),
                    );
                }
                Some(until)
            }
        }
    }

    /// A waiting container: still in crash-loop back-off after a run, or never started.
    async fn resume(
        &mut self,
        c: &Container,
        init: bool,
        r: &ContainerRecord,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let in_crash_loop = matches!(&r.state, RecordState::Waiting { reason, .. } if reason == record::CRASH_LOOP_BACK_OFF);
        match (&r.last_termination, in_crash_loop) {
            (Some(last), true) => self.restart_or_wait(c, init, last.finished_at, now).await,
            _ => self.try_start(c, init, now).await,
        }
    }

    /// Start a run of `c` unless a previous failure is still in back-off.
    async fn try_start(&mut self, c: &Container, init: bool, now: Timestamp) -> Option<Timestamp> {
        let step = format!("start/{}", c.name);
        if let Some(at) = self.retry_at.get(&step).copied()
            && at > now
        {
            return Some(at);
        }
        let sandbox = self.sandbox.clone()?;
        let volumes = self.volumes.clone()?;
        let handler = self.handlers.get(&c.name).cloned()?;
        let sandbox_id = sandbox.ids.get(&handler).cloned()?;
        let record = self.record_mut(&c.name)?.clone();
        let attempt = match (&record.state, &record.last_termination, &record.runtime_id) {
            (RecordState::Terminated(_), _, _) => record.restart_count + 1,
            (_, Some(_), Some(_)) => record.restart_count + 1,
            _ => record.restart_count,
        };
        // The previous run's container is no longer needed (its log file stays).
        let previous = record.runtime_id.clone();
        let result = start::start(
            &self.kubelet,
            StartRequest {
                pod: &self.pod,
                container: c,
                handler: &handler,
                sandbox_id: &sandbox_id,
                volumes: &volumes,
                pod_ip: Some(sandbox.ip),
                attempt,
            },
        )
        .await;
        match result {
            Ok(started) => {
                self.retry_at.remove(&step);
                if let (Some(prev), Ok(runtime)) =
                    (previous, self.kubelet.selector.runtime(&handler))
                {
                    let _ = runtime.remove_container(&prev).await;
                }
                let id = started.id.clone();
                if let Some(r) = self.record_mut(&c.name) {
                    r.started_run(started.id, started.started_at);
                    r.image_id = started.image_id;
                    let has_startup = c.startup_probe.is_some();
                    let has_readiness = c.readiness_probe.is_some();
                    r.started = !has_startup;
                    r.ready = !init && !has_startup && !has_readiness;
                }
                self.watch_exit(&c.name, &handler, &id);
                if !init {
                    let probes =
                        ProbeSet::spawn(c, &id, sandbox.ip, sandbox.netns.clone(), self.tx.clone());
                    if let Some(old) = self.probes.insert(c.name.clone(), probes) {
                        old.stop();
                    }
                }
                None
            }
            Err(failure) => {
                let pull = failure.is_pull();
                let name = c.name.clone();
                let image = c.image.clone().unwrap_or_default();
                let pod = self.pod.clone();
                let failed_before = self.retry_at.contains_key(&step);
                let delay = self.start_backoff(&step);
                if let Some(r) = self.record_mut(&name) {
                    let reason =
                        if pull && failed_before && failure.reason == record::ERR_IMAGE_PULL {
                            record::IMAGE_PULL_BACK_OFF
                        } else {
                            failure.reason.as_str()
                        };
                    let message = if reason == record::IMAGE_PULL_BACK_OFF {
                        format!("Back-off pulling image \"{image}\": {}", failure.message)
                    } else {
                        failure.message.clone()
                    };
                    r.wait(reason, Some(message));
                }
                if pull && failed_before {
                    self.kubelet.recorder.pod_event(
                        &pod,
                        Some(&name),
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    );
                }
                let at = now + delay;
                self.retry_at.insert(step, at);
                Some(at)
            }
        }
    }

    /// Delay before retrying a failed start: doubles from the back-off initial value.
    fn start_backoff(&mut self, step: &str) -> Duration {
        let key = format!("retry:{step}");
        let now = Timestamp::now();
        match self.backoff.check(&key, now, now) {
            Verdict::Restart => self
                .kubelet
                .config
                .backoff_initial
                .min(Duration::from_secs(5)),
            Verdict::Wait { delay, .. } => delay,
        }
    }

    fn watch_exit(&self, name: &str, handler: &str, id: &str) {
        let Ok(runtime) = self.kubelet.selector.runtime(handler) else {
            return;
        };
        let tx = self.tx.clone();
        let (name, id) = (name.to_owned(), id.to_owned());
        tokio::spawn(async move {
            if runtime.wait_container(&id).await.is_ok() {
                let _ = tx.send(Message::Exited { name, id });
            }
        });
    }

    /// Stop every running container with `grace`, recording their ends.
    async fn stop_all(&mut self, grace: Duration) {
        for probes in std::mem::take(&mut self.probes).into_values() {
            probes.stop();
        }
        let running: Vec<(String, String, String)> = self
            .init
            .iter()
            .chain(self.containers.iter())
            .filter(|r| r.is_running())
            .filter_map(|r| Some((r.name.clone(), r.handler.clone()?, r.runtime_id.clone()?)))
            .collect();
        let pod = self.pod.clone();
        let stops = running.iter().map(|(name, handler, id)| {
            let kubelet = self.kubelet.clone();
            let pod = pod.clone();
            async move {
                if !grace.is_zero() {
                    kubelet.recorder.pod_event(
                        &pod,
                        Some(name),
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {name}"),
                    );
                }
                if let Ok(runtime) = kubelet.selector.runtime(handler)
                    && let Err(error) = runtime.stop_container(id, grace).await
                    && !error.is_not_found()
                {
                    tracing::warn!(container = %name, %error, "cannot stop container");
                }
            }
        });
        futures::future::join_all(stops).await;
        for (name, _, id) in running {
            self.container_exited(&name, &id).await;
        }
    }

    /// Graceful deletion: stop with the grace period, clean up, post the final status and
    /// delete the pod for good.
    async fn terminate(&mut self) -> Next {
        let grace = self.grace_period();
        self.stop_all(grace).await;
        self.cleanup().await;
        if !self.adopted_terminal {
            self.post_status().await;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.kubelet.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        match pods.delete(&name, &params).await {
            Ok(_) => Next::Done,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Next::Done,
            Err(error) => {
                tracing::warn!(%error, "final pod deletion failed; retrying");
                Next::At(Some(Timestamp::now() + Duration::from_secs(1)))
            }
        }
    }

    /// Stop everything and release the sandbox, network and volumes.
    async fn cleanup(&mut self) {
        self.stop_all(Duration::ZERO).await;
        if let Some(sandbox) = self.sandbox.take() {
            for r in self.init.iter().chain(self.containers.iter()) {
                if let (Some(handler), Some(id)) = (&r.handler, &r.runtime_id)
                    && let Ok(runtime) = self.kubelet.selector.runtime(handler)
                {
                    let _ = runtime.remove_container(id).await;
                }
            }
            sandbox::remove(&self.kubelet, &self.uid, &sandbox).await;
        }
        let pods_dir = self.kubelet.config.pods_dir.clone();
        let uid = self.uid.clone();
        let _ = tokio::task::spawn_blocking(move || Volumes::cleanup(&pods_dir, &uid)).await;
        self.volumes = None;
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        self.kubelet.index.remove(&ns, &name, &self.uid);
        // The pod is going away: so do its logs, as Kubernetes' container GC removes them.
        let log_dir = self.kubelet.pod_log_dir(&ns, &name, &self.uid);
        if let Err(error) = tokio::fs::remove_dir_all(&log_dir).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, dir = %log_dir.display(), "cannot remove pod logs");
        }
    }

    fn publish(&self) {
        let ns = self.pod.metadata.namespace.clone().unwrap_or_default();
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        let containers = self
            .init
            .iter()
            .chain(self.containers.iter())
            .filter_map(|r| {
                Some((
                    r.name.clone(),
                    (
                        r.handler.clone()?,
                        r.runtime_id.clone()?,
                        r.restart_count,
                        r.is_running(),
                    ),
                ))
            })
            .collect();
        self.kubelet.index.set(
            &ns,
            &name,
            PodEntry {
                uid: self.uid.clone(),
                ip: self.sandbox.as_ref().map(|s| s.ip),
                netns: self.sandbox.as_ref().and_then(|s| s.netns.clone()),
                containers,
            },
        );
    }

    /// The status from the records (pure part in [`phase`] and [`record`]).
    fn status(&self) -> PodStatus {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let init: Vec<_> = self.init.iter().map(ContainerRecord::to_status).collect();
        let containers: Vec<_> = self
            .containers
            .iter()
            .map(ContainerRecord::to_status)
            .collect();
        let phase = phase::phase(&spec, &init, &containers);
        let existing = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let sandbox_error = self
            .sandbox_error
            .as_ref()
            .map(|(r, m)| (r.as_str(), m.as_str()));
        let conditions = phase::conditions(
            &spec,
            &init,
            &containers,
            ConditionInputs {
                sandbox_ready: self.sandbox.is_some() && !self.terminal,
                sandbox_error,
                phase,
            },
            &existing,
            Timestamp::now(),
        );
        let host_ip = self.kubelet.config.node_ip.to_string();
        let pod_ip = self
            .sandbox
            .as_ref()
            .map(|s| s.ip.to_string())
            .or_else(|| self.pod.status.as_ref().and_then(|s| s.pod_ip.clone()));
        PodStatus {
            phase: Some(phase.to_owned()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            pod_ip,
            start_time: self.start_time.map(Time),
            qos_class: Some(phase::qos_class(&spec).to_owned()),
            init_container_statuses: (!init.is_empty()).then_some(init),
            container_statuses: Some(containers),
            ..PodStatus::default()
        }
    }

    /// Post the status if it changed; returns the phase.
    async fn post_status(&mut self) -> String {
        let status = self.status();
        let phase = status.phase.clone().unwrap_or_default();
        let value = serde_json::json!({ "status": status });
        let mut comparable = value.clone();
        if let Some(conditions) = comparable["status"]["conditions"].as_array_mut() {
            for c in conditions {
                c.as_object_mut().map(|o| o.remove("lastTransitionTime"));
            }
        }
        if self.last_status.as_ref() == Some(&comparable) {
            return phase;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.kubelet.client.clone(),
            self.pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = self.pod.metadata.name.clone().unwrap_or_default();
        match pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&value))
            .await
        {
            Ok(updated) => {
                self.last_status = Some(comparable);
                // Keep our view of conditions (transition times) current.
                if updated.metadata.uid.as_deref() == Some(self.uid.as_str()) {
                    self.pod = Arc::new(Pod {
                        status: updated.status,
                        ..(*self.pod).clone()
                    });
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(error) => tracing::warn!(%error, "cannot update pod status"),
        }
        phase
    }
}

/// What a sync asks for next.
enum Next {
    /// Wake at this time at the latest (`None`: on a message or resync).
    At(Option<Timestamp>),
    /// The worker is finished.
    Done,
}
