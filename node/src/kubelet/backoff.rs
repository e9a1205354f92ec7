//! CrashLoopBackOff: when a container that died may be restarted, as the kubelet decides it.
//!
//! The rule (Kubernetes' `flowcontrol.Backoff` with 10 s initial and 300 s maximum): the first
//! restart is immediate; after each restart the delay doubles (10 s, 20 s, 40 s, ... capped
//! at 300 s) and a dead container waits until `finished_at + delay`. If a container dies more
//! than 10 minutes (twice the maximum) after its last restart, it ran long enough: the delay
//! starts over. Time is passed in, so everything here is pure.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

/// Initial back-off delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// Maximum back-off delay.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: Timestamp,
}

/// Back-off state of a pod's containers, keyed by container name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

/// Whether a dead container may restart now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Restart now (the delay has been recorded).
    Restart,
    /// Wait: in back-off for `delay`, which ends at `until`.
    Wait {
        /// The current delay (for the `back-off 20s restarting ...` message).
        delay: Duration,
        /// When the container may restart.
        until: Timestamp,
    },
}

impl Backoff {
    /// A back-off with custom bounds (tests use short ones).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, entry: &Entry, finished_at: Timestamp) -> bool {
        let since = finished_at.duration_since(entry.last_update);
        since.is_positive() && since.unsigned_abs() > self.max * 2
    }

    /// Decide for `container`, which finished at `finished_at`, at time `now`. A
    /// [`Verdict::Restart`] records the restart (the next delay doubles).
    pub fn check(&mut self, container: &str, finished_at: Timestamp, now: Timestamp) -> Verdict {
        if let Some(entry) = self.entries.get(container).copied()
            && !self.expired(&entry, finished_at)
        {
            let until = finished_at + entry.delay;
            if now < until {
                return Verdict::Wait {
                    delay: entry.delay,
                    until,
                };
            }
        }
        self.record(container, finished_at);
        Verdict::Restart
    }

    /// Peek at the verdict without recording a restart.
    pub fn peek(&self, container: &str, finished_at: Timestamp, now: Timestamp) -> Verdict {
        self.clone().check(container, finished_at, now)
    }

    fn record(&mut self, container: &str, at: Timestamp) {
        let delay = match self.entries.get(container) {
            Some(entry) if !self.expired(entry, at) => (entry.delay * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            container.to_owned(),
            Entry {
                delay,
                last_update: at,
            },
        );
    }

    /// Forget a container (removed from the spec).
    pub fn forget(&mut self, container: &str) {
        self.entries.remove(container);
    }
}

/// The message Kubernetes shows in the `CrashLoopBackOff` waiting state.
pub fn crash_loop_message(
    delay: Duration,
    container: &str,
    pod: &str,
    namespace: &str,
    uid: &str,
) -> String {
    format!(
        "back-off {} restarting failed container={container} pod={pod}_{namespace}({uid})",
        format_delay(delay)
    )
}

/// Go's `time.Duration` formatting for whole seconds and minutes: `10s`, `1m20s`, `5m0s`.
pub fn format_delay(delay: Duration) -> String {
    let secs = delay.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + s).expect("time")
    }

    #[test]
    fn first_restart_is_immediate_then_doubles_to_the_cap() {
        let mut b = Backoff::default();
        // Dies at t=0: restarts at once.
        assert_eq!(b.check("c", at(0), at(0)), Verdict::Restart);
        // Dies again at t=1: waits 10 s from its death.
        let mut finished = 1;
        let mut expected = 10;
        for _ in 0..8 {
            match b.check("c", at(finished), at(finished)) {
                Verdict::Wait { delay, until } => {
                    assert_eq!(delay, Duration::from_secs(expected));
                    assert_eq!(until, at(finished + expected as i64));
                }
                other => panic!("expected wait, got {other:?}"),
            }
            // Still waiting one second before the end, restart at the end.
            assert!(matches!(
                b.check("c", at(finished), at(finished + expected as i64 - 1)),
                Verdict::Wait { .. }
            ));
            assert_eq!(
                b.check("c", at(finished), at(finished + expected as i64)),
                Verdict::Restart
            );
            finished += expected as i64 + 1;
            expected = (expected * 2).min(300);
        }
        assert_eq!(expected, 300, "capped at five minutes");
    }

    #[test]
    fn running_ten_minutes_resets_the_delay() {
        let mut b = Backoff::default();
        assert_eq!(b.check("c", at(0), at(0)), Verdict::Restart);
        assert!(matches!(b.check("c", at(1), at(1)), Verdict::Wait { .. }));
        assert_eq!(b.check("c", at(1), at(11)), Verdict::Restart); // delay now 20 s
        // Dies 10 min + 1 s after the last restart: fresh start, immediate restart.
        assert_eq!(b.check("c", at(11 + 601), at(11 + 601)), Verdict::Restart);
        match b.check("c", at(11 + 602), at(11 + 602)) {
            Verdict::Wait { delay, .. } => assert_eq!(delay, INITIAL),
            other => panic!("expected wait, got {other:?}"),
        }
    }

    #[test]
    fn containers_are_independent_and_peek_does_not_record() {
        let mut b = Backoff::default();
        assert_eq!(b.check("a", at(0), at(0)), Verdict::Restart);
        assert_eq!(b.peek("b", at(0), at(0)), Verdict::Restart);
        assert_eq!(b.check("b", at(0), at(0)), Verdict::Restart);
        assert!(matches!(b.peek("a", at(1), at(1)), Verdict::Wait { .. }));
        b.forget("a");
        assert_eq!(b.check("a", at(1), at(1)), Verdict::Restart);
    }

    #[test]
    fn messages_look_like_kubernetes() {
        assert_eq!(format_delay(Duration::from_secs(10)), "10s");
        assert_eq!(format_delay(Duration::from_secs(80)), "1m20s");
        assert_eq!(format_delay(Duration::from_secs(300)), "5m0s");
        assert_eq!(
            crash_loop_message(Duration::from_secs(20), "app", "web", "default", "u1"),
            "back-off 20s restarting failed container=app pod=web_default(u1)"
        );
    }
}
