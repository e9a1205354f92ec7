//! The pod network with real network namespaces (needs root; skipped otherwise unless
//! `CI=true`): pods get an IP from the node's pod CIDR on a bridge, the node reaches pod IPs,
//! and pods reach each other. Containers are host processes (fake runtime) forked inside the
//! pod's namespace, so the wiring is exactly what a wasm or Docker sandbox gets.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use skiff_node::{NetworkMode, PodCidrSource};
use skiff_runtimes::RuntimeRegistry;
use skiff_runtimes::fake::{FakeConfig, FakeImage, FakeRuntime};

const T: Duration = Duration::from_secs(20);

fn can_run() -> bool {
    if skiff_runtimes::netns::supported() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI needs root for netns tests"
    );
    eprintln!("skipping: cannot create network namespaces");
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

#[tokio::test]
async fn pods_get_ips_on_the_bridge_and_reach_each_other() {
    if !can_run() {
        return;
    }
    let _cleanup = BridgeCleanup("sktest0");
    let cluster = cluster().await;
    let netns_dir = tempfile::tempdir().expect("netns dir");
    let fake = FakeRuntime::with_config(FakeConfig {
        netns_dir: netns_dir.path().to_owned(),
        require_pod_network: true,
        ..FakeConfig::default()
    });
    fake.add_image(
        "server:v1",
        FakeImage::shell("cd \"$(mktemp -d)\" && echo hello-from-pod > index.html && exec python3 -m http.server 8080 --bind 0.0.0.0"),
    );
    fake.add_image(
        "client:v1",
        FakeImage::shell("for i in $(seq 50); do wget -q -T 2 -O - \"http://$TARGET:8080/\" && exit 0; sleep 0.2; done; exit 1"),
    );
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake.clone()));
    let _node = start_node(&cluster.client, registry, "n1", |c| {
        c.network.mode = NetworkMode::Auto;
        c.network.bridge = "sktest0".to_owned();
        c.network.masquerade = false;
        c.network.pod_cidr = PodCidrSource::Static("10.251.7.0/24".parse().expect("cidr"));
    });
    let c = &cluster.client;
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "server", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "server:v1"}]}
        }),
    )
    .await;
    let server = wait_pod(c, "server", T, "server Running with a pod IP", |p| {
        phase(p) == "Running"
            && p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .is_some_and(|ip| ip.starts_with("10.251.7."))
    })
    .await;
    let ip = server
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod ip");
    assert_ne!(ip, "10.251.7.1", "the gateway is the bridge's");

    // IPv4 only: neither veth end has an IPv6 address (its duplicate address detection,
    // router solicitations and MLD reports would be flooded to every pod on the bridge).
    // Read in the calling thread's namespace.
    let ipv6_addresses = |interface: &str| {
        std::fs::read_to_string("/proc/thread-self/net/if_inet6")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.split_whitespace().last() == Some(interface))
            .count()
    };
    let server_uid = server.metadata.uid.clone().expect("uid");
    let host_end = skiff_node::network::bridge::host_veth_name(&server_uid);
    assert!(
        std::fs::metadata(format!("/sys/class/net/{host_end}")).is_ok(),
        "the host end {host_end} exists"
    );
    assert_eq!(
        ipv6_addresses(&host_end),
        0,
        "{host_end} has IPv6 addresses"
    );
    // Multicast snooping is off on the bridge (it made every new port cost more).
    assert_eq!(
        std::fs::read_to_string("/sys/class/net/sktest0/bridge/multicast_snooping")
            .expect("bridge sysfs")
            .trim(),
        "0",
        "multicast snooping on sktest0"
    );
    let namespaces: Vec<_> = std::fs::read_dir(netns_dir.path())
        .expect("netns dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    let (pod_side, pod_lo) = skiff_runtimes::netns::Netns::open(&namespaces[0])
        .expect("open netns")
        .run(move || (ipv6_addresses("eth0"), ipv6_addresses("lo")))
        .expect("run in netns");
    assert_eq!(pod_side, 0, "eth0 in the pod has IPv6 addresses");
    assert_eq!(
        pod_lo, 1,
        "lo keeps ::1 (the check reads the pod's namespace)"
    );

    // The node reaches the pod IP through the bridge.
    let body = eventually(T, "HTTP from the node to the pod IP", || {
        let ip = ip.clone();
        async move {
            let out = tokio::process::Command::new("wget")
                .args(["-q", "-T", "1", "-O", "-", &format!("http://{ip}:8080/")])
                .output()
                .await
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        }
    })
    .await;
    assert_eq!(body.trim(), "hello-from-pod");

    // Another pod reaches it too.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "client", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Never",
                     "containers": [{"name": "get", "image": "client:v1", "env": [{"name": "TARGET", "value": ip}]}]}
        }),
    )
    .await;
    let client = wait_pod(c, "client", T, "client finished", |p| {
        matches!(phase(p), "Succeeded" | "Failed")
    })
    .await;
    assert_eq!(
        phase(&client),
        "Succeeded",
        "pod-to-pod HTTP failed: {:?}",
        client.status
    );
    let client_ip = client
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("client ip");
    assert_ne!(client_ip, ip);

    // Deleting the pod releases its veth.
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let uid = server.metadata.uid.clone().expect("uid");
    pods.delete("server", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    eventually(T, "server gone", || async {
        get_pod(c, "server").await.is_none().then_some(())
    })
    .await;
    let veth = skiff_node::network::bridge::host_veth_name(&uid);
    eventually(T, "veth removed", || {
        let veth = veth.clone();
        async move {
            let out = std::process::Command::new("ip")
                .args(["link", "show", &veth])
                .output()
                .ok()?;
            (!out.status.success()).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn node_is_not_ready_until_it_gets_a_pod_cidr() {
    if !can_run() {
        return;
    }
    let _cleanup = BridgeCleanup("sktest4");
    let cluster = cluster().await;
    let netns_dir = tempfile::tempdir().expect("netns dir");
    let fake = FakeRuntime::with_config(FakeConfig {
        netns_dir: netns_dir.path().to_owned(),
        require_pod_network: true,
        ..FakeConfig::default()
    });
    fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
    let mut registry = RuntimeRegistry::new();
    registry.register(Arc::new(fake));
    let mut node = start_node(&cluster.client, registry, "n1", |c| {
        c.network.mode = NetworkMode::Auto;
        c.network.bridge = "sktest4".to_owned();
        c.network.masquerade = false;
        c.network.pod_cidr = PodCidrSource::Assigned;
    });
    let c = &cluster.client;
    let nodes: Api<Node> = Api::all(c.clone());
    let ready_condition = |n: &Node| {
        n.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
    };
    let not_ready = eventually(T, "registered NotReady", || async {
        let n = nodes.get_opt("n1").await.ok()??;
        ready_condition(&n)
    })
    .await;
    assert_eq!(not_ready.status, "False");
    assert!(
        not_ready
            .message
            .as_deref()
            .is_some_and(|m| m.contains("podCIDR")),
        "{not_ready:?}"
    );
    assert!(!*node.ready.borrow());

    // A pod bound meanwhile waits for the network instead of running on the host's.
    create_pod(
        c,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "early", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "sleeper:v1"}]}
        }),
    )
    .await;

    // What the node IPAM controller does: assign a range.
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"podCIDR": "10.251.11.0/24", "podCIDRs": ["10.251.11.0/24"]}}),
            ),
        )
        .await
        .expect("assign pod CIDR");
    tokio::time::timeout(T, node.ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");
    let n = nodes.get("n1").await.expect("node");
    assert_eq!(
        ready_condition(&n).map(|c| c.status),
        Some("True".to_owned())
    );
    wait_pod(c, "early", T, "early pod Running with a pod IP", |p| {
        phase(p) == "Running"
            && p.status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .is_some_and(|ip| ip.starts_with("10.251.11."))
    })
    .await;
}
