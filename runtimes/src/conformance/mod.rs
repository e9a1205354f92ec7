//! The runtime conformance suite: written once, run by every backend against itself.
//!
//! Like cri-tools' `critest`, it drives a [`Runtime`] only through the trait and checks what
//! Kubernetes users rely on. A backend provides a [`Harness`] — the runtime under test and a
//! set of [`TestImages`] with agreed behaviour — and expands [`conformance_suite!`](crate::conformance_suite) in an
//! integration test file to get one `#[tokio::test]` per case in [`cases`]:
//!
//! ```ignore
//! async fn harness() -> skiff_runtimes::conformance::Harness { /* build your runtime */ }
//! skiff_runtimes::conformance_suite!(harness);
//! ```
//!
//! Cases needing network namespaces (root) are skipped with a message when the backend falls
//! back to host networking — except under `CI=true`, where that is a failure.

pub mod cases;
pub mod exec;

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use crate::logs::{self, LogRecord, Stream};
use crate::spec::{ContainerSpec, SandboxSpec};
use crate::status::ContainerStatus;
use crate::{Error, Runtime};

/// Images (present in the runtime under test) with the behaviour the cases expect.
#[derive(Debug, Clone)]
pub struct TestImages {
    /// Writes `hello 1`, `hello 2`, `hello 3` to stdout and `warning 1` to stderr (stderr
    /// after `hello 1`, before `hello 2`), then exits 0.
    pub hello: String,
    /// Writes each argument (argv\[1..\]) on its own stdout line, then every environment
    /// variable as a `KEY=VALUE` line; exits 0.
    pub echo: String,
    /// Exits with code 3.
    pub exit_3: String,
    /// Does nothing, forever, without using CPU; a stop request may end it early.
    pub sleep: String,
    /// Burns CPU forever and ignores stop requests (only a kill ends it).
    pub busy: String,
    /// Allocates memory in steps until it is killed (or allocation fails).
    pub memory_hog: String,
    /// Listens on TCP `127.0.0.1:$PORT` and answers every request with an HTTP status line
    /// containing `200 OK`.
    pub listen: String,
    /// Connects to `127.0.0.1:$PORT`, retrying for about 5 s, sends `GET / HTTP/1.0`, prints
    /// the response's status line and exits 0; exits non-zero if it never connects.
    pub connect: String,
    /// With [`Features::mounts`]: prints the contents of `/data/input.txt`.
    pub read_mount: Option<String>,
    /// With [`Features::mounts`]: writes `written` to `/data/output.txt`; exits 0 on success
    /// and non-zero if the write fails.
    pub write_mount: Option<String>,
}

/// What the backend under test supports; unsupported features are checked to fail cleanly.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// Volume mounts (host directories at container paths, read-only honoured).
    pub mounts: bool,
    /// Memory limits ending in `OOMKilled`.
    pub memory_limit: bool,
    /// CPU limits that throttle.
    pub cpu_limit: bool,
    /// [`Runtime::exec`] without a terminal; the commands `sh`, `cat` and `pwd` exist in the
    /// containers.
    pub exec: bool,
    /// [`Runtime::exec`] with a terminal (and `stty` in the containers).
    pub exec_tty: bool,
    /// [`Runtime::attach`] and [`ContainerSpec::stdin`].
    pub attach: bool,
}

/// Everything the suite needs from a backend.
pub struct Harness {
    /// The runtime under test.
    pub runtime: Arc<dyn Runtime>,
    /// Images with agreed behaviour, already present in the runtime.
    pub images: TestImages,
    /// What the backend supports.
    pub features: Features,
    /// Memory limit applied to [`TestImages::memory_hog`].
    pub memory_limit_bytes: u64,
    /// An image that is present but cannot run (e.g. truncated wasm); creating a container
    /// from it must fail with a `CreateContainerError`-style error.
    pub invalid_image: Option<String>,
    /// Directory for log files; removed with the harness.
    pub log_dir: tempfile::TempDir,
}

impl Harness {
    /// A harness with a fresh log directory.
    pub fn new(runtime: Arc<dyn Runtime>, images: TestImages, features: Features) -> Self {
        Harness {
            runtime,
            images,
            features,
            memory_limit_bytes: 64 * 1024 * 1024,
            invalid_image: None,
            // A failure to create a temp dir leaves nothing to test with.
            log_dir: tempfile::tempdir().expect("create a temporary log directory"),
        }
    }

    /// A container spec for `image` logging to `<log dir>/<name>.log`.
    pub fn spec(&self, name: &str, image: &str) -> ContainerSpec {
        let mut spec = ContainerSpec::new(name, image);
        spec.log_path = Some(self.log_dir.path().join(format!("{name}.log")));
        spec
    }

    /// Create a pod sandbox with a fresh network namespace.
    pub async fn sandbox(&self, name: &str) -> String {
        let mut spec = SandboxSpec::new(name);
        spec.uid = crate::lifecycle::new_id();
        self.runtime
            .create_sandbox(&spec)
            .await
            .expect("create sandbox")
    }

    /// Create and start a container, returning its id.
    pub async fn run(&self, sandbox: &str, spec: &ContainerSpec) -> String {
        let id = self
            .runtime
            .create_container(sandbox, spec)
            .await
            .expect("create container");
        self.runtime
            .start_container(&id)
            .await
            .expect("start container");
        id
    }

    /// Wait (bounded) for a container to exit and return its final status.
    pub async fn wait(&self, id: &str, limit: Duration) -> ContainerStatus {
        within(limit, "container exit", self.runtime.wait_container(id))
            .await
            .expect("wait container")
    }

    /// The container's log records.
    pub fn records(&self, name: &str) -> Vec<LogRecord> {
        let path = self.log_dir.path().join(format!("{name}.log"));
        logs::read_records(&path).unwrap_or_default()
    }

    /// Full stdout lines of a container.
    pub fn stdout(&self, name: &str) -> Vec<String> {
        logs::lines_of(&self.records(name), Stream::Stdout)
    }

    /// Full stderr lines of a container.
    pub fn stderr(&self, name: &str) -> Vec<String> {
        logs::lines_of(&self.records(name), Stream::Stderr)
    }

    /// Whether the sandbox got its own network namespace; if not, says why a namespace case
    /// is skipped, and fails under `CI=true`.
    pub async fn has_pod_network(&self, sandbox: &str, case: &str) -> bool {
        let status = self
            .runtime
            .sandbox_status(sandbox)
            .await
            .expect("sandbox status");
        if status.netns_path.is_some() {
            return true;
        }
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{case}: runtime {} gave the sandbox no network namespace (need root); CI=true \
             does not allow skipping",
            self.runtime.handler()
        );
        eprintln!("skipping {case}: no pod network namespace (not root?)");
        false
    }
}

/// Await `future` for at most `limit`, panicking with `what` on timeout.
pub async fn within<T>(limit: Duration, what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// A TCP port that is free on the host's loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Assert `result` failed with an error whose [`Error::reason`] is one of `reasons`.
pub fn assert_reason<T: std::fmt::Debug>(result: Result<T, Error>, reasons: &[&str], what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected an error ({reasons:?}), got Ok({value:?})"),
        Err(error) => assert!(
            reasons.contains(&error.reason()),
            "{what}: expected reason in {reasons:?}, got {} ({error})",
            error.reason()
        ),
    }
}

/// Expand to one `#[tokio::test]` per conformance case, each building a fresh harness by
/// awaiting `$factory()`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@cases $factory;
            sandbox_lifecycle,
            run_to_completion,
            args_and_env,
            exit_codes,
            logs_in_cri_format,
            stop_honours_grace_then_kills,
            wait_sees_stop,
            memory_limit_oom_kills,
            cpu_limit_throttles,
            pod_shares_localhost,
            pods_are_isolated,
            mounts,
            remove_is_idempotent,
            unknown_ids_are_not_found,
            invalid_and_unsupported_specs,
            images,
            exec_runs_in_the_container,
            exec_stdin_round_trip,
            exec_exit_codes,
            exec_refused_unless_running,
            exec_with_a_terminal,
            attach_round_trip,
            remove_orphans_keeps_live_pods,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness = $factory().await;
                $crate::conformance::cases::$case(&harness).await;
            }
        )*
    };
}
