//! Test harness: a real `skiff` process on a temporary data dir and a free
//! port, driven by the real kubectl binaries on this machine.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `skiff` process.
pub struct Cluster {
    child: Child,
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// `<data dir>/kubeconfig`.
    pub kubeconfig: PathBuf,
    /// The API server port.
    pub port: u16,
    /// Everything the process printed so far (stdout and stderr).
    pub output: Arc<Mutex<String>>,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn pump(stream: impl std::io::Read + Send + 'static, sink: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if std::env::var_os("SKIFF_TEST_ECHO").is_some() {
                eprintln!("[skiff] {line}");
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&line);
                s.push('\n');
            }
        }
    });
}

/// Flags that keep concurrent `skiff up` clusters apart on this host: each gets a slot with
/// its own node name (and so its own Docker containers), pod bridge, pod range and kubelet
/// port. A restart on the same data dir keeps its slot.
fn node_args(dir: &Path) -> Vec<String> {
    let slot = test_slot(dir);
    vec![
        "--node-name".into(),
        format!("skiff-test-{slot}"),
        "--pod-bridge".into(),
        format!("skt{slot}"),
        "--cluster-cidr".into(),
        format!("10.{}.0.0/16", 100 + slot),
        "--kubelet-port".into(),
        free_port().to_string(),
        "--shutdown-grace-period".into(),
        "2".into(),
    ]
}

/// A slot number unique among the live test processes: `/tmp/skiff-test-slots/<n>` holds
/// the owning process id, and a slot whose owner is gone is free again.
pub fn test_slot(dir: &Path) -> u32 {
    let remembered = dir.join("test-slot");
    if let Some(slot) = std::fs::read_to_string(&remembered)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return slot;
    }
    let slots = Path::new("/tmp/skiff-test-slots");
    std::fs::create_dir_all(slots).expect("slot dir");
    let me = std::process::id();
    for slot in 0..150u32 {
        let file = slots.join(slot.to_string());
        let owner: Option<u32> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let free = match owner {
            None => !file.exists(),
            Some(pid) => pid != me && !Path::new(&format!("/proc/{pid}")).exists(),
        };
        if free {
            let _ = std::fs::remove_file(&file);
        }
        let claimed = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, me.to_string().as_bytes()));
        if claimed.is_ok() {
            std::fs::write(&remembered, slot.to_string()).expect("remember slot");
            return slot;
        }
    }
    panic!("no free test slot under {}", slots.display());
}

/// How long an end-to-end test waits for the cluster to reach a state.
pub const WAIT: Duration = Duration::from_secs(60);

impl Cluster {
    /// `kubectl get <what...> -o jsonpath=<path>`'s output (empty if kubectl failed).
    pub fn jsonpath(&self, what: &[&str], path: &str) -> String {
        let output = format!("jsonpath={path}");
        let mut args = vec!["get"];
        args.extend_from_slice(what);
        args.extend_from_slice(&["-o", &output]);
        String::from_utf8_lossy(&self.kubectl(&args).stdout).into_owned()
    }

    /// Waits up to [`WAIT`] for [`Cluster::jsonpath`] to print `want`; fails with what it
    /// printed last and `kubectl describe <what...>`.
    pub fn wait_for(&self, what: &[&str], path: &str, want: &str) {
        let ok = eventually(WAIT, || self.jsonpath(what, path) == want);
        let mut describe = vec!["describe"];
        describe.extend_from_slice(what);
        assert!(
            ok,
            "{what:?} {path} never became {want:?} (now {:?}); describe:\n{}",
            self.jsonpath(what, path),
            String::from_utf8_lossy(&self.kubectl(&describe).stdout)
        );
    }

    /// `skiff <subcommand> --data-dir <tmp> --api-port <free> <extra...>`, waiting until ready.
    pub fn start(subcommand: &str, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, subcommand, extra)
    }

    /// Like `start`, on an existing data dir (restart tests).
    pub fn start_in(dir: tempfile::TempDir, subcommand: &str, extra: &[&str]) -> Cluster {
        let port = free_port();
        let node_args = if subcommand == "up" {
            node_args(dir.path())
        } else {
            Vec::new()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg(subcommand)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--api-port")
            .arg(port.to_string())
            .args(&node_args)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn skiff");
        let output = Arc::new(Mutex::new(String::new()));
        pump(child.stdout.take().expect("stdout"), output.clone());
        pump(child.stderr.take().expect("stderr"), output.clone());
        let cluster = Cluster {
            child,
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            port,
            output,
        };
        cluster.wait_for_output("ready in", Duration::from_secs(60));
        cluster
    }

    /// Blocks until the process printed `needle`; panics with the output on timeout.
    pub fn wait_for_output(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output.lock().map(|s| s.clone()).unwrap_or_default();
            if out.contains(needle) {
                return;
            }
            if Instant::now() > deadline {
                panic!("skiff did not print {needle:?} within {timeout:?}; output:\n{out}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the default `kubectl` (the one on PATH) with a fresh cache dir.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_bin(Path::new("kubectl"), args)
    }

    /// Runs a given kubectl binary against this cluster.
    pub fn kubectl_bin(&self, bin: &Path, args: &[&str]) -> Output {
        let cache = self.dir.path().join(format!(
            "kubectl-cache-{}",
            bin.file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("kubectl")
        ));
        Command::new(bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    /// Runs kubectl and returns stdout, panicking with stderr if it failed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_ok(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `stdin` as its input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let cache = self.dir.path().join("kubectl-cache-kubectl");
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(cache)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
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

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.terminate();
        let dir = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, dir)
    }

    fn terminate(&mut self) {
        terminate(&mut self.child);
    }
}

/// Stops a skiff process as a user would (SIGTERM: it stops its pods and removes their
/// network namespaces), and kills it if it has not exited after 20 s.
pub fn terminate(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Panics with kubectl's output unless it succeeded.
pub fn assert_ok(out: &Output, args: &[&str]) {
    assert_succeeded("kubectl", out, args);
}

/// Panics with `program`'s output unless it succeeded.
fn assert_succeeded(program: &str, out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The versioned kubectl binaries beside the real kubectl (`kubectl.1.27` ...).
pub fn versioned_kubectls() -> Vec<PathBuf> {
    let Ok(real) = std::fs::canonicalize(
        which("kubectl").unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl")),
    ) else {
        return Vec::new();
    };
    let Some(dir) = real.parent() else {
        return Vec::new();
    };
    let mut bins: Vec<PathBuf> = (27..=40)
        .map(|minor| dir.join(format!("kubectl.1.{minor}")))
        .filter(|p| p.exists())
        .collect();
    bins.sort();
    bins
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The release build of example wasm guest `name` (built by `.ci/test-all`).
pub fn example(name: &str) -> PathBuf {
    let target = if name.starts_with("http-") {
        "wasm32-wasip2"
    } else {
        "wasm32-wasip1"
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/wasm-pods/target")
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run examples/wasm-pods/build.sh",
        path.display()
    );
    path
}

/// Runs `skiff args...` to completion and asserts it succeeded.
pub fn skiff(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff");
    assert_succeeded("skiff", &out, args);
}
