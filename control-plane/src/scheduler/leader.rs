//! Leader election through a coordination.k8s.io/v1 Lease, with
//! client-go's semantics, so several schedulers can run and only one
//! schedules: a candidate takes the lease when it is free or its holder
//! has not renewed it for `leaseDurationSeconds` (judged by when this
//! candidate last saw the record change, so clocks need not agree); the
//! leader renews every `retry_period` and gives up if it cannot renew for
//! `renew_deadline`. Updates are compare-and-swap on `resourceVersion`.
//!
//! (kube-lease-manager exists but locks with server-side apply field
//! ownership, which needs managed-fields conflict detection in the API
//! server; plain get/replace works on any Kubernetes-compatible server.)

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

/// Leader election settings (kube-scheduler's defaults).
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// Whether to elect a leader at all.
    pub enabled: bool,
    /// Lease name (`kube-scheduler`).
    pub lease_name: String,
    /// Lease namespace (`kube-system`).
    pub lease_namespace: String,
    /// This candidate's identity (host name plus a random suffix).
    pub identity: String,
    /// How long a lease is valid without renewal (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up (10 s).
    pub renew_deadline: Duration,
    /// Interval between attempts (2 s).
    pub retry_period: Duration,
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "skiff".into());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            enabled: true,
            lease_name: "kube-scheduler".into(),
            lease_namespace: "kube-system".into(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The record this candidate writes: it takes the lease (a new
/// `acquireTime` and one more transition when the holder changes) or
/// renews it.
pub fn next_spec(
    current: Option<&LeaseSpec>,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> LeaseSpec {
    let held_by_me = current.and_then(|s| s.holder_identity.as_deref()) == Some(me);
    let transitions = current.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        acquire_time: if held_by_me {
            current
                .and_then(|s| s.acquire_time.clone())
                .or(Some(MicroTime(now)))
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if held_by_me || current.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// What identifies a lease record version: holder and renew time.
type Record = (Option<String>, Option<MicroTime>);

/// A candidate for the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    /// The last record seen (holder, renew time) and when it was first seen.
    observed: Option<(Record, Instant)>,
}

impl LeaderElector {
    /// A candidate using `client`.
    pub fn new(client: kube::Client, config: LeaderElectionConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            observed: None,
        }
    }

    /// One attempt to take or renew the lease; `Ok(true)` when we hold it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.config.identity.clone();
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.lease_namespace.clone()),
                    ..Default::default()
                },
                spec: Some(next_spec(None, &me, self.config.lease_duration, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        let seen_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                let at = Instant::now();
                self.observed = Some((record, at));
                at
            }
        };
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let valid_for = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.config.lease_duration);
        if holder.is_some_and(|h| h != me) && seen_at + valid_for > Instant::now() {
            return Ok(false);
        }
        let mut updated = lease.clone();
        updated.spec = Some(next_spec(Some(&spec), &me, self.config.lease_duration, now));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &updated)
            .await
        {
            Ok(l) => {
                let s = l.spec.unwrap_or_default();
                self.observed = Some(((s.holder_identity, s.renew_time), Instant::now()));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "acquired the leader lease");
                    return;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "leader election: could not read or write the lease")
                }
            }
            tokio::time::sleep(jitter(self.config.retry_period)).await;
        }
    }

    /// Renews the lease until a renewal has not succeeded for
    /// `renew_deadline`; returns when leadership is lost.
    pub async fn hold(&mut self) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(true)) => last_ok = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::warn!(identity = %self.config.identity, "another candidate holds the lease");
                    return;
                }
                Ok(Err(err)) => tracing::warn!(%err, "leader election: renewal failed"),
                Err(_) => tracing::warn!("leader election: renewal timed out"),
            }
            if last_ok.elapsed() >= self.config.renew_deadline {
                return;
            }
        }
    }

    /// Gives the lease up (so another candidate takes over at once).
    pub async fn release(&mut self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.lease_name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// `wait.Jitter(d, 1.2)`: between d and 2.2 d.
fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(1.0 + rand::rng().random_range(0.0..1.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn taking_a_free_or_expired_lease_counts_a_transition() {
        let now = ts("2024-01-01T00:00:10Z");
        let fresh = next_spec(None, "me", Duration::from_secs(15), now);
        assert_eq!(fresh.holder_identity.as_deref(), Some("me"));
        assert_eq!(fresh.lease_transitions, Some(0));
        assert_eq!(fresh.lease_duration_seconds, Some(15));
        let theirs = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_transitions: Some(3),
            acquire_time: Some(MicroTime(ts("2024-01-01T00:00:00Z"))),
            ..Default::default()
        };
        let taken = next_spec(Some(&theirs), "me", Duration::from_secs(15), now);
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(now)));
    }

    #[test]
    fn renewing_keeps_acquire_time_and_transitions() {
        let mine = LeaseSpec {
            holder_identity: Some("me".into()),
            lease_transitions: Some(2),
            acquire_time: Some(MicroTime(ts("2024-01-01T00:00:00Z"))),
            ..Default::default()
        };
        let now = ts("2024-01-01T00:00:30Z");
        let renewed = next_spec(Some(&mine), "me", Duration::from_secs(15), now);
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(ts("2024-01-01T00:00:00Z")))
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));
    }

    #[test]
    fn defaults_match_kube_scheduler() {
        let c = LeaderElectionConfig::default();
        assert_eq!(
            (c.lease_namespace.as_str(), c.lease_name.as_str()),
            ("kube-system", "kube-scheduler")
        );
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert!(c.identity.contains('_'));
        let j = jitter(Duration::from_secs(2));
        assert!(j >= Duration::from_secs(2) && j <= Duration::from_millis(4400));
    }
}
