//! `skiff bench pods`: pod startup latency as Kubernetes defines it (pod creation → all its
//! containers running, observed through a watch) for wasm and OCI pods side by side, and
//! the throughput of creating many wasm pods on one node.
//!
//! Everything runs in this process, as in `skiff up`: the API server on a redb store in a
//! temporary directory, the scheduler, the controller manager and one node with Wasmtime and
//! (when dockerd answers) Docker. The wasm pods run an idle guest; the OCI pods run
//! `sleep` in a busybox image built from the host's `busybox-static`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use parking_lot::Mutex;
use serde_json::json;
use skiff_node::{NetworkConfig, NodeConfig, PodCidrSource};

use super::stats::{Samples, round2, rss_mib};

const WASM_IMAGE: &str = "skiff-bench/idle:v1";
const OCI_IMAGE: &str = "skiff-bench/busybox:v1";

/// Options of `skiff bench pods`.
#[derive(Debug, Clone, clap::Args)]
pub struct PodsBenchArgs {
    /// Wasm pods created one after another for the latency figures.
    #[arg(long, default_value_t = 100)]
    pub wasm_samples: usize,
    /// OCI pods created one after another for the latency figures (0 skips Docker).
    #[arg(long, default_value_t = 30)]
    pub oci_samples: usize,
    /// Wasm pods created at once for the throughput figure.
    #[arg(long, default_value_t = 1000)]
    pub burst: usize,
    /// Create requests in flight during the burst.
    #[arg(long, default_value_t = 32)]
    pub parallelism: usize,
    /// Run the pods in the node's network namespace instead of the pod network, to tell
    /// the pod network's share of the figures from the rest.
    #[arg(long)]
    pub host_network: bool,
}

/// Pod name → when its create request was sent, and the latencies seen by the watch.
#[derive(Default)]
struct Tracker {
    sent: HashMap<String, Instant>,
    done: HashMap<String, Duration>,
}

fn all_running(pod: &Pod) -> bool {
    let want = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    statuses.is_some_and(|cs| {
        cs.len() == want
            && cs
                .iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
}

fn pod(name: &str, image: &str, command: Option<&[&str]>) -> anyhow::Result<Pod> {
    let mut container = json!({"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"});
    if let Some(command) = command {
        container["command"] = json!(command);
    }
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
    }))?)
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: PodsBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let mut control = super::ControlPlane::start(dir.path()).await?;
    let client = control.client.clone();

    // Images: the idle wasm guest, and busybox in Docker when it answers.
    skiff_runtimes::images::ImageStore::open(dir.path())?
        .import_bytes(skiff_runtimes::bench::IDLE_GUEST_WASM, WASM_IMAGE)?;
    let node_name = "bench-node";
    let runtimes = crate::node::build_runtimes(
        dir.path(),
        node_name,
        std::path::Path::new("/var/run/docker.sock"),
    )
    .await?;
    let docker = runtimes.registry.get("docker").ok();
    let mut oci = false;
    if args.oci_samples > 0
        && let Some(docker) = &docker
    {
        let tar = dir.path().join("busybox.tar");
        match skiff_runtimes::docker::testing::busybox_rootfs_tar() {
            Ok(bytes) => {
                std::fs::write(&tar, bytes)?;
                oci = docker.import_image(&tar, OCI_IMAGE).await.is_ok();
            }
            Err(err) => eprintln!("skiff bench pods: no OCI image ({err}); OCI skipped"),
        }
    }
    let registry = runtimes.registry.clone();
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let config = NodeConfig {
        node_name: node_name.to_owned(),
        data_dir: dir.path().join("node"),
        max_pods: u32::try_from(args.burst + args.wasm_samples + args.oci_samples + 10)?,
        node_ip: Some(std::net::IpAddr::from([127, 0, 0, 1])),
        network: NetworkConfig {
            bridge: "skfbench0".to_owned(),
            pod_cidr: PodCidrSource::Static("10.250.0.0/20".parse()?),
            cluster_cidr: "10.250.0.0/16".parse()?,
            mode: if args.host_network {
                skiff_node::NetworkMode::Host
            } else {
                skiff_node::NetworkMode::Auto
            },
            ..NetworkConfig::default()
        },
        ready: Some(ready_tx),
        ..NodeConfig::default()
    };
    let node_client = client.clone();
    control.tasks.spawn(async move {
        if let Err(err) = skiff_node::run_node(node_client, runtimes.registry, config).await {
            tracing::error!(%err, "node agent stopped");
        }
    });
    ready_rx
        .wait_for(|r| *r)
        .await
        .context("the node never became Ready")?;

    let ns_api: Api<Namespace> = Api::all(client.clone());
    let state = control.api.state();
    let result = measure(&client, &ns_api, &args, oci, state.metrics(), &registry).await;
    control.tasks.abort_all();
    while control.tasks.join_next().await.is_some() {}
    crate::node::stop_all_pods(&registry, Duration::from_secs(1)).await;
    result
}

/// What [`create_and_wait`] measured.
struct Burst {
    /// Per pod: create sent → seen with all containers running.
    latencies: Vec<Duration>,
    /// Until the API had acknowledged every create.
    created: Duration,
    /// Until every pod ran.
    elapsed: Duration,
}

/// Creates pods and waits until the watch saw each with all containers running.
async fn create_and_wait(
    pods: &Api<Pod>,
    names: Vec<(String, Pod)>,
    parallelism: usize,
) -> anyhow::Result<Burst> {
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let want = names.len();
    let rv = pods
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(290), &rv)
        .await?
        .boxed();
    let watcher_tracker = tracker.clone();
    let watch = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            let pod = match event? {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => pod,
                WatchEvent::Error(status) => {
                    anyhow::bail!("the watch of the pods ended: {}", status.message)
                }
                _ => continue,
            };
            if !all_running(&pod) {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let mut t = watcher_tracker.lock();
            if let Some(sent) = t.sent.get(&name).copied()
                && !t.done.contains_key(&name)
            {
                t.done.insert(name, sent.elapsed());
                if t.done.len() == want {
                    return Ok(());
                }
            }
        }
        let seen = watcher_tracker.lock().done.len();
        anyhow::bail!("the watch of the pods ended after {seen} of {want} ran")
    });
    let started = Instant::now();
    futures::stream::iter(names)
        .map(|(name, pod)| {
            let tracker = tracker.clone();
            async move {
                tracker.lock().sent.insert(name, Instant::now());
                pods.create(&PostParams::default(), &pod).await
            }
        })
        .buffer_unordered(parallelism.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let created = started.elapsed();
    tokio::time::timeout(Duration::from_secs(300), watch)
        .await
        .context("pods did not all run within 300 s")???;
    let elapsed = started.elapsed();
    let latencies = tracker.lock().done.values().copied().collect();
    Ok(Burst {
        latencies,
        created,
        elapsed,
    })
}

/// Each pod is created only after the previous one runs, so no pod waits behind another.
async fn one_at_a_time(
    pods: &Api<Pod>,
    names: Vec<(String, Pod)>,
) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(names.len());
    for one in names {
        samples.extend(create_and_wait(pods, vec![one], 1).await?.latencies);
    }
    Ok(samples)
}

/// Deletes every pod of `pods`' namespace and waits until the node has torn them all down:
/// the API has none left and no runtime holds a sandbox. The next phase then does not pay for
/// this one's teardown (stopping 30 Docker containers ran through the first seconds of the
/// burst and cost it a third of its rate).
async fn delete_all(
    pods: &Api<Pod>,
    runtimes: &skiff_runtimes::RuntimeRegistry,
) -> anyhow::Result<()> {
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default(),
    )
    .await?;
    let limit = Duration::from_secs(120);
    let started = Instant::now();
    loop {
        let left = pods
            .list_metadata(&ListParams::default())
            .await?
            .items
            .len();
        let mut sandboxes = 0;
        for handler in runtimes.handlers() {
            sandboxes += runtimes.get(handler)?.list_sandboxes().await?.len();
        }
        if left == 0 && sandboxes == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "{left} pods and {sandboxes} sandboxes were still there {limit:?} after deleting the pods"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn latency_figures(name: &str, samples: &[Duration]) -> (serde_json::Value, String) {
    let mut s = Samples::default();
    for d in samples {
        s.push(*d);
    }
    let (p50, p99) = (s.percentile_ms(50.0), s.percentile_ms(99.0));
    (
        json!({"samples": samples.len(), "p50_ms": round2(p50), "p99_ms": round2(p99)}),
        format!(
            "{name:<12} {:>8} {:>10.1} {:>10.1}",
            samples.len(),
            p50,
            p99
        ),
    )
}

/// Write requests the API server has served so far, by `verb resource[/subresource]`, from its
/// `apiserver_request_total` counters.
fn write_counts(
    metrics: &skiff_control_plane::apiserver::metrics::Metrics,
) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in metrics.encode().lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if !matches!(verb.as_str(), "create" | "update" | "patch" | "delete") {
            continue;
        }
        let mut key = format!("{verb} {}", label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            key = format!("{key}/{subresource}");
        }
        *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

async fn measure(
    client: &kube::Client,
    namespaces: &Api<Namespace>,
    args: &PodsBenchArgs,
    oci: bool,
    metrics: &skiff_control_plane::apiserver::metrics::Metrics,
    runtimes: &skiff_runtimes::RuntimeRegistry,
) -> anyhow::Result<serde_json::Value> {
    for ns in ["bench-wasm", "bench-oci", "bench-burst"] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        namespaces.create(&PostParams::default(), &obj).await?;
    }
    // Latency: one pod at a time, so queueing does not count.
    let wasm_api: Api<Pod> = Api::namespaced(client.clone(), "bench-wasm");
    let wasm_pods = (0..args.wasm_samples)
        .map(|i| {
            let name = format!("wasm-{i}");
            pod(&name, WASM_IMAGE, None).map(|p| (name, p))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wasm = one_at_a_time(&wasm_api, wasm_pods).await?;
    delete_all(&wasm_api, runtimes).await?;
    let (wasm_json, wasm_row) = latency_figures("wasm", &wasm);

    let mut oci_json = serde_json::Value::Null;
    let mut oci_row = format!("{:<12} skipped (no Docker)", "oci");
    if oci {
        let oci_api: Api<Pod> = Api::namespaced(client.clone(), "bench-oci");
        let oci_pods = (0..args.oci_samples)
            .map(|i| {
                let name = format!("oci-{i}");
                pod(&name, OCI_IMAGE, Some(&["/bin/sleep", "3600"])).map(|p| (name, p))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = one_at_a_time(&oci_api, oci_pods).await?;
        delete_all(&oci_api, runtimes).await?;
        (oci_json, oci_row) = latency_figures("oci", &samples);
    }

    // Throughput: many wasm pods at once on the one node.
    let burst_api: Api<Pod> = Api::namespaced(client.clone(), "bench-burst");
    let burst_pods = (0..args.burst)
        .map(|i| {
            let name = format!("burst-{i}");
            pod(&name, WASM_IMAGE, None).map(|p| (name, p))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let writes_before = write_counts(metrics);
    let Burst {
        latencies: burst,
        created,
        elapsed,
    } = create_and_wait(&burst_api, burst_pods, args.parallelism).await?;
    // API writes per pod the burst caused (the pod's create, its binding, status updates and
    // events from the scheduler and the kubelet).
    let per_pod: BTreeMap<String, f64> = write_counts(metrics)
        .into_iter()
        .map(|(k, v)| {
            let delta = v - writes_before.get(&k).copied().unwrap_or(0.0);
            (k, round2(delta / args.burst.max(1) as f64))
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    let rate = burst.len() as f64 / elapsed.as_secs_f64();
    let rss = rss_mib(std::process::id());
    let (burst_json, burst_row) = latency_figures("burst", &burst);

    println!("pod startup latency (create -> all containers running, seen by a watch)");
    println!(
        "{:<12} {:>8} {:>10} {:>10}",
        "pods", "samples", "p50 ms", "p99 ms"
    );
    println!("{wasm_row}\n{oci_row}\n{burst_row}");
    let writes: Vec<String> = per_pod.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("API writes per burst pod: {}", writes.join(", "));
    println!(
        "burst: {} wasm pods running in {:.2} s = {:.0} pods/s (all created after {:.2} s); process RSS {:.0} MiB",
        burst.len(),
        elapsed.as_secs_f64(),
        rate,
        created.as_secs_f64(),
        rss.unwrap_or(0.0)
    );
    let p99 = |v: &serde_json::Value| v["p99_ms"].as_f64();
    let ratio = match (p99(&oci_json), p99(&wasm_json)) {
        (Some(o), Some(w)) if w > 0.0 => Some(round2(o / w)),
        _ => None,
    };
    Ok(json!({
        "bench": "pods",
        "wasm": wasm_json,
        "oci": oci_json,
        "oci_to_wasm_p99_ratio": ratio,
        "burst": {
            "pods": burst.len(),
            "seconds": round2(elapsed.as_secs_f64()),
            "create_seconds": round2(created.as_secs_f64()),
            "api_writes_per_pod": per_pod,
            "pods_per_second": round2(rate),
            "latency": burst_json,
        },
        "rss_mib_with_burst_running": rss.map(round2),
    }))
}
