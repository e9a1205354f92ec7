//! Leader election through a `coordination.k8s.io/v1` Lease, like client-go's
//! `leaderelection` with a `LeaseLock`: the holder renews `renewTime` every
//! retry period; a candidate takes the lease once it has not been renewed
//! for `leaseDurationSeconds`; the leader stops if it cannot renew within
//! the renew deadline.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};

use super::error::{Error, KubeResultExt, is_conflict};

/// Leader election settings (kube-controller-manager's defaults).
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (`holderIdentity`).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before giving up.
    pub renew_deadline: Duration,
    /// Pause between attempts.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "skiff".into());
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: "kube-controller-manager".into(),
            identity: format!("{host}_{}", uuid::Uuid::new_v4()),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate should write to the lease, if anything.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Someone else holds a valid lease.
    Wait,
    /// Write this spec (take over or renew).
    Write(LeaseSpec),
}

/// Decides, from the current lease spec, whether `me` may acquire or renew
/// it at `now` (client-go's `tryAcquireOrRenew`).
pub fn decide(
    current: Option<&LeaseSpec>,
    me: &str,
    duration: Duration,
    now: Timestamp,
) -> Decision {
    let secs = duration.as_secs().max(1) as i32;
    let fresh = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(secs),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(spec) = current else {
        return Decision::Write(fresh(0, None));
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    let transitions = spec.lease_transitions.unwrap_or(0);
    if holder == me {
        return Decision::Write(fresh(transitions, spec.acquire_time.clone()));
    }
    let valid_for =
        SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(secs)));
    let expired = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
        Some(t) => t.0 + valid_for <= now,
        None => true,
    };
    if holder.is_empty() || expired {
        Decision::Write(fresh(transitions + 1, None))
    } else {
        Decision::Wait
    }
}

/// One attempt to acquire or renew; true if we hold the lease afterwards.
pub async fn try_acquire_or_renew(
    client: &Client,
    config: &LeaderElectionConfig,
) -> Result<bool, Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let current = api
        .get_opt(&config.name)
        .await
        .ctx(|| format!("reading lease {}/{}", config.namespace, config.name))?;
    let decision = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &config.identity,
        config.lease_duration,
        Timestamp::now(),
    );
    let Decision::Write(spec) = decision else {
        return Ok(false);
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Another candidate wrote first.
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e).ctx(|| format!("writing lease {}/{}", config.namespace, config.name)),
    }
}

/// Blocks until this candidate holds the lease.
pub async fn acquire(client: &Client, config: &LeaderElectionConfig) {
    loop {
        match try_acquire_or_renew(client, config).await {
            Ok(true) => {
                tracing::info!(identity = %config.identity, lease = %config.name, "acquired leadership");
                return;
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(%err, "leader election attempt failed"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// Renews the lease until a renewal has failed for the whole renew deadline;
/// then returns the reason leadership was lost.
pub async fn keep_renewing(client: &Client, config: &LeaderElectionConfig) -> Error {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(config.retry_period).await;
        match try_acquire_or_renew(client, config).await {
            Ok(true) => last_ok = tokio::time::Instant::now(),
            Ok(false) => {
                return Error::LeaderElectionLost(format!(
                    "lease {} taken by another holder",
                    config.name
                ));
            }
            Err(err) => tracing::warn!(%err, "lease renewal failed"),
        }
        if last_ok.elapsed() > config.renew_deadline {
            return Error::LeaderElectionLost(format!(
                "could not renew lease {} within the deadline",
                config.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn free_or_expired_leases_are_taken_and_valid_ones_respected() {
        let d = Duration::from_secs(15);
        let Decision::Write(first) = decide(None, "a", d, ts(100)) else {
            panic!("an absent lease is free");
        };
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.lease_duration_seconds, Some(15));

        assert_eq!(decide(Some(&first), "b", d, ts(110)), Decision::Wait);
        let Decision::Write(taken) = decide(Some(&first), "b", d, ts(115)) else {
            panic!("expired after 15 s");
        };
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_transitions, Some(1));

        let Decision::Write(renewed) = decide(Some(&first), "a", d, ts(110)) else {
            panic!("the holder renews");
        };
        assert_eq!(
            renewed.acquire_time, first.acquire_time,
            "renewal keeps acquireTime"
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(ts(110))));
        assert_eq!(renewed.lease_transitions, Some(0));

        let released = LeaseSpec::default();
        assert!(matches!(
            decide(Some(&released), "b", d, ts(1)),
            Decision::Write(_)
        ));
    }
}
