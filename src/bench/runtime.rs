//! `skiff bench runtime`: the Wasmtime backend's container lifecycle figures, and OCI
//! containers on Docker beside them in the same run.
//!
//! The Docker half measures create → running through the same `Runtime` trait (a pause
//! sandbox, then the pause image as the container: nothing to pull, no CPU), under an
//! instance label of its own, and reports the ratio to Wasmtime's figures. Without a Docker
//! daemon the run still succeeds: the table says why OCI was not measured and the JSON has
//! `"oci": null` with `oci_unavailable_reason`.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Value, json};
use skiff_runtimes::Runtime;
use skiff_runtimes::bench::{BenchOptions, BenchReport, run_runtime_bench};
use skiff_runtimes::docker::bench::{
    Comparison, DockerBenchOptions, DockerBenchReport, compare, run_docker_bench,
};
use skiff_runtimes::docker::{DockerConfig, DockerRuntime};

use super::stats::round2;

/// Options of `skiff bench runtime`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeBenchArgs {
    /// Create→running samples.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Start/stop cycles.
    #[arg(long, default_value_t = 2000)]
    pub cycles: usize,
    /// Containers running at once.
    #[arg(long, default_value_t = 1000)]
    pub concurrent: usize,
    /// OCI create→running samples on Docker (0 skips Docker).
    #[arg(long, default_value_t = 50)]
    pub oci_samples: usize,
    /// dockerd's socket, for the OCI figures.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
}

/// The OCI half of a run: measured, or why not.
#[derive(Debug)]
enum Oci {
    Measured(DockerBenchReport, Comparison),
    NotMeasured(String),
}

/// Runs the benchmark and returns its figures.
pub async fn run(args: RuntimeBenchArgs) -> anyhow::Result<Value> {
    let report = run_runtime_bench(BenchOptions {
        data_dir: None,
        latency_samples: args.samples,
        cycles: args.cycles,
        concurrent: args.concurrent,
    })
    .await?;
    println!("runtime  wasmtime");
    println!("{report}");
    println!();

    let oci = measure_oci(&args, &report).await;
    println!("runtime  docker (OCI)");
    match &oci {
        Oci::Measured(docker, comparison) => {
            println!("{docker}");
            println!("{comparison}");
        }
        Oci::NotMeasured(reason) => println!("OCI not measured: {reason}"),
    }
    println!();
    print!("{}", side_by_side(&report, &oci));
    Ok(figures(&report, &oci))
}

/// Run the Docker half, or say why it cannot run. Never fails the whole benchmark.
async fn measure_oci(args: &RuntimeBenchArgs, wasm: &BenchReport) -> Oci {
    if args.oci_samples == 0 {
        return Oci::NotMeasured("skipped (--oci-samples 0)".to_owned());
    }
    let instance = format!("skiff-bench-{}", &skiff_runtimes::lifecycle::new_id()[..12]);
    let docker = DockerRuntime::new(DockerConfig {
        socket: args.docker_socket.clone(),
        ..DockerConfig::new(instance)
    });
    if !docker.available().await {
        return Oci::NotMeasured(format!("no Docker daemon answers at {}", docker.endpoint()));
    }
    let options = DockerBenchOptions {
        latency_samples: args.oci_samples,
        sandbox_samples: args.oci_samples.clamp(1, 10),
    };
    let result = run_docker_bench(&docker, options).await;
    // A failed run may leave containers behind; they carry this run's instance label only.
    if let Err(error) = docker.remove_orphans(&HashSet::new()).await {
        tracing::warn!(%error, "cannot remove the benchmark's containers");
    }
    match result {
        Ok(report) => {
            let comparison = compare(
                &report,
                wasm.create_to_running_p50_us,
                wasm.create_to_running_p99_us,
            );
            Oci::Measured(report, comparison)
        }
        Err(error) => Oci::NotMeasured(format!("the Docker run failed: {error}")),
    }
}

/// The create → running table, one row per runtime, and their ratio.
fn side_by_side(wasm: &BenchReport, oci: &Oci) -> String {
    let ms = |us: f64| format!("{:.3} ms", us / 1e3);
    let mut rows = vec![
        [
            "CREATE→RUNNING".to_owned(),
            "SAMPLES".to_owned(),
            "P50".to_owned(),
            "P99".to_owned(),
        ],
        [
            "wasmtime".to_owned(),
            wasm.latency_samples.to_string(),
            ms(wasm.create_to_running_p50_us),
            ms(wasm.create_to_running_p99_us),
        ],
    ];
    match oci {
        Oci::Measured(docker, comparison) => {
            rows.push([
                "docker (OCI)".to_owned(),
                docker.latency_samples.to_string(),
                ms(docker.create_to_running_p50_us),
                ms(docker.create_to_running_p99_us),
            ]);
            rows.push([
                "OCI / wasm".to_owned(),
                String::new(),
                format!("{:.0}×", comparison.p50_ratio),
                format!("{:.0}×", comparison.p99_ratio),
            ]);
        }
        Oci::NotMeasured(_) => rows.push([
            "docker (OCI)".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ]),
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                let pad = width.saturating_sub(cell.chars().count());
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The JSON figures: Wasmtime's, Docker's (or `null` with a reason), and their ratios.
fn figures(report: &BenchReport, oci: &Oci) -> Value {
    let mut figures = json!({
        "bench": "runtime",
        "wasmtime": {
            "create_to_running_p50_ms": round2(report.create_to_running_p50_us / 1000.0),
            "create_to_running_p99_ms": round2(report.create_to_running_p99_us / 1000.0),
            // Wasmtime's p50 is far below a hundredth of a millisecond: keep microseconds too.
            "create_to_running_p50_us": round2(report.create_to_running_p50_us),
            "create_to_running_p99_us": round2(report.create_to_running_p99_us),
            "start_stop_cycles_per_sec": round2(report.start_stop_cycles_per_sec),
            "concurrent_running": report.concurrent_running,
            "concurrent_requested": report.concurrent_requested,
            "concurrent_start_ms": round2(report.concurrent_start_ms),
            "rss_per_container_kib": round2(report.rss_per_container_kib),
            "guest_linear_memory_kib": round2(report.guest_linear_memory_kib),
        },
        "oci": null,
        "oci_p50_ms": null,
        "oci_p99_ms": null,
        "oci_to_wasm_p50_ratio": null,
        "oci_to_wasm_p99_ratio": null,
    });
    match oci {
        Oci::Measured(docker, comparison) => {
            let p50 = round2(docker.create_to_running_p50_us / 1000.0);
            let p99 = round2(docker.create_to_running_p99_us / 1000.0);
            figures["oci"] = json!({
                "runtime": "docker",
                "daemon": docker.daemon,
                "samples": docker.latency_samples,
                "create_to_running_p50_ms": p50,
                "create_to_running_p99_ms": p99,
                "sandbox_create_p50_ms": round2(docker.sandbox_create_p50_us / 1000.0),
                "remove_p50_ms": round2(docker.remove_p50_us / 1000.0),
            });
            figures["oci_p50_ms"] = json!(p50);
            figures["oci_p99_ms"] = json!(p99);
            figures["oci_to_wasm_p50_ratio"] = json!(round2(comparison.p50_ratio));
            figures["oci_to_wasm_p99_ratio"] = json!(round2(comparison.p99_ratio));
        }
        Oci::NotMeasured(reason) => figures["oci_unavailable_reason"] = json!(reason),
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm() -> BenchReport {
        BenchReport {
            latency_samples: 20,
            create_to_running_p50_us: 100.0,
            create_to_running_p99_us: 400.0,
            start_stop_cycles_per_sec: 1000.0,
            concurrent_running: 20,
            concurrent_requested: 20,
            concurrent_start_ms: 5.0,
            concurrent_stop_ms: 5.0,
            rss_per_container_kib: 100.0,
            guest_linear_memory_kib: 64.0,
        }
    }

    fn docker() -> DockerBenchReport {
        DockerBenchReport {
            daemon: "20.10.24 (API 1.41)".to_owned(),
            latency_samples: 5,
            create_to_running_p50_us: 150_000.0,
            create_to_running_p99_us: 200_000.0,
            sandbox_create_p50_us: 250_000.0,
            remove_p50_us: 80_000.0,
        }
    }

    #[test]
    fn measured_oci_figures_sit_beside_wasm_with_their_ratio() {
        let docker = docker();
        let comparison = compare(&docker, 100.0, 400.0);
        let oci = Oci::Measured(docker, comparison);
        let v = figures(&wasm(), &oci);
        assert_eq!(v["oci_p50_ms"], 150.0);
        assert_eq!(v["oci_p99_ms"], 200.0);
        assert_eq!(v["oci_to_wasm_p50_ratio"], 1500.0);
        assert_eq!(v["oci_to_wasm_p99_ratio"], 500.0);
        assert_eq!(v["oci"]["samples"], 5);
        assert_eq!(v["oci"]["daemon"], "20.10.24 (API 1.41)");
        assert!(v.get("oci_unavailable_reason").is_none(), "{v}");

        let table = side_by_side(&wasm(), &oci);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("CREATE→RUNNING"), "{table}");
        assert!(
            lines[1].starts_with("wasmtime") && lines[1].ends_with("0.400 ms"),
            "{table}"
        );
        assert!(lines[2].contains("150.000 ms"), "{table}");
        assert!(
            lines[3].starts_with("OCI / wasm") && lines[3].contains("1500×"),
            "{table}"
        );
    }

    #[test]
    fn a_missing_daemon_is_null_with_a_reason() {
        let oci = Oci::NotMeasured("no Docker daemon answers at unix:///x.sock".to_owned());
        let v = figures(&wasm(), &oci);
        assert!(v["oci"].is_null(), "{v}");
        assert!(v["oci_to_wasm_p50_ratio"].is_null(), "{v}");
        assert_eq!(
            v["oci_unavailable_reason"],
            "no Docker daemon answers at unix:///x.sock"
        );
        assert_eq!(v["wasmtime"]["concurrent_running"], 20);
        let table = side_by_side(&wasm(), &oci);
        assert!(
            table.lines().any(|l| l.starts_with("docker (OCI)")),
            "{table}"
        );
    }
}
