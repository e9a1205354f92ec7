//! CPU limits as a token bucket, shared by every backend that throttles in user space.
//!
//! A container limited to `m` millicores earns `m / 1000` seconds of CPU per second of wall
//! time, may bank at most one 100 ms period's worth (like the kernel's CFS bandwidth
//! controller), and is paused while in debt. Pure arithmetic: callers measure CPU time their
//! own way (the fake from `/proc`, Wasmtime from time spent in guest code) and apply the
//! pauses their own way (`SIGSTOP`, or sleeping the guest at an epoch yield).

use std::time::Duration;

/// A token bucket over CPU time: the group earns `share` seconds of CPU per second of wall
/// time, may bank at most one 100 ms period's worth, and is paused while in debt.
#[derive(Debug)]
pub struct CpuThrottle {
    share: f64,
    tokens: f64,
    last_cpu: Duration,
}

/// The CFS period whose quota a group may bank.
const PERIOD: Duration = Duration::from_millis(100);

impl CpuThrottle {
    /// A throttle for `millicores` (1000 = one core), starting with a full bucket.
    pub fn new(millicores: u64, cpu_now: Duration) -> Self {
        let share = millicores as f64 / 1000.0;
        CpuThrottle {
            share,
            tokens: share * PERIOD.as_secs_f64(),
            last_cpu: cpu_now,
        }
    }

    /// Account `wall` elapsed time and the group's cumulative CPU time; returns how long to
    /// pause the group to pay back what it used beyond its share.
    pub fn account(&mut self, wall: Duration, cpu_now: Duration) -> Option<Duration> {
        let used = cpu_now.saturating_sub(self.last_cpu).as_secs_f64();
        self.last_cpu = cpu_now;
        let cap = self.share * PERIOD.as_secs_f64();
        self.tokens = (self.tokens + self.share * wall.as_secs_f64()).min(cap) - used;
        if self.tokens < 0.0 {
            // The caller's next `wall` includes the pause, which earns back the debt.
            Some(Duration::from_secs_f64(-self.tokens / self.share))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_keeps_the_long_run_share() {
        // A quarter core, a group burning a full core: over 10 s of 10 ms ticks it may run
        // about 2.5 s.
        let mut throttle = CpuThrottle::new(250, Duration::ZERO);
        let tick = Duration::from_millis(10);
        let (mut wall, mut cpu, mut since_last) = (Duration::ZERO, Duration::ZERO, tick);
        while wall < Duration::from_secs(10) {
            cpu += tick;
            wall += tick;
            since_last = match throttle.account(since_last, cpu) {
                Some(pause) => {
                    wall += pause;
                    pause + tick
                }
                None => tick,
            };
        }
        let share = cpu.as_secs_f64() / wall.as_secs_f64();
        assert!((0.22..0.28).contains(&share), "share {share}");
    }

    #[test]
    fn idle_time_banks_at_most_one_period() {
        let mut throttle = CpuThrottle::new(500, Duration::ZERO);
        assert_eq!(
            throttle.account(Duration::from_secs(60), Duration::ZERO),
            None
        );
        // 50 ms banked at most: 100 ms of CPU leaves 50 ms of debt, 100 ms of pause at 0.5.
        let pause = throttle
            .account(Duration::from_millis(10), Duration::from_millis(100))
            .expect("in debt");
        assert!((95..=105).contains(&pause.as_millis()), "{pause:?}");
    }
}
