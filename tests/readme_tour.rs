//! The README's five-minute tour, run word for word with bash against a fresh home
//! directory, so the README cannot rot. It uses the defaults a user gets (API port 6443,
//! kubelet port 10250, bridge `skiff0`), so it is the only test that may use them.

use std::path::Path;
use std::process::Command;

/// The first ```sh block after the tour's heading.
fn tour_script(readme: &str) -> String {
    let start = readme
        .find("## A five-minute tour")
        .expect("README has a tour");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("the tour has a sh block") + "```sh\n".len();
    let close = rest[open..].find("```").expect("the block is closed");
    rest[open..open + close].to_owned()
}

#[test]
fn readme_tour_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let tour = tour_script(&readme);
    let home = tempfile::tempdir().expect("tempdir");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_skiff"))
        .parent()
        .expect("binary dir")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Whatever happens, stop the cluster the tour started.
    let script = format!(
        "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\nset -x\n{tour}"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("HOME", home.path())
        .env("PATH", path)
        .env_remove("KUBECONFIG")
        .env_remove("SKIFF_DATA_DIR")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(root.join("skiff.log")).unwrap_or_default();
    let _ = std::fs::remove_file(root.join("skiff.log"));
    assert!(
        out.status.success(),
        "the README tour failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- skiff.log\n{log}",
        out.status
    );
    for expected in [
        "Hello from a Skiff wasm pod!",
        "hello through exec",
        "exit code 3",
        "deployment \"web\" successfully rolled out",
        "hello from skiff wasm",
        "rolled back",
    ] {
        assert!(
            stdout.contains(expected),
            "tour output lacks {expected:?}:\n{stdout}"
        );
    }
    assert!(
        log.contains("skiff: stopped"),
        "skiff did not stop cleanly:\n{log}"
    );
}
