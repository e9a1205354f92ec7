//! The exec and attach cases (re-exported from [`cases`](super::cases)).
//!
//! Commands run with `sh`, `cat`, `echo` and `pwd`, which every backend with exec has (a
//! host for the fake, busybox for Docker). A backend without exec or attach
//! ([`Features::exec`](super::Features::exec) / [`Features::attach`](super::Features::attach)
//! false) must refuse them with [`Error::OperationNotSupported`] naming itself.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{Harness, within};
use crate::streaming::{AttachSpec, ExecSession, ExecSpec, TerminalSize};
use crate::{Error, Result};

const LIMIT: Duration = Duration::from_secs(20);

/// What an exec produced.
#[derive(Debug)]
pub struct Outcome {
    /// All of stdout.
    pub stdout: String,
    /// All of stderr (empty when not asked for).
    pub stderr: String,
    /// The exit code, or why there is none.
    pub exit: Result<i32>,
}

/// Read stdout and stderr to their ends (concurrently), then await the exit.
pub async fn finish(session: ExecSession) -> Outcome {
    let ExecSession {
        stdout,
        stderr,
        exit,
        ..
    } = session;
    let (stdout, stderr) = within(
        LIMIT,
        "exec output to end",
        futures::future::join(read_all(stdout), read_all(stderr)),
    )
    .await;
    let exit = within(LIMIT, "exec exit code", exit).await;
    Outcome {
        stdout,
        stderr,
        exit,
    }
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        // A backend may end a stream with an error once the process is gone; keep what came.
        let _ = stream.read_to_end(&mut bytes).await;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Read from `stream` until what was read contains `wanted`; returns everything read.
async fn read_until(stream: &mut (impl AsyncRead + Unpin), wanted: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    within(LIMIT, &format!("{wanted:?} on the stream"), async {
        while !String::from_utf8_lossy(&seen).contains(wanted) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

fn assert_not_supported<T: std::fmt::Debug>(h: &Harness, result: Result<T>, operation: &str) {
    match result {
        Err(error @ Error::OperationNotSupported { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains(h.runtime.handler()) && text.contains(operation),
                "the error names the backend and the operation: {text}"
            );
            assert_eq!(error.reason(), "NotSupported");
        }
        other => panic!(
            "{operation} on a backend without it: expected OperationNotSupported, got {other:?}"
        ),
    }
}

/// A long-running container with a known environment and working directory.
async fn sleeper(h: &Harness, sandbox: &str, name: &str) -> String {
    let mut spec = h.spec(name, &h.images.sleep);
    if h.features.exec {
        spec.env
            .push(("GREETING".into(), "hello from the pod".into()));
        spec.working_dir = Some("/tmp".into());
    }
    h.run(sandbox, &spec).await
}

/// An exec'd command sees the container's environment and working directory; its stdout
/// and stderr arrive separately; it exits 0.
pub async fn exec_runs_in_the_container(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("exec").await;
    let id = sleeper(h, &sandbox, "sleeper").await;
    let spec = ExecSpec::new([
        "sh",
        "-c",
        r#"echo "out: $GREETING"; pwd; echo "err: oops" >&2"#,
    ]);
    if !h.features.exec {
        assert_not_supported(h, rt.exec(&id, &spec).await, "exec");
        rt.remove_sandbox(&sandbox).await.expect("remove");
        return;
    }
    let session = rt.exec(&id, &spec).await.expect("exec");
    assert!(session.stdin.is_none(), "no stdin unless asked for");
    assert!(session.resize.is_none(), "no resize without a terminal");
    let outcome = finish(session).await;
    assert_eq!(
        outcome.stdout, "out: hello from the pod\n/tmp\n",
        "{outcome:?}"
    );
    assert_eq!(outcome.stderr, "err: oops\n", "{outcome:?}");
    assert_eq!(outcome.exit.expect("exit code"), 0);

    let only_stdout = ExecSpec {
        stderr: false,
        ..ExecSpec::new(["sh", "-c", "echo shown; echo hidden >&2"])
    };
    let session = rt.exec(&id, &only_stdout).await.expect("exec");
    assert!(session.stderr.is_none(), "stderr not asked for");
    let outcome = finish(session).await;
    assert_eq!(outcome.stdout, "shown\n", "{outcome:?}");
    assert_eq!(outcome.exit.expect("exit code"), 0);
    let state = rt.container_status(&id).await.expect("status").state;
    assert!(
        state.is_running(),
        "exec leaves the container running: {state:?}"
    );
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Bytes written to an exec's stdin reach the command; closing stdin ends it.
pub async fn exec_stdin_round_trip(h: &Harness) {
    if !h.features.exec {
        return;
    }
    let rt = &h.runtime;
    let sandbox = h.sandbox("exec-stdin").await;
    let id = sleeper(h, &sandbox, "sleeper").await;
    let mut session = rt
        .exec(&id, &ExecSpec::new(["cat"]).with_stdin())
        .await
        .expect("exec cat");
    let mut stdin = session.stdin.take().expect("stdin was asked for");
    let mut stdout = session.stdout.take().expect("stdout");
    stdin.write_all(b"ping\n").await.expect("write");
    stdin.flush().await.expect("flush");
    // An interactive round trip: the echo arrives while stdin is still open.
    let echoed = read_until(&mut stdout, "ping\n").await;
    assert_eq!(echoed, "ping\n");
    stdin
        .write_all(b"second line, no newline")
        .await
        .expect("write");
    drop(stdin);
    session.stdout = Some(stdout);
    let outcome = finish(session).await;
    assert_eq!(outcome.stdout, "second line, no newline", "{outcome:?}");
    assert_eq!(outcome.exit.expect("cat exits at end-of-file"), 0);
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// The command's exit code is reported; a command that does not exist fails.
pub async fn exec_exit_codes(h: &Harness) {
    if !h.features.exec {
        return;
    }
    let rt = &h.runtime;
    let sandbox = h.sandbox("exec-exit").await;
    let id = sleeper(h, &sandbox, "sleeper").await;
    let session = rt
        .exec(&id, &ExecSpec::new(["sh", "-c", "echo before; exit 3"]))
        .await
        .expect("exec");
    let outcome = finish(session).await;
    assert_eq!(outcome.stdout, "before\n");
    assert_eq!(outcome.exit.expect("exit code"), 3);

    match rt
        .exec(&id, &ExecSpec::new(["/no/such/command", "x"]))
        .await
    {
        Err(error) => {
            assert!(
                !error.is_not_found(),
                "the container exists; the command does not: {error}"
            );
            assert!(error.to_string().contains("/no/such/command"), "{error}");
        }
        Ok(session) => {
            let outcome = finish(session).await;
            let code = *outcome.exit.as_ref().expect("exit code");
            assert!(
                code == 126 || code == 127,
                "a missing command exits 126 or 127, like a shell: {code} {outcome:?}"
            );
            let said = format!("{}{}", outcome.stdout, outcome.stderr);
            assert!(said.contains("/no/such/command"), "{outcome:?}");
        }
    }
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Exec and attach need a running container: created or exited ones are refused with
/// [`Error::ContainerNotRunning`], unknown ids are not found.
pub async fn exec_refused_unless_running(h: &Harness) {
    let rt = &h.runtime;
    let unknown = rt
        .exec("0123456789abcdef0123456789abcdef", &ExecSpec::new(["true"]))
        .await;
    assert!(
        matches!(&unknown, Err(e) if e.is_not_found()),
        "exec in an unknown container: {unknown:?}"
    );
    if !h.features.exec {
        return;
    }
    let sandbox = h.sandbox("exec-refused").await;
    let created = rt
        .create_container(&sandbox, &h.spec("created", &h.images.sleep))
        .await
        .expect("create");
    let done = h.run(&sandbox, &h.spec("done", &h.images.hello)).await;
    h.wait(&done, LIMIT).await;
    for (id, state) in [(&created, "created"), (&done, "exited")] {
        match rt.exec(id, &ExecSpec::new(["true"])).await {
            Err(error @ Error::ContainerNotRunning { .. }) => {
                assert_eq!(error.reason(), "ContainerNotRunning");
                let text = error.to_string();
                assert!(text.contains("not running"), "{text}");
                assert!(
                    text.contains(state),
                    "says the container is {state}: {text}"
                );
            }
            other => panic!("exec in a {state} container: {other:?}"),
        }
    }
    if h.features.attach {
        let refused = rt.attach(&done, &AttachSpec::default()).await;
        assert!(
            matches!(refused, Err(Error::ContainerNotRunning { .. })),
            "attach to an exited container: {refused:?}"
        );
    }
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// With a terminal, stderr is merged into stdout, the command sees a terminal, and resizes
/// reach it.
pub async fn exec_with_a_terminal(h: &Harness) {
    if !h.features.exec_tty {
        return;
    }
    let rt = &h.runtime;
    let sandbox = h.sandbox("exec-tty").await;
    let id = sleeper(h, &sandbox, "sleeper").await;
    let script = "test -t 1 && echo on a tty; echo to stderr >&2; sleep 1; stty size";
    let mut session = rt
        .exec(&id, &ExecSpec::new(["sh", "-c", script]).with_tty())
        .await
        .expect("exec with tty");
    assert!(session.stderr.is_none(), "stderr is merged with a terminal");
    let resize = session.resize.take().expect("a terminal can be resized");
    resize
        .send(TerminalSize {
            width: 123,
            height: 45,
        })
        .await
        .expect("send resize");
    let outcome = finish(session).await;
    drop(resize);
    assert!(outcome.stdout.contains("on a tty"), "{outcome:?}");
    assert!(outcome.stdout.contains("to stderr"), "{outcome:?}");
    assert!(
        outcome.stdout.contains("45 123"),
        "stty sees the resized terminal: {outcome:?}"
    );
    assert_eq!(outcome.exit.expect("exit code"), 0);
    rt.remove_sandbox(&sandbox).await.expect("remove");
}

/// Attach to a container running `cat` with stdin open: input reaches it, its output comes
/// back (and goes to the log), and closing stdin (`stdinOnce`) ends it with its exit code.
pub async fn attach_round_trip(h: &Harness) {
    let rt = &h.runtime;
    let sandbox = h.sandbox("attach").await;
    if !h.features.attach {
        let id = h.run(&sandbox, &h.spec("sleeper", &h.images.sleep)).await;
        let spec = AttachSpec {
            stdout: true,
            ..AttachSpec::default()
        };
        assert_not_supported(h, rt.attach(&id, &spec).await, "attach");
        rt.remove_sandbox(&sandbox).await.expect("remove");
        return;
    }
    let mut spec = h.spec("cat", &h.images.sleep);
    spec.command = vec!["cat".into()];
    spec.stdin = true;
    spec.stdin_once = true;
    let id = h.run(&sandbox, &spec).await;
    let attach = AttachSpec {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let mut session = rt.attach(&id, &attach).await.expect("attach");
    let mut stdin = session.stdin.take().expect("the container's stdin is open");
    let mut stdout = session.stdout.take().expect("stdout");
    stdin.write_all(b"through attach\n").await.expect("write");
    stdin.flush().await.expect("flush");
    let echoed = read_until(&mut stdout, "through attach\n").await;
    assert_eq!(echoed, "through attach\n");
    drop(stdin);
    session.stdout = Some(stdout);
    let outcome = finish(session).await;
    assert_eq!(
        *outcome.exit.as_ref().expect("cat's exit code"),
        0,
        "{outcome:?}"
    );
    let status = h.wait(&id, LIMIT).await;
    assert_eq!(status.state.exit_info().map(|e| e.exit_code), Some(0));
    assert_eq!(
        h.stdout("cat"),
        ["through attach"],
        "attached output is logged too"
    );

    // A container whose stdin is closed has none to offer.
    let closed = h.run(&sandbox, &h.spec("closed", &h.images.sleep)).await;
    let session = rt.attach(&closed, &attach).await.expect("attach");
    assert!(session.stdin.is_none(), "{session:?}");
    rt.remove_sandbox(&sandbox).await.expect("remove");
}
