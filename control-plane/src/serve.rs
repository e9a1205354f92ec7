//! Serving the API router: over HTTPS (rustls, HTTP/2 and HTTP/1.1 with
//! `Upgrade`), with client-certificate authentication, and in-process as a
//! tower service for `kube::Client` (no socket, no TLS).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::pki::CertPair;

/// Who made a request, taken from the verified client certificate
/// (CN = user, O = groups), as Kubernetes' x509 authenticator does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `kubernetes-admin` or `system:node:n1`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity in-process components act as.
    pub fn loopback() -> Self {
        UserInfo {
            name: "system:apiserver".into(),
            groups: vec!["system:masters".into()],
        }
    }
}

/// Serving failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another API server already running on that port? pass --api-port)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A certificate or key could not be parsed.
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Paths anonymous clients may read, like Kubernetes' `system:public-info-viewer`.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

fn unauthorized() -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401
    });
    let mut resp = Response::new(Body::from(status.to_string()));
    *resp.status_mut() = StatusCode::UNAUTHORIZED;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Builds the rustls server config: our serving certificate, ALPN h2 +
/// http/1.1, and optional client certificates verified against the CA.
pub fn tls_config(
    ca_pem: &str,
    serving: &CertPair,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut serving.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut serving.key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| ServeError::Tls("no private key in PEM".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| tls(&e))?).map_err(|e| tls(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn user_from_certs(certs: Option<&[CertificateDer<'static>]>) -> Option<UserInfo> {
    let der = certs?.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(UserInfo { name, groups })
}

/// Binds `addr` and serves `router` over HTTPS until the task is aborted.
/// Returns the bound address (useful with port 0) and the server task.
pub async fn serve_https(
    addr: SocketAddr,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let acceptor = TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let router = router.clone();
            tokio::spawn(async move {
                let stream = match acceptor.accept(tcp).await {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::debug!(%peer, %err, "TLS handshake failed");
                        return;
                    }
                };
                let user = user_from_certs(stream.get_ref().1.peer_certificates());
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let router = router.clone();
                        let user = user.clone();
                        async move {
                            let mut req = req.map(Body::new);
                            match user {
                                Some(user) => {
                                    req.extensions_mut().insert(user);
                                }
                                None if is_public(req.uri().path()) => {}
                                None => return Ok::<_, Infallible>(unauthorized()),
                            }
                            router.oneshot(req).await
                        }
                    });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if let Err(err) = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
            });
        }
    });
    Ok((local, task))
}

/// A `kube::Client` that calls `router` in process, as the loopback identity.
pub fn in_process_client(router: Router, default_namespace: &str) -> kube::Client {
    let service = tower::service_fn(move |req: Request<kube::client::Body>| {
        let router = router.clone();
        async move {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(UserInfo::loopback());
            router.oneshot(req).await
        }
    });
    kube::Client::new(service, default_namespace.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    #[test]
    fn public_paths_are_only_health_and_version() {
        assert!(is_public("/healthz"));
        assert!(is_public("/readyz/ping"));
        assert!(is_public("/version"));
        assert!(!is_public("/api/v1/pods"));
        assert!(!is_public("/versions"));
    }

    #[tokio::test]
    async fn https_requires_a_client_certificate_except_for_health() -> anyhow::Result<()> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let pki = crate::pki::Pki::load_or_create(dir.path(), &[], &[])?;
        let router = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/whoami",
                get(|user: Option<axum::Extension<UserInfo>>| async move {
                    user.map(|u| u.0.name).unwrap_or_default()
                }),
            );
        let tls = tls_config(&pki.ca.cert_pem, &pki.apiserver)?;
        let (addr, task) = serve_https("127.0.0.1:0".parse()?, router, tls).await?;

        let ca = reqwest_like::roots(&pki.ca.cert_pem)?;
        // Anonymous: health is allowed, the rest is 401.
        let anon = reqwest_like::client(ca.clone(), None)?;
        assert_eq!(
            reqwest_like::get(&anon, addr, "/healthz").await?,
            (200, "ok".into())
        );
        let (code, body) = reqwest_like::get(&anon, addr, "/whoami").await?;
        assert_eq!(code, 401);
        assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
        // With the admin certificate the user is known.
        let admin = reqwest_like::client(ca, Some(&pki.admin))?;
        assert_eq!(
            reqwest_like::get(&admin, addr, "/whoami").await?,
            (200, "kubernetes-admin".into())
        );
        task.abort();
        Ok(())
    }

    /// A minimal HTTPS client for the test, on the same rustls stack.
    mod reqwest_like {
        use super::*;
        use http_body_util::BodyExt;
        use rustls::pki_types::ServerName;

        pub fn roots(ca_pem: &str) -> anyhow::Result<Arc<rustls::RootCertStore>> {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
                roots.add(cert?)?;
            }
            Ok(Arc::new(roots))
        }

        pub fn client(
            roots: Arc<rustls::RootCertStore>,
            identity: Option<&CertPair>,
        ) -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let config = match identity {
                Some(pair) => {
                    let certs = rustls_pemfile::certs(&mut pair.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()?;
                    let key = rustls_pemfile::private_key(&mut pair.key_pem.as_bytes())?
                        .ok_or_else(|| anyhow::anyhow!("no key"))?;
                    builder.with_client_auth_cert(certs, key)?
                }
                None => builder.with_no_client_auth(),
            };
            Ok(Arc::new(config))
        }

        pub async fn get(
            config: &Arc<rustls::ClientConfig>,
            addr: SocketAddr,
            path: &str,
        ) -> anyhow::Result<(u16, String)> {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let connector = tokio_rustls::TlsConnector::from(config.clone());
            let tls = connector
                .connect(ServerName::try_from("localhost")?, tcp)
                .await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let req = Request::get(path)
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            let code = resp.status().as_u16();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok((code, String::from_utf8_lossy(&body).into_owned()))
        }
    }
}
