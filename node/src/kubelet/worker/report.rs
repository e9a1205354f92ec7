//! What a pod worker tells others: the pod status it posts (built by the pure
//! [`phase`](crate::kubelet::phase) and [`record`](crate::kubelet::record) modules) and the
//! [`PodIndex`](crate::kubelet::PodIndex) entry the kubelet server reads.

use super::*;

impl PodWorker {
    /// The first Pending → Running transition feeds `kubelet_pod_start_duration_seconds`.
    pub(super) fn observe_start(&mut self, phase: &str) {
        if phase == "Running" && !self.start_observed {
            self.start_observed = true;
            self.kubelet
                .metrics
                .observe_pod_start(self.first_seen.elapsed().as_secs_f64());
        }
    }

    pub(super) fn publish(&self) {
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
    pub(super) fn status(&self) -> PodStatus {
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
    pub(super) async fn post_status(&mut self) -> String {
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
