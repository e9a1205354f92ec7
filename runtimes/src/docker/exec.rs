//! Exec and attach on Docker: exec instances (`create_exec` / `start_exec` attached, exit
//! code from `inspect_exec`) and the attach endpoint, both demultiplexed into an
//! [`ExecSession`].
//!
//! Docker multiplexes stdout and stderr on the hijacked connection (8-byte frame headers)
//! unless there is a terminal, in which case it sends raw bytes; bollard decodes both. One
//! pump task per session copies the decoded frames into bounded pipes, so a slow reader
//! slows the process down rather than growing a buffer.
//!
//! **Terminal size.** A Docker exec's terminal starts at 0×0 unless it is created with a
//! size, and the size is only known once the client sends it on the session's resize
//! channel — which the kubelet does right after `exec` returns. So an exec with a terminal
//! is created and started by a task that first waits (up to [`FIRST_SIZE_WAIT`]) for that
//! size: the exec is created with it as `ConsoleSize` (daemons with API 1.42 and later start
//! the process at that size), and the same size is sent as a resize together with the start
//! (older daemons hold it until the process runs and apply it at once). Later sizes are
//! applied in order while the command runs.

use std::pin::Pin;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{CreateExecOptions, ResizeExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::{AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::DockerRuntime;
use super::client::{is_not_found, message_of, status_of};
use crate::lifecycle::{container_not_found, require_running};
use crate::streaming::{
    AttachSpec, ExecSession, ExecSpec, PIPE_BUFFER, TerminalSize, output_pipe, stdin_pipe,
};
use crate::{Error, Result};

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, BollardError>> + Send>>;

/// Longest pause between two polls of an exec instance that has closed its output but not
/// yet been reaped.
const MAX_POLL: Duration = Duration::from_millis(500);

/// How long an exec with a terminal waits for the client's first size before it starts
/// anyway (at 0×0, resized when a size comes).
pub const FIRST_SIZE_WAIT: Duration = Duration::from_millis(300);

/// Which streams the caller asked for, after applying the terminal rules.
#[derive(Clone, Copy)]
struct Wanted {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

pub(super) async fn exec(rt: &DockerRuntime, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
    if spec.command.is_empty() {
        return Err(Error::InvalidSpec {
            container: id.to_owned(),
            reason: "exec needs a command".to_owned(),
        });
    }
    let docker = rt.client().await?;
    let (_, status) = rt.inspect_container(&docker, id).await?;
    require_running(id, &status.state, "exec")?;
    let wanted = Wanted {
        stdin: spec.stdin,
        stdout: spec.stdout,
        stderr: spec.stderr && !spec.tty,
        tty: spec.tty,
    };
    if wanted.tty {
        return Ok(exec_with_terminal(rt.clone(), docker, id, spec, wanted));
    }
    let config = CreateExecOptions::<String> {
        attach_stdin: Some(wanted.stdin),
        attach_stdout: Some(wanted.stdout),
        attach_stderr: Some(wanted.stderr),
        tty: Some(wanted.tty),
        cmd: Some(spec.command.clone()),
        ..CreateExecOptions::default()
    };
    let created = docker
        .create_exec(id, config)
        .await
        .map_err(|e| refused(rt, id, "exec", e))?;
    let options = StartExecOptions {
        detach: false,
        tty: wanted.tty,
        output_capacity: None,
    };
    let started = docker
        .start_exec(&created.id, Some(options))
        .await
        .map_err(|e| refused(rt, id, "exec", e))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(Error::Container {
            id: id.to_owned(),
            operation: "exec",
            message: "dockerd started the exec detached".to_owned(),
        });
    };
    tracing::debug!(container = id, exec = %created.id, command = ?spec.command, "docker exec started");
    let (mut session, pump) = splice(output, input, wanted);
    let exec_id = created.id;
    let connection_error = {
        let rt = rt.clone();
        move |e| rt.inner.connection.error("inspect exec", e)
    };
    session.exit = Box::pin(async move {
        // The output ends when the command (and everything holding its stdout) is gone;
        // Docker records the exit code a moment later.
        let _ = pump.await;
        exec_exit_code(&docker, &exec_id)
            .await
            .map_err(connection_error)
    });
    Ok(session)
}

/// An exec with a terminal: the session now, the exec created and started by a task once
/// the client's first terminal size is known (see the module docs).
fn exec_with_terminal(
    rt: DockerRuntime,
    docker: Docker,
    id: &str,
    spec: &ExecSpec,
    wanted: Wanted,
) -> ExecSession {
    let (resize, mut sizes) = mpsc::channel::<TerminalSize>(16);
    let mut session = ExecSession::new(async { Ok(0) });
    session.resize = Some(resize);
    let stdin = wanted.stdin.then(|| {
        let (writer, reader) = tokio::io::duplex(PIPE_BUFFER);
        session.stdin = Some(Box::pin(writer));
        reader
    });
    let stdout = wanted.stdout.then(|| {
        let (writer, reader) = output_pipe();
        session.stdout = Some(reader);
        writer
    });
    let id = id.to_owned();
    let command = spec.command.clone();
    let task = tokio::spawn(async move {
        let first = tokio::time::timeout(FIRST_SIZE_WAIT, sizes.recv())
            .await
            .ok()
            .flatten()
            .filter(|size| size.width > 0 && size.height > 0);
        let config = ExecConfig {
            attach_stdin: Some(wanted.stdin),
            attach_stdout: Some(wanted.stdout),
            attach_stderr: Some(false),
            tty: Some(true),
            cmd: Some(command.clone()),
            console_size: first.map(|s| vec![usize::from(s.height), usize::from(s.width)]),
            ..ExecConfig::default()
        };
        let created = docker
            .create_exec(&id, config)
            .await
            .map_err(|e| refused(&rt, &id, "exec", e))?;
        let exec_id = created.id;
        // Sent alongside the start: dockerd holds it until the process runs.
        let early =
            first.map(|size| tokio::spawn(resize_exec(docker.clone(), exec_id.clone(), size)));
        let options = StartExecOptions {
            detach: false,
            tty: true,
            output_capacity: None,
        };
        let started = docker
            .start_exec(&exec_id, Some(options))
            .await
            .map_err(|e| refused(&rt, &id, "exec", e));
        let (output, input) = match started {
            Ok(StartExecResults::Attached { output, input }) => (output, input),
            Ok(StartExecResults::Detached) => {
                return Err(Error::Container {
                    id: id.clone(),
                    operation: "exec",
                    message: "dockerd started the exec detached".to_owned(),
                });
            }
            Err(error) => {
                if let Some(early) = early {
                    early.abort();
                }
                return Err(error);
            }
        };
        tracing::debug!(container = %id, exec = %exec_id, ?command, ?first, "docker exec with a terminal started");
        if let Some(stdin) = stdin {
            tokio::spawn(feed(stdin, input));
        }
        let resizes = tokio::spawn({
            let docker = docker.clone();
            let exec_id = exec_id.clone();
            async move {
                if let Some(early) = early {
                    let _ = early.await;
                }
                while let Some(size) = sizes.recv().await {
                    resize_exec(docker.clone(), exec_id.clone(), size).await;
                }
            }
        });
        pump(output, stdout, None, true).await;
        resizes.abort();
        exec_exit_code(&docker, &exec_id)
            .await
            .map_err(|e| rt.inner.connection.error("inspect exec", e))
    });
    session.exit = Box::pin(async move {
        match task.await {
            Ok(result) => result,
            Err(error) => Err(Error::internal("docker exec", error)),
        }
    });
    session
}

/// Apply one terminal size to an exec; failures are logged (as the kubelet does).
async fn resize_exec(docker: Docker, exec_id: String, size: TerminalSize) {
    let options = ResizeExecOptions {
        width: size.width,
        height: size.height,
    };
    if let Err(error) = docker.resize_exec(&exec_id, options).await {
        tracing::debug!(%error, ?size, exec = %exec_id, "cannot resize the exec's terminal");
    }
}

/// Copy the caller's stdin into the exec; end-of-file closes the exec's stdin.
async fn feed(mut from: impl AsyncRead + Unpin, mut to: Pin<Box<dyn AsyncWrite + Send>>) {
    if let Err(error) = tokio::io::copy(&mut from, &mut to).await {
        tracing::debug!(%error, "exec stdin closed early");
    }
    let _ = to.shutdown().await;
}

pub(super) async fn attach(rt: &DockerRuntime, id: &str, spec: &AttachSpec) -> Result<ExecSession> {
    let docker = rt.client().await?;
    let (inspect, status) = rt.inspect_container(&docker, id).await?;
    require_running(id, &status.state, "attach")?;
    let config = inspect.config.unwrap_or_default();
    let tty = config.tty.unwrap_or(false);
    let open_stdin = config.open_stdin.unwrap_or(false);
    if spec.stdin && !open_stdin {
        tracing::debug!(
            container = id,
            "attach asked for stdin but the container's stdin is closed"
        );
    }
    let wanted = Wanted {
        stdin: spec.stdin && open_stdin,
        stdout: spec.stdout,
        stderr: spec.stderr && !tty,
        tty,
    };
    let options = AttachContainerOptionsBuilder::default()
        .stream(true)
        .logs(false)
        .stdin(wanted.stdin)
        .stdout(wanted.stdout)
        // With a terminal Docker sends one raw stream; ask for it if either was wanted.
        .stderr(spec.stderr)
        .build();
    let attached = docker
        .attach_container(id, Some(options))
        .await
        .map_err(|e| refused(rt, id, "attach", e))?;
    tracing::debug!(container = id, ?spec, tty, "docker attach");
    let (mut session, pump) = splice(attached.output, attached.input, wanted);
    if tty {
        let docker = docker.clone();
        let id = id.to_owned();
        session.resize = Some(resizer(move |size| {
            let docker = docker.clone();
            let id = id.clone();
            async move {
                let options = ResizeContainerTTYOptionsBuilder::default()
                    .w(i32::from(size.width))
                    .h(i32::from(size.height))
                    .build();
                docker.resize_container_tty(&id, options).await
            }
        }));
    }
    let rt = rt.clone();
    let id = id.to_owned();
    session.exit = Box::pin(async move {
        let _ = pump.await;
        let status = crate::Runtime::wait_container(&rt, &id).await?;
        status
            .state
            .exit_info()
            .map(|exit| exit.exit_code)
            .ok_or_else(|| Error::Container {
                id: id.clone(),
                operation: "attach",
                message: format!(
                    "container ended {} without an exit code",
                    status.state.name()
                ),
            })
    });
    Ok(session)
}

/// The session's streams over Docker's hijacked connection, and the task pumping its output.
fn splice(
    output: Output,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    wanted: Wanted,
) -> (ExecSession, JoinHandle<()>) {
    let mut session = ExecSession::new(async { Ok(0) });
    // Unwanted input is simply never written: dropping one half of the connection closes
    // nothing while the output half is read.
    if wanted.stdin {
        session.stdin = Some(stdin_pipe(input));
    }
    let stdout = wanted.stdout.then(|| {
        let (writer, reader) = output_pipe();
        session.stdout = Some(reader);
        writer
    });
    let stderr = wanted.stderr.then(|| {
        let (writer, reader) = output_pipe();
        session.stderr = Some(reader);
        writer
    });
    let pump = tokio::spawn(pump(output, stdout, stderr, wanted.tty));
    (session, pump)
}

/// Copy Docker's decoded frames into the pipes until the connection ends.
async fn pump(
    mut output: Output,
    mut stdout: Option<DuplexStream>,
    mut stderr: Option<DuplexStream>,
    tty: bool,
) {
    while let Some(frame) = output.next().await {
        let (slot, bytes) = match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                (&mut stdout, message)
            }
            Ok(LogOutput::StdErr { message }) if tty => (&mut stdout, message),
            Ok(LogOutput::StdErr { message }) => (&mut stderr, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(error) => {
                tracing::debug!(%error, "docker exec stream ended with an error");
                break;
            }
        };
        if let Some(pipe) = slot
            && pipe.write_all(&bytes).await.is_err()
        {
            // The caller dropped this stream: keep serving the other one.
            *slot = None;
        }
    }
}

/// Poll `inspect_exec` until Docker has recorded the command's exit code.
async fn exec_exit_code(docker: &Docker, exec_id: &str) -> Result<i32, BollardError> {
    let mut pause = Duration::from_millis(20);
    loop {
        let inspect = docker.inspect_exec(exec_id).await?;
        if inspect.running != Some(true)
            && let Some(code) = inspect.exit_code
        {
            return Ok(i32::try_from(code).unwrap_or(i32::MAX));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// A resize channel whose sizes are applied in order by `apply`; failures are logged.
fn resizer<F, Fut>(apply: F) -> mpsc::Sender<TerminalSize>
where
    F: Fn(TerminalSize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), BollardError>> + Send,
{
    let (sender, mut sizes) = mpsc::channel::<TerminalSize>(16);
    tokio::spawn(async move {
        while let Some(size) = sizes.recv().await {
            if let Err(error) = apply(size).await {
                tracing::debug!(%error, ?size, "cannot resize the terminal");
            }
        }
    });
    sender
}

/// The error for a refused exec or attach request.
fn refused(rt: &DockerRuntime, id: &str, operation: &'static str, error: BollardError) -> Error {
    match status_of(&error) {
        _ if is_not_found(&error) => container_not_found(id),
        // "Container <id> is not running" / "is paused" / "is restarting": it changed
        // since the inspect.
        Some(409) => Error::ContainerNotRunning {
            id: id.to_owned(),
            state: "paused, restarting or stopped",
            operation,
        },
        Some(_) => Error::Container {
            id: id.to_owned(),
            operation,
            message: message_of(&error),
        },
        None => rt.inner.connection.error(operation, error),
    }
}
