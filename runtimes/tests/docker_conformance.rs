//! The shared conformance suite against `DockerRuntime` and a real dockerd, with busybox
//! images built locally (no registry).
//!
//! Each case gets its own runtime instance label, so cases running in parallel never see each
//! other's containers, and everything a case leaves behind (even when it fails) is removed.
//! Without a reachable dockerd (or a static busybox) the cases skip with a message — except
//! under `CI=true`, where that is a failure.

mod docker_support;

use std::sync::Arc;

use skiff_runtimes::conformance::{Features, Harness};

/// The CPU-limit case measures how much CPU an unlimited busy container gets; the other
/// cases' busy containers would take it, so that case runs alone within this binary.
static CPU_QUIET: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// One `#[tokio::test]` per case, like `conformance_suite!`, plus skipping and cleanup.
macro_rules! docker_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_shared, _alone);
                if stringify!($case) == "cpu_limit_throttles" {
                    _alone = CPU_QUIET.write().await;
                } else {
                    _shared = CPU_QUIET.read().await;
                }
                let what = concat!("docker conformance case ", stringify!($case));
                let Some((runtime, images)) = docker_support::runtime_or_skip(what).await else {
                    return;
                };
                let features = Features {
                    mounts: true,
                    memory_limit: true,
                    cpu_limit: true,
                    exec: true,
                    exec_tty: true,
                    attach: true,
                };
                let mut harness =
                    Harness::new(Arc::new(runtime.clone()), images.conformance(), features);
                harness.invalid_image = Some(images.invalid.clone());
                docker_support::cleanly(
                    &runtime,
                    skiff_runtimes::conformance::cases::$case(&harness),
                )
                .await;
            }
        )*
    };
}

docker_cases!(
    sandbox_lifecycle,
    run_to_completion,
    args_and_env,
    exit_codes,
    logs_in_cri_format,
    stop_honours_grace_then_kills,
    wait_sees_stop,
    memory_limit_oom_kills,
    cpu_limit_throttles,
    pod_shares_localhost,
    pods_are_isolated,
    mounts,
    remove_is_idempotent,
    unknown_ids_are_not_found,
    invalid_and_unsupported_specs,
    images,
    exec_runs_in_the_container,
    exec_stdin_round_trip,
    exec_exit_codes,
    exec_refused_unless_running,
    exec_with_a_terminal,
    attach_round_trip,
    remove_orphans_keeps_live_pods,
);
