//! Container runs of a pod worker: starting (pull policy, start back-off), exits, probe
//! results, CrashLoopBackOff restarts and stopping.

use super::*;

impl PodWorker {
    pub(super) async fn container_exited(&mut self, name: &str, id: &str) {
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

    pub(super) async fn probe_result(
        &mut self,
        name: &str,
        id: &str,
        kind: ProbeKind,
        success: bool,
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
        // The probe task recorded the `Unhealthy` event of the failed run.
        if success {
            return;
        }
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

    /// A dead container that should restart: restart now, or wait in `CrashLoopBackOff`.
    /// Returns when to look again.
    pub(super) async fn restart_or_wait(
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
    pub(super) async fn resume(
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
    pub(super) async fn try_start(
        &mut self,
        c: &Container,
        init: bool,
        now: Timestamp,
    ) -> Option<Timestamp> {
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
                    let target = ProbeTarget {
                        pod: self.pod.clone(),
                        container: c.clone(),
                        id: id.clone(),
                        ip: sandbox.ip,
                        runtime: self.kubelet.selector.runtime(&handler).ok(),
                        recorder: self.kubelet.recorder.clone(),
                    };
                    let probes = ProbeSet::spawn(target, self.tx.clone());
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
    pub(super) fn start_backoff(&mut self, step: &str) -> Duration {
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

    pub(super) fn watch_exit(&self, name: &str, handler: &str, id: &str) {
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
    pub(super) async fn stop_all(&mut self, grace: Duration) {
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
}
