//! Mixed pods: an OCI container on Docker and a wasm guest on Wasmtime in one pod, talking
//! over the pod's `localhost`.
//!
//! The pod's sandbox is Docker's pause container (network mode `none`); the Wasmtime sandbox
//! of the same pod joins the pause container's namespace by path
//! (`NetworkMode::Existing(/proc/<pid>/ns/net)`), which is what the kubelet does for a pod
//! that mixes runtimes. A real busybox container and a real wasm component (the
//! `http-server` / `http-get` examples) then reach each other on 127.0.0.1 — and the host
//! cannot reach either.

mod common;
mod docker_support;

use std::time::Duration;

use docker_support::{cleanly, runtime_or_skip, skip};
use skiff_runtimes::conformance::{free_port, within};
use skiff_runtimes::logs::{Stream, lines_of, read_records};
use skiff_runtimes::wasmtime::{WasmtimeConfig, WasmtimeRuntime};
use skiff_runtimes::{ContainerSpec, NetworkMode, Runtime, SandboxSpec};

fn stdout(spec: &ContainerSpec) -> Vec<String> {
    let path = spec.log_path.as_deref().expect("log path");
    lines_of(&read_records(path).unwrap_or_default(), Stream::Stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busybox_container_and_a_wasm_guest_share_the_pods_localhost() {
    let what = "mixed docker + wasm pod";
    let Some((docker, images)) = runtime_or_skip(what).await else {
        return;
    };
    if !skiff_runtimes::netns::supported() {
        skip::<()>(what, "cannot enter network namespaces (not root)");
        return;
    }
    let examples = common::examples();
    let data = tempfile::tempdir().expect("wasm data dir");
    let wasm = WasmtimeRuntime::new(WasmtimeConfig {
        max_containers: 16,
        require_pod_network: true,
        ..WasmtimeConfig::new(data.path())
    })
    .expect("wasmtime runtime");
    for name in ["http-server", "http-get"] {
        wasm.image_store()
            .import_bytes(&examples.bytes(name), &format!("wasm-test/{name}:v1"))
            .expect("import wasm example");
    }
    let logs = tempfile::tempdir().expect("logs");
    let spec = |name: &str, image: &str, port: u16| {
        let mut spec = ContainerSpec::new(name, image);
        spec.env = vec![("PORT".into(), port.to_string())];
        spec.log_path = Some(logs.path().join(format!("{name}.log")));
        spec
    };

    cleanly(&docker, async {
        // One pod: Docker holds its network namespace, Wasmtime joins it.
        let mut pod = SandboxSpec::new("mixed");
        pod.uid = "uid-mixed".into();
        let docker_sandbox = docker.create_sandbox(&pod).await.expect("docker sandbox");
        let netns = docker
            .sandbox_status(&docker_sandbox)
            .await
            .expect("status")
            .netns_path
            .expect("the pause container's netns");
        let wasm_sandbox = wasm
            .create_sandbox(
                &pod.clone()
                    .with_network(NetworkMode::Existing(netns.clone())),
            )
            .await
            .expect("wasm sandbox joining the pause netns");
        assert_eq!(
            wasm.sandbox_status(&wasm_sandbox)
                .await
                .expect("status")
                .netns_path,
            Some(netns.clone())
        );

        // wasm server ← busybox client.
        let port = free_port();
        let server = spec("wasm-server", "wasm-test/http-server:v1", port);
        let server_id = wasm
            .create_container(&wasm_sandbox, &server)
            .await
            .expect("create wasm server");
        wasm.start_container(&server_id).await.expect("start");
        let client = spec("busybox-client", &images.connect, port);
        let client_id = docker
            .create_container(&docker_sandbox, &client)
            .await
            .expect("create busybox client");
        docker.start_container(&client_id).await.expect("start");
        let done = within(Duration::from_secs(20), "busybox client", async {
            docker.wait_container(&client_id).await.expect("wait")
        })
        .await;
        assert_eq!(
            done.state.exit_info().map(|e| e.exit_code),
            Some(0),
            "busybox reached the wasm server: {:?}",
            stdout(&client)
        );
        assert!(
            stdout(&client).iter().any(|l| l.contains("200 OK")),
            "{:?}",
            stdout(&client)
        );
        assert!(
            stdout(&server).iter().any(|l| l.contains("GET /")),
            "the wasm server logged the request: {:?}",
            stdout(&server)
        );

        // busybox server ← wasm client.
        let port = free_port();
        let httpd = spec("busybox-server", &images.listen, port);
        let httpd_id = docker
            .create_container(&docker_sandbox, &httpd)
            .await
            .expect("create busybox server");
        docker.start_container(&httpd_id).await.expect("start");
        let getter = spec("wasm-client", "wasm-test/http-get:v1", port);
        let getter_id = wasm
            .create_container(&wasm_sandbox, &getter)
            .await
            .expect("create wasm client");
        wasm.start_container(&getter_id).await.expect("start");
        let done = within(Duration::from_secs(20), "wasm client", async {
            wasm.wait_container(&getter_id).await.expect("wait")
        })
        .await;
        assert_eq!(
            done.state.exit_info().map(|e| e.exit_code),
            Some(0),
            "the wasm guest reached busybox httpd: {:?}",
            stdout(&getter)
        );
        assert!(
            stdout(&getter).iter().any(|l| l.contains("200 OK")),
            "{:?}",
            stdout(&getter)
        );

        // The pod's listeners are not reachable from the host's namespace.
        let from_host = tokio::task::spawn_blocking(move || {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(1),
            )
        })
        .await
        .expect("join");
        assert!(
            from_host.is_err(),
            "the host reached the pod: {from_host:?}"
        );

        // Tear down in kubelet order: wasm side first, then the namespace holder.
        wasm.remove_sandbox(&wasm_sandbox)
            .await
            .expect("remove wasm sandbox");
        docker
            .remove_sandbox(&docker_sandbox)
            .await
            .expect("remove docker sandbox");
    })
    .await;
}
