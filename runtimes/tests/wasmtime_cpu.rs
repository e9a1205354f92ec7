//! CPU throttling measured from outside the runtime: this process's own CPU time (getrusage)
//! while one busy guest runs, limited and then unlimited. Its own test binary, so no other
//! test's CPU use is counted.

mod common;

use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};
use skiff_runtimes::{ContainerSpec, NetworkMode, Runtime, SandboxSpec};

fn process_cpu() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_micros((t.tv_sec() * 1_000_000 + t.tv_usec()) as u64)
    };
    micros(usage.user_time()) + micros(usage.system_time())
}

/// Run the busy guest for `wall` with an optional CPU limit; the share of a core this
/// process used meanwhile.
async fn busy_share(rt: &WasmtimeRuntime, sandbox: &str, millicores: Option<u64>) -> f64 {
    let mut spec = ContainerSpec::new("busy", "cpu/busy:v1");
    spec.resources.cpu_millicores = millicores;
    let id = rt.create_container(sandbox, &spec).await.expect("create");
    rt.start_container(&id).await.expect("start");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu0, wall0) = (process_cpu(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let share = (process_cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    rt.remove_container(&id).await.expect("remove");
    share
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_limit_caps_the_process_cpu_a_busy_guest_burns() {
    let data = tempfile::tempdir().expect("tempdir");
    let rt = WasmtimeRuntime::new(WasmtimeConfig {
        max_containers: 8,
        ..WasmtimeConfig::new(data.path())
    })
    .expect("runtime");
    rt.image_store()
        .import_bytes(&common::fixture("busy"), "cpu/busy:v1")
        .expect("import");
    let sandbox = rt
        .create_sandbox(&SandboxSpec::new("cpu").with_network(NetworkMode::Host))
        .await
        .expect("sandbox");
    let limited = busy_share(&rt, &sandbox, Some(100)).await;
    let unlimited = busy_share(&rt, &sandbox, None).await;
    eprintln!("process CPU share: limit 100m {limited:.3}, no limit {unlimited:.3}");
    assert!(
        limited < 0.3,
        "100m limit: the process used {limited:.3} of a core"
    );
    assert!(limited > 0.0, "the limited guest still ran");
    // Only meaningful when the node had CPU to spare beyond the limit.
    if unlimited > 0.3 {
        assert!(
            unlimited > 2.0 * limited,
            "unlimited {unlimited:.3} vs limited {limited:.3}: the limit must be what holds it"
        );
    }
    rt.remove_sandbox(&sandbox).await.expect("remove");
}
