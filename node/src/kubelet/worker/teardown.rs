//! The end of a pod on this node: graceful deletion (stop with the grace period, clean up,
//! delete the pod for good) and cleanup of sandbox, network, volumes and logs.

use super::*;

impl PodWorker {
    /// Graceful deletion: stop with the grace period, clean up, post the final status and
    /// delete the pod for good.
    pub(super) async fn terminate(&mut self) -> Next {
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
    pub(super) async fn cleanup(&mut self) {
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
}
