//! The conformance suite against the fake (host-process) backend, plus registry checks.

use std::sync::Arc;

use skiff_runtimes::conformance::{Features, Harness, TestImages};
use skiff_runtimes::fake::{FakeConfig, FakeRuntime, test_images};
use skiff_runtimes::{Runtime, RuntimeRegistry};

async fn harness() -> Harness {
    let runtime = FakeRuntime::with_config(FakeConfig {
        require_pod_network: std::env::var("CI").as_deref() == Ok("true"),
        ..FakeConfig::default()
    });
    test_images::install(&runtime);
    let images = TestImages {
        hello: test_images::HELLO.into(),
        echo: test_images::ECHO.into(),
        exit_3: test_images::EXIT_3.into(),
        sleep: test_images::SLEEP.into(),
        busy: test_images::BUSY.into(),
        memory_hog: test_images::MEMORY_HOG.into(),
        listen: test_images::LISTEN.into(),
        connect: test_images::CONNECT.into(),
        read_mount: None,
        write_mount: None,
    };
    let features = Features {
        mounts: false,
        memory_limit: true,
        cpu_limit: true,
        exec: true,
        exec_tty: false,
        attach: true,
    };
    Harness::new(Arc::new(runtime), images, features)
}

skiff_runtimes::conformance_suite!(harness);

#[test]
fn registry_picks_runtimes_by_handler() {
    let fake: Arc<dyn Runtime> = Arc::new(FakeRuntime::new());
    let mut registry = RuntimeRegistry::new();
    assert!(registry.get_or_default(None).is_err());
    registry.register(fake);
    assert_eq!(
        registry.get("fake").map(|r| r.handler().to_owned()).ok(),
        Some("fake".into())
    );
    assert_eq!(
        registry
            .get_or_default(None)
            .map(|r| r.handler().to_owned())
            .ok(),
        Some("fake".into())
    );
    let missing = registry
        .get("wasmtime")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        missing.contains("wasmtime") && missing.contains("fake"),
        "{missing}"
    );
    assert!(registry.set_default("docker").is_err());
}
