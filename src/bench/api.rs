//! `skiff bench api`: a real `skiff apiserver` process on a durable redb
//! store, driven over HTTPS by 1, 10 and 100 concurrent kube-rs clients doing
//! create / get / list, plus watch delivery latency with many open watches,
//! idle RSS and time from start to ready.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use parking_lot::Mutex;
use serde_json::json;

use super::stats::{Samples, round2, rss_mib};

/// Options of `skiff bench api`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiBenchArgs {
    /// Concurrent clients per phase (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub clients: Vec<usize>,
    /// Seconds each create/get/list phase runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Open watches for the watch-delivery phase.
    #[arg(long, default_value_t = 1000)]
    pub watches: usize,
    /// Objects written while the watches are open.
    #[arg(long, default_value_t = 200)]
    pub watch_events: usize,
}

struct Server {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client_for(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn start_server() -> anyhow::Result<(Server, f64)> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["apiserver", "--api-port", &port.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting skiff apiserver")?;
    let kubeconfig = dir.path().join("kubeconfig");
    let server = Server {
        child,
        _dir: dir,
        kubeconfig,
    };
    // Ready = the kubeconfig exists and /readyz answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if server.kubeconfig.exists()
            && let Ok(client) = client_for(&server.kubeconfig).await
        {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            if client.request_text(req).await.is_ok() {
                break;
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the API server did not become ready in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((server, started.elapsed().as_secs_f64() * 1000.0))
}

fn configmap(name: String) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".repeat(64))])),
        ..ConfigMap::default()
    }
}

async fn make_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

/// One phase's result.
struct Phase {
    ops: usize,
    /// Successful operations of each worker, by worker index.
    per_worker: Vec<usize>,
    errors: usize,
    samples: Samples,
    secs: f64,
}

impl Phase {
    fn json(&self) -> serde_json::Value {
        json!({
            "ops_per_sec": round2(self.ops as f64 / self.secs),
            "p50_ms": round2(self.samples.percentile_ms(50.0)),
            "p99_ms": round2(self.samples.percentile_ms(99.0)),
            "errors": self.errors,
        })
    }
}

/// Runs `op(worker, successes so far)` on `clients` workers for `secs` seconds.
async fn run_phase<F, Fut>(clients: &[kube::Client], workers: usize, secs: u64, op: F) -> Phase
where
    F: Fn(kube::Client, usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let client = clients[w % clients.len()].clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let (mut samples, mut ops, mut errors) = (Samples::default(), 0usize, 0usize);
            while Instant::now() < deadline {
                let t = Instant::now();
                // The op's sequence number is the count of its successes so far, so a failed
                // create is retried under the same name and the names a worker created are
                // exactly 0..ops (the get phase reads those back).
                if op(client.clone(), w, ops).await {
                    samples.push(t.elapsed());
                    ops += 1;
                } else {
                    errors += 1;
                }
            }
            (samples, ops, errors)
        }));
    }
    let mut phase = Phase {
        ops: 0,
        per_worker: Vec::with_capacity(workers),
        errors: 0,
        samples: Samples::default(),
        secs: 0.0,
    };
    for t in tasks {
        match t.await {
            Ok((s, o, e)) => {
                phase.per_worker.push(o);
                phase.samples.extend(s);
                phase.ops += o;
                phase.errors += e;
            }
            Err(_) => phase.per_worker.push(0),
        }
    }
    phase.secs = started.elapsed().as_secs_f64();
    phase
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: ApiBenchArgs) -> anyhow::Result<serde_json::Value> {
    let (server, ready_ms) = start_server().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_mib(server.child.id()).unwrap_or(0.0);

    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    // One connection per worker up to 100, so concurrency is real.
    let mut clients = Vec::new();
    for _ in 0..max_clients.min(100) {
        clients.push(client_for(&server.kubeconfig).await?);
    }
    let mut results = serde_json::Map::new();
    println!(
        "{:<8} {:>8} {:>12} {:>10} {:>10} {:>7}",
        "op", "clients", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    for &n in &args.clients {
        let ns = format!("bench-{n}");
        make_namespace(&clients[0], &ns).await?;
        let ns_c = ns.clone();
        let create = run_phase(&clients, n, args.seconds, move |client, w, seq| {
            let ns = ns_c.clone();
            async move {
                let created = Api::<ConfigMap>::namespaced(client, &ns)
                    .create(&PostParams::default(), &configmap(format!("cm-{w}-{seq}")))
                    .await;
                // 409: an earlier attempt that failed on the client's side was stored.
                match created {
                    Ok(_) => true,
                    Err(kube::Error::Api(status)) => status.code == 409,
                    Err(_) => false,
                }
            }
        })
        .await;
        // Each worker reads back only the objects it created: workers create at different
        // rates, so an average count would ask for names that were never created.
        let created: Arc<Vec<usize>> = Arc::new(create.per_worker.clone());
        let ns_g = ns.clone();
        let get = run_phase(&clients, n, args.seconds, move |client, w, seq| {
            let ns = ns_g.clone();
            let mine = created.get(w).copied().unwrap_or(0).max(1);
            async move {
                Api::<ConfigMap>::namespaced(client, &ns)
                    .get(&format!("cm-{w}-{}", seq % mine))
                    .await
                    .is_ok()
            }
        })
        .await;
        // Lists of 100 objects.
        let list_ns = format!("bench-list-{n}");
        make_namespace(&clients[0], &list_ns).await?;
        let list_api = Api::<ConfigMap>::namespaced(clients[0].clone(), &list_ns);
        for i in 0..100 {
            list_api
                .create(&PostParams::default(), &configmap(format!("l-{i}")))
                .await?;
        }
        let ns_l = list_ns.clone();
        let list = run_phase(&clients, n, args.seconds, move |client, _, _| {
            let ns = ns_l.clone();
            async move {
                Api::<ConfigMap>::namespaced(client, &ns)
                    .list(&ListParams::default())
                    .await
                    .map(|l| l.items.len() == 100)
                    .unwrap_or(false)
            }
        })
        .await;
        for (name, phase) in [("create", &create), ("get", &get), ("list", &list)] {
            println!(
                "{:<8} {:>8} {:>12.0} {:>10.2} {:>10.2} {:>7}",
                name,
                n,
                phase.ops as f64 / phase.secs,
                phase.samples.percentile_ms(50.0),
                phase.samples.percentile_ms(99.0),
                phase.errors
            );
            let entry = results.entry(name.to_string()).or_insert_with(|| json!({}));
            entry[n.to_string()] = phase.json();
        }
    }

    let watch = watch_phase(&server, args.watches, args.watch_events).await?;
    println!(
        "{:<8} {:>8} {:>12} {:>10.2} {:>10.2} {:>7}",
        "watch",
        args.watches,
        watch.samples.len(),
        watch.samples.percentile_ms(50.0),
        watch.samples.percentile_ms(99.0),
        watch.errors
    );
    println!("start to ready: {ready_ms:.0} ms; idle RSS: {idle_rss:.1} MiB");
    results.insert("bench".into(), json!("api"));
    results.insert("store".into(), json!("redb"));
    results.insert("ready_ms".into(), json!(round2(ready_ms)));
    results.insert("idle_rss_mib".into(), json!(round2(idle_rss)));
    results.insert(
        "watch".into(),
        json!({
            "watchers": args.watches,
            "events_delivered": watch.samples.len(),
            "p50_ms": round2(watch.samples.percentile_ms(50.0)),
            "p99_ms": round2(watch.samples.percentile_ms(99.0)),
            "missing": watch.errors,
        }),
    );
    Ok(serde_json::Value::Object(results))
}

/// Opens `watchers` watches, writes `events` objects, and measures the time
/// from each write's acknowledgement to its delivery on every watch.
async fn watch_phase(server: &Server, watchers: usize, events: usize) -> anyhow::Result<Phase> {
    let ns = "bench-watch";
    let writer = client_for(&server.kubeconfig).await?;
    make_namespace(&writer, ns).await?;
    let acked: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let samples: Arc<Mutex<Samples>> = Arc::default();
    let delivered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // HTTP/2 multiplexes; 50 watches per connection stays under stream limits.
    let per_conn = 50;
    let mut conns = Vec::new();
    for _ in 0..watchers.div_ceil(per_conn) {
        conns.push(client_for(&server.kubeconfig).await?);
    }
    let rv = Api::<ConfigMap>::namespaced(writer.clone(), ns)
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(watchers.max(1));
    let mut tasks = Vec::new();
    for i in 0..watchers {
        let api = Api::<ConfigMap>::namespaced(conns[i / per_conn].clone(), ns);
        let (acked, samples, delivered, rv, ready) = (
            acked.clone(),
            samples.clone(),
            delivered.clone(),
            rv.clone(),
            ready_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Ok(stream) = api.watch(&WatchParams::default().timeout(120), &rv).await else {
                return;
            };
            let _ = ready.send(()).await;
            let mut stream = stream.boxed();
            let mut seen = 0;
            while let Some(Ok(ev)) = stream.next().await {
                if let WatchEvent::Added(cm) = ev {
                    let now = Instant::now();
                    let name = cm.metadata.name.unwrap_or_default();
                    // The ack may race the event; wait briefly for it.
                    let mut sent = acked.lock().get(&name).copied();
                    for _ in 0..100 {
                        if sent.is_some() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        sent = acked.lock().get(&name).copied();
                    }
                    if let Some(sent) = sent {
                        samples.lock().push(now.saturating_duration_since(sent));
                    }
                    delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    seen += 1;
                    if seen == events {
                        break;
                    }
                }
            }
        }));
    }
    drop(ready_tx);
    let mut open = 0;
    while open < watchers && ready_rx.recv().await.is_some() {
        open += 1;
    }
    let api = Api::<ConfigMap>::namespaced(writer, ns);
    for i in 0..events {
        let name = format!("w-{i}");
        api.create(&PostParams::default(), &configmap(name.clone()))
            .await?;
        acked.lock().insert(name, Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for t in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(left, t).await;
    }
    let samples = std::mem::take(&mut *samples.lock());
    let expected = watchers * events;
    let got = delivered.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Phase {
        ops: got,
        errors: expected.saturating_sub(got),
        samples,
        secs: 1.0,
        per_worker: Vec::new(),
    })
}
