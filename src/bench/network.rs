//! `skiff bench network`: the pod network alone, the stage a burst of wasm pods waits on.
//!
//! For each parallelism it creates `--pods` namespaces as the Wasmtime backend does (one
//! thread each, holding its namespace by descriptor, `lo` up) and attaches each to a node
//! bridge of its own ([`BridgeNetwork`]: veth, address, default route), `parallelism` at a
//! time, then tears them all down. No API server, scheduler or kubelet: the figures are the
//! kernel's and the pod network's, to tell them from the rest of `skiff bench pods`. Needs
//! root.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::json;
use skiff_node::network::{BridgeNetwork, PodNetwork, bridge::BridgeConfig};
use skiff_runtimes::netns::{Netns, NetnsExecutor};

use super::stats::{Samples, round2};

/// The bench's own bridge (a node's is `skiff0`).
const BRIDGE: &str = "skfnetb0";

/// Options of `skiff bench network`.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkBenchArgs {
    /// Pods created and attached in each round.
    #[arg(long, default_value_t = 1000)]
    pub pods: usize,
    /// Pods set up at once, one round per value.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub parallelism: Vec<usize>,
}

/// One pod's namespace, its executor thread, and how long each step took.
struct Attached {
    uid: String,
    _netns: Netns,
    executor: NetnsExecutor,
    namespace: Duration,
    attach: Duration,
}

/// A namespace and its thread, made as the Wasmtime backend makes them, then attached.
async fn set_up(network: &BridgeNetwork, index: usize) -> anyhow::Result<Attached> {
    let uid = format!("bench-network-{index}");
    let started = Instant::now();
    let thread = format!("bench-net-{index}");
    let (netns, executor) =
        tokio::task::spawn_blocking(move || Netns::create_held_with_executor(&thread)).await??;
    let namespace = started.elapsed();
    let started = Instant::now();
    network.attach(&uid, netns.path()).await?;
    Ok(Attached {
        uid,
        _netns: netns,
        executor,
        namespace,
        attach: started.elapsed(),
    })
}

/// Network namespaces the kernel still holds, freed or not, and how many fit in one slab
/// (its `net_namespace` slab cache). A namespace's last reference going away only queues its
/// teardown, which the kernel runs later under the rtnl lock that a pod's setup needs.
fn namespaces_in_kernel() -> Option<(u64, u64)> {
    let slabs = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let line = slabs
        .lines()
        .find(|line| line.starts_with("net_namespace "))?;
    let mut fields = line.split_whitespace().skip(1);
    let active = fields.next()?.parse().ok()?;
    let per_slab = fields.nth(2)?.parse().ok()?;
    Some((active, per_slab))
}

/// Waits (up to 30 s) until the kernel has torn down the namespaces of a round: the slab
/// count is back within a few slabs per CPU of `baseline` (the allocator keeps freed objects
/// of partly used slabs counted as active).
async fn wait_for_kernel_teardown(baseline: Option<(u64, u64)>) -> Duration {
    let started = Instant::now();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    while let (Some((now, _)), Some((base, per_slab))) = (namespaces_in_kernel(), baseline) {
        if now <= base + 4 * per_slab * cpus || started.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: NetworkBenchArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        skiff_runtimes::netns::supported(),
        "skiff bench network needs root (it creates network namespaces and a bridge)"
    );
    let dir = tempfile::tempdir()?;
    let network = BridgeNetwork::new(BridgeConfig {
        bridge: BRIDGE.to_owned(),
        state_dir: dir.path().join("ipam"),
        masquerade: false,
        cluster_cidr: "10.252.0.0/16".parse()?,
    });
    let cidr = "10.252.0.0/20".parse()?;
    network
        .configure(cidr)
        .await
        .with_context(|| format!("set up the bench bridge {BRIDGE}"))?;
    let result = rounds(&network, &args).await;
    remove_bridge(BRIDGE);
    result
}

async fn rounds(
    network: &BridgeNetwork,
    args: &NetworkBenchArgs,
) -> anyhow::Result<serde_json::Value> {
    let baseline = namespaces_in_kernel();
    println!(
        "{:>11} {:>9} {:>9} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "parallelism",
        "pods",
        "pods/s",
        "ns p50 ms",
        "attach p50",
        "attach p99",
        "teardown",
        "kernel gc"
    );
    let mut figures = Vec::new();
    for &parallelism in &args.parallelism {
        let started = Instant::now();
        let attached: Vec<anyhow::Result<Attached>> = futures::stream::iter(0..args.pods)
            .map(|i| set_up(network, i))
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
        let elapsed = started.elapsed();
        let mut pods = Vec::with_capacity(attached.len());
        let mut failure = None;
        for result in attached {
            match result {
                Ok(pod) => pods.push(pod),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        let (mut namespace, mut attach) = (Samples::default(), Samples::default());
        for pod in &pods {
            namespace.push(pod.namespace);
            attach.push(pod.attach);
        }
        let ports =
            std::fs::read_dir(format!("/sys/class/net/{BRIDGE}/brif")).map_or(0, Iterator::count);
        let torn = Instant::now();
        tear_down(network, pods).await?;
        let teardown = torn.elapsed();
        let kernel = wait_for_kernel_teardown(baseline).await;
        if let Some(error) = failure {
            return Err(error.context(format!("set up a pod (parallelism {parallelism})")));
        }
        let rate = args.pods as f64 / elapsed.as_secs_f64();
        println!(
            "{:>11} {:>9} {:>9.0} {:>12.2} {:>12.2} {:>12.2} {:>9.2}s {:>9.2}s",
            parallelism,
            args.pods,
            rate,
            namespace.percentile_ms(50.0),
            attach.percentile_ms(50.0),
            attach.percentile_ms(99.0),
            teardown.as_secs_f64(),
            kernel.as_secs_f64()
        );
        figures.push(json!({
            "parallelism": parallelism,
            "pods": args.pods,
            "bridge_ports": ports,
            "pods_per_s": round2(rate),
            "namespace_p50_ms": round2(namespace.percentile_ms(50.0)),
            "namespace_p99_ms": round2(namespace.percentile_ms(99.0)),
            "attach_p50_ms": round2(attach.percentile_ms(50.0)),
            "attach_p99_ms": round2(attach.percentile_ms(99.0)),
            "teardown_s": round2(teardown.as_secs_f64()),
            "kernel_teardown_s": round2(kernel.as_secs_f64()),
        }));
    }
    Ok(json!({"bench": "network", "rounds": figures}))
}

/// Detaches every pod and stops its thread, which drops the last hold on its namespace.
async fn tear_down(network: &BridgeNetwork, pods: Vec<Attached>) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(pods)
        .map(|pod| async move {
            network.detach(&pod.uid, None).await?;
            pod.executor.shutdown().await;
            Ok(())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Removes the bench bridge, best effort.
fn remove_bridge(name: &str) {
    if let Ok(mut netlink) = skiff_runtimes::netlink::Netlink::open() {
        let _ = netlink.delete_link(name);
    }
}
