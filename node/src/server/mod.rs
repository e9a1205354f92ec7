//! The kubelet's HTTPS server (port 10250): what the API server proxies `pods/log` (and, in
//! time, exec, attach and port-forward) to.
//!
//! [`router`] is a plain axum router over the kubelet's [`PodIndex`]
//! (tested with `oneshot`, no socket); [`serve`] puts it behind rustls with the node's serving
//! certificate, HTTP/1.1 (with upgrades) and HTTP/2.
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`, `tailLines`,
//!   `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes`.
//! - `GET /healthz`.
//! - `GET /metrics`: Prometheus metrics ([`KubeletMetrics`]).
//! - `/portForward/{namespace}/{pod}`: SPDY/3.1 (`POST`, `Upgrade: SPDY/3.1`,
//!   `portforward.k8s.io`) or the same SPDY bytes tunnelled in WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`), to any port of the pod IP ([`portforward`]).
//! - `/exec/{namespace}/{pod}[/{uid}]/{container}` and `/attach/...`: WebSocket
//!   `v5.channel.k8s.io` / `v4.channel.k8s.io` or SPDY/3.1 `v4.channel.k8s.io`, piped to the
//!   runtime's exec or attach session ([`exec`]).

pub mod exec;
pub mod exec_spdy;
pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod websocket;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::kubelet::PodIndex;
use crate::kubelet::metrics::KubeletMetrics;
use logs::LogOptions;

/// What the server needs.
#[derive(Clone)]
pub struct ServerState {
    /// Running pods.
    pub index: PodIndex,
    /// The node's log dir (`<logs>/<ns>_<pod>_<uid>/<container>/<n>.log`).
    pub logs_dir: PathBuf,
    /// The runtimes, by handler, for exec and attach.
    pub runtimes: skiff_runtimes::RuntimeRegistry,
    /// The kubelet's metrics (`GET /metrics`).
    pub metrics: Arc<KubeletMetrics>,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()
    });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The kubelet API router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{*rest}", any(exec::exec))
        .route("/attach/{*rest}", any(exec::attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route(
            "/portForward/{namespace}/{pod}/{uid}",
            any(port_forward_uid),
        )
        .with_state(state)
}

/// `GET /metrics`: the kubelet's Prometheus metrics (OpenMetrics text).
async fn metrics(State(state): State<ServerState>) -> Response<Body> {
    let mut resp = Response::new(Body::from(state.metrics.encode(&state.index)));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

/// WebSocket subprotocol of tunnelled port-forward (kubectl 1.31+).
pub const PORT_FORWARD_WS_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of SPDY port-forward.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

async fn port_forward_uid(
    state: State<ServerState>,
    Path((namespace, pod, _uid)): Path<(String, String, String)>,
    req: http::Request<Body>,
) -> Response<Body> {
    port_forward(state, Path((namespace, pod)), req).await
}

async fn port_forward(
    State(state): State<ServerState>,
    Path((namespace, pod)): Path<(String, String)>,
    mut req: http::Request<Body>,
) -> Response<Body> {
    let Some(entry) = state.index.get(&namespace, &pod) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod \"{pod}\" not found on this node"),
        );
    };
    let target = portforward::PodTarget {
        netns: entry.netns.clone(),
    };
    let upgrade = req
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if upgrade == "websocket" {
        use axum::extract::FromRequest;
        let ws = match axum::extract::ws::WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws,
            Err(rejection) => return rejection.into_response(),
        };
        return ws
            .protocols([PORT_FORWARD_WS_PROTOCOL])
            .on_upgrade(move |socket| websocket_tunnel(socket, target))
            .into_response();
    }
    if !upgrade.starts_with("spdy/3.1") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "port-forward needs an Upgrade: SPDY/3.1 or websocket request".to_owned(),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => portforward::serve(TokioIo::new(upgraded), target).await,
            Err(error) => tracing::debug!(%error, "port-forward upgrade failed"),
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    headers.insert(
        "X-Stream-Protocol-Version",
        http::HeaderValue::from_static(PORT_FORWARD_PROTOCOL),
    );
    resp
}

/// Carry SPDY bytes in WebSocket binary messages (one message per write each way).
async fn websocket_tunnel(socket: axum::extract::ws::WebSocket, target: portforward::PodTarget) {
    use axum::extract::ws::Message;
    use futures::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    let (near, far) = tokio::io::duplex(256 * 1024);
    tokio::spawn(portforward::serve(far, target));
    let (mut near_read, mut near_write) = tokio::io::split(near);
    let (mut sink, mut stream) = socket.split();
    let inbound = async move {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Binary(data) if near_write.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = near_write.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match near_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                    if sink.send(Message::Binary(data)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(inbound, outbound);
}

async fn container_logs(
    State(state): State<ServerState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(opts): Query<LogOptions>,
) -> Response<Body> {
    let Some(entry) = state.index.get(&namespace, &pod) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pod \"{pod}\" not found on this node"),
        );
    };
    let Some((_, _, restarts, running)) = entry.containers.get(&container).cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("container \"{container}\" in pod \"{pod}\" is waiting to start"),
        );
    };
    let pod_dir = state
        .logs_dir
        .join(format!("{namespace}_{pod}_{}", entry.uid));
    let run = if opts.previous {
        if restarts == 0 {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        restarts - 1
    } else {
        restarts
    };
    let path = logs::log_path(&pod_dir, &container, run);
    let records = match logs::read(&path) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("cannot read log of container \"{container}\": {e}"),
            );
        }
    };
    let first = logs::render(&records, &opts, jiff::Timestamp::now());
    let follow = opts.follow && !opts.previous && running;
    let mut response = if !follow {
        Response::new(Body::from(first))
    } else {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let stream = follow_stream(
            state,
            namespace,
            pod,
            container,
            run,
            path,
            offset,
            opts.timestamps,
            first,
        );
        Response::new(Body::from_stream(stream))
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Stream `first`, then new records appended to `path` until the run ends.
#[allow(clippy::too_many_arguments)]
fn follow_stream(
    state: ServerState,
    namespace: String,
    pod: String,
    container: String,
    run: i32,
    path: PathBuf,
    offset: u64,
    timestamps: bool,
    first: Vec<u8>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, Infallible>> {
    struct Follow {
        offset: u64,
        carry: String,
        first: Option<Vec<u8>>,
        done: bool,
    }
    let init = Follow {
        offset,
        carry: String::new(),
        first: Some(first),
        done: false,
    };
    futures::stream::unfold(init, move |mut st| {
        let state = state.clone();
        let (namespace, pod, container, path) = (
            namespace.clone(),
            pod.clone(),
            container.clone(),
            path.clone(),
        );
        async move {
            if let Some(first) = st.first.take() {
                return Some((Ok(bytes::Bytes::from(first)), st));
            }
            loop {
                if st.done {
                    return None;
                }
                // Still the same, running run? Read one more time after it ends.
                let alive = state.index.get(&namespace, &pod).is_some_and(|e| {
                    e.containers
                        .get(&container)
                        .is_some_and(|(_, _, r, running)| *r == run && *running)
                });
                let mut chunk = Vec::new();
                if let Ok(mut file) = tokio::fs::File::open(&path).await
                    && file.seek(std::io::SeekFrom::Start(st.offset)).await.is_ok()
                {
                    let mut buf = Vec::new();
                    if let Ok(n) = file.read_to_end(&mut buf).await {
                        st.offset += n as u64;
                        st.carry.push_str(&String::from_utf8_lossy(&buf));
                        while let Some(i) = st.carry.find('\n') {
                            let line: String = st.carry.drain(..=i).collect();
                            if let Some(record) =
                                skiff_runtimes::logs::parse_record(line.trim_end_matches('\n'))
                            {
                                chunk.extend(logs::render_record(&record, timestamps));
                            }
                        }
                    }
                }
                if !alive {
                    st.done = true;
                }
                if !chunk.is_empty() {
                    return Some((Ok(bytes::Bytes::from(chunk)), st));
                }
                if st.done {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
}

/// Why the kubelet server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A certificate, key or CA bundle is unusable.
    #[error("{what}: {message}")]
    Tls {
        /// Which input (`serving certificate`, `client CA`, ...).
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// TLS settings from PEM: the serving certificate chain and key, and, when `client_ca_pem` is
/// given, client certificates required and verified against it (the kubelet's
/// `--client-ca-file`: the API server presents its kubelet-client certificate).
pub fn tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let tls = |what: &'static str| {
        move |e: &dyn std::fmt::Display| ServerError::Tls {
            what,
            message: e.to_string(),
        }
    };
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls("serving certificate")(&e))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| tls("serving key")(&e))?
        .ok_or_else(|| tls("serving key")(&"no private key in the PEM"))?;
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca.as_bytes()) {
                let cert = cert.map_err(|e| tls("client CA")(&e))?;
                roots.add(cert).map_err(|e| tls("client CA")(&e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| tls("client CA")(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls("serving certificate")(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Bind `addr` and serve `router` over HTTPS (HTTP/1.1 with upgrades, and HTTP/2). Returns the
/// bound address (useful with port 0) and the accept loop, which serves until it is dropped;
/// connections already accepted run to their end on their own.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let accept_loop = async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "kubelet server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(s) => s,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "kubelet server: TLS handshake failed");
                        return;
                    }
                };
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let router = router.clone();
                        async move { router.oneshot(req.map(Body::new)).await }
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(error) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, %error, "kubelet server: connection error");
                }
            });
        }
    };
    Ok((local, accept_loop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::PodEntry;
    use http_body_util::BodyExt;
    use skiff_runtimes::logs::{Stream, format_record};
    use std::collections::BTreeMap;

    fn write_log(path: &std::path::Path, lines: &[(i64, &str)]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut out = Vec::new();
        for (sec, line) in lines {
            let at = jiff::Timestamp::from_second(1_700_000_000 + sec).expect("t");
            out.extend(format_record(at, Stream::Stdout, false, line.as_bytes()));
        }
        std::fs::write(path, out).expect("write log");
    }

    async fn get(router: &Router, uri: &str) -> (StatusCode, String) {
        let req = http::Request::get(uri)
            .body(Body::empty())
            .expect("request");
        let resp = router.clone().oneshot(req).await.expect("response");
        let code = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_current_and_previous_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = PodIndex::default();
        index.set(
            "default",
            "web",
            PodEntry {
                uid: "u1".into(),
                ip: None,
                netns: None,
                containers: BTreeMap::from([(
                    "app".into(),
                    ("fake".into(), "c2".into(), 1, false),
                )]),
            },
        );
        let pod_dir = dir.path().join("default_web_u1");
        write_log(&pod_dir.join("app/0.log"), &[(0, "first run")]);
        write_log(
            &pod_dir.join("app/1.log"),
            &[(1, "one"), (2, "two"), (3, "three")],
        );
        let router = router(ServerState {
            index,
            logs_dir: dir.path().to_owned(),
            runtimes: skiff_runtimes::RuntimeRegistry::new(),
            metrics: Default::default(),
        });
        assert_eq!(
            get(&router, "/containerLogs/default/web/app").await,
            (StatusCode::OK, "one\ntwo\nthree\n".into())
        );
        assert_eq!(
            get(
                &router,
                "/containerLogs/default/web/app?tailLines=1&timestamps=true"
            )
            .await
            .1,
            "2023-11-14T22:13:23.000000000Z three\n"
        );
        assert_eq!(
            get(&router, "/containerLogs/default/web/app?previous=true")
                .await
                .1,
            "first run\n"
        );
        // A stopped container's follow ends after the current content.
        assert_eq!(
            get(&router, "/containerLogs/default/web/app?follow=true")
                .await
                .1,
            "one\ntwo\nthree\n"
        );
        let (code, body) = get(&router, "/containerLogs/default/nope/app").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body.contains("\"reason\":\"NotFound\""), "{body}");
        assert_eq!(
            get(&router, "/exec/default/web/app").await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn follow_streams_new_lines_until_the_run_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = PodIndex::default();
        let entry = |running| PodEntry {
            uid: "u1".into(),
            ip: None,
            netns: None,
            containers: BTreeMap::from([("app".into(), ("fake".into(), "c1".into(), 0, running))]),
        };
        index.set("default", "web", entry(true));
        let log = dir.path().join("default_web_u1/app/0.log");
        write_log(&log, &[(0, "before")]);
        let router = router(ServerState {
            index: index.clone(),
            logs_dir: dir.path().to_owned(),
            runtimes: skiff_runtimes::RuntimeRegistry::new(),
            metrics: Default::default(),
        });
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            write_log(&log, &[(0, "before"), (1, "after")]);
            tokio::time::sleep(Duration::from_millis(300)).await;
            index.set("default", "web", entry(false));
        });
        let (_, body) = tokio::time::timeout(
            Duration::from_secs(10),
            get(&router, "/containerLogs/default/web/app?follow=true"),
        )
        .await
        .expect("follow ends when the container stops");
        writer.await.expect("writer");
        assert_eq!(body, "before\nafter\n");
    }
}
