//! The controller manager's error type, shared by every controller: each
//! variant carries what was being done and to which object.

use kube::runtime::controller::Action;
use std::time::Duration;

/// Failures of a controller's reconcile or of the manager itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done, e.g. `creating pod for replicaset default/web`.
        context: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object's label selector could not be parsed.
    #[error("invalid selector on {object}: {source}")]
    Selector {
        /// `kind namespace/name` of the object.
        object: String,
        /// The parse error.
        #[source]
        source: kube::core::ParseExpressionError,
    },
    /// An object's spec cannot be acted on (Kubernetes' validation would
    /// normally have rejected it).
    #[error("invalid spec of {object}: {message}")]
    InvalidSpec {
        /// `kind namespace/name` of the object.
        object: String,
        /// What is wrong.
        message: String,
    },
    /// An object could not be converted between JSON and its typed form.
    #[error("{context}: {source}")]
    Json {
        /// What was being converted.
        context: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The leader-election Lease was lost; the manager stops, as
    /// kube-controller-manager exits.
    #[error("leader election lost: {0}")]
    LeaderElectionLost(String),
}

impl Error {
    /// What Kubernetes would show for this error in a status condition: the
    /// API server's message for failed calls (without our context), the
    /// whole error otherwise.
    pub fn user_message(&self) -> String {
        match self {
            Error::Kube { source, .. } => api_message(source),
            other => other.to_string(),
        }
    }

    /// True for HTTP 409 Conflict (stale resourceVersion), which a quick
    /// retry fixes.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube { source, .. } if is_status(source, 409))
    }
}

/// True if `err` is an API `Status` with this HTTP code.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == code)
}

/// True for 404 NotFound.
pub fn is_not_found(err: &kube::Error) -> bool {
    is_status(err, 404)
}

/// True for 409 AlreadyExists / Conflict.
pub fn is_conflict(err: &kube::Error) -> bool {
    is_status(err, 409)
}

/// Kubernetes refuses creates in a terminating namespace with a 403 whose
/// cause is `NamespaceTerminating`; controllers then simply stop.
pub fn is_namespace_terminating(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => {
            status.code == 403
                && (status.message.contains("being terminated")
                    || status.details.as_ref().is_some_and(|d| {
                        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
                    }))
        }
        _ => false,
    }
}

/// The message of an API error as Kubernetes prints it (`pods "web-x1" is
/// forbidden: exceeded quota: ...`): the `Status` message for API errors,
/// the error itself otherwise. For events, where client-go prints `err`.
pub fn api_message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Attaches context to a `kube::Error`.
pub trait KubeResultExt<T> {
    /// Wraps the error with `context()` (computed only on failure).
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T, Error>;
}

impl<T> KubeResultExt<T> for Result<T, kube::Error> {
    fn ctx<F: FnOnce() -> String>(self, context: F) -> Result<T, Error> {
        self.map_err(|source| Error::Kube {
            context: context(),
            source,
        })
    }
}

/// The shared error policy: conflicts retry quickly, anything else after a
/// short pause (kube-runtime then waits for the next change or this timer).
pub fn requeue_on_error(err: &Error) -> Action {
    if err.is_conflict() {
        Action::requeue(Duration::from_millis(100))
    } else {
        Action::requeue(Duration::from_secs(2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure("x", "Conflict").with_code(code)))
    }

    #[test]
    fn conflicts_are_detected_and_retried_fast() {
        let err = Error::Kube {
            context: "updating".into(),
            source: api_error(409),
        };
        assert!(err.is_conflict());
        assert_eq!(
            requeue_on_error(&err),
            Action::requeue(Duration::from_millis(100))
        );
        let other = Error::Kube {
            context: "updating".into(),
            source: api_error(500),
        };
        assert!(!other.is_conflict());
        assert_eq!(
            requeue_on_error(&other),
            Action::requeue(Duration::from_secs(2))
        );
        assert!(is_not_found(&api_error(404)));
    }

    #[test]
    fn api_messages_are_the_status_message() {
        let refused = kube::Error::Api(Box::new(
            Status::failure(
                "pods \"web-x1\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2",
                "Forbidden",
            )
            .with_code(403),
        ));
        assert_eq!(
            api_message(&refused),
            "pods \"web-x1\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert!(!is_namespace_terminating(&refused));
        let terminating = kube::Error::Api(Box::new(
            Status::failure(
                "pods \"p\" is forbidden: unable to create new content in namespace x because it is being terminated",
                "Forbidden",
            )
            .with_code(403),
        ));
        assert!(is_namespace_terminating(&terminating));
        let wrapped = Error::Kube {
            context: "creating pods for replicaset default/web".into(),
            source: refused,
        };
        assert!(
            wrapped
                .user_message()
                .starts_with("pods \"web-x1\" is forbidden")
        );
        assert!(
            wrapped
                .to_string()
                .starts_with("creating pods for replicaset")
        );
        let other = kube::Error::LinesCodecMaxLineLengthExceeded;
        assert_eq!(api_message(&other), other.to_string());
    }
}
