//! Liveness, readiness and startup probes: one task per probe of a running container, which
//! records what the kubelet records for each run and reports result changes to the pod worker
//! ([`Message::Probe`]).
//!
//! The handlers are in [`http_get`] (status 200–399 passes; `scheme: HTTPS` without certificate
//! verification; `httpHeaders`, a `Host` header overriding the Host) and [`checks`]: `tcpSocket` and `grpc`
//! (`grpc.health.v1.Health/Check`, `SERVING` passes) connect to the pod IP, which the node
//! reaches through the bridge (or the node IP for host-network pods); `exec` runs the command
//! through the runtime's exec (exit code 0 passes). Liveness and readiness wait until the
//! startup probe (if any) has passed.
//!
//! As in the kubelet, every failed run records an `Unhealthy` event (`Liveness probe failed:
//! ...`), aggregated by the recorder, and a probe that cannot run at all — an `exec` probe on a
//! wasm container, whose runtime has no exec — records `... probe errored and resulted in
//! unknown state: ...` and its result is thrown away: such a readiness probe keeps the
//! container unready, such a liveness probe never restarts it.
//!
//! [`Tracker`] is the pure threshold logic (`successThreshold`/`failureThreshold`).

pub mod checks;
pub mod http_get;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtimes::Runtime;
use tokio::sync::{mpsc, watch};

use super::events::{EventType, Recorder};
use super::worker::Message;
use checks::Outcome;

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

/// What the probes of one container run look at.
#[derive(Clone)]
pub struct ProbeTarget {
    /// The pod (for events).
    pub pod: Arc<Pod>,
    /// The container spec with the probes.
    pub container: Container,
    /// Runtime id of the run.
    pub id: String,
    /// The pod IP (or the node IP for host-network pods).
    pub ip: IpAddr,
    /// The runtime running the container (exec probes); `None` if it is gone.
    pub runtime: Option<Arc<dyn Runtime>>,
    /// Where `Unhealthy` events go.
    pub recorder: Recorder,
}

/// The probe tasks of one container run.
#[derive(Debug)]
pub struct ProbeSet {
    started: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ProbeSet {
    /// Spawn the probes of `target`'s container; results go to `tx`.
    pub fn spawn(target: ProbeTarget, tx: mpsc::UnboundedSender<Message>) -> ProbeSet {
        let container = &target.container;
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
                target: target.clone(),
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
    target: ProbeTarget,
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
        tokio::time::sleep(initial).await;
        let mut tracker = Tracker::new(&self.probe);
        let name = self.target.container.name.clone();
        loop {
            // Each check honours the timeout itself; this only guards against a stuck one.
            let outcome = tokio::time::timeout(timeout * 2, self.check(timeout))
                .await
                .unwrap_or_else(|_| {
                    Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs()))
                });
            let ok = match outcome {
                Outcome::Success => Some(true),
                Outcome::Failure(message) => {
                    tracing::debug!(kind = self.kind.as_str(), container = %name, %message, "probe failed");
                    self.event(format!("{} probe failed: {message}", self.kind.as_str()));
                    Some(false)
                }
                Outcome::Errored(error) => {
                    tracing::debug!(kind = self.kind.as_str(), container = %name, %error, "probe errored");
                    self.event(format!(
                        "{} probe errored and resulted in unknown state: {error}",
                        self.kind.as_str()
                    ));
                    None
                }
            };
            if let Some(result) = ok.and_then(|ok| tracker.observe(ok)) {
                let sent = self.tx.send(Message::Probe {
                    name: name.clone(),
                    id: self.target.id.clone(),
                    kind: self.kind,
                    success: result,
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

    fn event(&self, message: String) {
        self.target.recorder.pod_event(
            &self.target.pod,
            Some(&self.target.container.name),
            EventType::Warning,
            "Unhealthy",
            message,
        );
    }

    fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
            IntOrString::String(name) => self
                .target
                .container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("unknown port name {name:?}")),
        }
    }

    async fn check(&self, timeout: Duration) -> Outcome {
        match self.try_check(timeout).await {
            Ok(outcome) => outcome,
            Err(message) => Outcome::Errored(message),
        }
    }

    async fn try_check(&self, timeout: Duration) -> Result<Outcome, String> {
        let ip = self.target.ip;
        if let Some(http) = &self.probe.http_get {
            let request = http_get::HttpGet {
                scheme: http_get::Scheme::parse(http.scheme.as_deref()),
                host: match http.host.as_deref() {
                    Some(h) if !h.is_empty() => h.to_owned(),
                    _ => ip.to_string(),
                },
                port: self.port(&http.port)?,
                path: http.path.clone().unwrap_or_default(),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            };
            return Ok(http_get::http_get(&request, timeout).await);
        }
        if let Some(tcp) = &self.probe.tcp_socket {
            let port = self.port(&tcp.port)?;
            return Ok(checks::tcp_socket(SocketAddr::new(ip, port), timeout).await);
        }
        if let Some(exec) = &self.probe.exec {
            let runtime = self
                .target
                .runtime
                .as_ref()
                .ok_or_else(|| "the container's runtime is not available".to_owned())?;
            let command = exec.command.clone().unwrap_or_default();
            return Ok(checks::exec(runtime.as_ref(), &self.target.id, &command, timeout).await);
        }
        if let Some(grpc) = &self.probe.grpc {
            let port =
                u16::try_from(grpc.port).map_err(|_| format!("invalid port {}", grpc.port))?;
            let service = grpc.service.as_deref().unwrap_or_default();
            return Ok(checks::grpc(SocketAddr::new(ip, port), service, timeout).await);
        }
        Err("probe has no handler".to_owned())
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
}
