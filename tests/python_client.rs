//! The official Python `kubernetes` client against a real `skiff apiserver`:
//! the API is Kubernetes', not merely kubectl-shaped.

mod common;

use common::Cluster;

#[test]
fn python_kubernetes_client_works() {
    let have = std::process::Command::new("python3")
        .args(["-c", "import kubernetes"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "the Python kubernetes client is missing; .ci/test-all installs it"
        );
        eprintln!("skipping: pip install kubernetes to run this test");
        return;
    }
    let c = Cluster::start("apiserver", &["--store", "memory"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&c.kubeconfig)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python client checks failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("all checks passed"));
}
