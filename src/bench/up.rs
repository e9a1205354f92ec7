//! `skiff bench up`: how fast `skiff up` starts and how small it is. A real `skiff up`
//! process (this binary) on a fresh data dir: time to a Ready node, time to the first wasm
//! pod Running, idle RSS of the whole process with its node; idle RSS of `skiff apiserver`
//! alone; the binary's size, as built and stripped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::stats::{round2, rss_mib};

const WASM_IMAGE: &str = "skiff-bench/idle:v1";

/// Options of `skiff bench up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpBenchArgs {
    /// Seconds to let the processes settle before reading their idle RSS.
    #[arg(long, default_value_t = 5)]
    pub settle: u64,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Spawns `skiff <args>` and returns it with the time its stdout first contained `needle`.
fn spawn_until(args: &[String], needle: &str) -> anyhow::Result<(Killed, Duration)> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning skiff")?;
    let stdout = child.stdout.take().context("stdout")?;
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let needle = needle.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&needle) {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(120))
        .context("skiff did not become ready within 120 s")?;
    Ok((child, seen - started))
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: UpBenchArgs) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().to_str().context("utf-8 temp dir")?.to_owned();
    skiff_runtimes::images::ImageStore::open(dir.path())?
        .import_bytes(skiff_runtimes::bench::IDLE_GUEST_WASM, WASM_IMAGE)?;

    let up_args = vec![
        "up".to_owned(),
        "--data-dir".into(),
        data.clone(),
        "--api-port".into(),
        free_port()?.to_string(),
        "--kubelet-port".into(),
        free_port()?.to_string(),
        "--node-name".into(),
        "bench-up".into(),
        "--pod-bridge".into(),
        "skfbenchup0".into(),
        "--cluster-cidr".into(),
        "10.251.0.0/16".into(),
    ];
    let spawned = Instant::now();
    let (up, to_ready) = spawn_until(&up_args, "Ready in")?;
    let client = crate::components::client_from_kubeconfig(&dir.path().join("kubeconfig")).await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "first"},
        "spec": {"containers": [{"name": "main", "image": WASM_IMAGE}]},
    }))?;
    let created = Instant::now();
    pods.create(&PostParams::default(), &pod).await?;
    loop {
        let p = pods.get("first").await?;
        let running = p
            .status
            .and_then(|s| s.container_statuses)
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            });
        if running {
            break;
        }
        if created.elapsed() > Duration::from_secs(60) {
            anyhow::bail!("the first wasm pod did not run within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pod_running = created.elapsed();
    let to_first_pod = spawned.elapsed();
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let up_rss = rss_mib(up.0.id());
    drop(up);

    let api_dir = tempfile::tempdir()?;
    let api_args = vec![
        "apiserver".to_owned(),
        "--data-dir".into(),
        api_dir
            .path()
            .to_str()
            .context("utf-8 temp dir")?
            .to_owned(),
        "--api-port".into(),
        free_port()?.to_string(),
    ];
    let (api, api_ready) = spawn_until(&api_args, "ready in")?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let api_rss = rss_mib(api.0.id());
    drop(api);

    let exe = std::env::current_exe()?;
    let size = std::fs::metadata(&exe)?.len() as f64 / (1024.0 * 1024.0);
    let stripped_path = dir.path().join("skiff.stripped");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&stripped_path)
        .arg(&exe)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped_path).ok())
        .map(|m| m.len() as f64 / (1024.0 * 1024.0));

    let ms = |d: Duration| round2(d.as_secs_f64() * 1e3);
    println!("skiff up (a fresh data dir, this binary)");
    println!("{:<44} {:>10}", "figure", "value");
    println!("{:<44} {:>10}", "start -> node Ready (ms)", ms(to_ready));
    println!(
        "{:<44} {:>10}",
        "start -> first wasm pod Running (ms)",
        ms(to_first_pod)
    );
    println!(
        "{:<44} {:>10}",
        "pod create -> Running (ms)",
        ms(pod_running)
    );
    println!(
        "{:<44} {:>10.1}",
        "idle RSS, skiff up with one pod (MiB)",
        up_rss.unwrap_or(0.0)
    );
    println!(
        "{:<44} {:>10}",
        "skiff apiserver start -> ready (ms)",
        ms(api_ready)
    );
    println!(
        "{:<44} {:>10.1}",
        "idle RSS, skiff apiserver alone (MiB)",
        api_rss.unwrap_or(0.0)
    );
    println!("{:<44} {:>10.1}", "binary size (MiB)", size);
    println!(
        "{:<44} {:>10.1}",
        "binary size stripped (MiB)",
        stripped.unwrap_or(0.0)
    );
    Ok(json!({
        "bench": "up",
        "start_to_node_ready_ms": ms(to_ready),
        "start_to_first_wasm_pod_running_ms": ms(to_first_pod),
        "pod_create_to_running_ms": ms(pod_running),
        "idle_rss_up_mib": up_rss.map(round2),
        "apiserver_start_to_ready_ms": ms(api_ready),
        "idle_rss_apiserver_mib": api_rss.map(round2),
        "binary_mib": round2(size),
        "binary_stripped_mib": stripped.map(round2),
    }))
}
