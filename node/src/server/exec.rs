//! `/exec/{namespace}/{pod}[/{uid}]/{container}` and `/attach/...`: what the API server
//! splices `pods/exec` and `pods/attach` to.
//!
//! A request is checked completely before the upgrade — options, transport, the pod and
//! container in the kubelet's [`PodIndex`](crate::kubelet::PodIndex), and the runtime
//! actually starting the exec or attach — so every failure is a plain `Status` response
//! (which kubectl prints as `Error from server (...)`; a refused WebSocket upgrade also makes
//! it retry over SPDY). The exception is an exec with a terminal: it starts after the upgrade,
//! once the client's terminal size is known ([`Session::Deferred`]), and a runtime refusal is
//! then the `Status` on the error channel. Then the connection is upgraded to WebSocket
//! ([`super::websocket`], kubectl ≥ 1.30) or SPDY/3.1 ([`super::exec_spdy`]) and the
//! session is piped by [`super::remotecommand`].

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Path, State};
use axum::response::IntoResponse;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::sync::Arc;

use skiff_runtimes::{AttachSpec, ExecSession, ExecSpec, Runtime};

use super::remotecommand::{Operation, OptionsError, Outcome, Session, StreamOptions};
use super::{ServerState, exec_spdy, status, websocket};

/// Why an exec or attach request is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The path is not `{namespace}/{pod}[/{uid}]/{container}`.
    #[error("invalid path {0:?}: expected {{namespace}}/{{pod}}/{{container}}")]
    Path(String),
    /// The query asks for no stream.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// exec without a `command` parameter.
    #[error("you must specify a command to execute")]
    NoCommand,
    /// Neither a WebSocket nor a SPDY/3.1 upgrade.
    #[error(
        "unable to upgrade: missing upgrade headers in request (Upgrade: SPDY/3.1 or websocket)"
    )]
    NotUpgrade,
    /// No protocol both sides speak.
    #[error(
        "unable to upgrade: unable to negotiate protocol: client supports [{}], server supports [{}]",
        client.join(" "),
        server.join(" ")
    )]
    Negotiation {
        /// What the client offered.
        client: Vec<String>,
        /// What this server speaks.
        server: &'static [&'static str],
    },
    /// The pod does not run on this node.
    #[error("pod \"{pod}\" not found on this node")]
    PodNotFound {
        /// The pod name.
        pod: String,
    },
    /// The container is unknown here or not running (Kubernetes' message).
    #[error("container not found (\"{container}\")")]
    ContainerNotFound {
        /// The container name.
        container: String,
    },
    /// The container's runtime cannot exec or attach (wasm containers).
    #[error("{reason}")]
    NotSupported {
        /// The runtime's explanation.
        reason: String,
    },
    /// The runtime refused the request as invalid.
    #[error("{0}")]
    Invalid(String),
    /// The container's runtime is not registered here.
    #[error("container runtime {handler:?} is not registered on this node")]
    NoRuntime {
        /// The handler name.
        handler: String,
    },
    /// The runtime failed to start the session.
    #[error("{context}: {source}")]
    Runtime {
        /// `error executing command in container` / `error attaching to container`.
        context: &'static str,
        /// The runtime's error.
        #[source]
        source: skiff_runtimes::Error,
    },
}

impl ExecError {
    /// The HTTP status and `Status.reason`.
    pub fn code(&self) -> (StatusCode, &'static str) {
        match self {
            ExecError::Path(_) | ExecError::PodNotFound { .. } => {
                (StatusCode::NOT_FOUND, "NotFound")
            }
            ExecError::ContainerNotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            ExecError::Options(_)
            | ExecError::NoCommand
            | ExecError::NotUpgrade
            | ExecError::NotSupported { .. }
            | ExecError::Invalid(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ExecError::Negotiation { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ExecError::NoRuntime { .. } | ExecError::Runtime { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
            }
        }
    }

    /// The refusal of a session that starts after the upgrade, for the error channel.
    pub fn into_outcome(self) -> Outcome {
        let (code, reason) = self.code();
        Outcome::Refused {
            code: code.as_u16(),
            reason: reason.to_owned(),
            message: self.to_string(),
        }
    }

    /// The runtime's error for a session that did not start in `container`.
    fn from_runtime(error: skiff_runtimes::Error, container: &str, operation: &Operation) -> Self {
        use skiff_runtimes::Error as E;
        match error {
            E::OperationNotSupported { reason, .. } => ExecError::NotSupported { reason },
            E::ContainerNotFound { .. } | E::ContainerNotRunning { .. } => {
                ExecError::ContainerNotFound {
                    container: container.to_owned(),
                }
            }
            E::InvalidSpec { reason, .. } => ExecError::Invalid(reason),
            source => ExecError::Runtime {
                context: match operation {
                    Operation::Exec { .. } => "error executing command in container",
                    Operation::Attach => "error attaching to container",
                },
                source,
            },
        }
    }
}

impl IntoResponse for ExecError {
    fn into_response(self) -> axum::response::Response {
        let (code, reason) = self.code();
        status(code, reason, self.to_string())
    }
}

/// The pod and container a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Pod UID, when the path has one.
    pub uid: Option<String>,
    /// Container name.
    pub container: String,
}

impl Target {
    /// Parse the part after `/exec/` or `/attach/`.
    pub fn parse(rest: &str) -> Result<Target, ExecError> {
        let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
        let owned = |s: &str| s.to_owned();
        match parts.as_slice() {
            [namespace, pod, container] if ![*namespace, *pod, *container].contains(&"") => {
                Ok(Target {
                    namespace: owned(namespace),
                    pod: owned(pod),
                    uid: None,
                    container: owned(container),
                })
            }
            [namespace, pod, uid, container]
                if ![*namespace, *pod, *uid, *container].contains(&"") =>
            {
                Ok(Target {
                    namespace: owned(namespace),
                    pod: owned(pod),
                    uid: Some(owned(uid)),
                    container: owned(container),
                })
            }
            _ => Err(ExecError::Path(rest.to_owned())),
        }
    }
}

/// `/exec/...`.
pub async fn exec(
    State(state): State<ServerState>,
    Path(rest): Path<String>,
    req: Request<Body>,
) -> Response<Body> {
    serve(state, &rest, false, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `/attach/...`.
pub async fn attach(
    State(state): State<ServerState>,
    Path(rest): Path<String>,
    req: Request<Body>,
) -> Response<Body> {
    serve(state, &rest, true, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// How the client wants to talk.
enum Transport {
    WebSocket(WebSocketUpgrade, &'static str),
    Spdy(hyper::upgrade::OnUpgrade, &'static str),
}

async fn serve(
    state: ServerState,
    rest: &str,
    attach: bool,
    mut req: Request<Body>,
) -> Result<Response<Body>, ExecError> {
    let target = Target::parse(rest)?;
    let options = StreamOptions::from_query(req.uri().query().unwrap_or_default())?;
    let operation = if attach {
        Operation::Attach
    } else if options.command.is_empty() {
        return Err(ExecError::NoCommand);
    } else {
        Operation::Exec {
            command: options.command.clone(),
        }
    };
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let transport = if upgrade == "websocket" {
        let ws = match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.protocols(websocket::PROTOCOLS),
            // Not a valid handshake: answer as axum does (kubectl then falls back to SPDY).
            Err(rejection) => return Ok(rejection.into_response()),
        };
        let chosen = ws
            .selected_protocol()
            .and_then(|p| p.to_str().ok())
            .and_then(|p| websocket::PROTOCOLS.into_iter().find(|known| *known == p));
        let Some(protocol) = chosen else {
            return Err(ExecError::Negotiation {
                client: ws
                    .requested_protocols()
                    .filter_map(|p| p.to_str().ok().map(str::to_owned))
                    .collect(),
                server: &websocket::PROTOCOLS,
            });
        };
        Transport::WebSocket(ws, protocol)
    } else if upgrade.starts_with("spdy/3.1") {
        let offered: Vec<String> = req
            .headers()
            .get_all("x-stream-protocol-version")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .collect();
        let Some(protocol) = exec_spdy::negotiate(offered.iter().map(String::as_str)) else {
            return Err(ExecError::Negotiation {
                client: offered,
                server: &exec_spdy::PROTOCOLS,
            });
        };
        Transport::Spdy(hyper::upgrade::on(&mut req), protocol)
    } else {
        return Err(ExecError::NotUpgrade);
    };

    let (runtime, id) = locate(&state, &target)?;
    let session = if options.tty && matches!(operation, Operation::Exec { .. }) {
        let (options, operation, container) =
            (options.clone(), operation.clone(), target.container.clone());
        Session::Deferred(Box::pin(async move {
            start(runtime, &id, &container, &options, &operation)
                .await
                .map_err(ExecError::into_outcome)
        }))
    } else {
        Session::Started(start(runtime, &id, &target.container, &options, &operation).await?)
    };
    tracing::debug!(
        namespace = %target.namespace,
        pod = %target.pod,
        container = %target.container,
        ?operation,
        "exec/attach request accepted"
    );
    Ok(match transport {
        Transport::WebSocket(ws, protocol) => ws
            .on_upgrade(move |socket| websocket::serve(socket, session, operation, protocol))
            .into_response(),
        Transport::Spdy(on_upgrade, protocol) => {
            let expected = exec_spdy::Expected::from_options(&options);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        exec_spdy::serve(TokioIo::new(upgraded), session, operation, expected)
                            .await;
                    }
                    Err(error) => tracing::debug!(%error, "exec: SPDY upgrade failed"),
                }
            });
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = resp.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            headers.insert(
                "X-Stream-Protocol-Version",
                HeaderValue::from_static(protocol),
            );
            resp
        }
    })
}

/// The running container's runtime and id.
fn locate(state: &ServerState, target: &Target) -> Result<(Arc<dyn Runtime>, String), ExecError> {
    let pod_not_found = || ExecError::PodNotFound {
        pod: target.pod.clone(),
    };
    let entry = state
        .index
        .get(&target.namespace, &target.pod)
        .ok_or_else(pod_not_found)?;
    if target.uid.as_ref().is_some_and(|uid| *uid != entry.uid) {
        return Err(pod_not_found());
    }
    let container_not_found = || ExecError::ContainerNotFound {
        container: target.container.clone(),
    };
    let (handler, id, _, running) = entry
        .containers
        .get(&target.container)
        .ok_or_else(container_not_found)?;
    if !running {
        return Err(container_not_found());
    }
    let runtime = state
        .runtimes
        .get(handler)
        .map_err(|_| ExecError::NoRuntime {
            handler: handler.clone(),
        })?;
    Ok((runtime, id.clone()))
}

/// Start the exec or attach on the container's runtime.
async fn start(
    runtime: Arc<dyn Runtime>,
    id: &str,
    container: &str,
    options: &StreamOptions,
    operation: &Operation,
) -> Result<ExecSession, ExecError> {
    let started = match operation {
        Operation::Exec { command } => {
            let spec = ExecSpec {
                command: command.clone(),
                tty: options.tty,
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
            };
            runtime.exec(id, &spec).await
        }
        Operation::Attach => {
            let spec = AttachSpec {
                stdin: options.stdin,
                stdout: options.stdout,
                stderr: options.stderr,
                tty: options.tty,
            };
            runtime.attach(id, &spec).await
        }
    };
    started.map_err(|error| ExecError::from_runtime(error, container, operation))
}

/// In-process sessions over real sockets with the fake runtime.
#[cfg(test)]
mod sessions;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_uid() {
        assert_eq!(
            Target::parse("default/bb/app").expect("path"),
            Target {
                namespace: "default".into(),
                pod: "bb".into(),
                uid: None,
                container: "app".into()
            }
        );
        assert_eq!(
            Target::parse("ns/p/u-1/c").expect("path").uid.as_deref(),
            Some("u-1")
        );
        for bad in ["default/bb", "a/b/c/d/e", "default//app", ""] {
            assert!(Target::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn runtime_errors_map_to_kubernetes_statuses() {
        let exec = Operation::Exec {
            command: vec!["ls".into()],
        };
        let wasm = ExecError::from_runtime(
            skiff_runtimes::Error::OperationNotSupported {
                runtime: "wasmtime".into(),
                operation: "exec",
                reason: "exec is not supported for wasm containers".into(),
            },
            "app",
            &exec,
        );
        assert_eq!(wasm.code(), (StatusCode::BAD_REQUEST, "BadRequest"));
        assert_eq!(
            wasm.to_string(),
            "exec is not supported for wasm containers"
        );
        let stopped = ExecError::from_runtime(
            skiff_runtimes::Error::ContainerNotRunning {
                id: "c1".into(),
                state: "exited",
                operation: "exec",
            },
            "app",
            &exec,
        );
        assert_eq!(stopped.code(), (StatusCode::NOT_FOUND, "NotFound"));
        assert_eq!(stopped.to_string(), "container not found (\"app\")");
        let broken = ExecError::from_runtime(
            skiff_runtimes::Error::Container {
                id: "c1".into(),
                operation: "attach",
                message: "dockerd said no".into(),
            },
            "app",
            &Operation::Attach,
        );
        assert_eq!(
            broken.code(),
            (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
        );
        assert!(
            broken
                .to_string()
                .starts_with("error attaching to container: ")
        );
        let negotiation = ExecError::Negotiation {
            client: vec!["channel.k8s.io".into()],
            server: &exec_spdy::PROTOCOLS,
        };
        assert_eq!(
            negotiation.to_string(),
            "unable to upgrade: unable to negotiate protocol: client supports [channel.k8s.io], \
             server supports [v4.channel.k8s.io v5.channel.k8s.io]"
        );
        assert_eq!(negotiation.code().0, StatusCode::FORBIDDEN);
    }
}
