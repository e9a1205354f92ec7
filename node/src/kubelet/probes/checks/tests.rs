use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use skiff_runtimes::fake::{FakeImage, FakeRuntime};
use skiff_runtimes::{ContainerSpec, NetworkMode, Runtime, SandboxSpec};

use super::*;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn durations_read_as_go_prints_them() {
    assert_eq!(go_duration(Duration::from_secs(1)), "1s");
    assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
}

#[tokio::test]
async fn tcp_checks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    assert_eq!(tcp_socket(addr, SECOND).await, Outcome::Success);
    let closed = SocketAddr::new(addr.ip(), 1);
    let Outcome::Failure(message) = tcp_socket(closed, SECOND).await else {
        panic!("a closed port fails");
    };
    assert!(message.starts_with("dial tcp 127.0.0.1:1: "), "{message}");
}

/// A fake-runtime container that sleeps, on host networking.
async fn sleeper() -> (Arc<FakeRuntime>, String) {
    let fake = FakeRuntime::new();
    fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
    let sandbox = fake
        .create_sandbox(&SandboxSpec::new("probe").with_network(NetworkMode::Host))
        .await
        .expect("sandbox");
    let id = fake
        .create_container(&sandbox, &ContainerSpec::new("app", "sleeper:v1"))
        .await
        .expect("create");
    fake.start_container(&id).await.expect("start");
    (Arc::new(fake), id)
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[tokio::test]
async fn exec_passes_on_exit_zero_and_fails_with_the_output() {
    let (fake, id) = sleeper().await;
    let run = |words: &[&str], timeout: Duration| {
        let (fake, id, command) = (fake.clone(), id.clone(), argv(words));
        async move { exec(&*fake, &id, &command, timeout).await }
    };
    assert_eq!(run(&["true"], SECOND * 5).await, Outcome::Success);
    assert_eq!(
        run(&["sh", "-c", "echo out; echo err >&2; exit 3"], SECOND * 5).await,
        Outcome::Failure("out\nerr\n".to_owned())
    );
    // Output is capped, and a chatty command is drained rather than blocked.
    let Outcome::Failure(big) = run(
        &["sh", "-c", "head -c 200000 /dev/zero; exit 1"],
        SECOND * 5,
    )
    .await
    else {
        panic!("non-zero exit fails");
    };
    assert_eq!(big.len(), MAX_EXEC_OUTPUT);
    // timeoutSeconds.
    assert_eq!(
        run(&["sleep", "5"], Duration::from_millis(300)).await,
        Outcome::Failure("command \"sleep 5\" timed out".to_owned())
    );
    // A container that is not running cannot be probed: errored, not failed.
    fake.stop_container(&id, Duration::ZERO)
        .await
        .expect("stop");
    let Outcome::Errored(message) = run(&["true"], SECOND).await else {
        panic!("exec in a stopped container errors");
    };
    assert!(message.contains("not running"), "{message}");
    assert!(matches!(run(&[], SECOND).await, Outcome::Errored(_)));
}

#[tokio::test]
async fn grpc_health_check() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("ok", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("down", tonic_health::ServingStatus::NotServing)
        .await;
    let addr = serve_grpc(tonic::service::Routes::new(service)).await;

    // The empty service name is the server as a whole, which the reporter marks serving.
    assert_eq!(grpc(addr, "", SECOND).await, Outcome::Success);
    assert_eq!(grpc(addr, "ok", SECOND).await, Outcome::Success);
    assert_eq!(
        grpc(addr, "down", SECOND).await,
        Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".to_owned())
    );
    let Outcome::Failure(message) = grpc(addr, "unknown", SECOND).await else {
        panic!("an unknown service fails");
    };
    assert!(
        message.starts_with("error: health rpc probe failed: rpc error: code = NotFound"),
        "{message}"
    );

    // A server that accepts and never answers runs into timeoutSeconds.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let Outcome::Failure(message) = grpc(silent_addr, "", Duration::from_millis(300)).await else {
        panic!("a silent server fails");
    };
    assert!(message.starts_with("timeout: "), "{message}");
    assert!(message.contains("within 300ms"), "{message}");

    // A closed port does not answer.
    let closed = SocketAddr::new(addr.ip(), 1);
    let Outcome::Failure(message) = grpc(closed, "", SECOND).await else {
        panic!("a closed port fails");
    };
    assert!(
        message.starts_with("error: failed to connect service at \"127.0.0.1:1\""),
        "{message}"
    );
}

async fn serve_grpc(routes: tonic::service::Routes) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

#[tokio::test]
async fn grpc_without_the_health_service_is_unimplemented() {
    let addr = serve_grpc(tonic::service::Routes::default()).await;
    let Outcome::Failure(message) = grpc(addr, "", SECOND).await else {
        panic!("a server without grpc.health.v1 fails");
    };
    assert!(
        message.starts_with(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"
        ),
        "{message}"
    );
}
