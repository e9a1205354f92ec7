//! The connection to dockerd, and how Docker's errors become [`crate::Error`]s.
//!
//! The connection is made lazily: a node starts whether or not dockerd runs, and the first
//! operation after dockerd appears connects and negotiates the API version (Debian's dockerd
//! speaks 1.41, bollard defaults to a newer one). A daemon that cannot be reached yields an
//! error whose source chain holds [`DockerError::Unavailable`], recognisable with
//! [`is_daemon_unavailable`], so the kubelet can report OCI pods as waiting for Docker while
//! wasm pods run on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;

use crate::Error;

/// Errors of the Docker backend that have no better home in [`crate::Error`]; they appear
/// as the `source` of an [`Error::Internal`] (or of an [`Error::ImagePull`]).
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// dockerd is not running or its socket is unreachable.
    #[error("Cannot connect to the Docker daemon at {endpoint}. Is the docker daemon running?")]
    Unavailable {
        /// `unix:///var/run/docker.sock`.
        endpoint: String,
        /// What the connection attempt reported.
        #[source]
        source: BollardError,
    },
    /// dockerd answered with an error.
    #[error("docker {operation}: {source}")]
    Api {
        /// What was being done (`create container`, `inspect image`, ...).
        operation: String,
        /// The daemon's answer.
        #[source]
        source: BollardError,
    },
    /// Reading or packing a local file for Docker failed.
    #[error("{operation} {}: {source}", path.display())]
    File {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// True if `error` (or anything in its source chain) says dockerd cannot be reached.
pub fn is_daemon_unavailable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(DockerError::Unavailable { .. }) = error.downcast_ref::<DockerError>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// True if dockerd answered 404 (no such container / image).
pub(crate) fn is_not_found(error: &BollardError) -> bool {
    status_of(error) == Some(404)
}

/// The HTTP status dockerd answered with, if it answered.
pub(crate) fn status_of(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The daemon's own message for an error, or the error's display.
pub(crate) fn message_of(error: &BollardError) -> String {
    match error {
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// Whether a bollard error means the daemon could not be reached at all.
fn is_connection_failure(error: &BollardError) -> bool {
    match error {
        BollardError::SocketNotFoundError(_) | BollardError::RequestTimeoutError => true,
        BollardError::HyperLegacyError { err } => err.is_connect(),
        BollardError::IOError { err } => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

/// A lazily connected, version-negotiated Docker client.
#[derive(Debug)]
pub(crate) struct Connection {
    socket: PathBuf,
    timeout: Duration,
    client: tokio::sync::Mutex<Option<Docker>>,
}

impl Connection {
    pub(crate) fn new(socket: &Path, timeout: Duration) -> Self {
        Connection {
            socket: socket.to_owned(),
            timeout,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// `unix:///var/run/docker.sock`.
    pub(crate) fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The client, connecting and negotiating the API version on first use.
    pub(crate) async fn client(&self) -> Result<Docker, Error> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let socket = self.socket.display().to_string();
        let client = Docker::connect_with_unix(
            &socket,
            self.timeout.as_secs().max(1),
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| self.unavailable(e))?;
        // Ask for the daemon's version with a short deadline so a hung daemon cannot stall
        // every caller queued on this lock.
        let negotiated = tokio::time::timeout(Duration::from_secs(10), client.negotiate_version())
            .await
            .map_err(|_| self.unavailable(BollardError::RequestTimeoutError))?
            .map_err(|e| self.error("negotiate API version", e))?;
        tracing::info!(
            endpoint = %self.endpoint(),
            api_version = %negotiated.client_version(),
            "connected to dockerd"
        );
        *slot = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// The error for an unreachable daemon.
    pub(crate) fn unavailable(&self, source: BollardError) -> Error {
        Error::internal(
            "docker",
            DockerError::Unavailable {
                endpoint: self.endpoint(),
                source,
            },
        )
    }

    /// Map a failed call: unreachable daemon, or an API error with what was being done.
    pub(crate) fn error(&self, operation: &str, source: BollardError) -> Error {
        if is_connection_failure(&source) {
            return self.unavailable(source);
        }
        Error::internal(
            "docker",
            DockerError::Api {
                operation: operation.to_owned(),
                source,
            },
        )
    }

    /// The source to put under an [`Error::ImagePull`] or similar.
    pub(crate) fn source(&self, operation: &str, source: BollardError) -> DockerError {
        if is_connection_failure(&source) {
            DockerError::Unavailable {
                endpoint: self.endpoint(),
                source,
            }
        } else {
            DockerError::Api {
                operation: operation.to_owned(),
                source,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_a_clear_unavailable_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("docker.sock");
        let connection = Connection::new(&socket, Duration::from_secs(5));
        let error = connection.client().await.expect_err("no daemon there");
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "Cannot connect to the Docker daemon at unix://{}",
                socket.display()
            )),
            "{text}"
        );
        assert!(is_daemon_unavailable(&error), "{error:?}");
    }

    #[tokio::test]
    async fn a_dead_socket_is_unavailable_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("docker.sock");
        // A socket file nobody listens on: connection refused.
        drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
        let connection = Connection::new(&socket, Duration::from_secs(5));
        let error = connection.client().await.expect_err("nobody listens");
        assert!(is_daemon_unavailable(&error), "{error:?}");
    }

    #[test]
    fn api_errors_are_not_unavailability() {
        let connection = Connection::new(Path::new("/run/docker.sock"), Duration::from_secs(1));
        let error = connection.error(
            "inspect container",
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "No such container: x".into(),
            },
        );
        assert!(!is_daemon_unavailable(&error));
        assert!(error.to_string().contains("inspect container"), "{error}");
        assert!(is_not_found(&BollardError::DockerResponseServerError {
            status_code: 404,
            message: String::new(),
        }));
    }
}
