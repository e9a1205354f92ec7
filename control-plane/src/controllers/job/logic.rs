//! The Job controller's pure core: how many pods to run, which completion
//! indexes are done or missing, the failure backoff, and the conditions
//! with Kubernetes' reasons and messages.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Annotation (and label) with a pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Environment variable with the completion index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The counts a Job's status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Running or pending pods.
    pub active: i32,
    /// Succeeded pods (or completed indexes).
    pub succeeded: i32,
    /// Failed pods.
    pub failed: i32,
}

/// `spec.parallelism` (default 1).
pub fn parallelism(job: &Job) -> i32 {
    job.spec
        .as_ref()
        .and_then(|s| s.parallelism)
        .unwrap_or(1)
        .max(0)
}

/// `spec.completions` (`None` is a work queue).
pub fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// `spec.backoffLimit` (default 6).
pub fn backoff_limit(job: &Job) -> i32 {
    job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6)
}

/// True in Indexed completion mode.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// True if `spec.suspend`.
pub fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// The terminal condition (`Complete` or `Failed`) if the Job finished.
pub fn finished(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// How many pods should be active (Kubernetes' `manageJob` arithmetic for
/// NonIndexed jobs).
pub fn want_active(job: &Job, counts: Counts) -> i32 {
    let par = parallelism(job);
    match completions(job) {
        // Work queue: once one pod succeeded, start no more.
        None => {
            if counts.succeeded > 0 {
                counts.active.min(par)
            } else {
                par
            }
        }
        Some(c) => (c - counts.succeeded).clamp(0, par),
    }
}

/// True once the Job has succeeded.
pub fn is_complete(job: &Job, counts: Counts) -> bool {
    match completions(job) {
        None => counts.succeeded > 0 && counts.active == 0,
        Some(c) => counts.succeeded >= c,
    }
}

/// True if failures exceed `backoffLimit`.
pub fn exceeds_backoff_limit(job: &Job, failed: i32) -> bool {
    failed > backoff_limit(job)
}

/// True if `activeDeadlineSeconds` has passed since `startTime`.
pub fn past_deadline(job: &Job, now: Timestamp) -> bool {
    remaining_deadline(job, now).is_some_and(|d| d.is_zero())
}

/// Time left before `activeDeadlineSeconds` (zero when passed).
pub fn remaining_deadline(job: &Job, now: Timestamp) -> Option<Duration> {
    let secs = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    let end = start + SignedDuration::from_secs(secs);
    Some(if end <= now {
        Duration::ZERO
    } else {
        Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO)
    })
}

/// The pod failure backoff: `base` doubled per consecutive failure, capped
/// at `max` (Kubernetes: 10 s → 6 min).
pub fn backoff_delay(failures: i32, base: Duration, max: Duration) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(30) as u32;
    base.checked_mul(1u32 << shift).unwrap_or(max).min(max)
}

/// Parses `status.completedIndexes` (`"1,3-5"`).
pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => {
                if let Ok(n) = part.parse() {
                    set.insert(n);
                }
            }
        }
    }
    set
}

/// Formats indexes as Kubernetes does (`"1,3-5"`).
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// Indexes to start next: not completed, not running, lowest first, up to
/// `room` of them.
pub fn indexes_to_start(
    completions: i32,
    done: &BTreeSet<i32>,
    running: &BTreeSet<i32>,
    room: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !done.contains(i) && !running.contains(i))
        .take(room)
        .collect()
}

/// A condition as the Job controller writes it.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets a condition, keeping the transition time if the status is unchanged.
pub fn set_condition(conditions: &mut Vec<JobCondition>, mut c: JobCondition) {
    if let Some(existing) = conditions.iter_mut().find(|x| x.type_ == c.type_) {
        if existing.status == c.status && existing.reason == c.reason {
            return;
        }
        if existing.status == c.status {
            c.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = c;
    } else {
        conditions.push(c);
    }
}

/// Why a Job failed, with Kubernetes' reason and message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// More failed pods than `backoffLimit`.
    BackoffLimitExceeded,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
}

impl Failure {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "BackoffLimitExceeded",
            Failure::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    /// The condition message.
    pub fn message(self) -> &'static str {
        match self {
            Failure::BackoffLimitExceeded => "Job has reached the specified backoff limit",
            Failure::DeadlineExceeded => "Job was active longer than specified deadline",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobSpec, JobStatus};

    fn job(completions: Option<i32>, parallelism: i32) -> Job {
        Job {
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                ..JobSpec::default()
            }),
            ..Job::default()
        }
    }

    fn c(active: i32, succeeded: i32) -> Counts {
        Counts {
            active,
            succeeded,
            failed: 0,
        }
    }

    #[test]
    fn active_pod_targets() {
        let fixed = job(Some(5), 2);
        assert_eq!(want_active(&fixed, c(0, 0)), 2);
        assert_eq!(want_active(&fixed, c(2, 4)), 1, "one completion left");
        assert_eq!(want_active(&fixed, c(0, 5)), 0);
        assert!(is_complete(&fixed, c(0, 5)));
        assert!(!is_complete(&fixed, c(1, 4)));
        let queue = job(None, 3);
        assert_eq!(want_active(&queue, c(0, 0)), 3);
        assert_eq!(
            want_active(&queue, c(2, 1)),
            2,
            "no new pods after the first success"
        );
        assert!(!is_complete(&queue, c(2, 1)));
        assert!(is_complete(&queue, c(0, 1)));
        assert_eq!(want_active(&job(Some(1), 0), c(0, 0)), 0);
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_six_minutes() {
        let (base, max) = (Duration::from_secs(10), Duration::from_secs(360));
        assert_eq!(backoff_delay(0, base, max), Duration::ZERO);
        assert_eq!(backoff_delay(1, base, max), Duration::from_secs(10));
        assert_eq!(backoff_delay(2, base, max), Duration::from_secs(20));
        assert_eq!(backoff_delay(4, base, max), Duration::from_secs(80));
        assert_eq!(backoff_delay(6, base, max), Duration::from_secs(320));
        assert_eq!(backoff_delay(7, base, max), Duration::from_secs(360));
        assert_eq!(backoff_delay(100, base, max), Duration::from_secs(360));
        let mut j = job(Some(1), 1);
        assert!(!exceeds_backoff_limit(&j, 6));
        assert!(exceeds_backoff_limit(&j, 7));
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit = Some(0);
        }
        assert!(exceeds_backoff_limit(&j, 1));
    }

    #[test]
    fn deadlines() {
        let now = Timestamp::from_second(1000).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut j = job(Some(1), 1);
        assert!(!past_deadline(&j, now));
        if let Some(s) = j.spec.as_mut() {
            s.active_deadline_seconds = Some(30);
        }
        j.status = Some(JobStatus {
            start_time: Some(Time(now - SignedDuration::from_secs(10))),
            ..JobStatus::default()
        });
        assert_eq!(remaining_deadline(&j, now), Some(Duration::from_secs(20)));
        assert!(!past_deadline(&j, now));
        assert!(past_deadline(&j, now + SignedDuration::from_secs(20)));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let set = parse_indexes("0,2-4,7");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), vec![0, 2, 3, 4, 7]);
        assert_eq!(format_indexes(&set), "0,2-4,7");
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert!(parse_indexes("").is_empty());
        let running: BTreeSet<i32> = [1].into();
        assert_eq!(indexes_to_start(6, &set, &running, 2), vec![5]);
        assert_eq!(
            indexes_to_start(3, &BTreeSet::new(), &BTreeSet::new(), 2),
            vec![0, 1]
        );
    }

    #[test]
    fn conditions_keep_transition_times() {
        let t1 = Timestamp::from_second(1).unwrap_or(Timestamp::UNIX_EPOCH);
        let t2 = Timestamp::from_second(2).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut cs = Vec::new();
        set_condition(
            &mut cs,
            condition("Suspended", "True", "JobSuspended", "Job suspended", t1),
        );
        set_condition(
            &mut cs,
            condition("Suspended", "True", "JobSuspended", "Job suspended", t2),
        );
        assert_eq!(cs[0].last_transition_time, Some(Time(t1)));
        set_condition(
            &mut cs,
            condition("Suspended", "False", "JobResumed", "Job resumed", t2),
        );
        assert_eq!((cs.len(), cs[0].status.as_str()), (1, "False"));
        assert_eq!(
            Failure::BackoffLimitExceeded.reason(),
            "BackoffLimitExceeded"
        );
        assert_eq!(
            Failure::DeadlineExceeded.message(),
            "Job was active longer than specified deadline"
        );
    }
}
