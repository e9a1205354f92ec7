//! The Deployment benchmark, as a library function for `skiff bench`: how
//! long a Deployment of N replicas takes to become fully available, and how
//! long a rolling update of it takes, measured through the API only.
//!
//! Pods become Ready only if something makes them so: a real or fake
//! kubelet on the cluster's nodes, or a [`ReadyPods`] hook the caller passes
//! (e.g. [`PatchStatusReady`], which plays the kubelet through
//! `pods/status` when no node runs them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::error::{Error, KubeResultExt, is_not_found};
use super::pods::is_ready;

/// Something that makes pods Ready (a fake kubelet).
pub trait ReadyPods: Send + Sync {
    /// Makes these (not yet ready) pods Running and Ready.
    fn make_ready<'a>(
        &'a self,
        client: &'a Client,
        pods: Vec<Pod>,
    ) -> BoxFuture<'a, Result<(), Error>>;
}

/// Marks pods Running and Ready through `pods/status`, with a fake pod IP,
/// as a kubelet would; for benchmarks without nodes.
#[derive(Clone, Copy, Debug, Default)]
pub struct PatchStatusReady {
    /// Concurrent status patches.
    pub concurrency: usize,
}

impl ReadyPods for PatchStatusReady {
    fn make_ready<'a>(
        &'a self,
        client: &'a Client,
        pods: Vec<Pod>,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let now = jiff::Timestamp::now().to_string();
            let results: Vec<Result<(), Error>> = stream::iter(pods.into_iter().enumerate())
                .map(|(i, pod)| {
                    let now = now.clone();
                    async move {
                        let ns = pod.namespace().unwrap_or_else(|| "default".into());
                        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                        let patch = json!({"status": {
                            "phase": "Running",
                            "podIP": format!("10.244.{}.{}", (i / 250) % 250, i % 250 + 1),
                            "conditions": [
                                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                                {"type": "Ready", "status": "True", "lastTransitionTime": now}
                            ]
                        }});
                        match api.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
                            Ok(_) => Ok(()),
                            Err(e) if is_not_found(&e) => Ok(()),
                            Err(e) => Err(e).ctx(|| format!("marking pod {} ready", pod.name_any())),
                        }
                    }
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
            results.into_iter().collect()
        })
    }
}

/// Benchmark settings.
#[derive(Clone)]
pub struct BenchOptions {
    /// Namespace (must exist).
    pub namespace: String,
    /// Deployment name.
    pub name: String,
    /// Replicas (1,000 in the published benchmark).
    pub replicas: i32,
    /// Container image (a wasm image in the published benchmark).
    pub image: String,
    /// Also measure a rolling update to a changed template.
    pub rolling_update: bool,
    /// Give up after this long per phase.
    pub timeout: Duration,
    /// Pod readiness driver when no kubelet makes pods ready.
    pub ready: Option<Arc<dyn ReadyPods>>,
    /// Delete the Deployment afterwards.
    pub cleanup: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            namespace: "default".into(),
            name: "bench".into(),
            replicas: 1000,
            image: "hello.wasm".into(),
            rolling_update: true,
            timeout: Duration::from_secs(600),
            ready: None,
            cleanup: true,
        }
    }
}

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// Replicas of the Deployment.
    pub replicas: i32,
    /// From create to `availableReplicas == replicas`.
    pub to_available: Duration,
    /// From the template change to a completed rollout, if measured.
    pub rolling_update: Option<Duration>,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} replicas available in {:.2?}",
            self.replicas, self.to_available
        )?;
        if let Some(ru) = self.rolling_update {
            write!(f, "; rolling update in {ru:.2?}")?;
        }
        Ok(())
    }
}

fn rollout_done(d: &Deployment, replicas: i32) -> bool {
    let s = d.status.clone().unwrap_or_default();
    d.metadata.generation <= s.observed_generation
        && s.updated_replicas == Some(replicas)
        && s.replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
}

/// Waits for a complete rollout, driving readiness if asked to.
async fn wait_rollout(client: &Client, opts: &BenchOptions, what: &str) -> Result<(), Error> {
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), &opts.namespace);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &opts.namespace);
    let deadline = Instant::now() + opts.timeout;
    loop {
        let d = d_api
            .get(&opts.name)
            .await
            .ctx(|| format!("reading deployment {}", opts.name))?;
        if rollout_done(&d, opts.replicas) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::InvalidSpec {
                object: format!("deployment {}/{}", opts.namespace, opts.name),
                message: format!("{what} did not finish within {:?}", opts.timeout),
            });
        }
        if let Some(ready) = &opts.ready {
            let pods = pod_api
                .list(&ListParams::default().labels(&format!("app={}", opts.name)))
                .await
                .ctx(|| "listing benchmark pods".into())?;
            let pending: Vec<Pod> = pods
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_ready(p))
                .collect();
            if !pending.is_empty() {
                ready.make_ready(client, pending).await?;
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the benchmark against a cluster whose controller manager (and
/// scheduler/kubelets, if any) are running.
pub async fn bench_deployment(client: Client, opts: BenchOptions) -> Result<BenchReport, Error> {
    let d_api: Api<Deployment> = Api::namespaced(client.clone(), &opts.namespace);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": opts.name},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app": opts.name}},
            "template": {
                "metadata": {"labels": {"app": opts.name}},
                "spec": {"containers": [{"name": "app", "image": opts.image}]}
            }
        }
    }))
    .map_err(|source| Error::Json {
        context: "building the benchmark deployment".into(),
        source,
    })?;
    let started = Instant::now();
    d_api
        .create(&PostParams::default(), &deployment)
        .await
        .ctx(|| format!("creating deployment {}", opts.name))?;
    wait_rollout(&client, &opts, "initial rollout").await?;
    let to_available = started.elapsed();
    let mut rolling_update = None;
    if opts.rolling_update {
        let started = Instant::now();
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": jiff::Timestamp::now().to_string()}}}}});
        d_api
            .patch(&opts.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .ctx(|| format!("restarting deployment {}", opts.name))?;
        wait_rollout(&client, &opts, "rolling update").await?;
        rolling_update = Some(started.elapsed());
    }
    if opts.cleanup {
        match d_api.delete(&opts.name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("deleting deployment {}", opts.name)),
        }
    }
    Ok(BenchReport {
        replicas: opts.replicas,
        to_available,
        rolling_update,
    })
}
