//! `skiff bench deployment`: a 1,000-replica wasm Deployment on fake nodes (kwok-like: pods
//! go Running and Ready without containers), through the real API server, scheduler and
//! controller manager in this process. Times the Deployment to fully available, then a
//! rolling update of it (25% surge / 25% unavailable) to fully updated and available.

use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_node::FakeNodesConfig;

use super::stats::{round2, rss_mib};

/// Options of `skiff bench deployment`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeploymentBenchArgs {
    /// Replicas of the Deployment.
    #[arg(long, default_value_t = 1000)]
    pub replicas: u32,
    /// Fake nodes (each takes up to 110 pods).
    #[arg(long, default_value_t = 20)]
    pub nodes: u32,
}

/// Waits until the Deployment reports `replicas` updated, available and no more.
async fn wait_complete(
    api: &Api<Deployment>,
    replicas: i32,
    generation: i64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut report = Instant::now();
    loop {
        let d = api.get("bench").await?;
        let s = d.status.unwrap_or_default();
        if report.elapsed() > Duration::from_secs(5) {
            report = Instant::now();
            tracing::info!(status = ?s, "waiting for the Deployment");
        }
        if s.observed_generation.unwrap_or(0) >= generation
            && s.updated_replicas.unwrap_or(0) == replicas
            && s.available_replicas.unwrap_or(0) == replicas
            && s.replicas.unwrap_or(0) == replicas
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Deployment did not complete within 900 s: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: DeploymentBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let mut control = super::ControlPlane::start(dir.path()).await?;
    let client = control.client.clone();
    crate::up::ensure_runtime_classes(&client).await?;
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(false);
    let fake = FakeNodesConfig {
        count: args.nodes,
        name_prefix: "bench-fake".to_owned(),
        ready: Some(ready_tx),
        ..FakeNodesConfig::default()
    };
    let fake_client = client.clone();
    control.tasks.spawn(async move {
        if let Err(err) = skiff_node::run_fake_nodes(fake_client, fake).await {
            tracing::error!(%err, "fake nodes stopped");
        }
    });
    ready_rx
        .wait_for(|r| *r)
        .await
        .context("the fake nodes never became Ready")?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicas = i32::try_from(args.replicas)?;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {
                    "runtimeClassName": "wasmtime",
                    "containers": [{"name": "app", "image": "skiff-bench/idle:v1",
                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                },
            },
        },
    }))?;
    let started = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    wait_complete(&deployments, replicas, 1).await?;
    let to_available = started.elapsed();

    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "env": [{"name": "REVISION", "value": "2"}]}
    ]}}}});
    let started = Instant::now();
    let patched = deployments
        .patch("bench", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let generation = patched.metadata.generation.unwrap_or(2);
    wait_complete(&deployments, replicas, generation).await?;
    let rollout = started.elapsed();
    let rss = rss_mib(std::process::id());
    control.tasks.abort_all();

    println!(
        "Deployment of {} replicas on {} fake nodes",
        args.replicas, args.nodes
    );
    println!("{:<36} {:>10}", "figure", "seconds");
    println!(
        "{:<36} {:>10.2}",
        "create -> fully available",
        to_available.as_secs_f64()
    );
    println!(
        "{:<36} {:>10.2}",
        "rolling update -> complete",
        rollout.as_secs_f64()
    );
    println!("{:<36} {:>10.1}", "process RSS (MiB)", rss.unwrap_or(0.0));
    Ok(json!({
        "bench": "deployment",
        "replicas": args.replicas,
        "fake_nodes": args.nodes,
        "create_to_available_s": round2(to_available.as_secs_f64()),
        "rolling_update_s": round2(rollout.as_secs_f64()),
        "pods_per_second_to_available": round2(f64::from(args.replicas) / to_available.as_secs_f64()),
        "rss_mib": rss.map(round2),
    }))
}
