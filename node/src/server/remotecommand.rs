//! The transport-independent half of `kubectl exec` and `kubectl attach` (Kubernetes'
//! `remotecommand`): the request options, the channel numbers, the `Status` written on the
//! error channel, and [`run`], which pipes a runtime's [`ExecSession`] to whichever
//! transport carries the channels — WebSocket ([`super::websocket`]) or SPDY/3.1
//! ([`super::exec_spdy`]).
//!
//! A terminal exec starts only once the client's first terminal size has arrived (or after
//! [`INITIAL_SIZE_WAIT`]): a [`Session::Deferred`] start, so the command sees the right size
//! when it starts rather than `0 0` (kubectl sends the size right after connecting).
//!
//! A transport decodes the client's stdin and resize messages into a [`ClientInput`],
//! forwards what [`run`] sends on its output channel as stdout/stderr messages, and when
//! [`run`] returns writes the [`Outcome`]'s [`status_json`](Outcome::status_json) on the
//! error channel and closes the connection.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_runtimes::streaming::BoxedRead;
use skiff_runtimes::{ExecSession, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How much of an output stream one message carries at most.
const CHUNK: usize = 32 * 1024;

/// How long a terminal exec waits for the client's first terminal size before it starts.
pub const INITIAL_SIZE_WAIT: Duration = Duration::from_secs(1);

/// Starts a session later; fails with the refusal to report on the error channel.
pub type Starter = Pin<Box<dyn Future<Output = Result<ExecSession, Outcome>> + Send>>;

/// A session to pipe: already running, or started by [`run`] once the first terminal size
/// is known.
pub enum Session {
    /// Started before the upgrade (its refusals were plain HTTP responses).
    Started(ExecSession),
    /// Started after the upgrade and the first resize.
    Deferred(Starter),
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Session::Started(session) => f.debug_tuple("Started").field(session).finish(),
            Session::Deferred(_) => f.write_str("Deferred"),
        }
    }
}

/// The channels of the streaming protocol (the first byte of a WebSocket message; the
/// `streamtype` header of a SPDY stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channel {
    /// Client → container input.
    Stdin = 0,
    /// Container output.
    Stdout = 1,
    /// Container error output (absent with a terminal).
    Stderr = 2,
    /// The final `Status` (v4 and v5).
    Error = 3,
    /// Terminal sizes, JSON `{"Width":W,"Height":H}`.
    Resize = 4,
}

impl Channel {
    /// The channel with this number.
    pub fn from_byte(byte: u8) -> Option<Channel> {
        Some(match byte {
            0 => Channel::Stdin,
            1 => Channel::Stdout,
            2 => Channel::Stderr,
            3 => Channel::Error,
            4 => Channel::Resize,
            _ => return None,
        })
    }

    /// The SPDY `streamtype` header value of this channel.
    pub fn stream_type(self) -> &'static str {
        match self {
            Channel::Stdin => "stdin",
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
            Channel::Error => "error",
            Channel::Resize => "resize",
        }
    }

    /// The channel of a SPDY `streamtype` header value.
    pub fn from_stream_type(value: &str) -> Option<Channel> {
        [
            Channel::Stdin,
            Channel::Stdout,
            Channel::Stderr,
            Channel::Error,
            Channel::Resize,
        ]
        .into_iter()
        .find(|c| c.stream_type() == value)
    }
}

/// Which streams a request asked for (`stdin`, `stdout`, `stderr`, `tty` query parameters)
/// and, for exec, the command (`command`, repeated, in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// The client sends input.
    pub stdin: bool,
    /// The client wants standard output.
    pub stdout: bool,
    /// The client wants standard error separately (never with `tty`).
    pub stderr: bool,
    /// A terminal: stderr is merged into stdout and the client sends resizes.
    pub tty: bool,
    /// Program and arguments (exec only).
    pub command: Vec<String>,
}

/// A query that asks for nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// None of stdin, stdout and stderr was asked for (Kubernetes' message).
    #[error("you must specify at least 1 of stdin, stdout, stderr")]
    NoStreams,
    /// The query string is not `application/x-www-form-urlencoded`.
    #[error("invalid query: {0}")]
    Query(String),
}

impl StreamOptions {
    /// Parse a query string. Booleans are accepted as the API server sends them (`1`) and as
    /// kubectl does (`true`); `tty` drops `stderr`, as the kubelet does.
    pub fn from_query(query: &str) -> Result<StreamOptions, OptionsError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| OptionsError::Query(e.to_string()))?;
        let mut options = StreamOptions::default();
        for (key, value) in pairs {
            let on = matches!(value.as_str(), "1" | "t" | "T" | "true" | "True" | "TRUE");
            match key.as_str() {
                "stdin" => options.stdin = on,
                "stdout" => options.stdout = on,
                "stderr" => options.stderr = on,
                "tty" => options.tty = on,
                "command" => options.command.push(value),
                _ => {}
            }
        }
        if options.tty {
            options.stderr = false;
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err(OptionsError::NoStreams);
        }
        Ok(options)
    }
}

/// Exec or attach: what the final `Status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// A command run beside the container's process; the session ends with its exit code.
    Exec {
        /// The command, for the non-zero exit message.
        command: Vec<String>,
    },
    /// The container's own streams; the session ends when its output ends.
    Attach,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0, or an attach whose output ended.
    Success,
    /// The exec'd command exited with this non-zero code.
    ExitCode(i32),
    /// The runtime failed while the session ran.
    Failed(String),
    /// A deferred session could not start: HTTP-style code, reason and message.
    Refused {
        /// The HTTP status code of the refusal.
        code: u16,
        /// `Status.reason` (`BadRequest`, `NotFound`, ...).
        reason: String,
        /// For humans.
        message: String,
    },
}

impl Outcome {
    /// The `Status` the kubelet writes on the error channel, exactly as Kubernetes shapes it:
    /// `{"metadata":{},"status":"Success"}`, the `NonZeroExitCode` failure whose `ExitCode`
    /// cause kubectl turns into its own exit code, or an `InternalError`.
    pub fn status(&self, operation: &Operation) -> Value {
        match self {
            Outcome::Success => json!({"metadata": {}, "status": "Success"}),
            Outcome::ExitCode(code) => {
                // kubectl parses the cause as an 8-bit unsigned number.
                let code = (*code).clamp(1, 255);
                let command = match operation {
                    Operation::Exec { command } => command.join(" "),
                    Operation::Attach => String::new(),
                };
                json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!(
                        "command terminated with non-zero exit code: error executing command \
                         [{command}], exit code {code}"
                    ),
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}
                })
            }
            Outcome::Failed(error) => {
                let cause = match operation {
                    Operation::Exec { .. } => {
                        format!("error executing command in container: {error}")
                    }
                    Operation::Attach => format!("error attaching to container: {error}"),
                };
                json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("Internal error occurred: {cause}"),
                    "reason": "InternalError",
                    "details": {"causes": [{"message": cause}]},
                    "code": 500
                })
            }
            Outcome::Refused {
                code,
                reason,
                message,
            } => json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code
            }),
        }
    }

    /// [`status`](Outcome::status) serialized, for the error channel.
    pub fn status_json(&self, operation: &Operation) -> Bytes {
        Bytes::from(self.status(operation).to_string())
    }
}

/// What the client sends, decoded by the transport.
#[derive(Debug)]
pub struct ClientInput {
    /// Standard input chunks; the sender being dropped is end-of-file.
    pub stdin: mpsc::Receiver<Bytes>,
    /// Terminal sizes.
    pub resize: mpsc::Receiver<TerminalSize>,
}

/// Output toward the client: which channel, and the bytes.
pub type OutputSender = mpsc::Sender<(Channel, Bytes)>;

/// Pipe `session` to the client until it ends: client input into the session's stdin and
/// resize channel, its stdout and stderr into `output` (concurrently, each until it ends),
/// then for exec the exit code. Returns how it ended; dropping the future detaches (the
/// command keeps running, stdin reads end-of-file).
pub async fn run(
    session: Session,
    operation: &Operation,
    mut input: ClientInput,
    output: OutputSender,
) -> Outcome {
    let (session, first_size) = match session {
        Session::Started(session) => (session, None),
        Session::Deferred(start) => {
            let first = tokio::time::timeout(INITIAL_SIZE_WAIT, input.resize.recv())
                .await
                .ok()
                .flatten();
            match start.await {
                Ok(session) => (session, first),
                Err(refused) => return refused,
            }
        }
    };
    if let (Some(size), Some(resize)) = (first_size, &session.resize) {
        let _ = resize.send(size).await;
    }
    let ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = session;
    let has_output = stdout.is_some() || stderr.is_some();
    let input_side = async {
        tokio::join!(
            feed_stdin(stdin, input.stdin),
            forward_resizes(resize, input.resize)
        );
        // Input ending never ends the session: the output and the exit decide.
        std::future::pending::<()>().await;
    };
    let ended = async {
        tokio::join!(
            copy_output(stdout, Channel::Stdout, &output),
            copy_output(stderr, Channel::Stderr, &output)
        );
        match (operation, has_output) {
            (Operation::Attach, true) => Outcome::Success,
            (Operation::Attach, false) => match exit.await {
                Ok(_) => Outcome::Success,
                Err(error) => Outcome::Failed(error.to_string()),
            },
            (Operation::Exec { .. }, _) => match exit.await {
                Ok(0) => Outcome::Success,
                Ok(code) => Outcome::ExitCode(code),
                Err(error) => Outcome::Failed(error.to_string()),
            },
        }
    };
    tokio::select! {
        outcome = ended => outcome,
        () = input_side => Outcome::Success,
    }
}

/// Copy client input into the process's stdin; shut it down at the client's end-of-file.
async fn feed_stdin(
    mut stdin: Option<skiff_runtimes::streaming::BoxedWrite>,
    mut from: mpsc::Receiver<Bytes>,
) {
    while let Some(chunk) = from.recv().await {
        if let Some(pipe) = stdin.as_mut()
            && pipe.write_all(&chunk).await.is_err()
        {
            // The process closed its stdin: drop further input.
            stdin = None;
        }
    }
    if let Some(mut pipe) = stdin {
        let _ = pipe.shutdown().await;
    }
}

async fn forward_resizes(
    to: Option<mpsc::Sender<TerminalSize>>,
    mut from: mpsc::Receiver<TerminalSize>,
) {
    while let Some(size) = from.recv().await {
        if let Some(to) = &to
            && to.send(size).await.is_err()
        {
            return;
        }
    }
}

async fn copy_output(source: Option<BoxedRead>, channel: Channel, output: &OutputSender) {
    let Some(mut source) = source else { return };
    let mut buf = vec![0u8; CHUNK];
    loop {
        match source.read(&mut buf).await {
            Ok(0) => return,
            Err(error) => {
                tracing::debug!(?channel, %error, "exec output ended with an error");
                return;
            }
            Ok(n) => {
                let chunk = Bytes::copy_from_slice(&buf[..n]);
                if output.send((channel, chunk)).await.is_err() {
                    // The client is gone.
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use skiff_runtimes::streaming::{output_pipe, stdin_pipe};
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn options_follow_the_kubelet() {
        let o = StreamOptions::from_query(
            "command=sh&command=-c&command=exit%203&container=bb&stdin=true&stdout=true&stderr=true",
        )
        .expect("options");
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
                command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            }
        );
        // The API server's form, and tty dropping stderr.
        let o = StreamOptions::from_query("command=sh&stdout=1&stderr=1&tty=1").expect("tty");
        assert!(o.stdout && o.tty && !o.stderr && !o.stdin);
        assert_eq!(
            StreamOptions::from_query("command=ls&stdout=false"),
            Err(OptionsError::NoStreams)
        );
        assert_eq!(
            OptionsError::NoStreams.to_string(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }

    #[test]
    fn channels_and_stream_types() {
        for byte in 0..=4u8 {
            let c = Channel::from_byte(byte).expect("channel");
            assert_eq!(c as u8, byte);
            assert_eq!(Channel::from_stream_type(c.stream_type()), Some(c));
        }
        assert_eq!(Channel::from_byte(5), None);
        assert_eq!(Channel::from_stream_type("data"), None);
    }

    #[test]
    fn statuses_are_the_kubelet_ones() {
        let exec = Operation::Exec {
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
        };
        assert_eq!(
            Outcome::Success.status_json(&exec),
            Bytes::from_static(br#"{"metadata":{},"status":"Success"}"#)
        );
        assert_eq!(
            Outcome::ExitCode(3).status(&exec),
            json!({
                "metadata": {}, "status": "Failure",
                "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
            })
        );
        assert_eq!(
            Outcome::ExitCode(300).status(&exec)["details"]["causes"][0]["message"],
            "255"
        );
        let failed = Outcome::Failed("boom".into()).status(&Operation::Attach);
        assert_eq!(failed["reason"], "InternalError");
        assert_eq!(failed["code"], 500);
        assert_eq!(
            failed["message"],
            "Internal error occurred: error attaching to container: boom"
        );
    }

    /// A session over in-memory pipes: what `run` sees from a backend.
    struct FakeProcess {
        stdin: tokio::io::DuplexStream,
        stdout: tokio::io::DuplexStream,
        stderr: tokio::io::DuplexStream,
        exit: tokio::sync::oneshot::Sender<i32>,
        resized: mpsc::Receiver<TerminalSize>,
    }

    fn session() -> (ExecSession, FakeProcess) {
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<i32>();
        let mut session = ExecSession::new(async move { Ok(exit_rx.await.unwrap_or(255)) });
        let (stdin_sink, stdin) = tokio::io::duplex(1024);
        session.stdin = Some(stdin_pipe(stdin_sink));
        let (stdout, reader) = output_pipe();
        session.stdout = Some(reader);
        let (stderr, reader) = output_pipe();
        session.stderr = Some(reader);
        let (resize_tx, resized) = mpsc::channel(4);
        session.resize = Some(resize_tx);
        let process = FakeProcess {
            stdin,
            stdout,
            stderr,
            exit: exit_tx,
            resized,
        };
        (session, process)
    }

    #[tokio::test]
    async fn pipes_both_ways_and_reports_the_exit_code() {
        let (session, mut process) = session();
        let (stdin_tx, stdin_rx) = mpsc::channel(4);
        let (resize_tx, resize_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        let operation = Operation::Exec {
            command: vec!["cat".into()],
        };
        let running = tokio::spawn(async move {
            run(
                Session::Started(session),
                &operation,
                ClientInput {
                    stdin: stdin_rx,
                    resize: resize_rx,
                },
                out_tx,
            )
            .await
        });
        stdin_tx
            .send(Bytes::from_static(b"in"))
            .await
            .expect("send");
        drop(stdin_tx);
        let mut got = Vec::new();
        process.stdin.read_to_end(&mut got).await.expect("stdin");
        assert_eq!(got, b"in", "stdin delivered, then end-of-file");
        resize_tx
            .send(TerminalSize {
                width: 80,
                height: 24,
            })
            .await
            .expect("resize");
        assert_eq!(
            process.resized.recv().await,
            Some(TerminalSize {
                width: 80,
                height: 24
            })
        );
        process.stdout.write_all(b"out").await.expect("out");
        process.stderr.write_all(b"err").await.expect("err");
        drop(process.stdout);
        drop(process.stderr);
        let mut seen = Vec::new();
        for _ in 0..2 {
            seen.push(out_rx.recv().await.expect("output"));
        }
        seen.sort_by_key(|(c, _)| *c as u8);
        assert_eq!(
            seen,
            vec![
                (Channel::Stdout, Bytes::from_static(b"out")),
                (Channel::Stderr, Bytes::from_static(b"err"))
            ]
        );
        // Output ended; the outcome waits for the exit code.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!running.is_finished());
        process.exit.send(7).expect("exit");
        let outcome = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!(outcome, Outcome::ExitCode(7));
    }

    #[tokio::test]
    async fn a_deferred_session_starts_after_the_first_size() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let (session, mut process) = session();
        let sized = Arc::new(AtomicBool::new(false));
        let started = Arc::new(AtomicBool::new(false));
        let start: Starter = {
            let (sized, started) = (Arc::clone(&sized), Arc::clone(&started));
            Box::pin(async move {
                started.store(sized.load(Ordering::SeqCst), Ordering::SeqCst);
                Ok(session)
            })
        };
        let (_stdin_tx, stdin_rx) = mpsc::channel(4);
        let (resize_tx, resize_rx) = mpsc::channel(4);
        let (out_tx, _out_rx) = mpsc::channel(16);
        let operation = Operation::Exec {
            command: vec!["sh".into()],
        };
        let running = tokio::spawn(async move {
            let input = ClientInput {
                stdin: stdin_rx,
                resize: resize_rx,
            };
            run(Session::Deferred(start), &operation, input, out_tx).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        sized.store(true, Ordering::SeqCst);
        let size = TerminalSize {
            width: 120,
            height: 40,
        };
        resize_tx.send(size).await.expect("resize");
        // The first size reaches the process's terminal right after the start.
        assert_eq!(process.resized.recv().await, Some(size));
        drop(process.stdout);
        drop(process.stderr);
        process.exit.send(0).expect("exit");
        let outcome = tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("in time")
            .expect("join");
        assert_eq!(outcome, Outcome::Success);
        assert!(started.load(Ordering::SeqCst), "started after the size");

        // A refused start is the outcome.
        let refused = Outcome::Refused {
            code: 400,
            reason: "BadRequest".into(),
            message: "no terminals here".into(),
        };
        let start: Starter = {
            let refused = refused.clone();
            Box::pin(async move { Err(refused) })
        };
        let (_stdin_tx, stdin_rx) = mpsc::channel(4);
        let (_resize_tx, resize_rx) = mpsc::channel(4);
        let (out_tx, _out_rx) = mpsc::channel(16);
        let input = ClientInput {
            stdin: stdin_rx,
            resize: resize_rx,
        };
        let exec = Operation::Exec { command: vec![] };
        let outcome = run(Session::Deferred(start), &exec, input, out_tx).await;
        assert_eq!(outcome, refused);
        assert_eq!(
            outcome.status(&exec),
            json!({"metadata": {}, "status": "Failure", "message": "no terminals here",
                   "reason": "BadRequest", "code": 400})
        );
    }

    #[tokio::test]
    async fn attach_ends_with_its_output() {
        let (session, process) = session();
        let (_stdin_tx, stdin_rx) = mpsc::channel(4);
        let (_resize_tx, resize_rx) = mpsc::channel(4);
        let (out_tx, _out_rx) = mpsc::channel(16);
        drop(process.stdout);
        drop(process.stderr);
        let outcome = tokio::time::timeout(
            Duration::from_secs(5),
            run(
                Session::Started(session),
                &Operation::Attach,
                ClientInput {
                    stdin: stdin_rx,
                    resize: resize_rx,
                },
                out_tx,
            ),
        )
        .await
        .expect("attach ends without an exit code");
        assert_eq!(outcome, Outcome::Success);
        drop(process.exit);
    }
}
