//! The `httpGet` probe handler, as the kubelet runs it (`pkg/probe/http` in Kubernetes).
//!
//! One `GET` per run on a fresh connection (`Connection: close`), over plain HTTP/1.1 or,
//! with `scheme: HTTPS`, over TLS **without certificate verification** — the kubelet sets
//! `InsecureSkipVerify`, since a pod's serving certificate is rarely issued for its IP. The
//! handshake signatures are still checked; only the chain and name are not.
//!
//! Headers follow the kubelet: `httpHeaders` are sent in order, a `Host` header among them
//! overrides the request's Host (the connection still goes to `host:port`), `User-Agent`
//! defaults to `kube-probe/<version>` and `Accept` to `*/*` unless given (an empty `Accept`
//! removes it). A status of 200–399 passes; redirects are not followed (a 3xx passes, as the
//! kubelet reports a redirect to another host).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, header};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::checks::{Outcome, USER_AGENT};

/// `httpGet.scheme`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTP over TLS, certificate not verified.
    Https,
}

impl Scheme {
    /// From the probe's `scheme` field, case-insensitively as the kubelet lowercases it;
    /// anything but `HTTPS` is HTTP (validation rejects other values).
    pub fn parse(scheme: Option<&str>) -> Scheme {
        match scheme {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => Scheme::Http,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One `httpGet` probe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// Where to connect: `httpGet.host`, or the pod IP. An IP or a DNS name.
    pub host: String,
    /// The port.
    pub port: u16,
    /// `httpGet.path`, possibly with a query (`/healthz?verbose`).
    pub path: String,
    /// `httpGet.httpHeaders` as (name, value), in order.
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// `host:port`, with IPv6 addresses in brackets (Go's `net.JoinHostPort`).
    fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// The request target: the path with a leading `/`.
    fn target(&self) -> String {
        if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        }
    }

    /// The URL as the kubelet prints it in probe messages.
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.target()
        )
    }
}

/// Runs `probe` within `timeout`: a status of 200–399 passes.
pub async fn http_get(probe: &HttpGet, timeout: Duration) -> Outcome {
    let url = probe.url();
    match tokio::time::timeout(timeout, run(probe)).await {
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Ok(Err(Fault::Failed(message))) => Outcome::Failure(format!("Get \"{url}\": {message}")),
        Ok(Err(Fault::Invalid(message))) => Outcome::Errored(message),
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

/// Why a run did not get a status.
enum Fault {
    /// The probe failed (connect, TLS or HTTP error): the message follows `Get "<url>": `.
    Failed(String),
    /// The probe cannot be expressed (an invalid header): it errors.
    Invalid(String),
}

async fn run(probe: &HttpGet) -> Result<u16, Fault> {
    let request = build_request(probe)?;
    let tcp = connect(&probe.host, probe.port).await?;
    let _ = tcp.set_nodelay(true);
    match probe.scheme {
        Scheme::Http => send(tcp, request).await,
        Scheme::Https => {
            let config = insecure_tls().map_err(|e| Fault::Invalid(e.clone()))?;
            let name = server_name(&probe.host)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| Fault::Failed(e.to_string()))?;
            send(tls, request).await
        }
    }
}

/// Dials every address `host` resolves to, in order, until one answers (as Go's dialer does).
async fn connect(host: &str, port: u16) -> Result<TcpStream, Fault> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Fault::Failed(format!("dial tcp: lookup {host}: {e}")))?
            .collect(),
    };
    let mut last = Fault::Failed(format!("dial tcp: lookup {host}: no such host"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Fault::Failed(format!("dial tcp {addr}: {e}")),
        }
    }
    Err(last)
}

fn server_name(host: &str) -> Result<ServerName<'static>, Fault> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_owned())
            .map_err(|e| Fault::Invalid(format!("invalid host {host:?}: {e}"))),
    }
}

/// The request the kubelet sends (Go's `http.Header` semantics): Host is the first non-empty
/// `Host` header or `host:port`; User-Agent the first `User-Agent` header (none if it is
/// empty) or the default; every `Accept` value, none if the first is empty, or `*/*`; every
/// other header as given; and `Connection: close`.
fn build_request(probe: &HttpGet) -> Result<Request<Empty<bytes::Bytes>>, Fault> {
    let mut given: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(probe.headers.len());
    for (name, value) in &probe.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| Fault::Invalid(format!("invalid header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| Fault::Invalid(format!("invalid value for header {name}: {e}")))?;
        given.push((name, value));
    }
    let first = |name: &HeaderName| given.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let host = match first(&header::HOST) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => HeaderValue::from_str(&probe.authority())
            .map_err(|e| Fault::Invalid(format!("invalid host {:?}: {e}", probe.host)))?,
    };
    let user_agent = match first(&header::USER_AGENT) {
        None => Some(HeaderValue::from_static(USER_AGENT)),
        Some(v) if v.is_empty() => None,
        Some(v) => Some(v.clone()),
    };
    let accept = first(&header::ACCEPT).cloned();
    let mut builder = Request::get(probe.target()).header(header::HOST, host);
    if let Some(user_agent) = user_agent {
        builder = builder.header(header::USER_AGENT, user_agent);
    }
    if accept.is_none() {
        builder = builder.header(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    let drop_accept = accept.is_some_and(|a| a.is_empty());
    for (name, value) in given {
        let skip = name == header::HOST
            || name == header::USER_AGENT
            || (name == header::ACCEPT && drop_accept);
        if !skip {
            builder = builder.header(name, value);
        }
    }
    builder
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| Fault::Invalid(format!("invalid probe request: {e}")))
}

/// Sends `request` over `io` with HTTP/1.1 and returns the response status.
async fn send<S>(io: S, request: Request<Empty<bytes::Bytes>>) -> Result<u16, Fault>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| Fault::Failed(error_text(&e));
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await;
    conn.abort();
    Ok(response.map_err(failed)?.status().as_u16())
}

/// hyper's error with its cause (`connection closed before message completed`, ...).
fn error_text(error: &hyper::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

/// The TLS client config of HTTPS probes: any certificate is accepted.
fn insecure_tls() -> Result<Arc<rustls::ClientConfig>, &'static String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS client configuration: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        })
        .as_ref()
        .map(Arc::clone)
}

/// Accepts every server certificate (the kubelet's `InsecureSkipVerify`), still checking
/// that the server holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;
