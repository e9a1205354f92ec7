//! Container logs in the CRI log format, with size-based rotation.
//!
//! Every line a container writes becomes one record
//! `2024-01-01T00:00:00.000000000Z stdout F hello`: an RFC 3339 UTC timestamp with nine
//! fractional digits, the stream, `F` for a full line or `P` for a partial one (a line longer
//! than [`MAX_LINE`] is split into `P` records ending with an `F`), and the content without its
//! newline. This is what containerd writes and what the kubelet's `kubectl logs` path parses.
//!
//! [`LogWriter`] is cheap to clone and synchronous: backends call it straight from the guest's
//! write path, so the order of lines within a stream is the order the guest wrote them.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use parking_lot::Mutex;

/// Longest line written as one record; longer lines are split into partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// When to rotate a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Rotate once the current file reaches this size (kubelet's `containerLogMaxSize`).
    pub max_size_bytes: u64,
    /// How many files to keep, the current one included (kubelet's `containerLogMaxFiles`).
    pub max_files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_size_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// Format one CRI log record, newline included.
pub fn format_record(at: Timestamp, stream: Stream, partial: bool, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_timestamp(at).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// `2024-01-01T00:00:00.000000000Z`: always nine fractional digits, always UTC.
pub fn format_timestamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When it was written.
    pub timestamp: Timestamp,
    /// Which stream.
    pub stream: Stream,
    /// True for a `P` (partial) record.
    pub partial: bool,
    /// The content, without newline.
    pub content: String,
}

/// Parse one record; `None` if the line is not in the CRI format.
pub fn parse_record(line: &str) -> Option<LogRecord> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?.parse::<Timestamp>().ok()?;
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_owned();
    Some(LogRecord {
        timestamp,
        stream,
        partial,
        content,
    })
}

/// Read all records of a log file (the current file only, not rotated ones).
pub fn read_records(path: &Path) -> io::Result<Vec<LogRecord>> {
    let file = File::open(path)?;
    let mut records = Vec::new();
    for line in io::BufReader::new(file).lines() {
        let line = line?;
        if let Some(record) = parse_record(&line) {
            records.push(record);
        }
    }
    Ok(records)
}

/// Full lines of one stream, partial records joined, in order.
pub fn lines_of(records: &[LogRecord], stream: Stream) -> Vec<String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for record in records.iter().filter(|r| r.stream == stream) {
        pending.push_str(&record.content);
        if !record.partial {
            lines.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        lines.push(pending);
    }
    lines
}

struct Inner {
    path: PathBuf,
    file: File,
    size: u64,
    config: LogConfig,
    pending: [Vec<u8>; 2],
    failed: bool,
}

/// A container's log file, shared by its stdout and stderr. Clones write to the same file.
#[derive(Clone)]
pub struct LogWriter {
    inner: Option<Arc<Mutex<Inner>>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.inner.as_ref().map(|i| i.lock().path.clone());
        f.debug_struct("LogWriter").field("path", &path).finish()
    }
}

impl LogWriter {
    /// A writer that throws everything away (no log path in the spec).
    pub fn discard() -> Self {
        LogWriter { inner: None }
    }

    /// Open (append to) the log at `path`, creating parent directories.
    pub fn open(path: &Path, config: LogConfig) -> io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            inner: Some(Arc::new(Mutex::new(Inner {
                path: path.to_owned(),
                file,
                size,
                config,
                pending: [Vec::new(), Vec::new()],
                failed: false,
            }))),
        })
    }

    /// Open `path` if given, else discard.
    pub fn open_optional(path: Option<&Path>, config: LogConfig) -> io::Result<Self> {
        match path {
            Some(path) => Self::open(path, config),
            None => Ok(Self::discard()),
        }
    }

    /// Append bytes the container wrote to `stream`. Complete lines become records at once;
    /// a trailing incomplete line waits for its newline (or [`LogWriter::finish`]).
    pub fn write(&self, stream: Stream, bytes: &[u8]) {
        let Some(inner) = &self.inner else { return };
        let mut inner = inner.lock();
        let now = Timestamp::now();
        let index = stream.index();
        let mut pending = std::mem::take(&mut inner.pending[index]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|b| *b == b'\n') {
            let end = start + offset;
            inner.emit_line(now, stream, &pending[start..end]);
            start = end + 1;
        }
        while pending.len() - start > MAX_LINE {
            let record = format_record(now, stream, true, &pending[start..start + MAX_LINE]);
            inner.append(&record);
            start += MAX_LINE;
        }
        pending.drain(..start);
        inner.pending[index] = pending;
    }

    /// Write out unterminated lines as full records; call when the container exits.
    pub fn finish(&self) {
        let Some(inner) = &self.inner else { return };
        let mut inner = inner.lock();
        let now = Timestamp::now();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut inner.pending[stream.index()]);
            if !pending.is_empty() {
                inner.emit_line(now, stream, &pending);
            }
        }
    }

    /// The log file's path, unless discarding.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner.as_ref().map(|i| i.lock().path.clone())
    }
}

impl Inner {
    fn emit_line(&mut self, now: Timestamp, stream: Stream, line: &[u8]) {
        let mut chunks = line.chunks(MAX_LINE).peekable();
        if chunks.peek().is_none() {
            let record = format_record(now, stream, false, b"");
            self.append(&record);
        }
        while let Some(chunk) = chunks.next() {
            let partial = chunks.peek().is_some();
            let record = format_record(now, stream, partial, chunk);
            self.append(&record);
        }
    }

    fn append(&mut self, record: &[u8]) {
        if let Err(error) = self.file.write_all(record) {
            // A full disk must not kill the guest; report once and keep going.
            if !self.failed {
                tracing::warn!(path = %self.path.display(), %error, "cannot write container log");
                self.failed = true;
            }
            return;
        }
        self.size += record.len() as u64;
        if self.size >= self.config.max_size_bytes
            && let Err(error) = self.rotate()
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot rotate container log");
        }
    }

    /// `log` → `log.1` → `log.2` ...; the oldest beyond `max_files` is deleted.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.config.max_files.max(1);
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if keep == 1 {
            self.file.set_len(0)?;
        } else {
            let _ = std::fs::remove_file(numbered(keep - 1));
            for n in (1..keep - 1).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fixed_width_utc_timestamps() {
        let at: Timestamp = "2024-01-01T00:00:00Z".parse().expect("timestamp");
        let record = format_record(at, Stream::Stdout, false, b"hello");
        assert_eq!(
            String::from_utf8(record).expect("utf8"),
            "2024-01-01T00:00:00.000000000Z stdout F hello\n"
        );
        let at: Timestamp = "2024-05-06T07:08:09.123Z".parse().expect("timestamp");
        assert_eq!(format_timestamp(at), "2024-05-06T07:08:09.123000000Z");
    }

    #[test]
    fn parses_what_it_formats() {
        let at = Timestamp::now();
        let record = format_record(at, Stream::Stderr, true, b"a b  c");
        let text = String::from_utf8(record).expect("utf8");
        let parsed = parse_record(text.trim_end_matches('\n')).expect("parse");
        assert_eq!(parsed.timestamp, at);
        assert_eq!(parsed.stream, Stream::Stderr);
        assert!(parsed.partial);
        assert_eq!(parsed.content, "a b  c");
        assert!(parse_record("garbage").is_none());
    }

    #[test]
    fn splits_lines_keeps_order_and_flushes_partials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let log = LogWriter::open(&path, LogConfig::default()).expect("open");
        log.write(Stream::Stdout, b"one\ntw");
        log.write(Stream::Stderr, b"err\n");
        log.write(Stream::Stdout, b"o\n\nthree");
        let records = read_records(&path).expect("read");
        assert_eq!(lines_of(&records, Stream::Stdout), ["one", "two", ""]);
        log.finish();
        let records = read_records(&path).expect("read");
        assert_eq!(
            lines_of(&records, Stream::Stdout),
            ["one", "two", "", "three"]
        );
        assert_eq!(lines_of(&records, Stream::Stderr), ["err"]);
        assert!(records.iter().all(|r| !r.partial));
    }

    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let log = LogWriter::open(&path, LogConfig::default()).expect("open");
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        log.write(Stream::Stdout, &long);
        log.write(Stream::Stdout, b"\n");
        let records = read_records(&path).expect("read");
        let tags: Vec<bool> = records.iter().map(|r| r.partial).collect();
        assert_eq!(tags, [true, true, false]);
        assert_eq!(lines_of(&records, Stream::Stdout)[0].len(), long.len());
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.log");
        let config = LogConfig {
            max_size_bytes: 200,
            max_files: 3,
        };
        let log = LogWriter::open(&path, config).expect("open");
        for i in 0..40 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        let rotated: Vec<_> = (1..=4)
            .map(|n| dir.path().join(format!("c.log.{n}")).exists())
            .collect();
        assert_eq!(rotated, [true, true, false, false]);
        assert!(std::fs::metadata(&path).expect("current").len() < 200);
        let mut newest = read_records(&dir.path().join("c.log.1")).expect("read");
        newest.extend(read_records(&path).expect("read"));
        assert_eq!(newest.last().map(|r| r.content.as_str()), Some("line 39"));
    }
}
