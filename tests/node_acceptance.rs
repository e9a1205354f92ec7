//! Acceptance of the kubelet with the stock kubectl against a fresh `skiff up` (issue "Kubelet
//! and pod network"), for what `node_e2e.rs` does not already cover: an OOMKilled wasm guest,
//! probe failures that restart containers (wasm and OCI), configMap and secret files in wasm
//! and OCI pods, deletion that honours the grace period, a static pod with its mirror pod,
//! the node Ready, and the kubelet's `/metrics`.
//!
//! Needs the example guests (`examples/wasm-pods/build.sh`), a running dockerd and
//! `busybox-static`; `.ci/test-all` provides all three.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, WAIT, eventually, example, skiff};

/// A data dir with the given example guests imported as `<name>:latest`.
fn data_dir_with(examples: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    for name in examples {
        let file = example(name);
        let file = file.to_str().expect("utf-8 path");
        skiff(&[
            "image",
            "import",
            "--data-dir",
            data,
            file,
            &format!("{name}:latest"),
        ]);
    }
    dir
}

/// `skiff-acceptance/busybox:latest` in Docker (with a `/tmp`): the host's static busybox as a root file system,
/// imported through `skiff image import`.
fn import_busybox(data: &Path) -> &'static str {
    const IMAGE: &str = "skiff-acceptance/busybox:latest";
    let root = tempfile::tempdir().expect("tempdir");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    // /tmp for the probe marker files.
    std::fs::create_dir_all(root.path().join("tmp")).expect("mkdir tmp");
    let tar = root
        .path()
        .with_file_name(format!("busybox-acceptance-{}.tar", std::process::id()));
    let ok = Command::new("tar")
        .arg("-C")
        .arg(root.path())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(ok.success());
    skiff(&[
        "image",
        "import",
        "--data-dir",
        data.to_str().expect("utf-8"),
        tar.to_str().expect("utf-8"),
        IMAGE,
    ]);
    let _ = std::fs::remove_file(&tar);
    IMAGE
}

fn up(dir: tempfile::TempDir, extra: &[&str]) -> Cluster {
    let c = Cluster::start_in(dir, "up", extra);
    c.wait_for_output("Ready in", WAIT);
    c
}

fn describe(c: &Cluster, what: &str) -> String {
    String::from_utf8_lossy(&c.kubectl(&["describe", what]).stdout).into_owned()
}

fn apply(c: &Cluster, manifest: &str) {
    common::assert_ok(
        &c.kubectl_stdin(&["apply", "-f", "-"], manifest),
        &["apply"],
    );
}

fn restarts(c: &Cluster, pod: &str) -> u32 {
    c.jsonpath(
        &[&format!("pod/{pod}")],
        "{.status.containerStatuses[0].restartCount}",
    )
    .parse()
    .unwrap_or(0)
}

/// The messages of the events about `object`, one per line.
fn event_messages(c: &Cluster, object: &str) -> String {
    c.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={object}"),
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ])
}

fn wait_for_event(c: &Cluster, object: &str, needle: &str) {
    let seen = eventually(WAIT, || event_messages(c, object).contains(needle));
    assert!(
        seen,
        "no event {needle:?} about {object}; events:\n{}",
        event_messages(c, object)
    );
}

#[test]
fn wasm_guest_oom_killed_and_probe_failures() {
    let c = up(data_dir_with(&["memory-hog", "http-server"]), &[]);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
    - name: hog
      image: memory-hog:latest
      imagePullPolicy: IfNotPresent
      resources:
        limits:
          memory: 64Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: server
      image: http-server:latest
      env: [{name: PORT, value: "8080"}]
      livenessProbe:
        tcpSocket: {port: 9999}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: wasm-exec
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: server
      image: http-server:latest
      env: [{name: PORT, value: "8080"}]
      readinessProbe:
        exec: {command: ["true"]}
        periodSeconds: 1
"#;
    apply(&c, manifest);

    // The guest grows past its limit: OOMKilled, as kubectl shows it.
    c.wait_for(&["pod/hog"], "{.status.phase}", "Failed");
    let reason = c.jsonpath(
        &["pod/hog"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(reason, "OOMKilled", "{}", describe(&c, "pod/hog"));
    let table = c.ok(&["get", "pod", "hog"]);
    assert!(table.contains("OOMKilled"), "{table}");

    // A liveness probe that never passes: killed and restarted, again and again.
    let grew = eventually(WAIT, || restarts(&c, "live") >= 2);
    assert!(grew, "{}", describe(&c, "pod/live"));
    wait_for_event(&c, "live", "Unhealthy: Liveness probe failed: dial tcp ");
    wait_for_event(
        &c,
        "live",
        "Killing: Container server failed liveness probe, will be restarted",
    );

    // An exec probe on a wasm container cannot run: a clear event, and never Ready.
    wait_for_event(
        &c,
        "wasm-exec",
        "Unhealthy: Readiness probe errored and resulted in unknown state: ",
    );
    let events = event_messages(&c, "wasm-exec");
    assert!(
        events.contains("exec is not supported for wasm containers"),
        "{events}"
    );
    assert_eq!(c.jsonpath(&["pod/wasm-exec"], "{.status.phase}"), "Running");
    assert_eq!(
        c.jsonpath(
            &["pod/wasm-exec"],
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        ),
        "False"
    );
}

#[test]
fn oci_exec_liveness_restarts_and_deletion_honours_the_grace_period() {
    let dir = data_dir_with(&[]);
    let busybox = import_busybox(dir.path());
    let c = up(dir, &[]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: liveness-exec
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: {busybox}
      command: ["/bin/sh", "-c", "touch /tmp/healthy; sleep 3; rm -f /tmp/healthy; sleep 600"]
      livenessProbe:
        exec: {{command: ["cat", "/tmp/healthy"]}}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  terminationGracePeriodSeconds: 30
  containers:
    - name: app
      image: {busybox}
      command: ["/bin/sh", "-c", "trap 'echo got TERM; sleep 2; exit 0' TERM; echo ready; while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: stubborn
spec:
  terminationGracePeriodSeconds: 3
  containers:
    - name: app
      image: {busybox}
      command: ["sleep", "3600"]
"#
    );
    apply(&c, &manifest);

    // Deletion: the pod stays (Terminating) until its container has stopped, which takes
    // the trap's 2 s for `graceful` (well under its 30 s grace) and the whole 3 s grace for
    // `stubborn` (PID 1 ignores SIGTERM, so it is killed when the grace period ends).
    c.wait_for(&["pod/graceful"], "{.status.phase}", "Running");
    c.wait_for(&["pod/stubborn"], "{.status.phase}", "Running");
    assert!(eventually(WAIT, || c
        .ok(&["logs", "graceful"])
        .contains("ready")));
    let deleted_at = Instant::now();
    c.ok(&["delete", "pod", "graceful", "stubborn", "--wait=false"]);
    for pod in ["graceful", "stubborn"] {
        let stamp = c.jsonpath(&[&format!("pod/{pod}")], "{.metadata.deletionTimestamp}");
        assert!(
            stamp.starts_with("20"),
            "{pod}: deletionTimestamp {stamp:?}"
        );
    }
    let mut gone_after = Vec::new();
    for pod in ["graceful", "stubborn"] {
        let gone = eventually(WAIT, || !c.kubectl(&["get", "pod", pod]).status.success());
        assert!(
            gone,
            "{pod} still there: {}",
            describe(&c, &format!("pod/{pod}"))
        );
        gone_after.push(deleted_at.elapsed());
    }
    assert!(
        gone_after[0] >= Duration::from_millis(1800) && gone_after[0] < Duration::from_secs(25),
        "graceful was removed after {:?}",
        gone_after[0]
    );
    assert!(
        gone_after[1] >= Duration::from_millis(2800),
        "stubborn was removed after {:?}, before its grace period",
        gone_after[1]
    );

    // The classic exec liveness example: healthy for 3 s, then restarted, again and again.
    let grew = eventually(WAIT, || restarts(&c, "liveness-exec") >= 2);
    assert!(grew, "{}", describe(&c, "pod/liveness-exec"));
    wait_for_event(
        &c,
        "liveness-exec",
        "Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory",
    );
    wait_for_event(
        &c,
        "liveness-exec",
        "Killing: Container app failed liveness probe, will be restarted",
    );
    let exit = c.jsonpath(
        &["pod/liveness-exec"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert!(!exit.is_empty() && exit != "0", "last exit code {exit:?}");
}

#[test]
fn config_map_and_secret_files_in_wasm_and_oci_pods() {
    let dir = data_dir_with(&["hello"]);
    let busybox = import_busybox(dir.path());
    let c = up(dir, &[]);
    c.ok(&[
        "create",
        "configmap",
        "greeting",
        "--from-literal=message.txt=from a configmap",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "--from-literal=token=s3cret",
    ]);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: files-wasm
spec:
  restartPolicy: Never
  volumes:
    - {{name: config, configMap: {{name: greeting}}}}
    - {{name: token, secret: {{secretName: token}}}}
  containers:
    - name: config
      image: hello:latest
      env: [{{name: MESSAGE_FILE, value: /config/message.txt}}]
      volumeMounts: [{{name: config, mountPath: /config}}]
    - name: secret
      image: hello:latest
      env: [{{name: MESSAGE_FILE, value: /secret/token}}]
      volumeMounts: [{{name: token, mountPath: /secret}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: files-oci
spec:
  restartPolicy: Never
  volumes:
    - {{name: config, configMap: {{name: greeting}}}}
    - {{name: token, secret: {{secretName: token}}}}
  containers:
    - name: cat
      image: {busybox}
      command: ["/bin/sh", "-c", "echo \"config: $(cat /config/message.txt)\"; echo \"secret: $(cat /secret/token)\""]
      volumeMounts:
        - {{name: config, mountPath: /config}}
        - {{name: token, mountPath: /secret, readOnly: true}}
"#
    );
    apply(&c, &manifest);
    c.wait_for(&["pod/files-wasm"], "{.status.phase}", "Succeeded");
    c.wait_for(&["pod/files-oci"], "{.status.phase}", "Succeeded");

    let config = c.ok(&["logs", "files-wasm", "-c", "config"]);
    assert!(
        config.contains("/config/message.txt: from a configmap"),
        "{config}"
    );
    let secret = c.ok(&["logs", "files-wasm", "-c", "secret"]);
    assert!(secret.contains("/secret/token: s3cret"), "{secret}");

    let oci = c.ok(&["logs", "files-oci"]);
    assert!(oci.contains("config: from a configmap"), "{oci}");
    assert!(oci.contains("secret: s3cret"), "{oci}");
}

#[test]
fn static_pod_with_mirror_pod_and_node_ready() {
    let dir = data_dir_with(&["http-server"]);
    let manifests = tempfile::tempdir().expect("manifests");
    std::fs::write(
        manifests.path().join("static-web.yaml"),
        r#"apiVersion: v1
kind: Pod
metadata:
  name: static-web
  labels: {tier: static}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: web
      image: http-server:latest
      env: [{name: PORT, value: "8080"}]
"#,
    )
    .expect("write manifest");
    let manifest_dir = manifests.path().to_str().expect("utf-8");
    let c = up(dir, &["--pod-manifest-path", manifest_dir]);

    // The node is Ready.
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "node",
        "--all",
        "--timeout=60s",
    ]);
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    assert!(!node.is_empty());
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert!(nodes.contains(" Ready "), "{nodes}");

    // The static pod shows up through its mirror pod, named after the node.
    let mirror = format!("static-web-{node}");
    let listed = eventually(WAIT, || {
        let all = c.ok(&["get", "pods", "-A", "--no-headers"]);
        all.lines()
            .any(|l| l.contains(&mirror) && l.contains("Running"))
    });
    assert!(listed, "{}", c.ok(&["get", "pods", "-A", "-o", "wide"]));
    let what = format!("pod/{mirror}");
    let annotation = c.jsonpath(
        &[&what],
        "{.metadata.annotations.kubernetes\\.io/config\\.mirror}",
    );
    assert!(!annotation.is_empty(), "{}", describe(&c, &what));
    assert_eq!(c.jsonpath(&[&what], "{.spec.nodeName}"), node);
    assert_eq!(
        c.jsonpath(&[&what], "{.metadata.ownerReferences[0].kind}"),
        "Node"
    );

    // Deleted through the API, the mirror pod comes back (a new object).
    let uid = c.jsonpath(&[&what], "{.metadata.uid}");
    c.ok(&["delete", "pod", &mirror, "--wait=true", "--timeout=60s"]);
    let back = eventually(WAIT, || {
        let now = c.jsonpath(&[&what], "{.metadata.uid}");
        !now.is_empty() && now != uid
    });
    assert!(
        back,
        "mirror pod not recreated: {}",
        c.ok(&["get", "pods", "-A"])
    );
    c.wait_for(&[&what], "{.status.phase}", "Running");

    // The kubelet's metrics, scraped from its HTTPS endpoint with a cluster client certificate.
    let text = kubelet_metrics(&c);
    let running = metric(&text, "kubelet_running_pods");
    assert_eq!(running, Some(1.0), "{text}");
    assert_eq!(
        metric(
            &text,
            "kubelet_running_containers{container_state=\"running\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // Both mirror pods went Pending → Running.
    let starts = metric(&text, "kubelet_pod_start_duration_seconds_count").unwrap_or(0.0);
    assert!(starts >= 2.0, "{text}");
}

/// `GET /metrics` from the node's kubelet (address and port from the Node object).
fn kubelet_metrics(c: &Cluster) -> String {
    let ip = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let port = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let pki = c.dir.path().join("pki");
    let out = Command::new("curl")
        .arg("-sS")
        .arg("-m")
        .arg("10")
        .arg("--cacert")
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!("https://{ip}:{port}/metrics"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl https://{ip}:{port}/metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one series in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}
