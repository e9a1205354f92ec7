//! A container's process group over its life: output pumped into the log, limits enforced,
//! the exit recorded, and stop as `SIGTERM`, grace period, `SIGKILL`.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::{Container, procfs};
use crate::logs::{LogWriter, Stream};
use crate::status::{ExitInfo, ExitReason};
use crate::{Error, Result};

/// `SIGTERM` the group, wait `grace`, `SIGKILL` it, wait for the exit to be recorded.
pub(super) async fn stop(container: &Container, grace: Duration) -> Result<()> {
    let state = container.state.get();
    if state.is_exited() {
        return Ok(());
    }
    container.stop_requested.store(true, Ordering::SeqCst);
    let pgid = *container.pgid.lock();
    let Some(pgid) = pgid else {
        // Created, never started: nothing runs.
        container.state.exit(ExitInfo::killed());
        return Ok(());
    };
    procfs::signal_group(pgid, Signal::SIGTERM);
    // A group paused by the CPU throttle must run to act on the signal.
    procfs::signal_group(pgid, Signal::SIGCONT);
    if container.state.wait_exited_for(grace).await {
        return Ok(());
    }
    procfs::signal_group(pgid, Signal::SIGKILL);
    if container
        .state
        .wait_exited_for(Duration::from_secs(10))
        .await
    {
        Ok(())
    } else {
        Err(Error::Container {
            id: container.id.clone(),
            operation: "stop",
            message: "process group survived SIGKILL for 10s".to_owned(),
        })
    }
}

/// Runs for the container's whole life on the sandbox's threads.
pub(super) async fn supervise(
    container: Arc<Container>,
    mut child: tokio::process::Child,
    pgid: Option<Pid>,
) {
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            out,
            container.log.clone(),
            container.output.clone(),
            Stream::Stdout,
        )));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(
            err,
            container.log.clone(),
            container.output.clone(),
            Stream::Stderr,
        )));
    }
    let limits = container.spec.resources;
    let enforcer = match pgid {
        Some(pgid) if limits.memory_limit_bytes.is_some() || limits.cpu_millicores.is_some() => {
            Some(tokio::spawn(enforce_limits(Arc::clone(&container), pgid)))
        }
        _ => None,
    };
    let status = child.wait().await;
    if let Some(enforcer) = enforcer {
        enforcer.abort();
    }
    if let Some(pgid) = pgid {
        // When a container's main process ends, the rest of it goes too.
        procfs::signal_group(pgid, Signal::SIGKILL);
    }
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    container.log.finish();
    // Nobody can write to a process that is gone; close the pipe now rather than at removal.
    container.stdin.lock().await.take();
    let mut exit = match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitInfo::from_code(code),
            (None, Some(signal)) => {
                ExitInfo::from_code(128 + signal).with_message(format!("killed by signal {signal}"))
            }
            (None, None) => ExitInfo::from_code(255),
        },
        Err(error) => ExitInfo::from_code(255).with_message(format!("wait failed: {error}")),
    };
    if container.oom_killed.load(Ordering::SeqCst) {
        exit = exit
            .with_reason(ExitReason::OomKilled)
            .with_message("memory limit exceeded");
    }
    container.state.exit(exit);
}

/// Copy one output stream into the log and to attached clients (if any).
async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    log: LogWriter,
    attached: broadcast::Sender<(Stream, Bytes)>,
    stream: Stream,
) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                log.write(stream, &buffer[..n]);
                if attached.receiver_count() > 0 {
                    let _ = attached.send((stream, Bytes::copy_from_slice(&buffer[..n])));
                }
            }
        }
    }
}

/// Poll the group's usage every 10 ms: kill it over the memory limit, pause it over its CPU
/// share.
async fn enforce_limits(container: Arc<Container>, pgid: Pid) {
    let limits = container.spec.resources;
    let start = procfs::group_usage(pgid);
    let mut throttle = limits
        .cpu_millicores
        .map(|m| crate::throttle::CpuThrottle::new(m, start.cpu));
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let usage = procfs::group_usage(pgid);
        {
            let mut recorded = container.usage.lock();
            recorded.cpu = recorded.cpu.max(usage.cpu);
            recorded.rss_bytes = usage.rss_bytes;
        }
        if let Some(limit) = limits.memory_limit_bytes
            && usage.rss_bytes > limit
        {
            tracing::info!(container = %container.id, rss = usage.rss_bytes, limit, "OOM kill");
            container.oom_killed.store(true, Ordering::SeqCst);
            procfs::signal_group(pgid, Signal::SIGKILL);
            return;
        }
        let now = Instant::now();
        let wall = now - last;
        last = now;
        if let Some(pause) = throttle.as_mut().and_then(|t| t.account(wall, usage.cpu))
            && !container.stop_requested.load(Ordering::SeqCst)
        {
            procfs::signal_group(pgid, Signal::SIGSTOP);
            tokio::time::sleep(pause).await;
            procfs::signal_group(pgid, Signal::SIGCONT);
        }
    }
}
