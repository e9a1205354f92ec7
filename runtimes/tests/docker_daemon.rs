//! A missing or dead Docker daemon: clear errors, a cheap health check, and recovery when it
//! comes back. The "daemon" here is a socket proxy in front of the real dockerd, so the tests
//! can stop and start it without disturbing anything else using Docker.

mod docker_support;

use std::time::Duration;

use docker_support::{DaemonProxy, cleanly, eventually, runtime_or_skip};
use skiff_runtimes::docker::{DockerConfig, DockerRuntime, is_daemon_unavailable};
use skiff_runtimes::{ContainerSpec, RegistryAuth, Runtime, SandboxSpec};

fn runtime_at(socket: &std::path::Path, instance: &str) -> DockerRuntime {
    let mut config = DockerConfig::new(instance);
    config.socket = socket.to_owned();
    DockerRuntime::new(config)
}

#[tokio::test]
async fn a_missing_daemon_fails_every_operation_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let runtime = runtime_at(&socket, "no-daemon");
    assert!(!runtime.available().await);

    let expected = format!(
        "Cannot connect to the Docker daemon at unix://{}. Is the docker daemon running?",
        socket.display()
    );
    let failures = [
        runtime
            .create_sandbox(&SandboxSpec::new("p"))
            .await
            .map(drop)
            .expect_err("create sandbox"),
        runtime.list_sandboxes().await.map(drop).expect_err("list"),
        runtime
            .container_status(&"a".repeat(64))
            .await
            .map(drop)
            .expect_err("status"),
        runtime.list_images().await.map(drop).expect_err("images"),
    ];
    for error in &failures {
        assert!(is_daemon_unavailable(error), "{error:?}");
        assert!(error.to_string().contains(&expected), "{error}");
    }
    let pull = runtime
        .pull_image("busybox:v1", &RegistryAuth::Anonymous)
        .await
        .expect_err("pull");
    assert_eq!(pull.reason(), "ErrImagePull", "{pull}");
    assert!(is_daemon_unavailable(&pull), "{pull:?}");
    assert!(
        pull.to_string()
            .contains("Cannot connect to the Docker daemon"),
        "{pull}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_start_once_the_daemon_comes_back() {
    let what = "docker daemon recovery";
    let Some((real, images)) = runtime_or_skip(what).await else {
        return;
    };
    let mut daemon = DaemonProxy::new();
    let runtime = runtime_at(&daemon.socket, &real.config().instance);
    cleanly(&real, async {
        // The node starts before Docker: OCI work fails with a recognisable error.
        assert!(!runtime.available().await);
        let error = runtime
            .create_sandbox(&SandboxSpec::new("early"))
            .await
            .expect_err("no daemon yet");
        assert!(is_daemon_unavailable(&error), "{error:?}");

        // Docker appears: the health check notices, and the same runtime object works.
        daemon.start();
        assert!(
            eventually(Duration::from_secs(10), || runtime.available()).await,
            "available once the daemon answers"
        );
        let sandbox = runtime
            .create_sandbox(&SandboxSpec::new("late"))
            .await
            .expect("sandbox once Docker is back");
        let logs = tempfile::tempdir().expect("logs");
        let mut spec = ContainerSpec::new("sleeper", &images.sleep);
        spec.log_path = Some(logs.path().join("sleeper.log"));
        let id = runtime
            .create_container(&sandbox, &spec)
            .await
            .expect("create");
        runtime.start_container(&id).await.expect("start");

        // Docker goes away again: errors, not hangs; then it returns and state is intact.
        daemon.stop();
        assert!(!runtime.available().await);
        let error = runtime.container_status(&id).await.expect_err("gone");
        assert!(is_daemon_unavailable(&error), "{error:?}");
        daemon.start();
        let status = runtime.container_status(&id).await.expect("status again");
        assert!(status.state.is_running(), "{status:?}");
        runtime
            .stop_container(&id, Duration::from_secs(5))
            .await
            .expect("stop");
        runtime.remove_sandbox(&sandbox).await.expect("remove");
    })
    .await;
}
