//! End to end with the stock kubectl against `skiff up` (API server, scheduler, controllers
//! and a node with Wasmtime and Docker in one process): wasm, OCI and mixed pods, logs,
//! port-forward, crash loops, deployments, and a restart on the same data dir.
//!
//! Needs the example guests (`examples/wasm-pods/build.sh`), a running dockerd and
//! `busybox-static`; `.ci/test-all` provides all three.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Cluster, WAIT, eventually, example, skiff};

/// A data dir with the example guests imported as `<name>:latest`.
fn data_dir_with_examples() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path");
    for name in ["hello", "crasher", "http-server", "http-get"] {
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

/// `skiff-e2e/busybox:latest` in Docker: the host's static busybox as a root file system,
/// imported through `skiff image import`.
fn import_busybox(data: &Path) -> &'static str {
    const IMAGE: &str = "skiff-e2e/busybox:latest";
    let root = tempfile::tempdir().expect("tempdir");
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
    // Relative applet links, so they resolve inside the container.
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    let tar = root
        .path()
        .with_file_name(format!("busybox-e2e-{}.tar", std::process::id()));
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

fn up(dir: tempfile::TempDir) -> Cluster {
    let c = Cluster::start_in(dir, "up", &[]);
    c.wait_for_output("Ready in", WAIT);
    c
}

#[test]
fn wasm_pods_run_log_and_crash_loop() {
    let c = up(data_dir_with_examples());
    let node = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(node, "True");
    let handlers = c.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.runtimeHandlers[*].name}",
    ]);
    assert!(handlers.contains("wasmtime"), "{handlers}");

    // A wasm pod that completes, and its logs through the API server and the kubelet.
    c.ok(&[
        "run",
        "hello",
        "--image=hello:latest",
        "--restart=Never",
        "--env=GREETING=hi there",
    ]);
    c.wait_for(&["pod/hello"], "{.status.phase}", "Succeeded");
    let logs = c.ok(&["logs", "hello"]);
    assert!(logs.contains("Hello from a Skiff wasm pod!"), "{logs}");
    assert!(logs.contains("GREETING=hi there"), "{logs}");
    let reason = c.jsonpath(
        &["pod/hello"],
        "{.status.containerStatuses[0].state.terminated.reason}",
    );
    assert_eq!(reason, "Completed");
    let stamped = c.ok(&["logs", "hello", "--timestamps", "--tail=1"]);
    assert_eq!(stamped.lines().count(), 1, "{stamped}");
    assert!(
        stamped.starts_with("20"),
        "RFC 3339 timestamp expected: {stamped}"
    );

    // A failing guest under restartPolicy Always: CrashLoopBackOff with restarts.
    c.ok(&["run", "crasher", "--image=crasher:latest", "--", "3"]);
    let looped = eventually(WAIT, || {
        let out = c.ok(&["get", "pod", "crasher"]);
        out.contains("CrashLoopBackOff")
            && c.jsonpath(
                &["pod/crasher"],
                "{.status.containerStatuses[0].restartCount}",
            )
            .parse::<u32>()
            .unwrap_or(0)
                >= 1
    });
    assert!(looped, "{}", c.ok(&["describe", "pod", "crasher"]));
    let exit = c.jsonpath(
        &["pod/crasher"],
        "{.status.containerStatuses[0].lastState.terminated.exitCode}",
    );
    assert_eq!(exit, "3");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=crasher",
    ]);
    assert!(events.contains("BackOff"), "{events}");

    // Graceful deletion ends with the pod gone.
    c.ok(&["delete", "pod", "crasher", "--wait=true", "--timeout=60s"]);
    let gone = c.kubectl(&["get", "pod", "crasher"]);
    assert!(!gone.status.success());
}

#[test]
fn oci_and_mixed_pods_talk_and_port_forward() {
    let dir = data_dir_with_examples();
    let busybox = import_busybox(dir.path());
    let c = up(dir);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: mixed
spec:
  containers:
    - name: web
      image: http-server:latest
      env: [{{name: PORT, value: "8080"}}]
      ports: [{{containerPort: 8080}}]
    - name: shell
      image: {busybox}
      command: ["/bin/sh", "-c", "while true; do wget -qO- http://127.0.0.1:8080/; sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: bb
spec:
  containers:
    - name: bb
      image: {busybox}
      command: ["/bin/sh", "-c", "echo started; sleep 3600"]
"#
    );
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &manifest);
    common::assert_ok(&out, &["apply"]);
    c.wait_for(&["pod/bb"], "{.status.phase}", "Running");
    c.wait_for(&["pod/mixed"], "{.status.phase}", "Running");
    c.wait_for(
        &["pod/mixed"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );

    // OCI logs.
    assert!(eventually(WAIT, || c
        .ok(&["logs", "bb"])
        .contains("started")));

    // The OCI container reaches the wasm server over the pod's localhost...
    let local = eventually(WAIT, || {
        c.ok(&["logs", "mixed", "-c", "shell"])
            .contains("hello from skiff wasm")
    });
    assert!(local, "{}", c.ok(&["logs", "mixed", "-c", "shell"]));
    // ...and a pod of another runtime reaches it on the pod IP, across the node bridge.
    let ip = c.jsonpath(&["pod/mixed"], "{.status.podIP}");
    assert!(ip.starts_with("10."), "pod IP {ip:?}");
    c.ok(&[
        "run",
        "fetch",
        &format!("--image={busybox}"),
        "--restart=Never",
        "--",
        "wget",
        "-qO-",
        &format!("http://{ip}:8080/"),
    ]);
    c.wait_for(&["pod/fetch"], "{.status.phase}", "Succeeded");
    let remote = c.ok(&["logs", "fetch"]);
    assert!(remote.contains("hello from skiff wasm"), "{remote}");

    // port-forward to the wasm server, through the API server and the kubelet.
    let port = common::free_port();
    let mut pf = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["port-forward", "pod/mixed", &format!("{port}:8080")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let fetched = eventually(Duration::from_secs(20), || {
        Command::new("curl")
            .args(["-sf", "-m", "3", &format!("http://127.0.0.1:{port}/")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("hello from skiff wasm"))
            .unwrap_or(false)
    });
    let _ = pf.kill();
    let out = pf.wait_with_output().expect("port-forward output");
    assert!(
        fetched,
        "curl through kubectl port-forward failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deployment_rollout_scale_and_undo() {
    let dir = data_dir_with_examples();
    // A second tag of the server, to roll out.
    let server = example("http-server");
    skiff(&[
        "image",
        "import",
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
        server.to_str().expect("utf-8"),
        "http-server:v2",
    ]);
    let c = up(dir);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=http-server:latest",
        "--port=8080",
    ]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.ok(&["scale", "deployment/web", "--replicas=5"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    c.wait_for(&["deployment/web"], "{.status.readyReplicas}", "5");
    c.ok(&["scale", "deployment/web", "--replicas=2"]);
    c.wait_for(&["deployment/web"], "{.status.replicas}", "2");

    c.ok(&[
        "set",
        "image",
        "deployment/web",
        "http-server=http-server:v2",
    ]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let images = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert!(images.split(' ').all(|i| i == "http-server:v2"), "{images}");
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('2'), "{history}");

    c.ok(&["rollout", "undo", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let image = c.jsonpath(
        &["deployment/web"],
        "{.spec.template.spec.containers[0].image}",
    );
    assert_eq!(image, "http-server:latest");
    c.wait_for(&["deployment/web"], "{.status.readyReplicas}", "2");
}

#[test]
fn restart_on_the_same_data_dir_brings_the_cluster_back() {
    let c = up(data_dir_with_examples());
    c.ok(&["create", "configmap", "keep", "--from-literal=k=v"]);
    c.ok(&[
        "run",
        "web",
        "--image=http-server:latest",
        "--env=PORT=8080",
    ]);
    c.wait_for(&["pod/web"], "{.status.phase}", "Running");
    let uid = c.jsonpath(&["pod/web"], "{.metadata.uid}");
    let dir = c.stop();

    let c = up(dir);
    assert_eq!(
        c.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    assert_eq!(c.jsonpath(&["pod/web"], "{.metadata.uid}"), uid);
    c.wait_for(&["pod/web"], "{.status.phase}", "Running");
    c.wait_for(
        &["pod/web"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        "True",
    );
    let nodes = c.ok(&["get", "nodes", "--no-headers"]);
    assert_eq!(nodes.lines().count(), 1, "{nodes}");
    assert!(nodes.contains(" Ready "), "{nodes}");
}

/// Runs `bin` (a kubectl) against `c` with `stdin` as its input.
fn kubectl_with_input(c: &Cluster, bin: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let cache = c.dir.path().join(format!(
        "kubectl-cache-{}",
        bin.file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("kubectl")
    ));
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_and_attach_over_websocket_and_spdy() {
    let dir = data_dir_with_examples();
    let busybox = import_busybox(dir.path());
    let c = up(dir);
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: bb
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: bb
      image: {busybox}
      command: ["/bin/sh", "-c", "sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
    - name: web
      image: http-server:latest
      env: [{{name: PORT, value: "8080"}}]
"#
    );
    common::assert_ok(
        &c.kubectl_stdin(&["apply", "-f", "-"], &manifest),
        &["apply"],
    );
    c.wait_for(&["pod/bb"], "{.status.phase}", "Running");
    c.wait_for(&["pod/web"], "{.status.phase}", "Running");

    // kubectl on PATH (≥ 1.30: WebSocket v5) and 1.29 (SPDY/3.1 only).
    let old = common::versioned_kubectls()
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "kubectl.1.29"))
        .expect("kubectl.1.29 beside the real kubectl");
    for bin in [PathBuf::from("kubectl"), old] {
        let name = bin.display().to_string();
        // stdin round trip, with its end-of-file ending `cat`.
        let out = kubectl_with_input(
            &c,
            &bin,
            &["exec", "-i", "bb", "--", "cat"],
            "hello through exec\nsecond line\n",
        );
        common::assert_ok(&out, &[name.as_str(), "exec -i"]);
        assert_eq!(
            text(&out.stdout),
            "hello through exec\nsecond line\n",
            "{name}"
        );

        // Exit codes, stdout and stderr kept apart.
        let out = c.kubectl_bin(
            &bin,
            &[
                "exec",
                "bb",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 7",
            ],
        );
        assert_eq!(out.status.code(), Some(7), "{name}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "out\n", "{name}");
        let stderr = text(&out.stderr);
        assert!(stderr.starts_with("err\n"), "{name}: {stderr}");
        assert!(
            stderr.contains("command terminated with exit code 7"),
            "{name}: {stderr}"
        );

        // A wasm container has no processes to exec into.
        let out = c.kubectl_bin(&bin, &["exec", "web", "--", "ls"]);
        assert!(!out.status.success(), "{name}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("exec is not supported for wasm containers"),
            "{name}: {stderr}"
        );

        // Attach to a new pod's stdin and output (`kubectl run -i`).
        let pod = format!("att-{}", if name == "kubectl" { "ws" } else { "spdy" });
        let out = kubectl_with_input(
            &c,
            &bin,
            &[
                "run",
                &pod,
                "-i",
                "--restart=Never",
                &format!("--image={busybox}"),
                "--",
                "sh",
                "-c",
                "read line; echo \"got $line\"",
            ],
            "attached\n",
        );
        common::assert_ok(&out, &[name.as_str(), "run -i"]);
        assert!(
            text(&out.stdout).contains("got attached"),
            "{name}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    // An unknown container is refused with the API server's message.
    let out = c.kubectl(&["exec", "bb", "-c", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("container nope is not valid for pod bb"),
        "{}",
        text(&out.stderr)
    );
}
