//! The split deployment: `skiff apiserver`, `skiff scheduler`, `skiff controller-manager`
//! and two `skiff node --server ...` agents as separate processes over HTTPS. A wasm
//! Deployment spreads over both nodes, logs come through the API server from either
//! kubelet, and when one node agent is killed the node goes NotReady and, after the pods'
//! short tolerations, the ReplicaSet's pods run again on the other node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Cluster, eventually, free_port};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        common::terminate(&mut self.0);
    }
}

fn spawn(args: &[String]) -> Proc {
    let log = std::env::temp_dir().join(format!(
        "skiff-split-{}-{}.log",
        std::process::id(),
        args[0]
    ));
    let file = std::fs::File::create(&log).expect("log file");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn skiff"),
    )
}

fn http_server_wasm() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/wasm-pods/target/wasm32-wasip2/release/http-server.wasm");
    assert!(path.exists(), "run examples/wasm-pods/build.sh");
    path
}

/// (name, node, Ready status, terminating) of the Deployment's pods.
fn pods_by_node(c: &Cluster) -> Vec<(String, String, String, bool)> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_owned(),
                f.next().unwrap_or_default().to_owned(),
                f.next().unwrap_or_default().to_owned(),
                f.next().is_some(),
            ))
        })
        .collect()
}

#[test]
fn split_components_and_node_failure_reschedules_pods() {
    let c = Cluster::start("apiserver", &[]);
    let data = c.dir.path().to_str().expect("utf-8").to_owned();
    let kubeconfig = c.kubeconfig.to_str().expect("utf-8").to_owned();
    let server = format!("https://127.0.0.1:{}", c.port);
    let status = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["image", "import", "--data-dir", &data])
        .arg(http_server_wasm())
        .arg("http-server:latest")
        .status()
        .expect("skiff image import");
    assert!(status.success());

    let slot = common::test_slot(c.dir.path());
    let cidr = format!("10.{}.0.0/16", 100 + slot);
    let _scheduler = spawn(&[
        "scheduler".into(),
        "--kubeconfig".into(),
        kubeconfig.clone(),
    ]);
    let _controllers = spawn(&[
        "controller-manager".into(),
        "--kubeconfig".into(),
        kubeconfig.clone(),
        "--cluster-cidr".into(),
        cidr.clone(),
        "--node-monitor-grace-period".into(),
        "6s".into(),
        "--node-eviction-rate".into(),
        "10".into(),
    ]);
    let node = |suffix: &str| {
        spawn(&[
            "node".into(),
            "--kubeconfig".into(),
            kubeconfig.clone(),
            "--server".into(),
            server.clone(),
            "--data-dir".into(),
            data.clone(),
            "--node-name".into(),
            format!("split-{slot}-{suffix}"),
            "--kubelet-port".into(),
            free_port().to_string(),
            "--pod-bridge".into(),
            format!("skt{slot}{suffix}"),
            "--cluster-cidr".into(),
            cidr.clone(),
        ])
    };
    let _node_a = node("a");
    let mut node_b = Some(node("b"));
    let (a, b) = (format!("split-{slot}-a"), format!("split-{slot}-b"));
    let both_ready = eventually(Duration::from_secs(60), || {
        c.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "node",
            &a,
            &b,
            "--timeout=1s",
        ])
        .status
        .success()
    });
    assert!(both_ready, "{}", c.ok(&["get", "nodes", "-o", "wide"]));

    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector: {matchLabels: {app: web}}
      tolerations:
        - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
        - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
        - name: web
          image: http-server:latest
          imagePullPolicy: IfNotPresent
"#;
    let out = c.kubectl_stdin(&["apply", "-f", "-"], deployment);
    common::assert_ok(&out, &["apply"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let placed = pods_by_node(&c);
    let on_b: Vec<_> = placed.iter().filter(|(_, n, _, _)| *n == b).collect();
    assert!(!on_b.is_empty(), "spread over both nodes: {placed:?}");

    // Logs from a pod on node b: API server → that kubelet, over HTTPS.
    let logs = c.kubectl(&["logs", &on_b[0].0]);
    assert!(logs.status.success(), "{logs:?}");

    // Node b's agent dies: NotReady, then its pods are evicted and replaced on node a.
    drop(node_b.take());
    let unready = eventually(Duration::from_secs(60), || {
        c.ok(&[
            "get",
            "node",
            &b,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "Unknown"
    });
    assert!(unready, "{}", c.ok(&["describe", "node", &b]));
    // As on Kubernetes, the evicted pods stay Terminating on the unreachable node (no kubelet
    // confirms their end) while the ReplicaSet's replacements run on node a.
    let moved = eventually(Duration::from_secs(90), || {
        let pods = pods_by_node(&c);
        let live: Vec<_> = pods.iter().filter(|p| !p.3).collect();
        live.len() == 4
            && live
                .iter()
                .all(|(_, n, ready, _)| *n == a && ready == "True")
            && pods.iter().filter(|p| p.1 == b).all(|p| p.3)
    });
    assert!(moved, "pods: {:?}", pods_by_node(&c));
}
