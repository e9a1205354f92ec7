//! The kubelet server's exec and attach end to end in process: the real router on a real
//! socket (plain HTTP/1.1 with upgrades), the fake runtime's host processes, and clients
//! speaking WebSocket (tungstenite) and SPDY (the framing of [`crate::server::spdy`]) as
//! kubectl does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use skiff_runtimes::fake::{FakeImage, FakeRuntime};
use skiff_runtimes::{ContainerSpec, NetworkMode, Runtime, RuntimeRegistry, SandboxSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tower::ServiceExt;

use crate::kubelet::{PodEntry, PodIndex};
use crate::server::spdy::{self, FLAG_FIN, Frame, HeaderCodec};
use crate::server::{ServerState, router};

const T: Duration = Duration::from_secs(20);

struct Fixture {
    addr: SocketAddr,
    router: Router,
    fake: FakeRuntime,
    containers: Vec<String>,
}

impl Fixture {
    async fn new() -> Fixture {
        let fake = FakeRuntime::new();
        fake.add_image("sleeper:v1", FakeImage::shell("sleep 1000"));
        fake.add_image(
            "echoer:v1",
            FakeImage::shell("read line; echo \"got $line\"; echo bye >&2"),
        );
        let sandbox = fake
            .create_sandbox(&SandboxSpec::new("p").with_network(NetworkMode::Host))
            .await
            .expect("sandbox");
        let sleeper = fake
            .create_container(&sandbox, &ContainerSpec::new("app", "sleeper:v1"))
            .await
            .expect("container");
        let mut echoer = ContainerSpec::new("echo", "echoer:v1");
        echoer.stdin = true;
        echoer.stdin_once = true;
        let echoer = fake
            .create_container(&sandbox, &echoer)
            .await
            .expect("container");
        for id in [&sleeper, &echoer] {
            fake.start_container(id).await.expect("start");
        }
        let index = PodIndex::default();
        let entry = |id: &str, running| ("fake".to_owned(), id.to_owned(), 0, running);
        index.set(
            "default",
            "p",
            PodEntry {
                uid: "u1".into(),
                ip: None,
                netns: None,
                containers: BTreeMap::from([
                    ("app".into(), entry(&sleeper, true)),
                    ("echo".into(), entry(&echoer, true)),
                    ("done".into(), entry("gone", false)),
                ]),
            },
        );
        let mut runtimes = RuntimeRegistry::new();
        runtimes.register(Arc::new(fake.clone()));
        let router = router(ServerState {
            index,
            logs_dir: std::env::temp_dir(),
            runtimes,
            metrics: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let serving = router.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let router = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            router.clone().oneshot(req.map(Body::new))
                        },
                    );
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Fixture {
            addr,
            router,
            fake,
            containers: vec![sleeper, echoer],
        }
    }

    async fn stop(self) {
        for id in &self.containers {
            let _ = self.fake.stop_container(id, Duration::from_secs(1)).await;
            let _ = self.fake.remove_container(id).await;
        }
    }
}

fn query(command: &[&str], extra: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(&str, &str)> = command.iter().map(|c| ("command", *c)).collect();
    pairs.extend_from_slice(extra);
    serde_urlencoded::to_string(pairs).expect("query")
}

const ALL: &[(&str, &str)] = &[("stdin", "true"), ("stdout", "true"), ("stderr", "true")];

/// Channel → bytes received, the status, whether a pong came back, and the close code.
#[derive(Default, Debug)]
struct WsTranscript {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<Value>,
    pong: bool,
    close: Option<u16>,
}

async fn websocket(addr: SocketAddr, path: &str, protocol: &str, stdin: &[u8]) -> WsTranscript {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_str(protocol).expect("header"),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("websocket handshake");
    assert_eq!(
        response.headers().get("sec-websocket-protocol"),
        Some(&http::HeaderValue::from_str(protocol).expect("header"))
    );
    ws.send(Message::Ping(Bytes::from_static(b"hb")))
        .await
        .expect("ping");
    if !stdin.is_empty() {
        let mut message = vec![0u8];
        message.extend_from_slice(stdin);
        ws.send(Message::Binary(message.into()))
            .await
            .expect("stdin");
        ws.send(Message::Binary(vec![255u8, 0].into()))
            .await
            .expect("close stdin");
    }
    let mut transcript = WsTranscript::default();
    loop {
        let message = tokio::time::timeout(T, ws.next())
            .await
            .expect("the session ends in time");
        match message {
            Some(Ok(Message::Binary(data))) => match data.split_first() {
                Some((1, rest)) => transcript.stdout.extend_from_slice(rest),
                Some((2, rest)) => transcript.stderr.extend_from_slice(rest),
                Some((3, rest)) => {
                    assert!(transcript.status.is_none(), "one status");
                    transcript.status = Some(serde_json::from_slice(rest).expect("status"));
                }
                other => panic!("unexpected message {other:?}"),
            },
            Some(Ok(Message::Pong(payload))) => transcript.pong = payload.as_ref() == b"hb",
            Some(Ok(Message::Close(frame))) => {
                transcript.close = frame.map(|f| u16::from(f.code));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    transcript
}

#[tokio::test]
async fn websocket_v5_exec_pipes_stdin_and_reports_the_exit_code() {
    let f = Fixture::new().await;
    let q = query(&["sh", "-c", "cat; echo oops >&2; exit 3"], ALL);
    let t = websocket(
        f.addr,
        &format!("/exec/default/p/app?{q}"),
        "v5.channel.k8s.io",
        b"hello\n",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&t.stdout), "hello\n");
    assert_eq!(String::from_utf8_lossy(&t.stderr), "oops\n");
    let status = t.status.expect("status on channel 3");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(
        status["message"],
        "command terminated with non-zero exit code: error executing command [sh -c cat; echo oops >&2; exit 3], exit code 3"
    );
    assert!(t.pong, "pings are answered");
    assert_eq!(t.close, Some(1000), "normal closure");

    // v4, and success.
    let q = query(&["echo", "fine"], &[("stdout", "true")]);
    let t = websocket(
        f.addr,
        &format!("/exec/default/p/app?{q}"),
        "v4.channel.k8s.io",
        b"",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&t.stdout), "fine\n");
    assert_eq!(
        t.status,
        Some(serde_json::json!({"metadata": {}, "status": "Success"}))
    );
    f.stop().await;
}

/// A terminal exec starts after the upgrade: the runtime's refusal is the final Status.
#[tokio::test]
async fn websocket_terminal_exec_refusal_is_the_final_status() {
    let f = Fixture::new().await;
    let q = query(
        &["sh"],
        &[("stdin", "true"), ("stdout", "true"), ("tty", "true")],
    );
    let t = websocket(
        f.addr,
        &format!("/exec/default/p/app?{q}"),
        "v5.channel.k8s.io",
        b"",
    )
    .await;
    let status = t.status.expect("status");
    assert_eq!(status["reason"], "BadRequest", "{status}");
    assert_eq!(status["code"], 400, "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("pseudo-terminals")),
        "{status}"
    );
    f.stop().await;
}

#[tokio::test]
async fn websocket_attach_ends_with_the_container_output() {
    let f = Fixture::new().await;
    let q = query(&[], ALL);
    let t = websocket(
        f.addr,
        &format!("/attach/default/p/u1/echo?{q}"),
        "v5.channel.k8s.io",
        b"x\n",
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&t.stdout), "got x\n");
    assert_eq!(String::from_utf8_lossy(&t.stderr), "bye\n");
    assert_eq!(
        t.status,
        Some(serde_json::json!({"metadata": {}, "status": "Success"}))
    );
    f.stop().await;
}

#[tokio::test]
async fn websocket_without_a_known_protocol_is_refused_before_the_upgrade() {
    let f = Fixture::new().await;
    let tcp = TcpStream::connect(f.addr).await.expect("connect");
    let q = query(&["true"], &[("stdout", "true")]);
    let mut request = format!("ws://{}/exec/default/p/app?{q}", f.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        http::HeaderValue::from_static("channel.k8s.io"),
    );
    match tokio_tungstenite::client_async(request, tcp).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
        }
        other => panic!("expected a refusal, got {:?}", other.map(|(_, r)| r)),
    }
    f.stop().await;
}

/// What a SPDY exec client saw.
#[derive(Default, Debug)]
struct SpdyTranscript {
    replies: Vec<u32>,
    streams: BTreeMap<u32, Vec<u8>>,
    fins: Vec<u32>,
    goaway: bool,
}

/// Open `kinds` as streams 1, 3, 5, ... (as kubectl does), send `stdin` with FIN on the
/// stdin stream, and read until GOAWAY.
async fn spdy_exec(addr: SocketAddr, path: &str, kinds: &[&str], stdin: &[u8]) -> SpdyTranscript {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: kubelet\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v5.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: channel.k8s.io\r\nContent-Length: 0\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut inbound = BytesMut::new();
    let head_end = loop {
        if let Some(i) = inbound.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(T, tcp.read_buf(&mut inbound))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed before the response");
    };
    let head = String::from_utf8_lossy(&inbound.split_to(head_end)).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );

    let mut codec = HeaderCodec::default();
    let mut out = BytesMut::new();
    let mut stdin_id = None;
    for (i, kind) in kinds.iter().enumerate() {
        let stream_id = 1 + 2 * i as u32;
        if *kind == "stdin" {
            stdin_id = Some(stream_id);
        }
        let block = codec
            .encode(&[("streamtype".into(), (*kind).into())])
            .expect("headers");
        spdy::encode_frame(
            &Frame::SynStream {
                stream_id,
                flags: 0,
                block,
            },
            &mut out,
        );
    }
    spdy::encode_frame(&Frame::Ping(7), &mut out);
    if let Some(stream_id) = stdin_id {
        spdy::encode_frame(
            &Frame::Data {
                stream_id,
                flags: FLAG_FIN,
                data: Bytes::copy_from_slice(stdin),
            },
            &mut out,
        );
    }
    tcp.write_all(&out).await.expect("frames");

    let mut transcript = SpdyTranscript::default();
    let mut reply_codec = HeaderCodec::default();
    let mut pinged = false;
    while !transcript.goaway {
        while let Some(frame) = spdy::parse_frame(&mut inbound).expect("frame") {
            match frame {
                Frame::SynReply {
                    stream_id, block, ..
                } => {
                    reply_codec.decode(&block).expect("reply headers");
                    transcript.replies.push(stream_id);
                }
                Frame::Data {
                    stream_id,
                    flags,
                    data,
                } => {
                    transcript
                        .streams
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data);
                    if flags & FLAG_FIN != 0 {
                        transcript.fins.push(stream_id);
                    }
                }
                Frame::Ping(7) => pinged = true,
                Frame::GoAway { .. } => transcript.goaway = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        if transcript.goaway {
            break;
        }
        let n = tokio::time::timeout(T, tcp.read_buf(&mut inbound))
            .await
            .expect("frames in time")
            .expect("read");
        assert!(n > 0, "closed before GOAWAY: {transcript:?}");
    }
    assert!(pinged, "pings are echoed");
    transcript
}

#[tokio::test]
async fn spdy_exec_pipes_stdin_and_reports_the_exit_code() {
    let f = Fixture::new().await;
    let q = query(&["sh", "-c", "cat; echo oops >&2; exit 3"], ALL);
    let t = spdy_exec(
        f.addr,
        &format!("/exec/default/p/app?{q}"),
        &["error", "stdin", "stdout", "stderr"],
        b"hello\n",
    )
    .await;
    assert_eq!(t.replies, vec![1, 3, 5, 7]);
    assert_eq!(t.streams.get(&5).map(Vec::as_slice), Some(&b"hello\n"[..]));
    assert_eq!(t.streams.get(&7).map(Vec::as_slice), Some(&b"oops\n"[..]));
    let status: Value = serde_json::from_slice(t.streams.get(&1).expect("status")).expect("json");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    let mut fins = t.fins.clone();
    fins.sort_unstable();
    assert_eq!(fins, vec![1, 5, 7], "error, stdout and stderr end");
    f.stop().await;
}

async fn refusal(router: &Router, path: &str, upgrade: &str) -> (StatusCode, Value) {
    let request = http::Request::post(path)
        .header("Connection", "Upgrade")
        .header("Upgrade", upgrade)
        .header("X-Stream-Protocol-Version", "v4.channel.k8s.io")
        .body(Body::empty())
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let code = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn refusals_are_kubernetes_statuses() {
    let f = Fixture::new().await;
    let q = query(&["ls"], &[("stdout", "true")]);
    let (code, body) = refusal(
        &f.router,
        &format!("/exec/default/nope/app?{q}"),
        "SPDY/3.1",
    )
    .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "pod \"nope\" not found on this node");
    let (code, body) = refusal(&f.router, &format!("/exec/default/p/done?{q}"), "SPDY/3.1").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "container not found (\"done\")");
    assert_eq!(body["kind"], "Status");
    let (code, body) = refusal(
        &f.router,
        &format!("/exec/default/p/wrong-uid/app?{q}"),
        "SPDY/3.1",
    )
    .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
    // The runtime refuses to start the command.
    let missing = query(&["/no/such/program"], &[("stdout", "true")]);
    let (code, body) = refusal(
        &f.router,
        &format!("/exec/default/p/app?{missing}"),
        "SPDY/3.1",
    )
    .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("error executing command in container: ")),
        "{body}"
    );
    let (code, body) = refusal(&f.router, "/exec/default/p/app?stdout=true", "SPDY/3.1").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "you must specify a command to execute");
    let (code, _) = refusal(&f.router, &format!("/exec/default/p/app?{q}"), "h2c").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    f.stop().await;
}
