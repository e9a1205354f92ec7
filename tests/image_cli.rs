//! `skiff image` end to end with the real binary: import, tag, push to a registry on loopback
//! (Debian's `docker-registry`), remove, pull back (the store chosen from the registry's
//! manifest, progress as plain lines on a non-terminal stderr), and list — for a wasm image
//! and, with dockerd, an OCI image. Never the internet.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Run `skiff image ARGS` with the data dir and socket flags; returns the output.
fn image(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("image")
        .args(args)
        .env("SKIFF_DATA_DIR", data)
        .output()
        .expect("run skiff image")
}

/// Like [`image`], asserting success; returns (stdout, stderr).
fn ok(data: &Path, args: &[&str]) -> (String, String) {
    let out = image(data, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "skiff image {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// The `skiff image list` rows as words.
fn rows(data: &Path) -> Vec<Vec<String>> {
    let (stdout, _) = ok(data, &["list"]);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["REPOSITORY", "TAG", "IMAGE", "ID", "SIZE", "RUNTIME"],
        "{stdout}"
    );
    lines
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn has_row(rows: &[Vec<String>], repository: &str, tag: &str, runtime: &str) -> bool {
    rows.iter()
        .any(|r| r.len() == 5 && r[0] == repository && r[1] == tag && r[4] == runtime)
}

/// Debian's registry on a free loopback port with storage in a temporary directory.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Option<Registry> {
        if !Path::new(REGISTRY_BINARY).exists() {
            assert!(
                !ci(),
                "CI=true: {REGISTRY_BINARY} is missing (apt-get install docker-registry)"
            );
            eprintln!("skipping: {REGISTRY_BINARY} is missing");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("write config");
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "registry did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique suffix for names in the shared Docker store.
fn unique() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    )
}

#[test]
fn wasm_images_push_and_pull_through_a_registry() {
    let Some(registry) = Registry::start() else {
        return;
    };
    let data = tempfile::tempdir().expect("data dir");
    let data = data.path();
    // The smallest valid module, plus a custom section so its digest is this test's own.
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    let marker = unique();
    wasm.push(0);
    wasm.push((marker.len() + 2) as u8);
    wasm.push(1);
    wasm.push(b'm');
    wasm.extend_from_slice(marker.as_bytes());
    let file = data.join("app.wasm");
    std::fs::write(&file, &wasm).expect("write wasm");
    let remote = format!("{}/skiff/app:v1", registry.address);

    ok(data, &["import", file.to_str().expect("utf-8"), "app:v1"]);
    let (out, _) = ok(data, &["tag", "app:v1", &remote]);
    assert!(out.contains("in the wasm store"), "{out}");
    let (out, err) = ok(data, &["push", &remote]);
    assert!(out.contains("from the wasm store"), "{out}");
    assert!(err.contains("Pushed"), "progress on stderr: {err}");

    ok(data, &["rm", &remote]);
    assert!(!has_row(
        &rows(data),
        &format!("{}/skiff/app", registry.address),
        "v1",
        "wasmtime"
    ));
    let (out, err) = ok(data, &["pull", &remote]);
    assert!(out.contains("into the wasm store"), "{out}");
    // Not a terminal: plain lines, one per layer status, none per chunk.
    assert!(err.contains(": Pulling fs layer"), "{err}");
    assert!(err.contains(": Pull complete"), "{err}");
    assert!(!err.contains('\r'), "no bar redraws: {err:?}");
    let listed = rows(data);
    assert!(
        has_row(
            &listed,
            &format!("{}/skiff/app", registry.address),
            "v1",
            "wasmtime"
        ),
        "{listed:?}"
    );
    // The pulled image is byte for byte the pushed one: same id as the original tag.
    let id = |repository: &str| {
        listed
            .iter()
            .find(|r| r[0] == repository)
            .map(|r| r[2].clone())
    };
    assert_eq!(
        id(&format!("{}/skiff/app", registry.address)),
        id("app"),
        "{listed:?}"
    );

    // Errors are clear.
    let missing = image(data, &["push", "never-imported:v1"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no local image never-imported:v1"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn docker_images_push_and_pull_through_a_registry() {
    let docker_up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !docker_up {
        assert!(!ci(), "CI=true: no Docker daemon answers");
        eprintln!("skipping: no Docker daemon answers");
        return;
    }
    let Some(registry) = Registry::start() else {
        return;
    };
    let data = tempfile::tempdir().expect("data dir");
    let data = data.path();
    let marker = unique();
    let tar =
        skiff_runtimes::docker::testing::busybox_rootfs_tar_with(&[("marker", marker.as_bytes())])
            .expect("busybox rootfs (apt-get install busybox-static)");
    let file = data.join("rootfs.tar");
    std::fs::write(&file, tar).expect("write rootfs");
    let local = format!("skiff-test/image-cli:{marker}");
    let remote = format!("{}/skiff-test/image-cli:{marker}", registry.address);

    let run = || {
        ok(data, &["import", file.to_str().expect("utf-8"), &local]);
        let (out, _) = ok(data, &["tag", &local, &remote]);
        assert!(out.contains("in Docker"), "{out}");
        let (out, err) = ok(data, &["push", &remote]);
        assert!(out.contains("from Docker"), "{out}");
        assert!(err.contains("Pushed") || err.contains("Pushing"), "{err}");

        ok(data, &["rm", &remote]);
        ok(data, &["rm", &local]);
        let listed = rows(data);
        assert!(
            !has_row(
                &listed,
                &format!("{}/skiff-test/image-cli", registry.address),
                &marker,
                "docker"
            ),
            "{listed:?}"
        );
        // Auto: the registry's manifest says container image, so Docker pulls it.
        let (out, err) = ok(data, &["pull", &remote]);
        assert!(out.contains("into Docker"), "{out}");
        assert!(err.contains("Pull complete"), "per-layer lines: {err}");
        assert!(!err.contains('\r'), "no bar redraws: {err:?}");
        let listed = rows(data);
        assert!(
            has_row(
                &listed,
                &format!("{}/skiff-test/image-cli", registry.address),
                &marker,
                "docker"
            ),
            "{listed:?}"
        );
    };
    let outcome = std::panic::catch_unwind(run);
    // Only this test's own images.
    for name in [&remote, &local] {
        let _ = image(data, &["rm", "--runtime", "docker", name]);
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
