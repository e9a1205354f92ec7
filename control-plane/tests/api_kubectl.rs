//! The stock kubectl against the router served over plain HTTP on
//! loopback (no authentication yet): discovery, tables, create/apply,
//! scale, label, delete, api-resources and `get all`.

mod api_common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
    cache: std::path::PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        let out = match stdin {
            Some(input) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn kubectl");
                child
                    .stdin
                    .take()
                    .expect("stdin")
                    .write_all(input.as_bytes())
                    .expect("write");
                child.wait_with_output().expect("kubectl")
            }
            None => cmd.output().expect("kubectl"),
        };
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn kubectl")
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args, None);
        assert!(ok, "kubectl {args:?} failed: {err}\n{out}");
        out
    }
}

/// Streams a child's stdout lines through a channel.
trait Lines {
    fn lines(&mut self) -> std::sync::mpsc::Receiver<String>;
}

impl Lines for std::process::Child {
    fn lines(&mut self) -> std::sync::mpsc::Receiver<String> {
        use std::io::BufRead;
        let (tx, rx) = std::sync::mpsc::channel();
        let out = self.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn write_kubeconfig(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: u\n    namespace: default\ncurrent-context: skiff\nusers:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, cfg).expect("kubeconfig");
    path
}

/// Serves the router on loopback and runs `steps` with a kubectl bound to it.
async fn with_kubectl(steps: impl FnOnce(Kubectl) + Send + 'static) {
    if !kubectl_available() {
        assert!(std::env::var("CI").is_err(), "kubectl is required in CI");
        eprintln!("kubectl not found; skipping");
        return;
    }
    let api = api_common::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = api.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let k = Kubectl {
        kubeconfig: write_kubeconfig(dir.path(), port),
        cache: dir.path().join("cache"),
    };
    tokio::task::spawn_blocking(move || steps(k))
        .await
        .expect("kubectl steps");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_discovery_pods_and_apply() {
    with_kubectl(|k| {
        let v = k.ok(&["version", "-o", "json"]);
        let v: Value = serde_json::from_str(&v).expect("version json");
        assert_eq!(v["serverVersion"]["minor"], "33");

        let ns = k.ok(&["get", "ns"]);
        assert!(ns.starts_with("NAME"), "{ns}");
        assert!(ns.lines().any(|l| l.starts_with("kube-system") && l.contains("Active")), "{ns}");

        let res = k.ok(&["api-resources"]);
        assert!(res.lines().any(|l| l.starts_with("deployments") && l.contains("deploy") && l.contains("apps/v1")), "{res}");

        let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: app\n    image: nginx:1.25\n";
        let (ok, out, err) = k.run(&["apply", "-f", "-"], Some(pod));
        assert!(ok, "apply: {err}");
        assert!(out.contains("pod/web created"), "{out}");
        let (ok, out, err) = k.run(&["apply", "-f", "-"], Some(&pod.replace("nginx:1.25", "nginx:1.26")));
        assert!(ok, "apply update: {err}");
        assert!(out.contains("pod/web configured"), "{out}");

        let pods = k.ok(&["get", "pods", "-o", "wide"]);
        let header: Vec<&str> = pods.lines().next().unwrap_or("").split_whitespace().collect();
        assert_eq!(header[..5], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{pods}");
        assert!(pods.contains("web") && pods.contains("0/1") && pods.contains("Pending"), "{pods}");
        let img = k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.containers[0].image}"]);
        assert_eq!(img, "nginx:1.26");

        let (ok, _, err) = k.run(&["get", "pod", "nope"], None);
        assert!(!ok);
        assert!(err.contains("Error from server (NotFound): pods \"nope\" not found"), "{err}");

        // `get -w` consumes Table watch events.
        let mut watch = k.spawn(&["get", "pods", "-w"]);
        let lines = watch.lines();
        let header = lines.recv_timeout(std::time::Duration::from_secs(10)).expect("header line");
        assert!(header.starts_with("NAME"), "{header}");
        let (ok, _, err) = k.run(&["run", "watched", "--image=busybox"], None);
        assert!(ok, "{err}");
        let mut saw = false;
        while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(10)) {
            if line.starts_with("watched") && line.contains("Pending") {
                saw = true;
                break;
            }
        }
        let _ = watch.kill();
        let _ = watch.wait();
        assert!(saw, "kubectl get -w printed the new pod");

        let desc = k.ok(&["describe", "pod", "web"]);
        assert!(desc.contains("nginx:1.26"), "{desc}");
        let out = k.ok(&["delete", "pod", "web"]);
        assert!(out.contains("pod \"web\" deleted"), "{out}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_generators_nodes_and_namespaces() {
    with_kubectl(|k| {
        k.ok(&["create", "deployment", "api", "--image=nginx:1.25", "--replicas=2"]);
        let out = k.ok(&["scale", "deployment", "api", "--replicas=3"]);
        assert!(out.contains("scaled"), "{out}");
        let replicas = k.ok(&["get", "deploy", "api", "-o", "jsonpath={.spec.replicas}"]);
        assert_eq!(replicas, "3");
        k.ok(&["label", "deployment", "api", "tier=backend"]);
        let sel = k.ok(&["get", "deploy", "-l", "tier=backend", "-o", "name"]);
        assert_eq!(sel.trim(), "deployment.apps/api");

        let all = k.ok(&["get", "all"]);
        assert!(all.contains("deployment.apps/api") && all.contains("service/kubernetes"), "{all}");

        // Generator commands (protobuf bodies on kubectl >= 1.32) and friends.
        k.ok(&["create", "namespace", "team"]);
        k.ok(&["create", "secret", "generic", "creds", "--from-literal=user=admin", "-n", "team"]);
        let user = k.ok(&["get", "secret", "creds", "-n", "team", "-o", "jsonpath={.data.user}"]);
        assert_eq!(user, "YWRtaW4=");
        k.ok(&["run", "once", "--image=busybox", "--restart=Never", "-n", "team"]);
        let out = k.ok(&["expose", "deployment", "api", "--port=80", "--target-port=8080"]);
        assert!(out.contains("service/api exposed"), "{out}");
        let svc = k.ok(&["get", "svc", "api"]);
        assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
        let raw = k.ok(&["get", "--raw", "/healthz"]);
        assert_eq!(raw, "ok");
        let node = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"node-1"},"status":{"conditions":[{"type":"Ready","status":"True"}],"nodeInfo":{"kubeletVersion":"v1.33.0-skiff"}}}"#;
        let (ok, _, err) = k.run(&["create", "-f", "-"], Some(node));
        assert!(ok, "{err}");
        k.ok(&["cordon", "node-1"]);
        let nodes = k.ok(&["get", "nodes"]);
        assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
        let desc = k.ok(&["describe", "node", "node-1"]);
        assert!(desc.contains("Name:") && desc.contains("node-1"), "{desc}");
        let events = k.ok(&["get", "events", "-A"]);
        assert!(events.is_empty() || events.starts_with("NAMESPACE"), "{events}");
        let out = k.ok(&["delete", "namespace", "team"]);
        assert!(out.contains("namespace \"team\" deleted"), "{out}");
        let (ok, _, _) = k.run(&["get", "namespace", "team"], None);
        assert!(!ok, "kubectl delete waits until the namespace is gone");

        let out = k.ok(&["delete", "deployment", "api"]);
        assert!(out.contains("deployment.apps \"api\" deleted"), "{out}");
    })
    .await;
}
