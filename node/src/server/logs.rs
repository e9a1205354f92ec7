//! `kubectl logs` on the node: CRI log files rendered with `tailLines`, `sinceSeconds`,
//! `sinceTime`, `timestamps` and `limitBytes`, as the kubelet renders them. [`render`] is pure;
//! following a file is done by the server by polling it.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Deserialize;
use skiff_runtimes::logs::{LogRecord, format_timestamp, parse_record};

/// Query parameters of `/containerLogs/{ns}/{pod}/{container}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogOptions {
    /// Keep streaming new lines.
    #[serde(default, deserialize_with = "boolish")]
    pub follow: bool,
    /// The previous run's log.
    #[serde(default, deserialize_with = "boolish")]
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    #[serde(default, deserialize_with = "boolish")]
    pub timestamps: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<i64>,
    /// Only lines newer than this time.
    pub since_time: Option<String>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<i64>,
}

fn boolish<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    Ok(matches!(s.as_str(), "true" | "1" | "True" | ""))
}

impl LogOptions {
    /// The earliest timestamp to show, if any.
    pub fn since(&self, now: Timestamp) -> Option<Timestamp> {
        if let Some(t) = self
            .since_time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
        {
            return Some(t);
        }
        self.since_seconds
            .map(|s| now - jiff::SignedDuration::from_secs(s.max(0)))
    }
}

/// One record as `kubectl logs` prints it.
pub fn render_record(record: &LogRecord, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.content.len() + 40);
    if timestamps {
        out.extend_from_slice(format_timestamp(record.timestamp).as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(record.content.as_bytes());
    if !record.partial {
        out.push(b'\n');
    }
    out
}

/// Render `records` (in file order) with the options' filters.
pub fn render(records: &[LogRecord], opts: &LogOptions, now: Timestamp) -> Vec<u8> {
    let since = opts.since(now);
    let selected: Vec<&LogRecord> = records
        .iter()
        .filter(|r| since.is_none_or(|s| r.timestamp >= s))
        .collect();
    let start = match opts.tail_lines {
        Some(n) if n >= 0 => {
            // Count full lines from the end; partial records belong to the next full one.
            let mut lines = 0;
            let mut start = selected.len();
            for (i, r) in selected.iter().enumerate().rev() {
                if !r.partial {
                    if lines == n {
                        break;
                    }
                    lines += 1;
                }
                start = i;
            }
            if n == 0 { selected.len() } else { start }
        }
        _ => 0,
    };
    let mut out = Vec::new();
    for r in &selected[start..] {
        out.extend(render_record(r, opts.timestamps));
    }
    if let Some(limit) = opts.limit_bytes.filter(|l| *l >= 0) {
        out.truncate(limit as usize);
    }
    out
}

/// Parse a whole log file (unparseable lines skipped).
pub fn read(path: &Path) -> std::io::Result<Vec<LogRecord>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(parse_record).collect())
}

/// The log file of run `restart` of a container.
pub fn log_path(pod_dir: &Path, container: &str, restart: i32) -> PathBuf {
    pod_dir.join(container).join(format!("{restart}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtimes::logs::Stream;

    fn rec(sec: i64, content: &str, partial: bool) -> LogRecord {
        LogRecord {
            timestamp: Timestamp::from_second(1_700_000_000 + sec).expect("t"),
            stream: Stream::Stdout,
            partial,
            content: content.into(),
        }
    }

    #[test]
    fn tail_since_timestamps_and_limits() {
        let records = vec![
            rec(0, "one", false),
            rec(1, "tw", true),
            rec(1, "o", false),
            rec(2, "three", false),
        ];
        let now = Timestamp::from_second(1_700_000_003).expect("now");
        let all = render(&records, &LogOptions::default(), now);
        assert_eq!(String::from_utf8_lossy(&all), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(&records, &tail, now)),
            "two\nthree\n"
        );
        let none = LogOptions {
            tail_lines: Some(0),
            ..LogOptions::default()
        };
        assert!(render(&records, &none, now).is_empty());
        let since = LogOptions {
            since_seconds: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(&records, &since, now)),
            "three\n"
        );
        let ts = LogOptions {
            timestamps: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        assert_eq!(
            String::from_utf8_lossy(&render(&records, &ts, now)),
            "2023-11-14T22:13:22.000000000Z three\n"
        );
        let limit = LogOptions {
            limit_bytes: Some(5),
            ..LogOptions::default()
        };
        assert_eq!(render(&records, &limit, now), b"one\nt");
    }

    #[test]
    fn parses_query_strings() {
        let opts: LogOptions =
            serde_urlencoded_like("follow=true&tailLines=10&timestamps=1&previous=false");
        assert!(opts.follow && opts.timestamps && !opts.previous);
        assert_eq!(opts.tail_lines, Some(10));
    }

    fn serde_urlencoded_like(q: &str) -> LogOptions {
        let uri: http::Uri = format!("/x?{q}").parse().expect("uri");
        axum::extract::Query::<LogOptions>::try_from_uri(&uri)
            .expect("query")
            .0
    }
}
