//! The API server's side of `pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward` and `nodes/proxy`: find the kubelet and forward the
//! request to it over HTTPS, as kube-apiserver does. Streaming protocols
//! (WebSocket v5, SPDY/3.1) are spoken by the kubelet; here an upgrade is only
//! spliced through, byte for byte, so every protocol and kubectl version works
//! the same.
//!
//! `nodes/{name}/proxy/{path}` ([`proxy_to_node`]) sends any method to
//! `{path}` on the node's kubelet (`kubectl get --raw
//! /api/v1/nodes/<node>/proxy/metrics`); the name may carry a port
//! (`name:port`, `scheme:name:port`), and a port other than the kubelet's is
//! reached over plain HTTP on the node's address.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use super::errors::{ApiError, ApiResult};
use super::kinds::Resource;
use super::path::ResourcePath;
use super::{ApiState, ops};

/// Where the kubelet of a node listens, from the Node object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletAddress {
    /// Host (IP preferred).
    pub host: String,
    /// Port (`status.daemonEndpoints.kubeletEndpoint.Port`, default 10250).
    pub port: u16,
}

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The pod is not bound to a node yet.
    #[error("pod {pod} does not have a host assigned")]
    NotScheduled {
        /// The pod name.
        pod: String,
    },
    /// The node has no usable address.
    #[error("node {node} has no address for its kubelet")]
    NoAddress {
        /// The node name.
        node: String,
    },
    /// A container name is needed and was not given or does not exist.
    #[error("{0}")]
    BadContainer(String),
    /// Connecting or talking to the kubelet failed.
    #[error("error dialing backend: {0}")]
    Dial(String),
}

/// Picks the kubelet address from a Node's status, preferring InternalIP,
/// then ExternalIP, then Hostname, as kube-apiserver's default preference.
pub fn kubelet_address(node: &Value) -> Result<KubeletAddress, ProxyError> {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses.iter().find_map(|a| {
                (a.get("type").and_then(Value::as_str) == Some(kind))
                    .then(|| a.get("address").and_then(Value::as_str))
                    .flatten()
            })
        })
        .ok_or_else(|| ProxyError::NoAddress { node: name.into() })?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Ok(KubeletAddress {
        host: host.to_string(),
        port,
    })
}

/// The container a request targets: the `container` query parameter, or
/// the only container, with Kubernetes' messages otherwise.
pub fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, ProxyError> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let names = |field: &str| -> Vec<String> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c)
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c) =>
        {
            Ok(c.into())
        }
        Some(c) => {
            let mut msg = format!("container {c} is not valid for pod {pod_name}");
            if !containers.is_empty() {
                msg = format!("{msg}, choose one of: [{}]", containers.join(" "));
            }
            Err(ProxyError::BadContainer(msg))
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ProxyError::BadContainer(msg))
        }
    }
}

/// The kubelet path for a pod subresource, keeping the query string.
pub fn kubelet_path(
    sub: &str,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    query: Option<&str>,
) -> Option<String> {
    let base = match (sub, container) {
        ("log", Some(c)) => format!("/containerLogs/{namespace}/{pod}/{c}"),
        ("exec", Some(c)) => format!("/exec/{namespace}/{pod}/{c}"),
        ("attach", Some(c)) => format!("/attach/{namespace}/{pod}/{c}"),
        ("portforward", _) => format!("/portForward/{namespace}/{pod}"),
        _ => return None,
    };
    Some(match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{base}?{q}"),
        None => base,
    })
}

/// Headers that describe one hop and are not forwarded, except the ones an
/// upgrade needs.
fn forwardable(name: &header::HeaderName, upgrade: bool) -> bool {
    let hop = matches!(
        name.as_str(),
        "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "host"
            | "authorization"
    );
    let upgrade_only = matches!(name.as_str(), "connection" | "upgrade");
    !hop && (!upgrade_only || upgrade)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
        .unwrap_or(false)
}

/// Forwards `req` to the kubelet at `addr` under `path`, splicing upgrades.
pub async fn forward(
    tls: Arc<rustls::ClientConfig>,
    addr: &KubeletAddress,
    path: &str,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let dial = |e: &dyn std::fmt::Display| ProxyError::Dial(e.to_string());
    let tcp = connect(addr).await?;
    let server_name = ServerName::try_from(addr.host.clone()).map_err(|e| dial(&e))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| dial(&e))?;
    forward_over(stream, addr, path, req).await
}

/// Forwards `req` to `addr` under `path` over plain HTTP (a node port other
/// than the kubelet's), splicing upgrades.
pub async fn forward_plain(
    addr: &KubeletAddress,
    path: &str,
    req: Request<Body>,
) -> Result<Response<Body>, ProxyError> {
    let tcp = connect(addr).await?;
    forward_over(tcp, addr, path, req).await
}

async fn connect(addr: &KubeletAddress) -> Result<tokio::net::TcpStream, ProxyError> {
    let tcp = tokio::net::TcpStream::connect((addr.host.as_str(), addr.port))
        .await
        .map_err(|e| ProxyError::Dial(format!("dial tcp {}:{}: {e}", addr.host, addr.port)))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

async fn forward_over<S>(
    stream: S,
    addr: &KubeletAddress,
    path: &str,
    mut req: Request<Body>,
) -> Result<Response<Body>, ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let dial = |e: &dyn std::fmt::Display| ProxyError::Dial(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| dial(&e))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "kubelet connection ended");
        }
    });

    let upgrade = is_upgrade(req.headers());
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(path)
        .header(header::HOST, format!("{}:{}", addr.host, addr.port));
    for (name, value) in req.headers() {
        if forwardable(name, upgrade) {
            out = out.header(name, value);
        }
    }
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = if upgrade || req.method() == Method::GET {
        Body::empty()
    } else {
        std::mem::replace(req.body_mut(), Body::empty())
    };
    let out = out.body(body).map_err(|e| dial(&e))?;
    let mut resp = sender.send_request(out).await.map_err(|e| dial(&e))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let kubelet_upgrade = hyper::upgrade::on(&mut resp);
        let mut back = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in resp.headers() {
            back = back.header(name, value);
        }
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                let (client, kubelet) = match tokio::join!(client_upgrade, kubelet_upgrade) {
                    (Ok(c), Ok(k)) => (c, k),
                    (c, k) => {
                        tracing::debug!(
                            client_ok = c.is_ok(),
                            kubelet_ok = k.is_ok(),
                            "upgrade failed"
                        );
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut kubelet = TokioIo::new(kubelet);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
            });
        }
        return back.body(Body::empty()).map_err(|e| dial(&e));
    }

    let (parts, body) = resp.into_parts();
    let mut back = Response::new(Body::new(body));
    *back.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if forwardable(name, false) {
            back.headers_mut().insert(name, value.clone());
        }
    }
    if !back.headers().contains_key(header::CONTENT_TYPE) {
        back.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    Ok(back)
}

/// The target of `nodes/{id}/proxy`: Kubernetes' `SplitSchemeNamePort` of
/// `id` (`name`, `name:port` or `scheme:name:port`, scheme `http` or `https`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeProxyTarget {
    /// `http`, `https` or empty.
    pub scheme: String,
    /// The node name.
    pub node: String,
    /// The requested port, if any.
    pub port: Option<String>,
}

/// Splits a `nodes/{id}/proxy` id; `None` for an invalid one.
pub fn split_scheme_name_port(id: &str) -> Option<NodeProxyTarget> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, node, port) = match parts.as_slice() {
        [name] => ("", *name, None),
        [name, port] => ("", *name, Some(*port)),
        [scheme, name, port] => (*scheme, *name, Some(*port)),
        _ => return None,
    };
    (!node.is_empty() && matches!(scheme, "" | "http" | "https")).then(|| NodeProxyTarget {
        scheme: scheme.to_string(),
        node: node.to_string(),
        port: port.filter(|p| !p.is_empty()).map(String::from),
    })
}

/// The path and query to request from the node for a raw request path
/// `/api/v1/nodes/{id}/proxy[/{path}]`: `/{path}` with its trailing slash
/// and encoding kept, `/` for none.
pub fn node_proxy_path(raw_path: &str, query: Option<&str>) -> Option<String> {
    let after = raw_path.strip_prefix("/api/v1/nodes/")?;
    let (_, rest) = after.split_once('/')?;
    let rest = rest.strip_prefix("proxy")?;
    let path = match rest {
        "" => "/",
        r if r.starts_with('/') => r,
        _ => return None,
    };
    Some(match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    })
}

/// `nodes/{id}/proxy/{path}` (any method): forwarded to the node's kubelet
/// over HTTPS with the kubelet client certificate, or, for a port other than
/// the kubelet's, over plain HTTP to that port on the node's address. 503
/// without a kubelet client config or when the node cannot be reached.
pub async fn proxy_to_node(
    state: &ApiState,
    res: &Resource,
    rp: &ResourcePath,
    req: Request<Body>,
) -> ApiResult<Response<Body>> {
    let id = rp.name.as_deref().unwrap_or_default();
    let target = split_scheme_name_port(id)
        .ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let path = node_proxy_path(req.uri().path(), req.uri().query())
        .ok_or_else(ApiError::path_not_found)?;
    let node = ops::get(state, res, None, &target.node).await?;
    let kubelet = kubelet_address(&node).map_err(|e| ApiError::unavailable(e.to_string()))?;
    let requested = match target.port.as_deref() {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ApiError::bad_request(format!("invalid port {p:?}")))?,
        ),
    };
    let unreachable = |e: ProxyError| {
        let message = match e {
            ProxyError::Dial(m) => m,
            other => other.to_string(),
        };
        ApiError::unavailable(format!("error trying to reach service: {message}"))
    };
    tracing::debug!(node = %target.node, %path, method = %req.method(), "nodes/proxy");
    match requested {
        Some(port) if port != kubelet.port => {
            if target.scheme == "https" {
                return Err(ApiError::bad_request(format!(
                    "https to port {port} of node {} is not supported; use the kubelet port {}",
                    target.node, kubelet.port
                )));
            }
            let addr = KubeletAddress {
                host: kubelet.host,
                port,
            };
            forward_plain(&addr, &path, req).await.map_err(unreachable)
        }
        _ => {
            let Some(tls) = state.config().kubelet_client_tls.clone() else {
                return Err(ApiError::unavailable(
                    "nodes/proxy is not available: the API server has no kubelet client configuration",
                ));
            };
            forward(tls, &kubelet, &path, req)
                .await
                .map_err(unreachable)
        }
    }
}

/// A TLS client config for talking to kubelets: trusts `ca_pem` and presents
/// the API server's kubelet-client certificate.
pub fn client_tls(
    ca_pem: &str,
    client_cert_pem: &str,
    client_key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let certs = rustls_pemfile::certs(&mut client_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key = rustls_pemfile::private_key(&mut client_key_pem.as_bytes())
        .map_err(|e| e.to_string())?
        .ok_or("no private key")?;
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn address_prefers_internal_ip_and_reads_the_port() {
        let node = json!({"metadata":{"name":"n1"},"status":{
            "addresses":[{"type":"Hostname","address":"n1"},{"type":"InternalIP","address":"10.0.0.5"}],
            "daemonEndpoints":{"kubeletEndpoint":{"Port":10251}}}});
        assert_eq!(
            kubelet_address(&node).ok(),
            Some(KubeletAddress {
                host: "10.0.0.5".into(),
                port: 10251
            })
        );
        let bare = json!({"metadata":{"name":"n2"},"status":{"addresses":[{"type":"Hostname","address":"h"}]}});
        assert_eq!(
            kubelet_address(&bare).ok().map(|a| (a.host, a.port)),
            Some(("h".into(), 10250))
        );
        assert!(matches!(
            kubelet_address(&json!({"metadata":{"name":"n3"}})),
            Err(ProxyError::NoAddress { .. })
        ));
    }

    #[test]
    fn container_choice_follows_kubernetes_messages() {
        let pod = json!({"metadata":{"name":"web"},"spec":{
            "initContainers":[{"name":"init"}],
            "containers":[{"name":"app"},{"name":"side"}]}});
        assert_eq!(
            pick_container(&pod, Some("side")).ok().as_deref(),
            Some("side")
        );
        assert_eq!(
            pick_container(&pod, Some("init")).ok().as_deref(),
            Some("init")
        );
        let err = pick_container(&pod, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "a container name must be specified for pod web, choose one of: [app side] or one of the init containers: [init]"
        );
        let err = pick_container(&pod, Some("nope"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "container nope is not valid for pod web, choose one of: [app side]"
        );
        let single = json!({"metadata":{"name":"one"},"spec":{"containers":[{"name":"only"}]}});
        assert_eq!(pick_container(&single, None).ok().as_deref(), Some("only"));
    }

    #[test]
    fn kubelet_paths_match_the_kubelet_api() {
        assert_eq!(
            kubelet_path(
                "log",
                "default",
                "web",
                Some("app"),
                Some("follow=true&tailLines=2")
            )
            .as_deref(),
            Some("/containerLogs/default/web/app?follow=true&tailLines=2")
        );
        assert_eq!(
            kubelet_path("exec", "ns", "p", Some("c"), Some("command=ls")).as_deref(),
            Some("/exec/ns/p/c?command=ls")
        );
        assert_eq!(
            kubelet_path("portforward", "ns", "p", None, None).as_deref(),
            Some("/portForward/ns/p")
        );
        assert_eq!(kubelet_path("log", "ns", "p", None, None), None);
    }

    #[test]
    fn node_proxy_ids_split_like_kubernetes() {
        let t = |scheme: &str, node: &str, port: Option<&str>| NodeProxyTarget {
            scheme: scheme.into(),
            node: node.into(),
            port: port.map(String::from),
        };
        assert_eq!(split_scheme_name_port("n1"), Some(t("", "n1", None)));
        assert_eq!(
            split_scheme_name_port("n1:10250"),
            Some(t("", "n1", Some("10250")))
        );
        assert_eq!(
            split_scheme_name_port("https:n1:10250"),
            Some(t("https", "n1", Some("10250")))
        );
        assert_eq!(split_scheme_name_port("n1:"), Some(t("", "n1", None)));
        assert_eq!(split_scheme_name_port("ftp:n1:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn node_proxy_paths_keep_the_rest_of_the_url() {
        assert_eq!(
            node_proxy_path("/api/v1/nodes/n1/proxy/metrics", None).as_deref(),
            Some("/metrics")
        );
        assert_eq!(
            node_proxy_path(
                "/api/v1/nodes/n1:10250/proxy/metrics/cadvisor/",
                Some("a=1")
            )
            .as_deref(),
            Some("/metrics/cadvisor/?a=1")
        );
        assert_eq!(
            node_proxy_path("/api/v1/nodes/n1/proxy", None).as_deref(),
            Some("/")
        );
        assert_eq!(
            node_proxy_path("/api/v1/nodes/n1/proxy/", Some("")).as_deref(),
            Some("/")
        );
        assert_eq!(
            node_proxy_path("/api/v1/nodes/proxy/proxy/a%20b", None).as_deref(),
            Some("/a%20b")
        );
        assert_eq!(node_proxy_path("/api/v1/nodes/n1/proxyx", None), None);
        assert_eq!(node_proxy_path("/api/v1/nodes/n1/status", None), None);
    }

    #[test]
    fn only_upgrade_requests_forward_connection_headers() {
        let conn = header::CONNECTION;
        assert!(forwardable(&conn, true));
        assert!(!forwardable(&conn, false));
        assert!(!forwardable(&header::AUTHORIZATION, true));
        assert!(forwardable(
            &header::HeaderName::from_static("sec-websocket-key"),
            true
        ));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_upgrade(&h));
    }
}
