//! Exec and attach: the streaming half of the [`Runtime`](crate::Runtime) trait (CRI `Exec`
//! and `Attach`), shaped so the kubelet can splice it onto WebSocket or SPDY channels.
//!
//! [`Runtime::exec`](crate::Runtime::exec) starts a command in a running container and
//! [`Runtime::attach`](crate::Runtime::attach) connects to the container's own process. Both
//! return an [`ExecSession`]: plain tokio byte streams for stdin, stdout and stderr, a channel
//! for terminal resizes, and a future resolving to the exit code. A kubelet serving
//! `kubectl exec` copies channel 0 into `stdin`, `stdout`/`stderr` into channels 1/2,
//! forwards channel 4 into `resize`, and reports `exit` on channel 3:
//!
//! ```ignore
//! let ExecSession { stdin, stdout, stderr, resize, exit } = runtime.exec(&id, &spec).await?;
//! // copy the client's stdin into `stdin` (then drop or shut it down: end-of-file),
//! // copy `stdout` and `stderr` to the client until both end, concurrently,
//! // then: match exit.await { Ok(0) => Success, Ok(code) => NonZeroExitCode, Err(e) => ... }
//! ```
//!
//! Backends build sessions from whatever their processes give them; [`stdin_pipe`] and
//! [`output_pipe`] turn any sink or source into the uniform shape (end-of-file on drop as
//! well as on shutdown, bounded buffering).

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use crate::Result;

/// A byte stream out of the container (stdout, stderr).
pub type BoxedRead = Pin<Box<dyn AsyncRead + Send>>;
/// A byte stream into the container (stdin).
pub type BoxedWrite = Pin<Box<dyn AsyncWrite + Send>>;
/// Resolves to the exit code of the exec'd command (or, for attach, of the container).
pub type ExitFuture = Pin<Box<dyn Future<Output = Result<i32>> + Send>>;

/// How much output a pipe holds before the producer waits for the reader.
pub const PIPE_BUFFER: usize = 64 * 1024;

/// What to run in a container ([`Runtime::exec`](crate::Runtime::exec), `kubectl exec`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecSpec {
    /// Program and arguments (`command=` query parameters, in order). Resolved with the
    /// container's `PATH`; runs with the container's environment and working directory.
    pub command: Vec<String>,
    /// Allocate a pseudo-terminal; stderr is then merged into stdout.
    pub tty: bool,
    /// Give the command a standard input ([`ExecSession::stdin`]); otherwise it reads
    /// end-of-file.
    pub stdin: bool,
    /// Return its standard output ([`ExecSession::stdout`]).
    pub stdout: bool,
    /// Return its standard error separately ([`ExecSession::stderr`]); ignored with `tty`.
    pub stderr: bool,
}

impl ExecSpec {
    /// A spec running `command` with stdout and stderr, no stdin, no terminal.
    pub fn new<S: Into<String>>(command: impl IntoIterator<Item = S>) -> Self {
        ExecSpec {
            command: command.into_iter().map(Into::into).collect(),
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        }
    }

    /// Builder-style: also give the command a standard input.
    pub fn with_stdin(mut self) -> Self {
        self.stdin = true;
        self
    }

    /// Builder-style: run the command on a pseudo-terminal.
    pub fn with_tty(mut self) -> Self {
        self.tty = true;
        self
    }
}

/// Which of the container's streams to connect to ([`Runtime::attach`](crate::Runtime::attach),
/// `kubectl attach`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttachSpec {
    /// Write to the container's standard input (only if its spec has
    /// [`stdin`](crate::ContainerSpec::stdin); otherwise [`ExecSession::stdin`] is `None`).
    pub stdin: bool,
    /// Read its standard output.
    pub stdout: bool,
    /// Read its standard error (merged into stdout when the container has a terminal).
    pub stderr: bool,
    /// The client wants a terminal; honoured only if the container was created with
    /// [`tty`](crate::ContainerSpec::tty).
    pub tty: bool,
}

/// A terminal size in characters (channel 4 of the exec protocol: `{"Width":W,"Height":H}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A running exec or attach: the process's streams and its exit.
///
/// Every field is public so a caller can take the session apart and drive each piece on its
/// own task. Read `stdout` and `stderr` **concurrently** until both end (each is a bounded
/// pipe: an unread stream eventually stalls the process), then await `exit`. Dropping the
/// session detaches: an exec'd command keeps running to its end (as with Docker and
/// containerd), an attached container is not affected.
pub struct ExecSession {
    /// The process's standard input, when asked for. Shut it down or drop it to send
    /// end-of-file.
    pub stdin: Option<BoxedWrite>,
    /// Standard output (and standard error, with a terminal), when asked for. Ends when the
    /// process has exited and its output is drained.
    pub stdout: Option<BoxedRead>,
    /// Standard error, when asked for and there is no terminal.
    pub stderr: Option<BoxedRead>,
    /// Terminal resizes, present with a terminal. Send the client's initial size right away
    /// (a backend may hold a terminal exec's start for a moment until it arrives, so the
    /// command starts at that size — Docker does), then sizes as they change; the backend
    /// applies them in order and logs failures (as the kubelet does).
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// The exit code of the command, or for attach the container's exit code once it exits.
    pub exit: ExitFuture,
}

impl ExecSession {
    /// A session with no streams that resolves with `exit`; add streams with the fields.
    pub fn new(exit: impl Future<Output = Result<i32>> + Send + 'static) -> Self {
        ExecSession {
            stdin: None,
            stdout: None,
            stderr: None,
            resize: None,
            exit: Box::pin(exit),
        }
    }
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// A stdin for an [`ExecSession`] that forwards into `sink` and, when the caller shuts it
/// down **or drops it**, shuts `sink` down so the process reads end-of-file. The forwarding
/// task runs on the current tokio runtime.
pub fn stdin_pipe(mut sink: impl AsyncWrite + Send + Unpin + 'static) -> BoxedWrite {
    let (writer, mut reader) = tokio::io::duplex(PIPE_BUFFER);
    tokio::spawn(async move {
        if let Err(error) = tokio::io::copy(&mut reader, &mut sink).await {
            // The process closed its stdin (it exited, or does not read): nothing to deliver.
            tracing::debug!(%error, "exec stdin closed early");
        }
        let _ = sink.shutdown().await;
    });
    Box::pin(writer)
}

/// A pipe for one output stream: the backend writes into the [`DuplexStream`], the caller
/// reads the [`BoxedRead`]; end-of-file when the backend drops its end.
pub fn output_pipe() -> (DuplexStream, BoxedRead) {
    let (reader, writer) = tokio::io::duplex(PIPE_BUFFER);
    (writer, Box::pin(reader))
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn dropping_stdin_sends_end_of_file() {
        let (sink, mut process_side) = tokio::io::duplex(64);
        let mut stdin = stdin_pipe(sink);
        stdin.write_all(b"hello").await.expect("write");
        drop(stdin);
        let mut got = Vec::new();
        process_side.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn shutting_stdin_down_sends_end_of_file() {
        let (sink, mut process_side) = tokio::io::duplex(64);
        let mut stdin = stdin_pipe(sink);
        stdin.write_all(b"bye").await.expect("write");
        stdin.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            process_side.read_to_end(&mut got),
        )
        .await;
        assert!(matches!(read, Ok(Ok(3))), "{read:?}");
        assert_eq!(got, b"bye");
        drop(stdin);
    }

    #[tokio::test]
    async fn output_pipe_ends_when_the_backend_drops_its_end() {
        let (mut backend, mut reader) = output_pipe();
        backend.write_all(b"out").await.expect("write");
        drop(backend);
        let mut got = String::new();
        reader.read_to_string(&mut got).await.expect("read");
        assert_eq!(got, "out");
    }

    #[test]
    fn terminal_size_is_the_exec_protocol_json() {
        let size: TerminalSize =
            serde_json::from_str(r#"{"Width":120,"Height":40}"#).expect("parse");
        assert_eq!(
            size,
            TerminalSize {
                width: 120,
                height: 40
            }
        );
    }
}
