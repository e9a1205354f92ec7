//! Liveness, readiness and startup probes: one task per probe of a running container, which
//! reports result changes to the pod worker ([`Message::Probe`]).
//!
//! `httpGet` (status 200–399 passes) and `tcpSocket` connect to the pod IP, which the node
//! reaches through the bridge (or the node IP for host-network pods). Liveness and readiness
//! wait until the startup probe (if any) has passed. `exec` and `grpc` need a runtime exec
//! call the runtime trait does not have yet: such probes are reported as passing, with a
//! warning, rather than restarting healthy containers.
//!
//! [`Tracker`] is the pure threshold logic (`successThreshold`/`failureThreshold`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::worker::Message;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Restarts the container on failure.
    Liveness,
    /// Drives the Ready condition.
    Readiness,
    /// Gates the other two.
    Startup,
}

impl ProbeKind {
    /// `Liveness`, `Readiness`, `Startup` (as in `Unhealthy` events).
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Threshold logic of one probe: turns raw results into reported transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// Last reported result (`None`: nothing reported yet).
    pub reported: Option<bool>,
}

impl Tracker {
    /// From the probe's thresholds (defaults 1 and 3).
    pub fn new(probe: &Probe) -> Self {
        Tracker {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            reported: None,
        }
    }

    /// Feed one raw result; returns the result to report if it changed.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_threshold && self.reported != Some(true) {
                self.reported = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_threshold && self.reported != Some(false) {
                self.reported = Some(false);
                // Liveness failures restart the container: count afresh afterwards.
                self.failures = 0;
                return Some(false);
            }
        }
        None
    }
}

/// The probe tasks of one container run.
#[derive(Debug)]
pub struct ProbeSet {
    started: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ProbeSet {
    /// Spawn the container's probes against run `id` at `ip`.
    pub fn spawn(
        container: &Container,
        id: &str,
        ip: IpAddr,
        _netns: Option<PathBuf>,
        tx: mpsc::UnboundedSender<Message>,
    ) -> ProbeSet {
        let (started, started_rx) = watch::channel(container.startup_probe.is_none());
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (ProbeKind::Startup, &container.startup_probe),
            (ProbeKind::Liveness, &container.liveness_probe),
            (ProbeKind::Readiness, &container.readiness_probe),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let ctx = ProbeTask {
                kind,
                probe,
                container: container.clone(),
                id: id.to_owned(),
                ip,
                tx: tx.clone(),
                started: started_rx.clone(),
            };
            tasks.push(tokio::spawn(ctx.run()));
        }
        ProbeSet { started, tasks }
    }

    /// The startup probe passed (or failed): liveness and readiness may run.
    pub fn set_started(&self, started: bool) {
        self.started.send_replace(started);
    }

    /// Stop every probe task.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

struct ProbeTask {
    kind: ProbeKind,
    probe: Probe,
    container: Container,
    id: String,
    ip: IpAddr,
    tx: mpsc::UnboundedSender<Message>,
    started: watch::Receiver<bool>,
}

impl ProbeTask {
    async fn run(mut self) {
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map(|s| s.max(0) as u64).unwrap_or(default))
        };
        let initial = secs(self.probe.initial_delay_seconds, 0);
        let period = secs(self.probe.period_seconds, 10).max(Duration::from_secs(1));
        let timeout = secs(self.probe.timeout_seconds, 1).max(Duration::from_secs(1));
        if self.kind != ProbeKind::Startup {
            while !*self.started.borrow_and_update() {
                if self.started.changed().await.is_err() {
                    return;
                }
            }
        }
        if self.probe.exec.is_some() || self.probe.grpc.is_some() {
            tracing::warn!(
                container = %self.container.name,
                kind = self.kind.as_str(),
                "exec and grpc probes are not supported yet; treated as passing"
            );
        }
        tokio::time::sleep(initial).await;
        let mut tracker = Tracker::new(&self.probe);
        loop {
            let (ok, message) = match tokio::time::timeout(timeout, self.check()).await {
                Ok(Ok(())) => (true, None),
                Ok(Err(message)) => (false, Some(message)),
                Err(_) => (false, Some(format!("timeout after {}s", timeout.as_secs()))),
            };
            if !ok {
                tracing::debug!(kind = self.kind.as_str(), container = %self.container.name, ?message, "probe failed");
            }
            if let Some(result) = tracker.observe(ok) {
                let sent = self.tx.send(Message::Probe {
                    name: self.container.name.clone(),
                    id: self.id.clone(),
                    kind: self.kind,
                    success: result,
                    message,
                });
                if sent.is_err() {
                    return;
                }
                if self.kind == ProbeKind::Startup && result {
                    return;
                }
            }
            tokio::time::sleep(period).await;
        }
    }

    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
            IntOrString::String(name) => self
                .container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("unknown port name {name:?}")),
        }
    }

    async fn check(&self) -> Result<(), String> {
        if let Some(http) = &self.probe.http_get {
            let port = self.port(&http.port)?;
            let host: IpAddr = match http.host.as_deref() {
                Some(h) if !h.is_empty() => h.parse().map_err(|_| format!("invalid host {h}"))?,
                _ => self.ip,
            };
            return http_get(
                SocketAddr::new(host, port),
                http.path.as_deref().unwrap_or("/"),
            )
            .await;
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let port = self.port(&tcp.port)?;
            let addr = SocketAddr::new(self.ip, port);
            return tokio::net::TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("dial tcp {addr}: {e}"));
        }
        if self.probe.exec.is_some() || self.probe.grpc.is_some() {
            // Warned about once in `run`.
            return Ok(());
        }
        Err("probe has no handler".to_owned())
    }
}

/// `GET path` over HTTP/1.1; a status of 200–399 passes.
async fn http_get(addr: SocketAddr, path: &str) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{addr}{path}\": dial tcp {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    let mut read = 0;
    while read < 12 {
        let n = stream
            .read(&mut buf[read..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        read += n;
    }
    let head = String::from_utf8_lossy(&buf[..read]);
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {addr}"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Probe::default()
        }
    }

    #[test]
    fn thresholds_gate_transitions() {
        let mut t = Tracker::new(&probe(1, 3));
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), Some(true));

        let mut t = Tracker::new(&probe(2, 1));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), Some(false));
        // A failure before any success is reported once the threshold is reached.
        let mut t = Tracker::new(&probe(1, 2));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
    }

    #[tokio::test]
    async fn http_and_tcp_checks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply = if req.starts_with("GET /healthz") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
                };
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        assert_eq!(http_get(addr, "/healthz").await, Ok(()));
        let err = http_get(addr, "/broken").await.expect_err("500");
        assert!(err.contains("500"), "{err}");
        let closed = SocketAddr::new(addr.ip(), 1);
        assert!(http_get(closed, "/").await.is_err());
    }
}
