//! Exec and attach for the fake backend — the smallest complete implementation of the
//! streaming half of the trait.
//!
//! - **exec** forks the command the way `start_container` forks the container: on the
//!   sandbox's threads (so it is inside the pod's network namespace), with the container's
//!   environment and working directory, and in the container's process group, so stopping
//!   the container (or its memory limit) takes exec'd processes down with it, as a cgroup
//!   would. Its pipes are the session's streams.
//! - **attach** subscribes to the container's output as the supervisor pumps it into the log,
//!   and writes into the container's stdin (kept open when its spec has `stdin`), closing it
//!   after the first client detaches when the spec has `stdin_once`.
//!
//! There are no pseudo-terminals here (host processes on pipes): `tty` is refused.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::broadcast;

use super::{Container, FakeRuntime, HANDLER, HOST_PATH};
use crate::lifecycle::require_running;
use crate::logs::Stream;
use crate::streaming::{AttachSpec, BoxedRead, ExecSession, ExecSpec, output_pipe, stdin_pipe};
use crate::{Error, Result};

pub(super) async fn exec(rt: &FakeRuntime, id: &str, spec: &ExecSpec) -> Result<ExecSession> {
    let container = rt.container(id)?;
    require_running(id, &container.state.get(), "exec")?;
    if spec.tty {
        return Err(no_terminal("exec with a terminal"));
    }
    let Some((program, args)) = spec.command.split_first() else {
        return Err(Error::InvalidSpec {
            container: container.spec.name.clone(),
            reason: "exec needs a command".to_owned(),
        });
    };
    let sandbox = rt.sandbox(&container.sandbox_id)?;
    let piped = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", HOST_PATH)
        .envs(container.spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(piped(spec.stdin))
        .stdout(piped(spec.stdout))
        .stderr(piped(spec.stderr));
    if let Some(dir) = &container.spec.working_dir {
        command.current_dir(dir);
    }
    if let Some(pgid) = *container.pgid.lock() {
        command.process_group(pgid.as_raw());
    }
    // Fork on the sandbox's threads: the child inherits their network namespace.
    let spawned = sandbox
        .handle()
        .spawn(async move { command.spawn() })
        .await
        .map_err(|e| Error::internal("spawn exec task", e))?;
    let mut child = spawned.map_err(|error| Error::Container {
        id: id.to_owned(),
        operation: "exec",
        message: format!("exec {program:?}: {error}"),
    })?;
    tracing::debug!(container = id, command = ?spec.command, "fake exec started");
    let stdin = child.stdin.take().map(stdin_pipe);
    let stdout = child.stdout.take().map(|out| Box::pin(out) as BoxedRead);
    let stderr = child.stderr.take().map(|err| Box::pin(err) as BoxedRead);
    // Reap on the sandbox's runtime, which outlives the caller's interest in the session.
    let waited = sandbox.handle().spawn(async move { child.wait().await });
    let mut session = ExecSession::new(async move {
        let status = waited
            .await
            .map_err(|e| Error::internal("wait for exec", e))?
            .map_err(|e| Error::internal("wait for exec", e))?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(255))
    });
    session.stdin = stdin;
    session.stdout = stdout;
    session.stderr = stderr;
    Ok(session)
}

pub(super) async fn attach(rt: &FakeRuntime, id: &str, spec: &AttachSpec) -> Result<ExecSession> {
    let container = rt.container(id)?;
    // Subscribe before checking the state: output sent after the check is not missed.
    let output = container.output.subscribe();
    require_running(id, &container.state.get(), "attach")?;
    let mut session = ExecSession::new({
        let container = Arc::clone(&container);
        async move {
            let state = container.state.wait_exited().await;
            Ok(state.exit_info().map_or(255, |exit| exit.exit_code))
        }
    });
    let stdout = spec.stdout.then(|| {
        let (writer, reader) = output_pipe();
        session.stdout = Some(reader);
        writer
    });
    let stderr = spec.stderr.then(|| {
        let (writer, reader) = output_pipe();
        session.stderr = Some(reader);
        writer
    });
    if stdout.is_some() || stderr.is_some() {
        tokio::spawn(forward_output(
            Arc::clone(&container),
            output,
            stdout,
            stderr,
        ));
    }
    if spec.stdin && container.spec.stdin {
        let (writer, reader) = tokio::io::duplex(crate::streaming::PIPE_BUFFER);
        tokio::spawn(forward_stdin(Arc::clone(&container), reader));
        session.stdin = Some(Box::pin(writer));
    }
    Ok(session)
}

/// Copy the container's output into the attached pipes until it exits.
async fn forward_output(
    container: Arc<Container>,
    mut output: broadcast::Receiver<(Stream, bytes::Bytes)>,
    mut stdout: Option<DuplexStream>,
    mut stderr: Option<DuplexStream>,
) {
    loop {
        tokio::select! {
            received = output.recv() => match received {
                Ok((stream, bytes)) => deliver(&mut stdout, &mut stderr, stream, &bytes).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(container = %container.id, missed, "attach fell behind; output dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = container.state.wait_exited() => break,
        }
    }
    // The supervisor sends everything before it records the exit: drain what is queued.
    while let Ok((stream, bytes)) = output.try_recv() {
        deliver(&mut stdout, &mut stderr, stream, &bytes).await;
    }
}

/// Write `bytes` to the pipe of `stream`; forget a pipe whose reader is gone.
async fn deliver(
    stdout: &mut Option<DuplexStream>,
    stderr: &mut Option<DuplexStream>,
    stream: Stream,
    bytes: &[u8],
) {
    let slot = match stream {
        Stream::Stdout => stdout,
        Stream::Stderr => stderr,
    };
    if let Some(pipe) = slot
        && pipe.write_all(bytes).await.is_err()
    {
        *slot = None;
    }
}

/// Copy an attached client's input into the container's stdin.
async fn forward_stdin(container: Arc<Container>, mut from: DuplexStream) {
    let mut buffer = vec![0u8; 8192];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut stdin = container.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else { return };
        if pipe.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
    if container.spec.stdin_once {
        // Dropping the pipe is the end-of-file the container reads.
        container.stdin.lock().await.take();
    }
}

fn no_terminal(operation: &'static str) -> Error {
    Error::OperationNotSupported {
        runtime: HANDLER.to_owned(),
        operation,
        reason: "the fake backend runs host processes on pipes, without pseudo-terminals"
            .to_owned(),
    }
}

/// The error for a container spec asking for a terminal.
pub(super) fn tty_unsupported() -> Error {
    Error::Unsupported {
        runtime: HANDLER.to_owned(),
        what: "tty (host processes run on pipes, without pseudo-terminals)".to_owned(),
    }
}
