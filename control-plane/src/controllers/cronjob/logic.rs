//! The CronJob controller's pure core: parsing `spec.schedule` (standard
//! five-field cron and the `@hourly`-style descriptors, through the
//! `croner` crate) in `spec.timeZone`, finding the most recent missed run
//! and the next one, naming Jobs, and choosing history to delete.

use std::str::FromStr;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Annotation with the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// More missed runs than this are reported as a warning, as in Kubernetes.
pub const TOO_MANY_MISSED: usize = 100;

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

/// Parses a schedule (`*/5 * * * *`, `@daily`, …) in an IANA time zone
/// (UTC when unset). A `TZ=`/`CRON_TZ=` prefix is accepted as the zone.
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
    let mut spec = schedule.trim();
    let mut zone = time_zone.map(str::to_string);
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            let (tz, cron) = rest
                .split_once(' ')
                .ok_or_else(|| format!("invalid schedule {schedule:?}"))?;
            zone = Some(tz.to_string());
            spec = cron.trim();
        }
    }
    let tz = match zone.as_deref() {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => TimeZone::UTC,
        Some(name) => {
            TimeZone::get(name).map_err(|e| format!("unknown time zone {name:?}: {e}"))?
        }
    };
    let fields = spec.split_whitespace().count();
    if !spec.starts_with('@') && fields != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {fields}: {spec:?}"
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(spec)
        .or_else(|_| Cron::from_str(spec))
        .map_err(|e| format!("unparseable schedule {spec:?}: {e}"))?;
    Ok(Schedule { cron, tz })
}

impl Schedule {
    /// The first run strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The latest run in `(earliest, now]`, and how many runs that window
    /// holds (counted up to [`TOO_MANY_MISSED`] + 1).
    pub fn most_recent(&self, earliest: Timestamp, now: Timestamp) -> (Option<Timestamp>, usize) {
        let mut count = 0;
        let mut t = earliest;
        let mut last = None;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            count += 1;
            last = Some(next);
            t = next;
            if count > TOO_MANY_MISSED {
                // Jump to the end instead of walking every missed run.
                let zoned = now.to_zoned(self.tz.clone());
                last = self
                    .cron
                    .find_previous_occurrence(&zoned, true)
                    .ok()
                    .map(|z| z.timestamp());
                break;
            }
        }
        (last, count)
    }
}

/// Kubernetes' `getJobName`: the CronJob's name and the scheduled time in
/// minutes since the epoch.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

/// Which finished Jobs to delete: given (name, finish time) of the
/// successful or failed ones, all but the newest `limit`.
pub fn history_to_delete(mut finished: Vec<(String, Timestamp)>, limit: i32) -> Vec<String> {
    let keep = limit.max(0) as usize;
    if finished.len() <= keep {
        return Vec::new();
    }
    finished.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let n = finished.len() - keep;
    finished.into_iter().take(n).map(|(name, _)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn standard_schedules_parse() {
        assert!(parse("*/5 * * * *", None).is_ok());
        assert!(parse("@hourly", None).is_ok());
        assert!(parse("0 0 * * MON-FRI", None).is_ok());
        assert!(parse("* * * * * *", None).is_err(), "no seconds field");
        assert!(parse("61 * * * *", None).is_err());
        assert!(parse("not a schedule", None).is_err());
        assert!(parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn next_runs() -> Result<(), String> {
        let every5 = parse("*/5 * * * *", None)?;
        assert_eq!(
            every5.next_after(ts("2026-01-01T00:03:10Z")),
            Some(ts("2026-01-01T00:05:00Z"))
        );
        assert_eq!(
            every5.next_after(ts("2026-01-01T00:05:00Z")),
            Some(ts("2026-01-01T00:10:00Z")),
            "strictly after"
        );
        let daily = parse("@daily", None)?;
        assert_eq!(
            daily.next_after(ts("2026-01-01T10:00:00Z")),
            Some(ts("2026-01-02T00:00:00Z"))
        );
        let ny = parse("0 9 * * *", Some("America/New_York"))?;
        assert_eq!(
            ny.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T14:00:00Z"))
        );
        let prefixed = parse("TZ=America/New_York 0 9 * * *", None)?;
        assert_eq!(
            prefixed.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2026-01-01T14:00:00Z"))
        );
        Ok(())
    }

    #[test]
    fn most_recent_missed_run() -> Result<(), String> {
        let every_minute = parse("* * * * *", None)?;
        let (last, n) =
            every_minute.most_recent(ts("2026-01-01T00:00:30Z"), ts("2026-01-01T00:03:10Z"));
        assert_eq!((last, n), (Some(ts("2026-01-01T00:03:00Z")), 3));
        let (none, zero) =
            every_minute.most_recent(ts("2026-01-01T00:03:00Z"), ts("2026-01-01T00:03:59Z"));
        assert_eq!(
            (none, zero),
            (None, 0),
            "the run at the earliest time itself already happened"
        );
        let (last, n) =
            every_minute.most_recent(ts("2026-01-01T00:00:00Z"), ts("2026-01-02T00:00:30Z"));
        assert_eq!(last, Some(ts("2026-01-02T00:00:00Z")));
        assert!(n > TOO_MANY_MISSED);
        Ok(())
    }

    #[test]
    fn job_names_and_history() {
        assert_eq!(
            job_name("backup", ts("2026-01-01T00:05:00Z")),
            format!("backup-{}", ts("2026-01-01T00:05:00Z").as_second() / 60)
        );
        let finished = vec![
            ("a".to_string(), ts("2026-01-01T00:01:00Z")),
            ("c".to_string(), ts("2026-01-01T00:03:00Z")),
            ("b".to_string(), ts("2026-01-01T00:02:00Z")),
        ];
        assert_eq!(history_to_delete(finished.clone(), 1), vec!["a", "b"]);
        assert_eq!(history_to_delete(finished.clone(), 3), Vec::<String>::new());
        assert_eq!(history_to_delete(finished, 0).len(), 3);
    }
}
