//! Controller expectations (Kubernetes' `ControllerExpectations`): after a
//! controller creates or deletes children, its cache lags behind the API
//! server. Until the cache has seen every expected creation and deletion, the
//! controller must not act on replica counts again, or it would create or
//! delete twice.
//!
//! Kubernetes counts events; here the exact names are remembered and checked
//! against the cache, which is level-based and needs no event hooks.
//! Expectations expire after five minutes, as in Kubernetes, so a lost event
//! can never wedge a controller.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;

/// How long unmet expectations block a controller (Kubernetes' `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What the cache says about an expected child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// In the cache, not being deleted.
    Present,
    /// In the cache with a deletion timestamp.
    Terminating,
    /// Not in the cache.
    Absent,
}

/// What a pod cache says about the pod `name` in `namespace`, for
/// [`Expectations::satisfied`].
pub fn seen_pod(pods: &Store<Pod>, namespace: &str, name: &str) -> Seen {
    match pods.get(&ObjectRef::new(name).within(namespace)) {
        None => Seen::Absent,
        Some(p) if p.metadata.deletion_timestamp.is_some() => Seen::Terminating,
        Some(_) => Seen::Present,
    }
}

#[derive(Debug)]
struct Pending {
    creations: HashSet<String>,
    deletions: HashSet<String>,
    since: Instant,
}

/// Pending creations and deletions per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// Records that `names` were just created for `key`.
    pub fn expect_creations(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.with(key, |p| p.creations.extend(names));
    }

    /// Records that `names` were just deleted for `key`.
    pub fn expect_deletions(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.with(key, |p| p.deletions.extend(names));
    }

    fn with(&self, key: &str, f: impl FnOnce(&mut Pending)) {
        let mut map = self.inner.lock();
        let pending = map.entry(key.to_string()).or_insert_with(|| Pending {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: Instant::now(),
        });
        pending.since = Instant::now();
        f(pending);
    }

    /// True if the cache (queried through `seen`) reflects every expected
    /// change for `key`, or the expectations expired. Observed entries are
    /// dropped.
    pub fn satisfied(&self, key: &str, seen: impl Fn(&str) -> Seen) -> bool {
        self.satisfied_at(key, seen, Instant::now())
    }

    fn satisfied_at(&self, key: &str, seen: impl Fn(&str) -> Seen, now: Instant) -> bool {
        let mut map = self.inner.lock();
        let Some(pending) = map.get_mut(key) else {
            return true;
        };
        pending.creations.retain(|name| seen(name) == Seen::Absent);
        pending.deletions.retain(|name| seen(name) == Seen::Present);
        let done = pending.creations.is_empty() && pending.deletions.is_empty();
        if done || now.duration_since(pending.since) > EXPECTATIONS_TIMEOUT {
            if !done {
                tracing::warn!(key, "expectations timed out; resyncing");
            }
            map.remove(key);
            return true;
        }
        false
    }

    /// Forgets `key` (its controller object was deleted).
    pub fn forget(&self, key: &str) {
        self.inner.lock().remove(key);
    }

    /// Number of changes still unobserved for `key`.
    pub fn pending(&self, key: &str) -> usize {
        self.inner
            .lock()
            .get(key)
            .map_or(0, |p| p.creations.len() + p.deletions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_are_met_once_seen_in_the_cache() {
        let e = Expectations::default();
        assert!(
            e.satisfied("ns/a", |_| Seen::Absent),
            "no expectations: satisfied"
        );
        e.expect_creations("ns/a", ["p1".to_string(), "p2".to_string()]);
        assert!(!e.satisfied("ns/a", |_| Seen::Absent));
        assert!(!e.satisfied("ns/a", |n| if n == "p1" {
            Seen::Present
        } else {
            Seen::Absent
        }));
        assert_eq!(e.pending("ns/a"), 1);
        assert!(e.satisfied("ns/a", |_| Seen::Present));
        assert_eq!(e.pending("ns/a"), 0);
        assert!(
            e.satisfied("ns/b", |_| Seen::Absent),
            "keys are independent"
        );
    }

    #[test]
    fn deletions_are_met_when_gone_or_terminating() {
        let e = Expectations::default();
        e.expect_deletions("ns/a", ["p1".to_string(), "p2".to_string()]);
        assert!(!e.satisfied("ns/a", |_| Seen::Present));
        assert!(!e.satisfied("ns/a", |n| if n == "p1" {
            Seen::Terminating
        } else {
            Seen::Present
        }));
        assert!(e.satisfied("ns/a", |_| Seen::Absent));
    }

    #[test]
    fn expectations_expire() {
        let e = Expectations::default();
        e.expect_creations("ns/a", ["p1".to_string()]);
        let later = Instant::now() + EXPECTATIONS_TIMEOUT + Duration::from_secs(1);
        assert!(e.satisfied_at("ns/a", |_| Seen::Absent, later));
        assert_eq!(e.pending("ns/a"), 0);
        e.expect_creations("ns/a", ["p1".to_string()]);
        e.forget("ns/a");
        assert!(e.satisfied("ns/a", |_| Seen::Absent));
    }
}
