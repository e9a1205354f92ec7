//! Every stock kubectl version on the machine (1.27 … 1.33) against the
//! router: aggregated discovery (v2beta1 for ≤ 1.29, v2 later), Tables,
//! generator commands (protobuf bodies from 1.32) and apply.

mod api_common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn versioned_kubectls() -> Vec<PathBuf> {
    let Ok(out) = Command::new("sh")
        .arg("-c")
        .arg("readlink -f \"$(command -v kubectl)\"")
        .output()
    else {
        return Vec::new();
    };
    let real = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let Some(dir) = real.parent() else {
        return Vec::new();
    };
    (27..=33)
        .map(|m| dir.join(format!("kubectl.1.{m}")))
        .filter(|p| p.exists())
        .collect()
}

fn write_kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("kubeconfig");
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: u\n    namespace: default\ncurrent-context: skiff\nusers:\n- name: u\n  user: {{}}\n"
    );
    std::fs::write(&path, cfg).expect("kubeconfig");
    path
}

fn run(bin: &Path, kubeconfig: &Path, cache: &Path, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}\n{stdout}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_version_works() {
    let bins = versioned_kubectls();
    if bins.is_empty() {
        assert!(
            std::env::var("CI").is_err(),
            "versioned kubectl binaries are expected in CI"
        );
        eprintln!("no versioned kubectl binaries; skipping");
        return;
    }
    let api = api_common::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let router = api.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = write_kubeconfig(dir.path(), port);
    let root = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        for bin in bins {
            let v = bin
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or("kubectl")
                .replace("kubectl.1.", "v");
            let cache = root.join(format!("cache-{v}"));
            let res = run(&bin, &kubeconfig, &cache, &["api-resources"], None);
            assert!(
                res.lines()
                    .any(|l| l.starts_with("pods") && l.contains("po")),
                "{v}: {res}"
            );
            let name = format!("d{v}").replace('.', "-");
            run(
                &bin,
                &kubeconfig,
                &cache,
                &["create", "deployment", &name, "--image=nginx:1.25"],
                None,
            );
            let table = run(&bin, &kubeconfig, &cache, &["get", "deployments"], None);
            let header: Vec<&str> = table
                .lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            assert_eq!(
                header,
                ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
                "{v}: {table}"
            );
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(&name) && l.contains("0/1")),
                "{v}: {table}"
            );
            let cm = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{v}\ndata:\n  a: \"1\"\n"
            );
            let out = run(
                &bin,
                &kubeconfig,
                &cache,
                &["apply", "--validate=false", "-f", "-"],
                Some(&cm),
            );
            assert!(out.contains("created"), "{v}: {out}");
        }
    })
    .await
    .expect("kubectl versions");
}
