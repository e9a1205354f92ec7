//! The scheduler: binds every pending pod whose `schedulerName` is ours to
//! a node that fits, talking to the API server only through `kube::Client`.
//!
//! Start reading at [`run`]. The pure core — [`plugins`] (filters and
//! scores), [`algorithm`] (one attempt), [`preemption`], [`queue`] — has no
//! I/O and is unit-tested exhaustively; [`cache`] keeps node infos up to
//! date incrementally from watch events (the scheduling loop owns it, so a
//! cycle reads it directly as its snapshot, without copying); [`runner`]
//! is the loop that wires watchers, queue, cache and the API effects
//! (bindings, events, status).
pub mod algorithm;
pub mod bench;
pub mod cache;
pub mod effects;
pub mod leader;
pub mod node_info;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod runner;
pub mod selectors;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use bench::{BenchOptions, BenchReport, bench_scheduling_basic};
pub use leader::LeaderElectionConfig;

/// Scheduler failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another candidate took the leader lease, or it could not be renewed.
    #[error("lost the leader lease {namespace}/{name}")]
    LeadershipLost {
        /// Lease namespace.
        namespace: String,
        /// Lease name.
        name: String,
    },
    /// A watch channel closed (the process is shutting down).
    #[error("a watch stream ended")]
    WatchEnded,
    /// A benchmark step failed.
    #[error("benchmark: {step}: {source}")]
    Bench {
        /// What the benchmark was doing.
        step: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The benchmark did not finish in time.
    #[error("benchmark: timed out after {0:?} waiting for pods to be scheduled ({1} of {2} bound)")]
    BenchTimeout(Duration, usize, usize),
}

/// Scheduler settings. Plain data with kube-scheduler's defaults.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// `percentageOfNodesToScore`; 0 picks Kubernetes' adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Leader election (on by default, lease `kube-system/kube-scheduler`).
    pub leader_election: LeaderElectionConfig,
    /// First retry delay of an unschedulable pod (1 s).
    pub pod_initial_backoff: Duration,
    /// Longest retry delay (10 s).
    pub pod_max_backoff: Duration,
    /// Bindings in flight at once.
    pub bind_parallelism: usize,
    /// Health and counters, shared with whoever reports them.
    pub health: Health,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            percentage_of_nodes_to_score: 0,
            leader_election: LeaderElectionConfig::default(),
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            bind_parallelism: 64,
            health: Health::default(),
        }
    }
}

/// Where the scheduler is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not started yet.
    Starting = 0,
    /// Waiting for the leader lease.
    Standby = 1,
    /// Scheduling.
    Leading = 2,
    /// Stopped (lost the lease or its watches).
    Stopped = 3,
}

#[derive(Debug)]
struct HealthInner {
    state: AtomicU8,
    base: Instant,
    last_beat_ms: AtomicU64,
    scheduled: AtomicU64,
    unschedulable: AtomicU64,
    bind_errors: AtomicU64,
}

/// The scheduler's health and counters, cheap to clone and read from
/// anywhere (the API server's `componentstatuses` probe reads [`Health::check`]).
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Arc::new(HealthInner {
                state: AtomicU8::new(State::Starting as u8),
                base: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                scheduled: AtomicU64::new(0),
                unschedulable: AtomicU64::new(0),
                bind_errors: AtomicU64::new(0),
            }),
        }
    }
}

/// The loop must tick at least this often to count as healthy.
pub const HEALTHY_BEAT: Duration = Duration::from_secs(30);

impl Health {
    /// The current state.
    pub fn state(&self) -> State {
        match self.inner.state.load(Ordering::Relaxed) {
            1 => State::Standby,
            2 => State::Leading,
            3 => State::Stopped,
            _ => State::Starting,
        }
    }

    fn set_state(&self, s: State) {
        self.inner.state.store(s as u8, Ordering::Relaxed);
        self.beat();
    }

    fn beat(&self) {
        let ms = self.inner.base.elapsed().as_millis() as u64;
        self.inner.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// `Ok` while the scheduler runs (leading with a live loop, or standing
    /// by for the lease); the error says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        match self.state() {
            State::Starting => Err("scheduler not started".into()),
            State::Stopped => Err("scheduler stopped".into()),
            State::Standby => Ok(()),
            State::Leading => {
                let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
                let since = self.inner.base.elapsed().saturating_sub(last);
                if since > HEALTHY_BEAT {
                    Err(format!("scheduling loop stalled for {}s", since.as_secs()))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Pods bound so far.
    pub fn scheduled(&self) -> u64 {
        self.inner.scheduled.load(Ordering::Relaxed)
    }

    /// Failed scheduling attempts so far.
    pub fn unschedulable_attempts(&self) -> u64 {
        self.inner.unschedulable.load(Ordering::Relaxed)
    }

    /// Bindings the API server rejected so far.
    pub fn bind_errors(&self) -> u64 {
        self.inner.bind_errors.load(Ordering::Relaxed)
    }
}

/// Runs the scheduler until it loses leadership or its watches end: waits
/// for the leader lease when leader election is on, then schedules every
/// pending pod whose `schedulerName` is `config.scheduler_name`.
pub async fn run(client: kube::Client, config: SchedulerConfig) -> Result<(), Error> {
    let health = config.health.clone();
    if !config.leader_election.enabled {
        health.set_state(State::Leading);
        let result = runner::run_loop(client, &config).await;
        health.set_state(State::Stopped);
        return result;
    }
    let mut elector = leader::LeaderElector::new(client.clone(), config.leader_election.clone());
    health.set_state(State::Standby);
    elector.acquire().await;
    health.set_state(State::Leading);
    let result = tokio::select! {
        r = runner::run_loop(client, &config) => r,
        () = elector.hold() => Err(Error::LeadershipLost {
            namespace: config.leader_election.lease_namespace.clone(),
            name: config.leader_election.lease_name.clone(),
        }),
    };
    health.set_state(State::Stopped);
    if let Err(err) = elector.release().await {
        tracing::debug!(%err, "could not release the leader lease");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_state() {
        let h = Health::default();
        assert!(h.check().is_err());
        h.set_state(State::Standby);
        assert!(h.check().is_ok());
        h.set_state(State::Leading);
        assert!(h.check().is_ok());
        assert_eq!(h.state(), State::Leading);
        h.set_state(State::Stopped);
        assert_eq!(h.check(), Err("scheduler stopped".to_string()));
    }

    #[test]
    fn defaults() {
        let c = SchedulerConfig::default();
        assert_eq!(c.scheduler_name, "default-scheduler");
        assert_eq!(c.percentage_of_nodes_to_score, 0);
        assert_eq!(
            (c.pod_initial_backoff, c.pod_max_backoff),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
        assert!(c.leader_election.enabled);
    }
}
