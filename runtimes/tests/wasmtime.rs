//! The conformance suite against the Wasmtime backend, plus what only wasm has: modules and
//! components, compile cache, traps and invalid binaries, preopens, joined namespaces.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use skiff_runtimes::conformance::{Features, Harness, TestImages, within};
use skiff_runtimes::logs::LogConfig;
use skiff_runtimes::netns::{self, Netns};
use skiff_runtimes::wasmtime::{TRAP_EXIT_CODE, WasmtimeConfig, WasmtimeRuntime};
use skiff_runtimes::{ContainerSpec, Error, ExitReason, Mount, NetworkMode, Runtime, SandboxSpec};

/// One data dir per test process, so the compile cache is shared by the tests.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

fn config(data_dir: &Path) -> WasmtimeConfig {
    WasmtimeConfig {
        max_containers: 64,
        require_pod_network: common::ci(),
        ..WasmtimeConfig::new(data_dir)
    }
}

const IMAGES: [(&str, &str); 8] = [
    ("hello", "wasm-test/hello:v1"),
    ("echo", "wasm-test/echo:v1"),
    ("exit3", "wasm-test/exit3:v1"),
    ("sleep", "wasm-test/sleep:v1"),
    ("busy", "wasm-test/busy:v1"),
    ("hog", "wasm-test/hog:v1"),
    ("read_mount", "wasm-test/read-mount:v1"),
    ("write_mount", "wasm-test/write-mount:v1"),
];

async fn runtime() -> WasmtimeRuntime {
    common::init_tracing();
    let runtime = WasmtimeRuntime::new(config(data_dir())).expect("wasmtime runtime");
    let store = runtime.image_store().clone();
    tokio::task::spawn_blocking(move || {
        for (fixture, name) in IMAGES {
            store
                .import_bytes(&common::fixture(fixture), name)
                .expect("import fixture");
        }
        let examples = common::examples();
        for name in [
            "http-server",
            "http-get",
            "hello",
            "crasher",
            "memory-hog",
            "cpu-burner",
        ] {
            store
                .import_bytes(&examples.bytes(name), &format!("example/{name}:v1"))
                .expect("import example");
        }
        let hello = common::fixture("hello");
        store
            .import_bytes(&hello[..hello.len() / 2], "wasm-test/truncated:v1")
            .expect("import truncated");
    })
    .await
    .expect("import images");
    runtime
}

/// Whether network namespaces can be created here; under `CI=true` they must be.
fn netns_or_skip() -> bool {
    if netns::supported() {
        return true;
    }
    assert!(
        !common::ci(),
        "CI=true: network namespaces must work (run as root)"
    );
    eprintln!("skipping: cannot create network namespaces");
    false
}

async fn harness() -> Harness {
    let runtime = runtime().await;
    let images = TestImages {
        hello: "wasm-test/hello:v1".into(),
        echo: "wasm-test/echo:v1".into(),
        exit_3: "wasm-test/exit3:v1".into(),
        sleep: "wasm-test/sleep:v1".into(),
        busy: "wasm-test/busy:v1".into(),
        memory_hog: "wasm-test/hog:v1".into(),
        listen: "example/http-server:v1".into(),
        connect: "example/http-get:v1".into(),
        read_mount: Some("wasm-test/read-mount:v1".into()),
        write_mount: Some("wasm-test/write-mount:v1".into()),
    };
    let features = Features {
        mounts: true,
        memory_limit: true,
        cpu_limit: true,
        exec: false,
        exec_tty: false,
        attach: false,
    };
    let mut harness = Harness::new(Arc::new(runtime), images, features);
    harness.invalid_image = Some("wasm-test/truncated:v1".into());
    harness
}

skiff_runtimes::conformance_suite!(harness);

fn spec(name: &str, image: &str, log_dir: &Path) -> ContainerSpec {
    let mut spec = ContainerSpec::new(name, image);
    spec.log_path = Some(log_dir.join(format!("{name}.log")));
    spec
}

fn stdout(path: &Option<PathBuf>) -> Vec<String> {
    let records = path
        .as_deref()
        .map(|p| skiff_runtimes::logs::read_records(p).unwrap_or_default())
        .unwrap_or_default();
    skiff_runtimes::logs::lines_of(&records, skiff_runtimes::logs::Stream::Stdout)
}

async fn host_sandbox(rt: &WasmtimeRuntime) -> String {
    rt.create_sandbox(&SandboxSpec::new("t").with_network(NetworkMode::Host))
        .await
        .expect("sandbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_guest_sees_env_args_mount_and_nothing_else() {
    let rt = runtime().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let config_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(config_dir.path().join("message.txt"), "mounted hello\n").expect("write");
    let sandbox = host_sandbox(&rt).await;
    let mut hello = spec("hello", "example/hello:v1", logs.path());
    hello.args = vec!["--flag".into()];
    hello.env = vec![("GREETING".into(), "hi from the spec".into())];
    hello.mounts = vec![Mount {
        host_path: config_dir.path().to_owned(),
        container_path: "/config".into(),
        read_only: true,
    }];
    let id = rt.create_container(&sandbox, &hello).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let done = within(Duration::from_secs(20), "hello", rt.wait_container(&id)).await;
    let done = done.expect("wait");
    assert_eq!(done.state.exit_info().map(|e| e.exit_code), Some(0));
    let out = stdout(&done.log_path);
    assert!(out.contains(&"GREETING=hi from the spec".into()), "{out:?}");
    assert!(
        out.contains(&"/config/message.txt: mounted hello".into()),
        "{out:?}"
    );
    assert!(
        out.contains(&"host file system: not visible".into()),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|l| l.contains(r#""example/hello:v1", "--flag""#)),
        "{out:?}"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_traps_and_oom_of_rust_guests() {
    let rt = runtime().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let sandbox = host_sandbox(&rt).await;
    let run = |spec: ContainerSpec| {
        let rt = rt.clone();
        let sandbox = sandbox.clone();
        async move {
            let id = rt.create_container(&sandbox, &spec).await.expect("create");
            rt.start_container(&id).await.expect("start");
            within(Duration::from_secs(20), &spec.name, rt.wait_container(&id))
                .await
                .expect("wait")
        }
    };
    let exit = run(spec("crasher", "example/crasher:v1", logs.path())).await;
    let info = exit.state.exit_info().expect("exited").clone();
    assert_eq!((info.exit_code, info.reason), (3, ExitReason::Error));

    let mut panics = spec("panics", "example/crasher:v1", logs.path());
    panics.args = vec!["panic".into()];
    let exit = run(panics).await;
    let info = exit.state.exit_info().expect("exited").clone();
    assert_eq!(
        (info.exit_code, info.reason),
        (TRAP_EXIT_CODE, ExitReason::Error)
    );
    let message = info.message.unwrap_or_default();
    assert!(message.contains("unreachable"), "trap message: {message}");

    let mut hog = spec("hog", "example/memory-hog:v1", logs.path());
    hog.resources.memory_limit_bytes = Some(32 << 20);
    let exit = run(hog).await;
    let info = exit.state.exit_info().expect("exited").clone();
    assert_eq!(info.reason, ExitReason::OomKilled, "{info:?}");
    let held = stdout(&exit.log_path);
    let last = held.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("holding 2"),
        "got to ~28 MiB before the kill: {last}"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrunnable_wasm_fails_at_create_without_panicking() {
    let rt = runtime().await;
    let sandbox = host_sandbox(&rt).await;
    let bad = [
        ("garbage", b"definitely not wasm".to_vec()),
        ("empty", Vec::new()),
        ("header-only", b"\0asm\x01\0\0\0\x01\x05".to_vec()),
        (
            "no-start",
            wat::parse_str("(module (func (export \"main\")))").expect("wat"),
        ),
        (
            "unknown-import",
            wat::parse_str(
                r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#,
            )
            .expect("wat"),
        ),
        ("not-a-command", wat::parse_str("(component)").expect("wat")),
    ];
    for (name, bytes) in bad {
        let image = format!("wasm-test/bad-{name}:v1");
        rt.image_store()
            .import_bytes(&bytes, &image)
            .expect("store accepts any bytes");
        let result = rt
            .create_container(&sandbox, &ContainerSpec::new(name, &image))
            .await;
        match result {
            Err(error @ Error::InvalidImage { .. }) => {
                assert_eq!(error.reason(), "CreateContainerError");
            }
            other => panic!("{name}: expected InvalidImage, got {other:?}"),
        }
    }
    let garbage = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(garbage.path(), b"#!/bin/sh\necho hi\n").expect("write");
    let imported = rt.import_image(garbage.path(), "wasm-test/script:v1").await;
    assert!(
        matches!(imported, Err(Error::InvalidImage { .. })),
        "{imported:?}"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_artifacts_survive_a_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let component = common::examples().bytes("http-server");
    let first = WasmtimeRuntime::new(config(data.path())).expect("runtime");
    let record = first
        .image_store()
        .import_bytes(&component, "cache/server:v1")
        .expect("import");
    let started = Instant::now();
    first.precompile("cache/server:v1").await.expect("compile");
    let compile = started.elapsed();
    let cached = first.compiled_path(&record.digest);
    let written = std::fs::metadata(&cached)
        .expect("cached artifact")
        .modified()
        .expect("mtime");
    drop(first);

    let second = WasmtimeRuntime::new(config(data.path())).expect("restarted runtime");
    let started = Instant::now();
    second.precompile("cache/server:v1").await.expect("load");
    let load = started.elapsed();
    let after = std::fs::metadata(&cached)
        .expect("still cached")
        .modified()
        .expect("mtime");
    assert_eq!(
        written, after,
        "the restart reused the artifact instead of recompiling"
    );
    eprintln!("compile {compile:?}, load from cache {load:?}");
    assert!(
        load < compile,
        "loading ({load:?}) beats compiling ({compile:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_rotate_by_size() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = config(data.path());
    config.log = LogConfig {
        max_size_bytes: 300,
        max_files: 2,
    };
    let rt = WasmtimeRuntime::new(config).expect("runtime");
    rt.image_store()
        .import_bytes(&common::fixture("echo"), "rotate/echo:v1")
        .expect("import");
    let logs = tempfile::tempdir().expect("tempdir");
    let sandbox = host_sandbox(&rt).await;
    let mut echo = spec("echo", "rotate/echo:v1", logs.path());
    echo.args = (0..40).map(|i| format!("argument number {i}")).collect();
    let id = rt.create_container(&sandbox, &echo).await.expect("create");
    rt.start_container(&id).await.expect("start");
    within(Duration::from_secs(20), "echo", rt.wait_container(&id))
        .await
        .expect("wait");
    assert!(logs.path().join("echo.log").exists());
    assert!(
        logs.path().join("echo.log.1").exists(),
        "rotated once at least"
    );
    assert!(
        !logs.path().join("echo.log.2").exists(),
        "max_files = 2 keeps one old file"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_dir_is_the_guests_initial_cwd() {
    let rt = runtime().await;
    let logs = tempfile::tempdir().expect("tempdir");
    let sandbox = host_sandbox(&rt).await;
    let mut echo = spec("cwd", "wasm-test/echo:v1", logs.path());
    echo.working_dir = Some("/work/dir".into());
    let id = rt.create_container(&sandbox, &echo).await.expect("create");
    rt.start_container(&id).await.expect("start");
    let done = within(Duration::from_secs(20), "echo", rt.wait_container(&id))
        .await
        .expect("wait");
    assert!(stdout(&done.log_path).contains(&"PWD=/work/dir".into()));
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_an_existing_namespace_and_leaves_it_alone() {
    if !netns_or_skip() {
        return;
    }
    let rt = runtime().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("join-{}", skiff_runtimes::lifecycle::new_id());
    let outside = Netns::create(dir.path(), &name).expect("netns");
    let sandbox = rt
        .create_sandbox(
            &SandboxSpec::new("joined")
                .with_network(NetworkMode::Existing(outside.path().to_owned())),
        )
        .await
        .expect("sandbox");
    let status = rt.sandbox_status(&sandbox).await.expect("status");
    assert_eq!(status.netns_path.as_deref(), Some(outside.path()));
    let logs = tempfile::tempdir().expect("tempdir");
    let port = skiff_runtimes::conformance::free_port();
    let mut server = spec("server", "example/http-server:v1", logs.path());
    server.env = vec![("PORT".into(), port.to_string())];
    let id = rt
        .create_container(&sandbox, &server)
        .await
        .expect("create");
    rt.start_container(&id).await.expect("start");

    let reply = within(Duration::from_secs(10), "probe", async {
        loop {
            let attempt = outside
                .run(move || {
                    use std::io::{Read, Write};
                    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
                    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                    let mut reply = String::new();
                    s.read_to_string(&mut reply)?;
                    Ok::<_, std::io::Error>(reply)
                })
                .expect("enter netns");
            match attempt {
                Ok(reply) => break reply,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    rt.remove_sandbox(&sandbox).await.expect("remove");
    assert!(outside.path().exists(), "a joined namespace is not deleted");
    outside.remove().expect("cleanup");
}

/// A sandbox named `name` on the pod network, and the path of its network namespace.
async fn pod_network_sandbox(rt: &WasmtimeRuntime, name: &str) -> (String, PathBuf) {
    let sandbox = rt
        .create_sandbox(&SandboxSpec::new(name).with_network(NetworkMode::Pod))
        .await
        .expect("sandbox");
    let path = rt
        .sandbox_status(&sandbox)
        .await
        .expect("status")
        .netns_path
        .expect("netns path");
    (sandbox, path)
}

#[tokio::test]
async fn a_restart_removes_namespaces_a_dead_run_left() {
    if !netns_or_skip() {
        return;
    }
    common::init_tracing();
    let data = tempfile::tempdir().expect("data dir");
    let namespaces = tempfile::tempdir().expect("netns dir");
    // Several pod threads: the namespace is a file in `netns_dir` (one pod thread holds it
    // without a file; see `a_held_namespace_leaves_no_file`).
    let config = WasmtimeConfig {
        netns_dir: namespaces.path().to_owned(),
        pod_threads: 2,
        ..config(data.path())
    };
    let first = WasmtimeRuntime::new(config.clone()).expect("runtime");
    let (live, live_path) = pod_network_sandbox(&first, "live").await;
    // What a killed run of the same data dir would have left: its pid is in the name.
    let mut exited = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = exited.id();
    exited.wait().expect("wait");
    let live_name = live_path.file_name().expect("name").to_string_lossy();
    let ours = format!("-{}-", std::process::id());
    assert!(live_name.contains(&ours), "{live_name}");
    let stale_name = live_name.replacen(&ours, &format!("-{dead_pid}-"), 1);
    let stale = Netns::create(namespaces.path(), &stale_name).expect("stale netns");
    // Another data dir's leftovers are that data dir's business.
    let foreign =
        Netns::create(namespaces.path(), &format!("skiff-00000000-{dead_pid}-x")).expect("netns");

    let _second = WasmtimeRuntime::new(config).expect("restarted runtime");
    assert!(
        !stale.path().exists(),
        "the dead run's namespace is removed"
    );
    assert!(live_path.exists(), "a live process's namespace stays");
    assert!(
        foreign.path().exists(),
        "another data dir's namespace stays"
    );

    first.remove_sandbox(&live).await.expect("remove");
    assert!(!live_path.exists());
    foreign.remove().expect("cleanup");
}

#[tokio::test]
async fn a_held_namespace_leaves_no_file() {
    if !netns_or_skip() {
        return;
    }
    let data = tempfile::tempdir().expect("data dir");
    let namespaces = tempfile::tempdir().expect("netns dir");
    let rt = WasmtimeRuntime::new(WasmtimeConfig {
        netns_dir: namespaces.path().to_owned(),
        pod_threads: 1,
        ..config(data.path())
    })
    .expect("runtime");
    let (sandbox, path) = pod_network_sandbox(&rt, "held").await;
    assert!(path.starts_with("/proc"), "{}", path.display());
    assert_eq!(
        std::fs::read_dir(namespaces.path()).expect("dir").count(),
        0,
        "no file in the netns dir"
    );
    // The path names a namespace of its own, with lo up, that another thread can join.
    let inode = Netns::open(&path).expect("open").inode().expect("inode");
    assert_ne!(inode, netns::current_thread_netns().expect("ours"));
    let loopback_works = Netns::open(&path)
        .expect("open")
        .run(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            std::net::TcpStream::connect(listener.local_addr()?).map(drop)
        })
        .expect("run");
    assert!(loopback_works.is_ok(), "lo is up: {loopback_works:?}");
    rt.remove_sandbox(&sandbox).await.expect("remove");
    assert!(!path.exists(), "the path goes with the sandbox");
}
