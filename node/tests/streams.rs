//! The kubelet's HTTPS server behind the real API server, driven by the stock `kubectl`:
//! `kubectl logs` (tail, timestamps, follow, previous) and `kubectl port-forward` (WebSocket-
//! tunnelled SPDY and plain SPDY) go kubectl → API server (HTTPS, client certificates) →
//! `pods/log|portforward` proxy → kubelet (HTTPS, the API server's kubelet-client certificate
//! verified against the cluster CA). Port-forward reaches a server that listens on the pod's
//! loopback only, inside the pod's network namespace (needs root; skipped otherwise unless
//! `CI=true`), and `kubectl exec` runs a command in the pod.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use skiff_control_plane::apiserver::{ApiConfig, kubelet_proxy};
use skiff_control_plane::pki::{Pki, kubeconfig};
use skiff_control_plane::serve;
use skiff_node::{NetworkMode, PodCidrSource, ServerConfig};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeConfig, FakeImage, FakeRuntime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const T: Duration = Duration::from_secs(20);

fn can_run() -> bool {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if skiff_runtimes::netns::supported() && kubectl {
        return true;
    }
    assert!(
        !ci,
        "CI needs root and kubectl for the kubelet stream tests"
    );
    eprintln!("skipping: needs root (network namespaces) and kubectl");
    false
}

struct BridgeCleanup(&'static str);

impl Drop for BridgeCleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", self.0])
            .output();
        for dir in ["-i", "-o"] {
            let _ = std::process::Command::new("iptables")
                .args([
                    "-w",
                    "-D",
                    "FORWARD",
                    dir,
                    self.0,
                    "-m",
                    "comment",
                    "--comment",
                    "skiff pod network",
                    "-j",
                    "ACCEPT",
                ])
                .output();
        }
    }
}

/// `kubectl --kubeconfig <kubeconfig> args...`: (success, stdout, stderr).
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output(),
    )
    .await
    .expect("kubectl in time")
    .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `kubectl port-forward pod/<pod> :<port>` (WebSocket first, or plain SPDY when
/// `websockets` is false), GET `/` through it, and return the body.
async fn fetch_through_port_forward(
    kubeconfig: &Path,
    pod: &str,
    port: u16,
    websockets: bool,
) -> String {
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["port-forward", &format!("pod/{pod}"), &format!(":{port}")])
        .env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run kubectl port-forward");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let local: u16 = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("read kubectl output") {
            // "Forwarding from 127.0.0.1:43567 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:")
                && let Some((local, _)) = rest.split_once(' ')
            {
                return local.parse().expect("local port");
            }
        }
        panic!("kubectl port-forward ended without forwarding");
    })
    .await
    .expect("port-forward ready in time");
    let mut stream = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], local)))
        .await
        .expect("connect to the forwarded port");
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send request");
    let mut response = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let _ = child.kill().await;
    if !matches!(read, Ok(Ok(_))) {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ =
                tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err)).await;
        }
        return format!("no response ({read:?}); kubectl: {err}");
    }
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_port_forward_reach_the_kubelet() {
    if !can_run() {
        return;
    }
    let _cleanup = BridgeCleanup("sktest2");
    let dir = tempfile::tempdir().expect("tempdir");
    let localhost: std::net::IpAddr = "127.0.0.1".parse().expect("ip");

    // The cluster PKI, the API server's kubelet-client identity, the node's serving cert.
    let pki = Pki::load_or_create(&dir.path().join("pki"), &[], &[]).expect("pki");
    let kubelet_client = pki
        .issue_client_cert("kube-apiserver-kubelet-client", Some("system:masters"))
        .expect("kubelet client cert");
    let kubelet_tls = kubelet_proxy::client_tls(
        &pki.ca.cert_pem,
        &kubelet_client.cert_pem,
        &kubelet_client.key_pem,
    )
    .expect("kubelet client tls");
    let cluster = cluster_with(ApiConfig {
        kubelet_client_tls: Some(kubelet_tls),
        ..ApiConfig::default()
    })
    .await;
    let tls = serve::tls_config(&pki.ca.cert_pem, &pki.apiserver).expect("apiserver tls");
    let (addr, _server) = serve::serve_https(
        "127.0.0.1:0".parse().expect("addr"),
        cluster.api.router(),
        tls,
    )
    .await
    .expect("serve https");
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig_path,
        kubeconfig(
            &format!("https://{addr}"),
            &pki.ca.cert_pem,
            &pki.admin,
            "skiff",
            "admin",
        ),
    )
    .expect("write kubeconfig");
    let kc = kubeconfig_path.as_path();
    let serving = pki
        .issue_serving_cert("n1", &[localhost], &["n1".to_owned()])
        .expect("kubelet serving cert");

    let netns_dir = dir.path().join("netns");
    let fake = FakeRuntime::with_config(FakeConfig {
        netns_dir,
        require_pod_network: true,
        ..FakeConfig::default()
    });
    fake.add_image(
        "talker:v1",
        FakeImage::shell("for i in 1 2 3; do echo line $i; done; sleep 1000"),
    );
    fake.add_image(
        "ticker:v1",
        FakeImage::shell("sleep 1; for i in 1 2 3; do echo tick $i; sleep 0.3; done"),
    );
    fake.add_image(
        "crasher:v1",
        FakeImage::shell("echo run $(date +%s%N); exit 1"),
    );
    fake.add_image(
        "loopback-web:v1",
        FakeImage::shell("cd \"$(mktemp -d)\" && echo hello-from-loopback > index.html && exec python3 -m http.server 8080 --bind 127.0.0.1"),
    );
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    let mut node = start_node(&cluster.client, registry, "n1", |c| {
        c.network.mode = NetworkMode::Auto;
        c.network.bridge = "sktest2".to_owned();
        c.network.masquerade = false;
        c.network.pod_cidr = PodCidrSource::Static("10.251.9.0/24".parse().expect("cidr"));
        c.crash_loop_backoff = (Duration::from_millis(500), Duration::from_secs(2));
        c.server = Some(ServerConfig {
            addr: "127.0.0.1:0".parse().expect("addr"),
            cert_pem: serving.cert_pem.clone(),
            key_pem: serving.key_pem.clone(),
            client_ca_pem: Some(pki.ca.cert_pem.clone()),
        });
    });
    tokio::time::timeout(T, node.ready.wait_for(|r| *r))
        .await
        .expect("node ready in time")
        .expect("ready");
    let c = &cluster.client;
    let pod = |name: &str, image: &str, policy: &str| {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": policy,
                     "containers": [{"name": "app", "image": image}]}
        })
    };
    create_pod(c, pod("talker", "talker:v1", "Always")).await;
    create_pod(c, pod("ticker", "ticker:v1", "Never")).await;
    create_pod(c, pod("crasher", "crasher:v1", "Always")).await;
    create_pod(c, pod("web", "loopback-web:v1", "Always")).await;

    // Logs: whole, tail, timestamps.
    wait_pod(c, "talker", T, "talker Running", |p| phase(p) == "Running").await;
    let logs = eventually(T, "talker's three lines", || async {
        let (ok, out, _) = kubectl(kc, &["logs", "talker"]).await;
        (ok && out.contains("line 3")).then_some(out)
    })
    .await;
    assert_eq!(logs, "line 1\nline 2\nline 3\n");
    let (ok, tail, err) = kubectl(kc, &["logs", "talker", "--tail=1", "--timestamps"]).await;
    assert!(ok, "{err}");
    let (stamp, line) = tail.trim_end().split_once(' ').expect("timestamped line");
    assert_eq!(line, "line 3");
    assert!(
        stamp.parse::<jiff::Timestamp>().is_ok() && stamp.ends_with('Z'),
        "{tail}"
    );

    // Follow streams lines as they are written and ends when the container does.
    wait_pod(c, "ticker", T, "ticker Running", |p| phase(p) == "Running").await;
    let (ok, followed, err) = kubectl(kc, &["logs", "-f", "ticker"]).await;
    assert!(ok, "{err}");
    assert_eq!(followed, "tick 1\ntick 2\ntick 3\n");

    // Previous: the run before the current one.
    wait_pod(c, "crasher", T, "crasher restarted", |p| {
        container_status(p, "app").is_some_and(|s| s.restart_count >= 1)
    })
    .await;
    let (ok, previous, err) = kubectl(kc, &["logs", "crasher", "--previous"]).await;
    assert!(ok, "{err}");
    assert!(previous.starts_with("run "), "{previous}");
    let (ok, _, err) = kubectl(kc, &["logs", "talker", "--previous"]).await;
    assert!(!ok);
    assert!(
        err.contains("previous terminated container \"app\" in pod \"talker\" not found"),
        "{err}"
    );

    // Port-forward to a server on the pod's loopback, over both of kubectl's protocols.
    wait_pod(c, "web", T, "web Running", |p| phase(p) == "Running").await;
    for websockets in [true, false] {
        let response = eventually(T, "HTTP through port-forward", || async {
            let r = fetch_through_port_forward(kc, "web", 8080, websockets).await;
            if !r.contains("200") {
                eprintln!("port-forward attempt: {r}");
            }
            r.contains("200").then_some(r)
        })
        .await;
        assert!(
            response.contains("hello-from-loopback"),
            "websockets={websockets}: {response}"
        );
    }

    // Exec through the API server into the fake runtime's container (a host process).
    let (ok, out, err) = kubectl(kc, &["exec", "talker", "--", "echo", "exec-works"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "exec-works");
}
