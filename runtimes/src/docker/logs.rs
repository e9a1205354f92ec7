//! Copies a container's output from Docker into its CRI log file.
//!
//! Docker keeps each container's output (json-file driver); a [`LogPump`] follows it with the
//! logs API (`follow`, both streams, `timestamps`) from the moment the container starts and
//! writes every chunk through the same [`LogWriter`] the Wasmtime backend uses, so both
//! backends produce identical files. Docker's timestamps let a pump that lost its stream
//! (dockerd restarted, node restarted) resume without duplicating lines: it asks for
//! everything since shortly before the newest line it saw and skips the lines it already
//! wrote. Docker stamps stdout and stderr in separate copiers, so the stamps of the two
//! streams interleave out of order: a line is known by its exact stamp, not by being older
//! than the newest one.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptionsBuilder;
use futures::StreamExt;
use jiff::Timestamp;
use tokio::sync::watch;

use super::client::is_not_found;
use crate::logs::{LogWriter, Stream};

/// A running copy of one container's output.
#[derive(Debug)]
pub(crate) struct LogPump {
    done: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LogPump {
    /// Start following container `id` into `writer`, skipping output up to `since`.
    pub(crate) fn spawn(
        docker: Docker,
        id: String,
        writer: LogWriter,
        since: Option<Timestamp>,
    ) -> Arc<LogPump> {
        let (tx, done) = watch::channel(false);
        let task = tokio::spawn(async move {
            follow(&docker, &id, &writer, since).await;
            writer.finish();
            let _ = tx.send(true);
        });
        Arc::new(LogPump { done, task })
    }

    /// Wait (at most `limit`) until the container's output has all been written.
    pub(crate) async fn drained(&self, limit: Duration) -> bool {
        let mut done = self.done.clone();
        tokio::time::timeout(limit, done.wait_for(|d| *d))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stop copying (the container is being removed).
    pub(crate) fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for LogPump {
    /// A pump belongs to its runtime: when the runtime goes, so does the copying (another
    /// runtime instance adopting the container starts its own).
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How one read of the logs API ended.
enum Read {
    /// The stream ended (for a follow: the container stopped, or the daemon went away).
    Ended,
    /// The container no longer exists.
    Gone,
    /// The stream failed midway.
    Broke,
}

/// Follow the container's output until it has stopped and everything is written.
async fn follow(docker: &Docker, id: &str, writer: &LogWriter, since: Option<Timestamp>) {
    let mut cursor = Cursor::new(since);
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut failed = match read(docker, id, writer, &mut cursor, true).await {
            Read::Gone => return,
            Read::Broke => true,
            Read::Ended => false,
        };
        // The stream ended: normally because the container stopped. If it still runs (the
        // daemon restarted, or the stream broke), follow again from where we were.
        match docker.inspect_container(id, None).await {
            Ok(inspect) => {
                let running = inspect.state.and_then(|s| s.running).unwrap_or(false);
                if !running {
                    // A follow that starts just as a short-lived container exits can end
                    // before Docker hands over the last lines; one plain read catches up
                    // (lines already written are skipped by their timestamps).
                    read(docker, id, writer, &mut cursor, false).await;
                    return;
                }
            }
            Err(error) if is_not_found(&error) => return,
            Err(error) => {
                tracing::debug!(container = id, %error, "cannot inspect container; retrying logs");
                failed = true;
            }
        }
        tracing::debug!(
            container = id,
            failed,
            "following the container's logs again"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// How far a pump has copied, by Docker's stamps.
#[derive(Debug, Default)]
struct Cursor {
    /// Lines stamped at or before this were written before the pump started.
    floor: Option<Timestamp>,
    /// The newest stamp copied.
    newest: Option<Timestamp>,
    /// Stamps copied within [`RESUME_OVERLAP`] of `newest`: a resumed read sees them again.
    recent: HashSet<(Timestamp, Stream)>,
}

/// How far before the newest copied line a resumed read starts: stdout and stderr stamps
/// interleave out of order by far less than this.
const RESUME_OVERLAP: Duration = Duration::from_secs(2);

impl Cursor {
    fn new(floor: Option<Timestamp>) -> Cursor {
        Cursor {
            floor,
            ..Cursor::default()
        }
    }

    /// The `since` (whole seconds) for the next read.
    fn since(&self) -> i32 {
        let from = match self.newest {
            Some(newest) => newest.checked_sub(RESUME_OVERLAP).ok(),
            None => self.floor,
        };
        from.map_or(0, |t| i32::try_from(t.as_second()).unwrap_or(0))
    }

    /// Whether a line stamped `stamp` on `stream` is new; records it if so.
    fn admit(&mut self, stamp: Timestamp, stream: Stream) -> bool {
        if self.floor.is_some_and(|floor| stamp <= floor) {
            return false;
        }
        if !self.recent.insert((stamp, stream)) {
            return false;
        }
        if self.newest.is_none_or(|newest| stamp > newest) {
            self.newest = Some(stamp);
        }
        if self.recent.len() > 1024
            && let Some(keep) = self.newest.and_then(|n| n.checked_sub(RESUME_OVERLAP).ok())
        {
            // Older lines are before any resumed read's `since`.
            self.recent.retain(|(t, _)| *t >= keep);
            self.floor = self.floor.max(Some(keep));
        }
        true
    }
}

/// Copy one logs API stream into `writer`, skipping lines the cursor has already seen.
async fn read(
    docker: &Docker,
    id: &str,
    writer: &LogWriter,
    cursor: &mut Cursor,
    follow: bool,
) -> Read {
    let options = LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .timestamps(true)
        .since(cursor.since())
        .build();
    let mut stream = docker.logs(id, Some(options));
    while let Some(item) = stream.next().await {
        let output = match item {
            Ok(output) => output,
            Err(error) if is_not_found(&error) => return Read::Gone,
            Err(error) => {
                tracing::debug!(container = id, %error, "log stream broke");
                return Read::Broke;
            }
        };
        let (stream_kind, bytes) = match output {
            LogOutput::StdErr { message } => (Stream::Stderr, message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => {
                (Stream::Stdout, message)
            }
            LogOutput::StdIn { .. } => continue,
        };
        let (stamp, content) = split_timestamp(&bytes);
        if let Some(stamp) = stamp
            && !cursor.admit(stamp, stream_kind)
        {
            continue;
        }
        writer.write(stream_kind, content);
    }
    Read::Ended
}

/// The timestamp of the last record in a CRI log file, reading only its tail.
pub(crate) fn last_record_time(path: &Path) -> Option<Timestamp> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let length = file.metadata().ok()?.len();
    let tail = (crate::logs::MAX_LINE as u64 + 4096).min(length);
    file.seek(SeekFrom::Start(length - tail)).ok()?;
    let mut bytes = Vec::with_capacity(usize::try_from(tail).unwrap_or(0));
    file.read_to_end(&mut bytes).ok()?;
    String::from_utf8_lossy(&bytes)
        .lines()
        .rev()
        .find_map(crate::logs::parse_record)
        .map(|record| record.timestamp)
}

/// Split Docker's `2024-01-01T00:00:00.123456789Z ` prefix off a log chunk.
pub fn split_timestamp(chunk: &[u8]) -> (Option<Timestamp>, &[u8]) {
    let Some(space) = chunk.iter().position(|b| *b == b' ') else {
        return (None, chunk);
    };
    let parsed = std::str::from_utf8(&chunk[..space])
        .ok()
        .and_then(|s| s.parse::<Timestamp>().ok());
    match parsed {
        Some(stamp) => (Some(stamp), &chunk[space + 1..]),
        None => (None, chunk),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_record_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        assert_eq!(last_record_time(&path), None);
        let writer = LogWriter::open(&path, crate::logs::LogConfig::default()).expect("open");
        writer.write(Stream::Stdout, b"one\n");
        let before = Timestamp::now();
        writer.write(Stream::Stderr, b"two\n");
        let last = last_record_time(&path).expect("a record");
        assert!(last >= before, "{last} < {before}");
    }

    #[test]
    fn cursor_keeps_out_of_order_streams_and_skips_repeats() {
        let t = |s: &str| s.parse::<Timestamp>().expect("stamp");
        let mut cursor = Cursor::new(None);
        assert_eq!(cursor.since(), 0);
        // Docker's stdout copier stamped a later line before the stderr copier's earlier one.
        assert!(cursor.admit(t("2024-05-06T07:08:09.5Z"), Stream::Stdout));
        assert!(
            cursor.admit(t("2024-05-06T07:08:09.4Z"), Stream::Stderr),
            "older stderr line kept"
        );
        assert!(cursor.admit(t("2024-05-06T07:08:09.6Z"), Stream::Stdout));
        // A resumed read starts before the newest line and sees all three again.
        assert_eq!(
            i64::from(cursor.since()),
            t("2024-05-06T07:08:07Z").as_second()
        );
        assert!(!cursor.admit(t("2024-05-06T07:08:09.4Z"), Stream::Stderr));
        assert!(!cursor.admit(t("2024-05-06T07:08:09.5Z"), Stream::Stdout));
        assert!(!cursor.admit(t("2024-05-06T07:08:09.6Z"), Stream::Stdout));
        assert!(
            cursor.admit(t("2024-05-06T07:08:09.6Z"), Stream::Stderr),
            "same stamp, other stream"
        );
        assert!(cursor.admit(t("2024-05-06T07:08:10Z"), Stream::Stdout));

        // A pump resuming from a file skips what the file had.
        let mut resumed = Cursor::new(Some(t("2024-05-06T07:08:09.5Z")));
        assert_eq!(
            i64::from(resumed.since()),
            t("2024-05-06T07:08:09Z").as_second()
        );
        assert!(!resumed.admit(t("2024-05-06T07:08:09.4Z"), Stream::Stderr));
        assert!(resumed.admit(t("2024-05-06T07:08:09.7Z"), Stream::Stderr));
    }

    #[test]
    fn splits_docker_timestamps() {
        let (stamp, rest) = split_timestamp(b"2024-05-06T07:08:09.5Z hello world\n");
        assert_eq!(
            stamp.map(|s| s.to_string()).as_deref(),
            Some("2024-05-06T07:08:09.5Z")
        );
        assert_eq!(rest, b"hello world\n");
        let (stamp, rest) = split_timestamp(b"no stamp here\n");
        assert_eq!(stamp, None);
        assert_eq!(rest, b"no stamp here\n");
        let (stamp, rest) = split_timestamp(b"2024-05-06T07:08:09Z \n");
        assert!(stamp.is_some());
        assert_eq!(rest, b"\n", "an empty line stays a line");
    }
}
