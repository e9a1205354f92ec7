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
fn bench_scheduler_core_small_places_every_pod() {
    // 20 nodes × 40 pods (cpu-bound: 4 cpu / 100m) = 800 slots; 10 + 100 fit.
    let v = bench(&[
        "scheduler",
        "--core",
        "--nodes",
        "20",
        "--init-pods",
        "10",
        "--pods",
        "100",
    ]);
    assert_eq!(v["bench"], "scheduler");
    assert_eq!(v["mode"], "core");
    assert_eq!(v["measured_pods"], 100);
    assert_eq!(v["placed"], 100, "{v}");
    assert!(v["pods_per_second"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    let p50 = v["latency_p50_ms"].as_f64().unwrap_or(-1.0);
    let p99 = v["latency_p99_ms"].as_f64().unwrap_or(-1.0);
    assert!(0.0 <= p50 && p50 <= p99, "{v}");

    // Past capacity the rest are reported unplaced, not as an error.
    let v = bench(&[
        "scheduler",
        "--core",
        "--nodes",
        "2",
        "--init-pods",
        "0",
        "--pods",
        "90",
    ]);
    assert_eq!(v["placed"], 80, "{v}");
}

#[test]
fn bench_store_small_reports_each_writer_count() {
    let v = bench(&[
        "store",
        "--writers",
        "1,4",
        "--seconds",
        "0.3",
        "--bare-commits",
        "20",
    ]);
    assert_eq!(v["bench"], "store");
    let phases = v["durable_creates"].as_array().cloned().unwrap_or_default();
    assert_eq!(phases.len(), 2, "{v}");
    for (phase, writers) in phases.iter().zip([1, 4]) {
        assert_eq!(phase["writers"], writers, "{v}");
        assert!(phase["creates"].as_u64().unwrap_or(0) >= writers, "{v}");
        assert!(
            phase["creates_per_second"].as_f64().unwrap_or(0.0) > 0.0,
            "{v}"
        );
        let p50 = phase["p50_ms"].as_f64().unwrap_or(-1.0);
        let p99 = phase["p99_ms"].as_f64().unwrap_or(-1.0);
        assert!(0.0 < p50 && p50 <= p99, "{v}");
    }
    assert_eq!(v["bare_commit"]["commits"], 20, "{v}");
    let p50 = v["bare_commit"]["p50_ms"].as_f64().unwrap_or(-1.0);
    let p99 = v["bare_commit"]["p99_ms"].as_f64().unwrap_or(-1.0);
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
        "--oci-samples",
        "5",
    ]);
    assert_eq!(v["bench"], "runtime");
    assert_eq!(v["wasmtime"]["concurrent_running"], 20);
    assert_eq!(v["wasmtime"]["concurrent_requested"], 20);
    let wasm_p50 = v["wasmtime"]["create_to_running_p50_us"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!(wasm_p50 > 0.0, "{v}");
    assert!(
        v["wasmtime"]["create_to_running_p99_ms"]
            .as_f64()
            .unwrap_or(-1.0)
            >= 0.0
    );

    // OCI on Docker beside it: measured when dockerd answers (always under CI=true).
    if v["oci"].is_null() {
        let reason = v["oci_unavailable_reason"].as_str().unwrap_or_default();
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true needs the OCI figures, but: {reason}"
        );
        assert!(!reason.is_empty(), "a missing daemon is explained: {v}");
        eprintln!("OCI figures not measured: {reason}");
    } else {
        assert_eq!(v["oci"]["samples"], 5, "{v}");
        let p50 = v["oci_p50_ms"].as_f64().unwrap_or(-1.0);
        let p99 = v["oci_p99_ms"].as_f64().unwrap_or(-1.0);
        assert!(0.0 < p50 && p50 <= p99, "{v}");
        assert_eq!(v["oci"]["create_to_running_p50_ms"], v["oci_p50_ms"]);
        let ratio = v["oci_to_wasm_p50_ratio"].as_f64().unwrap_or(-1.0);
        let expected = p50 * 1000.0 / wasm_p50;
        assert!(
            (ratio - expected).abs() <= expected * 0.05 + 0.01,
            "ratio {ratio} vs p50s {p50} ms / {wasm_p50} µs: {v}"
        );
        assert!(
            v["oci_to_wasm_p99_ratio"].as_f64().unwrap_or(-1.0) > 0.0,
            "{v}"
        );
    }

    // Without a daemon the run still succeeds and says why OCI is missing.
    let v = bench(&[
        "runtime",
        "--samples",
        "5",
        "--cycles",
        "5",
        "--concurrent",
        "5",
        "--docker-socket",
        "/nonexistent/docker.sock",
    ]);
    assert!(v["oci"].is_null(), "{v}");
    assert!(v["oci_p50_ms"].is_null(), "{v}");
    let reason = v["oci_unavailable_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("unix:///nonexistent/docker.sock"),
        "the reason names the socket: {v}"
    );
    assert_eq!(v["wasmtime"]["concurrent_running"], 5);
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

#[test]
fn bench_network_small_attaches_every_pod_at_each_parallelism() {
    let v = bench(&["network", "--pods", "6", "--parallelism", "1,3"]);
    assert_eq!(v["bench"], "network");
    let rounds = v["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 2, "{v}");
    for (round, parallelism) in rounds.iter().zip([1, 3]) {
        assert_eq!(round["parallelism"], parallelism, "{v}");
        assert_eq!(round["pods"], 6, "{v}");
        assert_eq!(
            round["bridge_ports"], 6,
            "every pod's veth was on the bridge: {v}"
        );
        assert!(round["pods_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
        let p50 = round["attach_p50_ms"].as_f64().unwrap_or(-1.0);
        let p99 = round["attach_p99_ms"].as_f64().unwrap_or(-1.0);
        assert!(0.0 < p50 && p50 <= p99, "{v}");
    }
    let bridge = std::path::Path::new("/sys/class/net/skfnetb0");
    assert!(!bridge.exists(), "the bench removes its bridge");
}
