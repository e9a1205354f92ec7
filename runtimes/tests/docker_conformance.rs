//! The shared conformance suite against `DockerRuntime` and a real dockerd, with busybox
//! images built locally (no registry).
//!
//! Each case gets its own runtime instance label, so cases running in parallel never see each
//! other's containers, and everything a case leaves behind (even when it fails) is removed.
//! Without a reachable dockerd (or a static busybox) the cases skip with a message — except
//! under `CI=true`, where that is a failure.

use std::sync::Arc;

use futures::FutureExt;
use skiff_runtimes::conformance::{Features, Harness};
use skiff_runtimes::docker::{DockerConfig, DockerRuntime, testing};

/// True under `CI=true`, where nothing may be skipped.
fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// A harness on a fresh runtime instance, or `None` (skip) when Docker is not usable here.
async fn harness() -> Option<(Harness, DockerRuntime)> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let instance = format!("test-{}", &skiff_runtimes::lifecycle::new_id()[..12]);
    let runtime = DockerRuntime::new(DockerConfig::new(instance));
    let problem = if !runtime.available().await {
        Some(format!(
            "no Docker daemon answers at {}",
            runtime.endpoint()
        ))
    } else if !testing::busybox_available() {
        Some(format!(
            "no static busybox at {} (apt-get install busybox-static)",
            testing::BUSYBOX_PATH
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        assert!(
            !ci(),
            "{problem}; CI=true does not allow skipping the Docker suite"
        );
        eprintln!("skipping Docker conformance case: {problem}");
        return None;
    }
    let images = testing::install(&runtime)
        .await
        .expect("install busybox test images");
    let features = Features {
        mounts: true,
        memory_limit: true,
        cpu_limit: true,
    };
    let mut harness = Harness::new(Arc::new(runtime.clone()), images.conformance(), features);
    harness.invalid_image = Some(images.invalid.clone());
    Some((harness, runtime))
}

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
                let Some((harness, runtime)) = harness().await else { return };
                let outcome = std::panic::AssertUnwindSafe(
                    skiff_runtimes::conformance::cases::$case(&harness),
                )
                .catch_unwind()
                .await;
                let cleanup = testing::remove_everything(&runtime).await;
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
                cleanup.expect("remove the case's containers");
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
);
