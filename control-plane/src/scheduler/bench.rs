//! `bench_scheduling_basic`: kube-scheduler's scheduler_perf
//! `SchedulingBasic` through the real API: N fake nodes (4 cpu, 32Gi, 110
//! pods, Ready, runtime handlers `docker` and `wasmtime`), a batch of
//! pods scheduled first and not measured, then M pods each requesting and
//! limited to 100m / 500Mi. Reports pods/s and per-pod latency from the
//! create request to the binding seen by a watch.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use super::{Error, LeaderElectionConfig, SchedulerConfig};

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Fake nodes to create (5,000).
    pub nodes: usize,
    /// Pods scheduled before measuring (1,000).
    pub init_pods: usize,
    /// Pods measured (10,000).
    pub measured_pods: usize,
    /// Start a scheduler in this process (else one must already run).
    pub start_scheduler: bool,
    /// The scheduler's settings when started here.
    pub scheduler: SchedulerConfig,
    /// Create requests in flight at once.
    pub create_parallelism: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            nodes: 5000,
            init_pods: 1000,
            measured_pods: 10000,
            start_scheduler: true,
            scheduler: SchedulerConfig {
                leader_election: LeaderElectionConfig {
                    enabled: false,
                    ..Default::default()
                },
                ..Default::default()
            },
            create_parallelism: 64,
            timeout: Duration::from_secs(600),
        }
    }
}

/// Benchmark results.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Pods scheduled before measuring.
    pub init_pods: usize,
    /// Pods measured.
    pub measured_pods: usize,
    /// Time to create the nodes and schedule the initial pods.
    pub setup: Duration,
    /// From the first measured create to the last binding.
    pub elapsed: Duration,
    /// How long creating the measured pods took (the API server's share).
    pub create_elapsed: Duration,
    /// Measured pods / elapsed.
    pub pods_per_second: f64,
    /// Median per-pod latency (create request sent → bound seen).
    pub latency_p50: Duration,
    /// 90th percentile latency.
    pub latency_p90: Duration,
    /// 99th percentile latency.
    pub latency_p99: Duration,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SchedulingBasic {} nodes, {} init pods, {} pods: {:.0} pods/s over {:.2}s; \
             latency p50 {:.1}ms p90 {:.1}ms p99 {:.1}ms (creating the pods took {:.2}s; setup {:.1}s)",
            self.nodes,
            self.init_pods,
            self.measured_pods,
            self.pods_per_second,
            self.elapsed.as_secs_f64(),
            self.latency_p50.as_secs_f64() * 1e3,
            self.latency_p90.as_secs_f64() * 1e3,
            self.latency_p99.as_secs_f64() * 1e3,
            self.create_elapsed.as_secs_f64(),
            self.setup.as_secs_f64(),
        )
    }
}

fn bench_err(step: &str) -> impl Fn(kube::Error) -> Error + '_ {
    move |source| Error::Bench {
        step: step.to_string(),
        source,
    }
}

/// Creates `obj`, treating "already exists" as success (re-runs reuse nodes).
async fn create_or_keep<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A scheduler_perf fake node.
pub fn bench_node(name: &str) -> Node {
    let resources = json!({"cpu": "4", "memory": "32Gi", "pods": "110"});
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "runtimeHandlers": [{"name": "docker"}, {"name": "wasmtime"}]
        }
    }))
    .unwrap_or_default()
}

/// A scheduler_perf pod: one container requesting and limited to 100m / 500Mi.
pub fn bench_pod(name: &str) -> Pod {
    let r = json!({"cpu": "100m", "memory": "500Mi"});
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": r, "limits": r}}]}
    }))
    .unwrap_or_default()
}

/// Creates `count` pods named `pod-<i>` in `ns`, recording when each
/// create request was sent.
async fn create_pods(
    client: &kube::Client,
    ns: &str,
    count: usize,
    parallelism: usize,
    sent: Arc<Vec<OnceLock<Instant>>>,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let sent = sent.clone();
            async move {
                let pod = bench_pod(&format!("pod-{i}"));
                if let Some(slot) = sent.get(i) {
                    let _ = slot.set(Instant::now());
                }
                create_or_keep(&api, &pod).await
            }
        })
        .buffer_unordered(parallelism.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map_err(bench_err("creating pods"))?;
    Ok(())
}

/// Watches `ns` and records when each `pod-<i>` is first seen bound.
/// Returns when all `count` are bound.
async fn wait_bound(
    client: kube::Client,
    ns: String,
    count: usize,
    bound: Arc<Vec<OnceLock<Instant>>>,
) {
    let api: Api<Pod> = Api::namespaced(client, &ns);
    let mut done = 0;
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        let Ok(pod) = item else { continue };
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        {
            continue;
        }
        let idx = pod
            .metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_prefix("pod-"))
            .and_then(|i| i.parse::<usize>().ok());
        if let Some(slot) = idx.and_then(|i| bound.get(i))
            && slot.set(Instant::now()).is_ok()
        {
            done += 1;
            if done >= count {
                return;
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs SchedulingBasic against the API server behind `client`.
pub async fn bench_scheduling_basic(
    client: kube::Client,
    opts: BenchOptions,
) -> Result<BenchReport, Error> {
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let init_ns = format!("sched-bench-init-{run_id}");
    let ns = format!("sched-bench-{run_id}");
    let started = Instant::now();
    let sched = opts
        .start_scheduler
        .then(|| tokio::spawn(super::run(client.clone(), opts.scheduler.clone())));
    let _abort = AbortOnDrop(sched);

    let ns_api: Api<Namespace> = Api::all(client.clone());
    for name in [&init_ns, &ns] {
        let obj: Namespace =
            serde_json::from_value(json!({"metadata": {"name": name}})).unwrap_or_default();
        create_or_keep(&ns_api, &obj)
            .await
            .map_err(bench_err("creating namespaces"))?;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    futures::stream::iter(0..opts.nodes)
        .map(|i| {
            let nodes = nodes.clone();
            async move { create_or_keep(&nodes, &bench_node(&format!("scheduler-perf-node-{i}"))).await }
        })
        .buffer_unordered(opts.create_parallelism.max(1))
        .try_collect::<Vec<()>>()
        .await
        .map_err(bench_err("creating nodes"))?;

    // Initial pods: scheduled, not measured.
    let init_bound: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..opts.init_pods).map(|_| OnceLock::new()).collect());
    let waiter = tokio::spawn(wait_bound(
        client.clone(),
        init_ns.clone(),
        opts.init_pods,
        init_bound.clone(),
    ));
    let init_sent = Arc::new(
        (0..opts.init_pods)
            .map(|_| OnceLock::new())
            .collect::<Vec<_>>(),
    );
    create_pods(
        &client,
        &init_ns,
        opts.init_pods,
        opts.create_parallelism,
        init_sent,
    )
    .await?;
    if opts.init_pods > 0 && tokio::time::timeout(opts.timeout, waiter).await.is_err() {
        let n = init_bound.iter().filter(|s| s.get().is_some()).count();
        return Err(Error::BenchTimeout(opts.timeout, n, opts.init_pods));
    }
    let setup = started.elapsed();

    // Measured pods.
    let bound: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..opts.measured_pods).map(|_| OnceLock::new()).collect());
    let sent: Arc<Vec<OnceLock<Instant>>> =
        Arc::new((0..opts.measured_pods).map(|_| OnceLock::new()).collect());
    let waiter = tokio::spawn(wait_bound(
        client.clone(),
        ns.clone(),
        opts.measured_pods,
        bound.clone(),
    ));
    // Give the watch a moment to start so no binding is missed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    create_pods(
        &client,
        &ns,
        opts.measured_pods,
        opts.create_parallelism,
        sent.clone(),
    )
    .await?;
    let create_elapsed = t0.elapsed();
    let remaining = opts.timeout.saturating_sub(t0.elapsed());
    if opts.measured_pods > 0 && tokio::time::timeout(remaining, waiter).await.is_err() {
        let n = bound.iter().filter(|s| s.get().is_some()).count();
        return Err(Error::BenchTimeout(opts.timeout, n, opts.measured_pods));
    }
    let last = bound
        .iter()
        .filter_map(|s| s.get().copied())
        .max()
        .unwrap_or(t0);
    let elapsed = last.duration_since(t0);
    let mut latencies: Vec<Duration> = sent
        .iter()
        .zip(bound.iter())
        .filter_map(|(s, b)| Some(b.get()?.saturating_duration_since(*s.get()?)))
        .collect();
    latencies.sort_unstable();
    Ok(BenchReport {
        nodes: opts.nodes,
        init_pods: opts.init_pods,
        measured_pods: opts.measured_pods,
        setup,
        elapsed,
        create_elapsed,
        pods_per_second: opts.measured_pods as f64 / elapsed.as_secs_f64().max(1e-9),
        latency_p50: percentile(&latencies, 50.0),
        latency_p90: percentile(&latencies, 90.0),
        latency_p99: percentile(&latencies, 99.0),
    })
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<(), Error>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&d, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&d, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }

    #[test]
    fn fixtures_match_scheduler_perf() {
        let n = bench_node("n");
        let alloc = n.status.and_then(|s| s.allocatable).unwrap_or_default();
        assert_eq!(alloc.get("cpu").map(|q| q.0.as_str()), Some("4"));
        assert_eq!(alloc.get("pods").map(|q| q.0.as_str()), Some("110"));
        let p = bench_pod("pod-1");
        let res = p
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.resources)
            .unwrap_or_default();
        assert_eq!(res.requests, res.limits);
        assert_eq!(
            res.requests
                .and_then(|r| r.get("memory").cloned())
                .map(|q| q.0),
            Some("500Mi".to_string())
        );
    }
}
