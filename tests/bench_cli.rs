//! Every `skiff bench ...` prints a human table, then one JSON object with
//! its figures as the last line of stdout. Small sizes: this checks the
//! contract and that the figures are sane, not the speed.

use std::process::Command;

fn bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("bench")
        .args(args)
        .output()
        .expect("running skiff bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "skiff bench {args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.len() > 2,
        "expected a table before the JSON line: {stdout}"
    );
    let last = lines.last().copied().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

#[test]
fn bench_scheduler_small_reports_all_pods_bound() {
    let v = bench(&[
        "scheduler",
        "--nodes",
        "20",
        "--init-pods",
        "10",
        "--pods",
        "60",
    ]);
    assert_eq!(v["bench"], "scheduler");
    assert_eq!(v["measured_pods"], 60);
    let rate = v["pods_per_second"].as_f64().unwrap_or(0.0);
    assert!(rate > 0.0, "{v}");
    let p50 = v["latency_p50_ms"].as_f64().unwrap_or(-1.0);
    let p99 = v["latency_p99_ms"].as_f64().unwrap_or(-1.0);
    assert!(0.0 <= p50 && p50 <= p99, "{v}");
}

#[test]
fn bench_runtime_small_runs_every_container() {
    let v = bench(&[
        "runtime",
        "--samples",
        "20",
        "--cycles",
        "20",
        "--concurrent",
        "20",
    ]);
    assert_eq!(v["bench"], "runtime");
    assert_eq!(v["wasmtime"]["concurrent_running"], 20);
    assert_eq!(v["wasmtime"]["concurrent_requested"], 20);
    assert!(
        v["wasmtime"]["create_to_running_p99_ms"]
            .as_f64()
            .unwrap_or(-1.0)
            >= 0.0
    );
}

#[test]
fn bench_pods_small_times_wasm_and_oci_pods() {
    let v = bench(&[
        "pods",
        "--wasm-samples",
        "3",
        "--oci-samples",
        "2",
        "--burst",
        "10",
    ]);
    assert_eq!(v["bench"], "pods");
    assert_eq!(v["wasm"]["samples"], 3);
    assert_eq!(v["oci"]["samples"], 2, "dockerd must answer: {v}");
    assert_eq!(v["burst"]["pods"], 10);
    let p50 = v["wasm"]["p50_ms"].as_f64().unwrap_or(-1.0);
    let p99 = v["wasm"]["p99_ms"].as_f64().unwrap_or(-1.0);
    assert!(0.0 < p50 && p50 <= p99, "{v}");
    assert!(v["burst"]["pods_per_second"].as_f64().unwrap_or(0.0) > 0.0);
}

#[test]
fn bench_up_reports_start_times_rss_and_size() {
    let v = bench(&["up", "--settle", "1"]);
    assert_eq!(v["bench"], "up");
    let ready = v["start_to_node_ready_ms"].as_f64().unwrap_or(-1.0);
    let first = v["start_to_first_wasm_pod_running_ms"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(0.0 < ready && ready < first, "{v}");
    assert!(v["idle_rss_up_mib"].as_f64().unwrap_or(0.0) > 1.0, "{v}");
    assert!(v["binary_mib"].as_f64().unwrap_or(0.0) > 1.0, "{v}");
}

#[test]
fn bench_deployment_small_completes_a_rollout() {
    let v = bench(&["deployment", "--replicas", "30", "--nodes", "3"]);
    assert_eq!(v["bench"], "deployment");
    assert_eq!(v["replicas"], 30);
    assert!(
        v["create_to_available_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    assert!(v["rolling_update_s"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}
