//! Helpers shared by the Docker backend's integration tests: a runtime on a fresh instance
//! label (or a skip), cleanup that survives failing tests, a registry on loopback, and a
//! socket proxy that plays a daemon going away and coming back.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use skiff_runtimes::docker::{DockerConfig, DockerRuntime, testing};

/// True under `CI=true`, where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Log to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A short unique suffix for names.
pub fn unique() -> String {
    skiff_runtimes::lifecycle::new_id()[..12].to_owned()
}

/// Skip (return `None`) with a message, or fail under `CI=true`.
pub fn skip<T>(what: &str, problem: &str) -> Option<T> {
    assert!(!ci(), "{what}: {problem}; CI=true does not allow skipping");
    eprintln!("skipping {what}: {problem}");
    None
}

/// A runtime on a fresh instance label with the busybox test images installed, or `None`
/// when dockerd or a static busybox is missing (a failure under `CI=true`).
pub async fn runtime_or_skip(what: &str) -> Option<(DockerRuntime, testing::BusyboxImages)> {
    init_tracing();
    let runtime = DockerRuntime::new(DockerConfig::new(format!("test-{}", unique())));
    if !runtime.available().await {
        let problem = format!("no Docker daemon answers at {}", runtime.endpoint());
        return skip(what, &problem);
    }
    if !testing::busybox_available() {
        let problem = format!(
            "no static busybox at {} (apt-get install busybox-static)",
            testing::BUSYBOX_PATH
        );
        return skip(what, &problem);
    }
    let images = testing::install(&runtime)
        .await
        .expect("install busybox test images");
    Some((runtime, images))
}

/// Run `test`, then remove everything `runtime` created, even when `test` panicked.
pub async fn cleanly(runtime: &DockerRuntime, test: impl Future<Output = ()>) {
    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    let cleanup = testing::remove_everything(runtime).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    cleanup.expect("remove the test's containers");
}

/// Poll `check` every 100 ms until it is true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Debian's `docker-registry` serving on `127.0.0.1:<port>` with storage in a temporary
/// directory; killed on drop. Docker treats 127.0.0.0/8 registries as insecure, so plain
/// HTTP works without daemon configuration.
pub struct LocalRegistry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    _dir: tempfile::TempDir,
}

/// Where Debian installs the registry.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

impl LocalRegistry {
    /// Start one, or `None` (skip) if `docker-registry` is not installed.
    pub fn start_or_skip(what: &str) -> Option<LocalRegistry> {
        if !Path::new(REGISTRY_BINARY).exists() {
            return skip(
                what,
                &format!("{REGISTRY_BINARY} is missing (apt-get install docker-registry)"),
            );
        }
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n",
                storage.display()
            ),
        )
        .expect("write registry config");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = LocalRegistry {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "docker-registry did not listen on {}",
                registry.address
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// A Unix socket that forwards every connection to dockerd's socket while it runs: a
/// stand-in daemon the tests can stop and start without touching the real one.
pub struct DaemonProxy {
    /// The proxy's socket path.
    pub socket: PathBuf,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl DaemonProxy {
    /// A proxy socket path; nothing listens until [`DaemonProxy::start`].
    pub fn new() -> DaemonProxy {
        let dir = tempfile::tempdir().expect("proxy dir");
        DaemonProxy {
            socket: dir.path().join("docker.sock"),
            task: None,
            _dir: dir,
        }
    }

    /// Listen and forward to `/var/run/docker.sock`.
    pub fn start(&mut self) {
        self.listen(None);
    }

    /// Like [`start`](Self::start), also recording every byte the clients send (requests
    /// and their bodies) into the returned buffer.
    pub fn start_recording(&mut self) -> std::sync::Arc<parking_lot::Mutex<Vec<u8>>> {
        let traffic = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        self.listen(Some(traffic.clone()));
        traffic
    }

    fn listen(&mut self, traffic: Option<std::sync::Arc<parking_lot::Mutex<Vec<u8>>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = std::fs::remove_file(&self.socket);
        let listener = tokio::net::UnixListener::bind(&self.socket).expect("bind proxy socket");
        self.task = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let traffic = traffic.clone();
                tokio::spawn(async move {
                    let Ok(daemon) =
                        tokio::net::UnixStream::connect(skiff_runtimes::docker::DEFAULT_SOCKET)
                            .await
                    else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_daemon, mut to_daemon) = daemon.into_split();
                    let upstream = async {
                        let mut buf = vec![0u8; 16 * 1024];
                        while let Ok(n) = from_client.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if let Some(traffic) = &traffic {
                                traffic.lock().extend_from_slice(&buf[..n]);
                            }
                            if to_daemon.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_daemon.shutdown().await;
                    };
                    let downstream = async {
                        let _ = tokio::io::copy(&mut from_daemon, &mut to_client).await;
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(upstream, downstream);
                });
            }
        }));
    }

    /// Stop listening and remove the socket: the "daemon" is gone.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for DaemonProxy {
    fn drop(&mut self) {
        self.stop();
    }
}
