//! One run of the `tcpSocket`, `exec` and `grpc` probe handlers (`httpGet` is in
//! [`http_get`](super::http_get)), with the results and messages the kubelet reports
//! (`pkg/probe/{tcp,exec,grpc}` in Kubernetes).
//!
//! Every check honours `timeoutSeconds` itself, so a timeout reads as it does in Kubernetes
//! (`command "..." timed out`, `timeout: health rpc did not complete within 1s`, ...). A check
//! that cannot run at all (the runtime has no exec, the container is gone) is
//! [`Outcome::Errored`]: the kubelet records it and throws the result away.

use std::net::SocketAddr;
use std::time::Duration;

use skiff_runtimes::{ExecSession, ExecSpec, Runtime};
use tokio::io::{AsyncRead, AsyncReadExt};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How much output of an exec probe is kept (the kubelet's `maxReadLength`).
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// The user agent of HTTP and gRPC probes.
pub(super) const USER_AGENT: &str = "kube-probe/1.33";

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe failed; the message goes into the `Unhealthy` event.
    Failure(String),
    /// The probe could not be run; its result is discarded (as the kubelet does).
    Errored(String),
}

/// Go's `time.Duration` formatting for whole and fractional seconds (`1s`, `1.5s`, `500ms`).
fn go_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A TCP connect to `addr`.
pub async fn tcp_socket(addr: SocketAddr, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Run `command` in container `id` through the runtime's exec: exit code 0 passes, any
/// other fails with the command's output (stdout then stderr, at most
/// [`MAX_EXEC_OUTPUT`] bytes).
pub async fn exec(
    runtime: &dyn Runtime,
    id: &str,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    if command.is_empty() {
        return Outcome::Errored("exec probe has no command".to_owned());
    }
    let run = async {
        let ExecSession {
            stdin,
            stdout,
            stderr,
            exit,
            ..
        } = runtime
            .exec(id, &ExecSpec::new(command.iter().cloned()))
            .await?;
        drop(stdin);
        let (out, err) = tokio::join!(read_capped(stdout), read_capped(stderr));
        let code = exit.await?;
        let mut output = out;
        output.extend(err);
        output.truncate(MAX_EXEC_OUTPUT);
        Ok::<_, skiff_runtimes::Error>((code, output))
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok((0, _))) => Outcome::Success,
        Ok(Ok((_, output))) => Outcome::Failure(String::from_utf8_lossy(&output).into_owned()),
        Ok(Err(error)) => Outcome::Errored(error.to_string()),
        Err(_) => Outcome::Failure(format!("command {:?} timed out", command.join(" "))),
    }
}

/// Read a stream to its end, keeping at most [`MAX_EXEC_OUTPUT`] bytes (the rest is
/// drained so the process is never blocked on a full pipe).
async fn read_capped(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// `grpc.health.v1.Health/Check` for `service` at `addr` over plain-text HTTP/2; `SERVING`
/// passes.
pub async fn grpc(addr: SocketAddr, service: &str, timeout: Duration) -> Outcome {
    let within = go_duration(timeout);
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent(USER_AGENT))
    {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(error) => return Outcome::Errored(format!("invalid gRPC address {addr}: {error}")),
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at \"{addr}\": {}",
                error_chain(&error)
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service \"{addr}\" within {within}: context deadline exceeded"
            ));
        }
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: service.to_owned(),
    };
    let response = match tokio::time::timeout_at(deadline, client.check(request)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            return Outcome::Failure(match status.code() {
                tonic::Code::Unimplemented => format!(
                    "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                    status.message()
                ),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    format!("timeout: health rpc did not complete within {within}")
                }
                code => format!(
                    "error: health rpc probe failed: rpc error: code = {code:?} desc = {}",
                    status.message()
                ),
            });
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: health rpc did not complete within {within}"
            ));
        }
    };
    match ServingStatus::try_from(response.status) {
        Ok(ServingStatus::Serving) => Outcome::Success,
        Ok(other) => Outcome::Failure(format!(
            "service unhealthy (responded with \"{}\")",
            other.as_str_name()
        )),
        Err(_) => Outcome::Failure(format!(
            "service unhealthy (responded with \"{}\")",
            response.status
        )),
    }
}

/// An error with its sources, `a: b: c`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let more = inner.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests;
