use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const SECOND: Duration = Duration::from_secs(1);

/// One request as the test server saw it: the request line and the headers in order.
#[derive(Debug, Clone, Default)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A local HTTP(S) server: `/healthz` answers 200, `/vhost` 200 only for `Host: example.test`
/// (404 otherwise), `/slow` after 5 s, anything else 500. It records every request.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(tls: bool) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(self_signed()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log) = (acceptor.clone(), Arc::clone(&log));
                tokio::spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                answer(stream, log).await;
                            }
                        }
                        None => answer(tcp, log).await,
                    }
                });
            }
        });
        Server { addr, seen }
    }

    fn last(&self) -> Seen {
        self.seen.lock().last().cloned().expect("a request arrived")
    }

    fn probe(&self, scheme: Scheme, path: &str, headers: &[(&str, &str)]) -> HttpGet {
        HttpGet {
            scheme,
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            path: path.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

/// A server config with a fresh self-signed certificate for a name that is not the
/// address the probe dials, so a verifying client would refuse it.
fn self_signed() -> Arc<rustls::ServerConfig> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["pod.example".to_owned()]).expect("certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .expect("server config");
    Arc::new(config)
}

async fn answer<S>(mut stream: S, log: Arc<Mutex<Vec<Seen>>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let seen = Seen { line, headers };
    log.lock().push(seen.clone());
    let status = match seen.line.split_whitespace().nth(1).unwrap_or_default() {
        "/healthz" => "200 OK",
        "/vhost" if seen.all("host") == ["example.test"] => "200 OK",
        "/vhost" => "404 Not Found",
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "200 OK"
        }
        _ => "500 Internal Server Error",
    };
    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[tokio::test]
async fn plain_http_statuses_timeouts_and_closed_ports() {
    let server = Server::start(false).await;
    let addr = server.addr;
    let probe = |path: &str| server.probe(Scheme::Http, path, &[]);
    assert_eq!(http_get(&probe("/healthz"), SECOND).await, Outcome::Success);
    let seen = server.last();
    assert_eq!(seen.line, "GET /healthz HTTP/1.1");
    assert_eq!(seen.all("host"), [addr.to_string()]);
    assert_eq!(seen.all("user-agent"), ["kube-probe/1.33"]);
    assert_eq!(seen.all("accept"), ["*/*"]);
    assert_eq!(seen.all("connection"), ["close"]);
    // A path without its leading slash, and one with a query.
    assert_eq!(http_get(&probe("healthz"), SECOND).await, Outcome::Success);
    assert_eq!(server.last().line, "GET /healthz HTTP/1.1");
    assert_eq!(
        http_get(&probe("/broken?verbose=1"), SECOND).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".to_owned())
    );
    assert_eq!(server.last().line, "GET /broken?verbose=1 HTTP/1.1");
    assert_eq!(
        http_get(&probe("/slow"), Duration::from_millis(200)).await,
        Outcome::Failure(format!(
            "Get \"http://{addr}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    let closed = HttpGet {
        port: 1,
        ..probe("/")
    };
    let Outcome::Failure(message) = http_get(&closed, SECOND).await else {
        panic!("a closed port fails");
    };
    assert!(
        message.starts_with("Get \"http://127.0.0.1:1/\": dial tcp 127.0.0.1:1: "),
        "{message}"
    );
}

#[tokio::test]
async fn https_skips_certificate_verification() {
    let server = Server::start(true).await;
    let addr = server.addr;
    // The certificate is self-signed and names another host: accepted all the same.
    assert_eq!(
        http_get(&server.probe(Scheme::Https, "/healthz", &[]), SECOND).await,
        Outcome::Success
    );
    assert_eq!(server.last().line, "GET /healthz HTTP/1.1");
    assert_eq!(server.last().all("host"), [addr.to_string()]);
    assert_eq!(
        http_get(&server.probe(Scheme::Https, "/other", &[]), SECOND).await,
        Outcome::Failure("HTTP probe failed with statuscode: 500".to_owned())
    );
    // Timeouts read as they do over plain HTTP.
    assert_eq!(
        http_get(
            &server.probe(Scheme::Https, "/slow", &[]),
            Duration::from_millis(300)
        )
        .await,
        Outcome::Failure(format!(
            "Get \"https://{addr}/slow\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ))
    );
    // Plain HTTP to the TLS port gets no HTTP answer.
    let Outcome::Failure(message) =
        http_get(&server.probe(Scheme::Http, "/healthz", &[]), SECOND).await
    else {
        panic!("HTTP to an HTTPS port fails");
    };
    assert!(
        message.starts_with(&format!("Get \"http://{addr}/healthz\": ")),
        "{message}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_port_fails() {
    let server = Server::start(false).await;
    let Outcome::Failure(message) =
        http_get(&server.probe(Scheme::Https, "/healthz", &[]), SECOND).await
    else {
        panic!("HTTPS to an HTTP port fails");
    };
    assert!(
        message.starts_with(&format!("Get \"https://{}/healthz\": ", server.addr)),
        "{message}"
    );
    assert!(
        server
            .seen
            .lock()
            .iter()
            .all(|s| !s.line.starts_with("GET"))
    );
}

#[tokio::test]
async fn http_headers_and_the_host_override() {
    for tls in [false, true] {
        let server = Server::start(tls).await;
        let scheme = if tls { Scheme::Https } else { Scheme::Http };
        // Without the override the virtual host answers 404.
        assert_eq!(
            http_get(&server.probe(scheme, "/vhost", &[]), SECOND).await,
            Outcome::Failure("HTTP probe failed with statuscode: 404".to_owned())
        );
        let headers = [
            ("Host", "example.test"),
            ("X-Probe", "one"),
            ("x-probe", "two"),
            ("Authorization", "Bearer t0ken"),
        ];
        assert_eq!(
            http_get(&server.probe(scheme, "/vhost", &headers), SECOND).await,
            Outcome::Success,
            "tls: {tls}"
        );
        let seen = server.last();
        assert_eq!(seen.all("host"), ["example.test"]);
        assert_eq!(seen.all("x-probe"), ["one", "two"]);
        assert_eq!(seen.all("authorization"), ["Bearer t0ken"]);
        assert_eq!(seen.all("user-agent"), ["kube-probe/1.33"]);
        assert_eq!(seen.all("accept"), ["*/*"]);
    }
}

#[tokio::test]
async fn user_agent_and_accept_overrides() {
    let server = Server::start(false).await;
    let run = |headers: &'static [(&'static str, &'static str)]| {
        let probe = server.probe(Scheme::Http, "/healthz", headers);
        async move { http_get(&probe, SECOND).await }
    };
    assert_eq!(
        run(&[("User-Agent", "custom/1"), ("Accept", "application/json")]).await,
        Outcome::Success
    );
    let seen = server.last();
    assert_eq!(seen.all("user-agent"), ["custom/1"]);
    assert_eq!(seen.all("accept"), ["application/json"]);
    // An empty Accept removes it; an empty User-Agent sends none; an empty Host keeps the
    // address.
    assert_eq!(
        run(&[("Accept", ""), ("User-Agent", ""), ("Host", "")]).await,
        Outcome::Success
    );
    let seen = server.last();
    assert!(seen.all("accept").is_empty(), "{seen:?}");
    assert!(seen.all("user-agent").is_empty(), "{seen:?}");
    assert_eq!(seen.all("host"), [server.addr.to_string()]);
    // A header the request cannot carry makes the probe error, not fail.
    assert!(matches!(
        run(&[("Bad Name", "x")]).await,
        Outcome::Errored(_)
    ));
}

#[tokio::test]
async fn a_host_name_is_resolved() {
    let server = Server::start(true).await;
    let probe = HttpGet {
        host: "localhost".to_owned(),
        ..server.probe(Scheme::Https, "/healthz", &[])
    };
    assert_eq!(
        probe.url(),
        format!("https://localhost:{}/healthz", server.addr.port())
    );
    assert_eq!(http_get(&probe, SECOND * 5).await, Outcome::Success);
    assert_eq!(
        server.last().all("host"),
        [format!("localhost:{}", server.addr.port())]
    );
}

#[test]
fn urls_and_schemes() {
    assert_eq!(Scheme::parse(Some("HTTPS")), Scheme::Https);
    assert_eq!(Scheme::parse(Some("https")), Scheme::Https);
    assert_eq!(Scheme::parse(Some("HTTP")), Scheme::Http);
    assert_eq!(Scheme::parse(None), Scheme::Http);
    let probe = HttpGet {
        scheme: Scheme::Https,
        host: "fd00::5".to_owned(),
        port: 8443,
        path: String::new(),
        headers: Vec::new(),
    };
    assert_eq!(probe.url(), "https://[fd00::5]:8443/");
}
