//! The controller manager end to end, with the stock kubectl on `skiff up` and wasm pods
//! only (no Docker): deleting a Deployment with each propagation policy, a DaemonSet on
//! every node (a second `skiff node` joins the cluster) with its history and rollback,
//! Jobs to completion and to their backoff limit, and a ResourceQuota refusing pods with
//! Kubernetes' message (to `kubectl run` and, as a `FailedCreate` event, to a ReplicaSet).
//!
//! Needs the example guests (`examples/wasm-pods/build.sh`).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{Cluster, WAIT, eventually, example, free_port, skiff};

/// Imports example guests into `data` as `(guest, image)` pairs.
fn import(data: &Path, images: &[(&str, &str)]) {
    let data = data.to_str().expect("utf-8 path");
    for (guest, image) in images {
        let file = example(guest);
        skiff(&[
            "image",
            "import",
            "--data-dir",
            data,
            file.to_str().expect("utf-8 path"),
            image,
        ]);
    }
}

/// `skiff up` on a fresh data dir holding these images.
fn up_with(images: &[(&str, &str)]) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    import(dir.path(), images);
    let c = Cluster::start_in(dir, "up", &[]);
    c.wait_for_output("Ready in", WAIT);
    c
}

fn apply(c: &Cluster, yaml: &str) {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], yaml);
    common::assert_ok(&out, &["apply", "-f", "-"]);
}

/// Names of the objects of `kind` labelled `selector` (terminating ones included).
fn names(c: &Cluster, kind: &str, selector: &str) -> Vec<String> {
    c.jsonpath(
        &[kind, "-l", selector],
        "{range .items[*]}{.metadata.name}{\"\\n\"}{end}",
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A Deployment of `replicas` wasm servers labelled `app=<name>`.
fn deployment(name: &str, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: web
          image: http-server:latest
          imagePullPolicy: IfNotPresent
"#
    )
}

#[test]
fn deployment_delete_honours_each_propagation_policy() {
    let c = up_with(&[("http-server", "http-server:latest")]);
    for name in ["bg", "fg", "orphan"] {
        apply(&c, &deployment(name, 2));
    }
    for name in ["bg", "fg", "orphan"] {
        c.ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=90s",
        ]);
    }

    // Background: the Deployment goes at once, the garbage collector then removes its
    // ReplicaSet and their pods.
    c.ok(&["delete", "deployment", "bg", "--cascade=background"]);
    let gone = eventually(WAIT, || {
        names(&c, "replicasets", "app=bg").is_empty() && names(&c, "pods", "app=bg").is_empty()
    });
    assert!(gone, "{}", c.ok(&["get", "rs,pods", "-l", "app=bg"]));

    // Foreground: the Deployment waits (foregroundDeletion finalizer) until its
    // ReplicaSet and the ReplicaSet's pods are gone, so when kubectl's wait returns
    // nothing of it is left.
    c.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let finalizers = c.kubectl(&[
        "get",
        "deployment",
        "fg",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]);
    if finalizers.status.success() {
        let f = String::from_utf8_lossy(&finalizers.stdout);
        assert!(f.contains("foregroundDeletion"), "{f}");
    }
    c.ok(&["wait", "--for=delete", "deployment/fg", "--timeout=60s"]);
    let left = (
        names(&c, "replicasets", "app=fg"),
        names(&c, "pods", "app=fg"),
    );
    assert_eq!(
        left,
        (vec![], vec![]),
        "foreground deletion left dependents"
    );

    // Orphan: the ReplicaSet stays, without its owner reference, and keeps its pods.
    c.ok(&["delete", "deployment", "orphan", "--cascade=orphan"]);
    let rs = names(&c, "replicasets", "app=orphan");
    assert_eq!(rs.len(), 1, "{rs:?}");
    let rs_ref = format!("replicaset/{}", rs[0]);
    c.wait_for(&[&rs_ref], "{.metadata.ownerReferences}", "");
    assert_eq!(c.jsonpath(&[&rs_ref], "{.status.readyReplicas}"), "2");
    let pods = names(&c, "pods", "app=orphan");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let owners = c.jsonpath(
        &["pods", "-l", "app=orphan"],
        "{.items[*].metadata.ownerReferences[0].kind}",
    );
    assert_eq!(owners, "ReplicaSet ReplicaSet");
}

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        common::terminate(&mut self.0);
    }
}

/// A second node agent joining `c`, on its own data dir holding `images`. Returns the
/// process, its node name and the data dir (to keep alive).
fn join_node(c: &Cluster, images: &[(&str, &str)]) -> (Proc, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    import(dir.path(), images);
    let slot = common::test_slot(c.dir.path());
    let name = format!("skiff-test-{slot}-b");
    let log = std::fs::File::create(dir.path().join("node.log")).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("node")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--server")
        .arg(format!("https://127.0.0.1:{}", c.port))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--node-name", &name])
        .args(["--kubelet-port", &free_port().to_string()])
        .args(["--pod-bridge", &format!("skt{slot}b")])
        .args(["--cluster-cidr", &format!("10.{}.0.0/16", 100 + slot)])
        .args(["--shutdown-grace-period", "2"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn skiff node");
    (Proc(child), name, dir)
}

/// `node pod-image` for each live pod labelled `app=agent`, sorted.
fn agent_pods(c: &Cluster) -> Vec<String> {
    let out = c.jsonpath(&["pods", "-l", "app=agent"],
        "{range .items[*]}{.spec.nodeName} {.spec.containers[0].image} {.metadata.deletionTimestamp}{\"\\n\"}{end}",);
    let mut rows: Vec<String> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 2)
        .map(|l| l.trim().to_owned())
        .collect();
    rows.sort();
    rows
}

#[test]
fn daemonset_runs_on_every_node_and_rolls_back_through_its_history() {
    let images = [
        ("http-server", "http-server:latest"),
        ("http-server", "http-server:v2"),
    ];
    let c = up_with(&images);
    let a = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let (_node, b, _node_dir) = join_node(&c, &images);
    let both = eventually(WAIT, || {
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
    assert!(both, "{}", c.ok(&["get", "nodes", "-o", "wide"]));

    apply(
        &c,
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: agent
          image: http-server:latest
          imagePullPolicy: IfNotPresent
"#,
    );
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
    assert_eq!(
        agent_pods(&c),
        [
            format!("{a} http-server:latest"),
            format!("{b} http-server:latest")
        ]
    );
    c.wait_for(&["ds/agent"], "{.status.numberReady}", "2");

    // A new template is rolled out node by node and recorded as revision 2; `rollout
    // undo` brings revision 1's template back as revision 3.
    c.ok(&["set", "image", "daemonset/agent", "agent=http-server:v2"]);
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
    let rolled = eventually(WAIT, || {
        agent_pods(&c) == [format!("{a} http-server:v2"), format!("{b} http-server:v2")]
    });
    assert!(rolled, "{:?}", agent_pods(&c));
    let history = c.ok(&["rollout", "history", "daemonset/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let one = c.ok(&["rollout", "history", "daemonset/agent", "--revision=1"]);
    assert!(one.contains("http-server:latest"), "{one}");

    let undo = c.ok(&["rollout", "undo", "daemonset/agent"]);
    assert!(undo.contains("daemonset.apps/agent rolled back"), "{undo}");
    c.ok(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
    let back = eventually(WAIT, || {
        agent_pods(&c)
            == [
                format!("{a} http-server:latest"),
                format!("{b} http-server:latest"),
            ]
    });
    assert!(back, "{:?}", agent_pods(&c));
    let history = c.ok(&["rollout", "history", "daemonset/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // A NoExecute taint the daemon does not tolerate removes its pod from that node;
    // cordoning the other node does not (daemon pods tolerate `unschedulable`).
    c.ok(&["cordon", &a]);
    c.ok(&["taint", "node", &b, "dedicated=infra:NoExecute"]);
    c.wait_for(&["ds/agent"], "{.status.desiredNumberScheduled}", "1");
    let only_a = eventually(WAIT, || {
        agent_pods(&c) == [format!("{a} http-server:latest")]
    });
    assert!(only_a, "{:?}", agent_pods(&c));
    c.wait_for(&["ds/agent"], "{.status.numberReady}", "1");
}

#[test]
fn jobs_complete_or_fail_at_their_backoff_limit() {
    let c = up_with(&[("hello", "hello:latest"), ("crasher", "crasher:latest")]);
    apply(
        &c,
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: ok
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: hello
          image: hello:latest
          imagePullPolicy: IfNotPresent
---
apiVersion: batch/v1
kind: Job
metadata:
  name: bad
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: crasher
          image: crasher:latest
          imagePullPolicy: IfNotPresent
          args: ["7"]
"#,
    );
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/ok",
        "--timeout=60s",
    ]);
    assert_eq!(c.jsonpath(&["job/ok"], "{.status.succeeded}"), "2");
    let logs = c.ok(&["logs", "job/ok"]);
    assert!(logs.contains("Hello from a Skiff wasm pod!"), "{logs}");

    // One failure, a 10 s backoff, a second failure: over backoffLimit 1.
    c.ok(&["wait", "--for=condition=failed", "job/bad", "--timeout=60s"]);
    assert_eq!(
        c.jsonpath(
            &["job/bad"],
            "{.status.conditions[?(@.type==\"Failed\")].reason}"
        ),
        "BackoffLimitExceeded"
    );
    assert_eq!(c.jsonpath(&["job/bad"], "{.status.failed}"), "2");
    let exits = c.jsonpath(
        &["pods", "-l", "job-name=bad"],
        "{.items[*].status.containerStatuses[0].state.terminated.exitCode}",
    );
    assert_eq!(exits, "7 7");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=bad",
    ]);
    assert!(events.contains("BackoffLimitExceeded"), "{events}");
}

#[test]
fn quota_refuses_the_third_pod_with_kubernetes_message() {
    let c = up_with(&[("http-server", "http-server:latest")]);
    c.ok(&["create", "quota", "q", "--hard=pods=2"]);
    c.wait_for(&["quota/q"], "{.status.used.pods}", "0");
    for p in ["p1", "p2"] {
        c.ok(&[
            "run",
            p,
            "--image=http-server:latest",
            "--image-pull-policy=IfNotPresent",
        ]);
    }
    let third = c.kubectl(&["run", "p3", "--image=http-server:latest"]);
    assert!(!third.status.success());
    assert_eq!(
        String::from_utf8_lossy(&third.stderr).trim(),
        "Error from server (Forbidden): pods \"p3\" is forbidden: exceeded quota: q, \
         requested: pods=1, used: pods=2, limited: pods=2"
    );
    c.wait_for(&["quota/q"], "{.status.used.pods}", "2");

    // A ReplicaSet refused by the quota says so in a FailedCreate event, and creates its
    // pod once a running pod is deleted.
    apply(&c, &deployment("web", 1));
    let event = eventually(WAIT, || {
        c.jsonpath(
            &["events", "--field-selector", "reason=FailedCreate"],
            "{.items[*].message}",
        )
        .contains("exceeded quota")
    });
    let message = c.jsonpath(
        &["events", "--field-selector", "reason=FailedCreate"],
        "{.items[0].involvedObject.kind} {.items[0].message}",
    );
    assert!(event, "{message}");
    let (kind, message) = message.split_once(' ').expect("kind and message");
    assert_eq!(kind, "ReplicaSet");
    assert!(
        is_quota_refusal(message),
        "unexpected FailedCreate message: {message}"
    );
    c.ok(&["delete", "pod", "p1", "--wait=false"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.wait_for(&["quota/q"], "{.status.used.pods}", "2");
}

/// True if `m` reads `Error creating: pods "web-<hash>-<suffix>" is forbidden: exceeded
/// quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
fn is_quota_refusal(m: &str) -> bool {
    let Some(rest) = m.strip_prefix("Error creating: pods \"web-") else {
        return false;
    };
    let Some((name, tail)) = rest.split_once('"') else {
        return false;
    };
    name.split('-').count() == 2
        && name.split('-').all(|p| !p.is_empty())
        && tail
            == " is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
}
