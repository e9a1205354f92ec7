//! The scheduling queue, pure (time is passed in): `activeQ` ordered by
//! priority then the time the pod entered it, `backoffQ` (per-pod backoff
//! doubling from the initial to the maximum duration), and the
//! unschedulable pods, which cluster events move back (to backoffQ while
//! their backoff lasts, else to activeQ), or a five-minute flush.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pod_info::PodInfo;

/// Unschedulable pods are retried at least this often
/// (`podMaxInUnschedulablePodsDuration`).
pub const MAX_UNSCHEDULABLE_DURATION: Duration = Duration::from_secs(300);

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    /// In activeQ under this key.
    Active((Reverse<i32>, Instant, u64)),
    /// In backoffQ under this key.
    Backoff((Instant, u64)),
    /// Waiting for a cluster event, since this instant.
    Unschedulable(Instant),
    /// Has scheduling gates; waits for an update.
    Gated,
    /// Popped and being scheduled or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    info: Arc<PodInfo>,
    attempts: u32,
    place: Place,
    /// When the last attempt failed (backoff counts from here).
    failed_at: Option<Instant>,
    /// The scheduling cycle the pod was popped in.
    cycle: u64,
}

/// A pod handed out by [`SchedulingQueue::pop`].
#[derive(Clone, Debug)]
pub struct Popped {
    /// The pod.
    pub info: Arc<PodInfo>,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// The scheduling cycle of this attempt.
    pub cycle: u64,
}

/// The queue.
#[derive(Debug)]
pub struct SchedulingQueue {
    entries: HashMap<Arc<str>, Entry>,
    active: BTreeMap<(Reverse<i32>, Instant, u64), Arc<str>>,
    backoff: BTreeMap<(Instant, u64), Arc<str>>,
    /// Keys of the pods in `Place::Unschedulable`, so events touch only them.
    unschedulable: HashSet<Arc<str>>,
    seq: u64,
    cycle: u64,
    move_request_cycle: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl SchedulingQueue {
    /// An empty queue with the given backoff bounds.
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BTreeMap::new(),
            backoff: BTreeMap::new(),
            unschedulable: HashSet::new(),
            seq: 0,
            cycle: 0,
            move_request_cycle: 0,
            initial_backoff,
            max_backoff,
        }
    }

    /// The backoff after `attempts` failed attempts: initial × 2^(n−1), capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn unlink(&mut self, key: &str) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        match e.place {
            Place::Active(k) => {
                self.active.remove(&k);
            }
            Place::Backoff(k) => {
                self.backoff.remove(&k);
            }
            Place::Unschedulable(_) => {
                self.unschedulable.remove(key);
            }
            _ => {}
        }
    }

    fn place_active(&mut self, key: Arc<str>, now: Instant) {
        self.unlink(&key);
        let seq = self.next_seq();
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let k = (Reverse(e.info.priority), now, seq);
        e.place = Place::Active(k);
        self.active.insert(k, key);
    }

    fn place_backoff_or_active(&mut self, key: Arc<str>, now: Instant) {
        self.unlink(&key);
        let Some(e) = self.entries.get(&key) else {
            return;
        };
        let until = e
            .failed_at
            .map(|t| t + self.backoff_duration(e.attempts.max(1)));
        match until {
            Some(until) if until > now => {
                let seq = self.next_seq();
                if let Some(e) = self.entries.get_mut(&key) {
                    e.place = Place::Backoff((until, seq));
                }
                self.backoff.insert((until, seq), key);
            }
            _ => self.place_active(key, now),
        }
    }

    /// Adds a new pending pod, or updates a queued one. An update of an
    /// unschedulable pod gives it another try (after its backoff).
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key.clone();
        let gated = info.gated;
        if let Some(e) = self.entries.get_mut(&key) {
            let priority_changed = e.info.priority != info.priority;
            e.info = info;
            match e.place {
                Place::InFlight => {}
                Place::Gated if gated => {}
                Place::Gated => self.place_active(key, now),
                _ if gated => {
                    self.unlink(&key);
                    if let Some(e) = self.entries.get_mut(&key) {
                        e.place = Place::Gated;
                    }
                }
                Place::Unschedulable(_) => self.place_backoff_or_active(key, now),
                Place::Active(_) if priority_changed => {
                    self.unlink(&key);
                    self.place_active(key, now);
                }
                Place::Active(_) | Place::Backoff(_) => {}
            }
            return;
        }
        self.entries.insert(
            key.clone(),
            Entry {
                info,
                attempts: 0,
                place: Place::Gated,
                failed_at: None,
                cycle: 0,
            },
        );
        if !gated {
            self.place_active(key, now);
        }
    }

    /// Replaces a queued pod's object without moving it (an update that
    /// changes nothing scheduling reads, e.g. our own status write).
    pub fn refresh(&mut self, info: Arc<PodInfo>) {
        if let Some(e) = self.entries.get_mut(&info.key) {
            e.info = info;
        }
    }

    /// Forgets a pod (deleted, or bound).
    pub fn delete(&mut self, key: &str) {
        self.unlink(key);
        self.entries.remove(key);
    }

    /// Takes the most important pod from activeQ.
    pub fn pop(&mut self) -> Option<Popped> {
        let (_, key) = self.active.pop_first()?;
        self.cycle += 1;
        let cycle = self.cycle;
        let e = self.entries.get_mut(&key)?;
        e.place = Place::InFlight;
        e.attempts += 1;
        e.cycle = cycle;
        Some(Popped {
            info: e.info.clone(),
            attempts: e.attempts,
            cycle,
        })
    }

    /// The latest version of a queued pod.
    pub fn get(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.entries.get(key).map(|e| &e.info)
    }

    /// An attempt found no node. If a cluster event arrived while the pod
    /// was being scheduled it goes to backoffQ (the event may have made room);
    /// else it waits among the unschedulable pods.
    pub fn unschedulable(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        if e.place != Place::InFlight {
            return;
        }
        e.failed_at = Some(now);
        if e.info.gated {
            e.place = Place::Gated;
        } else if self.move_request_cycle >= e.cycle {
            let key = self.entries.get_key_value(key).map(|(k, _)| k.clone());
            if let Some(key) = key {
                self.place_backoff_or_active(key, now);
            }
        } else {
            e.place = Place::Unschedulable(now);
            if let Some((k, _)) = self.entries.get_key_value(key) {
                self.unschedulable.insert(k.clone());
            }
        }
    }

    /// An attempt failed for a transient reason (bind error): retry after backoff.
    pub fn retry_after_backoff(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.failed_at = Some(now);
        let key = self.entries.get_key_value(key).map(|(k, _)| k.clone());
        if let Some(key) = key {
            self.unlink(&key);
            self.place_backoff_or_active(key, now);
        }
    }

    /// A cluster event (node added or changed, pod deleted): every
    /// unschedulable pod gets another try.
    pub fn move_all_to_active_or_backoff(&mut self, now: Instant) {
        let keys: Vec<Arc<str>> = self.unschedulable.drain().collect();
        for k in keys {
            self.place_backoff_or_active(k, now);
        }
        self.move_request_cycle = self.cycle;
    }

    /// Moves pods whose backoff expired to activeQ, and pods unschedulable
    /// for longer than [`MAX_UNSCHEDULABLE_DURATION`] back into play.
    pub fn flush(&mut self, now: Instant) {
        while let Some((&(until, seq), _)) = self.backoff.first_key_value() {
            if until > now {
                break;
            }
            if let Some(key) = self.backoff.remove(&(until, seq)) {
                self.place_active(key, now);
            }
        }
        let stale: Vec<Arc<str>> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries.get(*k).is_some_and(|e| {
                    matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= MAX_UNSCHEDULABLE_DURATION)
                })
            })
            .cloned()
            .collect();
        for k in stale {
            self.place_backoff_or_active(k, now);
        }
    }

    /// When the next backoff expires.
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.first_key_value().map(|((t, _), _)| *t)
    }

    /// Pods in activeQ.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Pods in backoffQ.
    pub fn backoff_len(&self) -> usize {
        self.backoff.len()
    }

    /// Pods waiting for a cluster event (gated ones included).
    pub fn unschedulable_len(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.place, Place::Unschedulable(_) | Place::Gated))
            .count()
    }

    /// Every pod the queue knows, popped ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue knows no pod.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys of every pod the queue knows.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.entries.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::pod;
    use serde_json::json;

    fn q() -> SchedulingQueue {
        SchedulingQueue::new(Duration::from_secs(1), Duration::from_secs(10))
    }

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        pod(name, json!({"spec": {"priority": priority}}))
    }

    fn names(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|p| p.info.name.clone())
            .collect()
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let q = q();
        let secs: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn priority_then_arrival_order() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("low", 0), t);
        q.add_or_update(p("high", 100), t + Duration::from_millis(2));
        q.add_or_update(p("low2", 0), t + Duration::from_millis(1));
        q.add_or_update(p("mid", 50), t + Duration::from_millis(3));
        assert_eq!(names(&mut q), vec!["high", "mid", "low", "low2"]);
    }

    #[test]
    fn unschedulable_pods_wait_for_a_cluster_event_then_back_off() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        let popped = q.pop().expect("a");
        assert_eq!(popped.attempts, 1);
        q.unschedulable("uid-a", t);
        assert_eq!(q.unschedulable_len(), 1);
        q.flush(t + Duration::from_secs(5));
        assert!(q.pop().is_none(), "no event, no retry");
        // An event after the backoff expired sends it straight to activeQ.
        q.move_all_to_active_or_backoff(t + Duration::from_secs(5));
        assert_eq!(q.active_len(), 1);
        assert_eq!(q.pop().map(|p| p.attempts), Some(2));
        // Second failure: 2s backoff; an event 1s later parks it in backoffQ.
        q.unschedulable("uid-a", t + Duration::from_secs(6));
        q.move_all_to_active_or_backoff(t + Duration::from_secs(7));
        assert_eq!((q.active_len(), q.backoff_len()), (0, 1));
        assert_eq!(q.next_backoff_expiry(), Some(t + Duration::from_secs(8)));
        q.flush(t + Duration::from_millis(7900));
        assert!(q.pop().is_none());
        q.flush(t + Duration::from_secs(8));
        assert_eq!(q.pop().map(|p| p.attempts), Some(3));
    }

    #[test]
    fn an_event_during_the_attempt_means_backoff_not_limbo() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop().expect("a");
        q.move_all_to_active_or_backoff(t);
        q.unschedulable("uid-a", t);
        assert_eq!(q.backoff_len(), 1, "the event may have freed room");
    }

    #[test]
    fn stale_unschedulable_pods_are_flushed_after_five_minutes() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop();
        q.unschedulable("uid-a", t);
        q.flush(t + Duration::from_secs(299));
        assert_eq!(q.active_len(), 0);
        q.flush(t + MAX_UNSCHEDULABLE_DURATION);
        assert_eq!(q.active_len(), 1);
    }

    #[test]
    fn updates_and_deletes() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.add_or_update(p("b", 0), t + Duration::from_millis(1));
        // Raising a's priority... and b's more: b first.
        q.add_or_update(p("b", 10), t + Duration::from_millis(2));
        assert_eq!(q.get("uid-b").map(|i| i.priority), Some(10));
        q.delete("uid-a");
        assert_eq!(names(&mut q), vec!["b"]);
        // An update of an unschedulable pod retries it.
        q.unschedulable("uid-b", t + Duration::from_secs(1));
        q.add_or_update(p("b", 10), t + Duration::from_secs(5));
        assert_eq!(q.active_len(), 1);
        // Updates while in flight are kept for later.
        q.pop();
        q.add_or_update(p("b", 20), t + Duration::from_secs(6));
        assert_eq!(q.get("uid-b").map(|i| i.priority), Some(20));
        assert_eq!(q.active_len(), 0);
        q.delete("uid-b");
        assert!(q.is_empty());
        // A refresh keeps the pod where it is.
        q.add_or_update(p("c", 0), t);
        q.pop();
        q.unschedulable("uid-c", t);
        q.refresh(p("c", 5));
        assert_eq!((q.active_len(), q.unschedulable_len()), (0, 1));
        assert_eq!(q.get("uid-c").map(|i| i.priority), Some(5));
    }

    #[test]
    fn gated_pods_wait_for_their_gates_to_go() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(
            pod(
                "g",
                json!({"spec": {"schedulingGates": [{"name": "wait"}]}}),
            ),
            t,
        );
        q.move_all_to_active_or_backoff(t);
        assert!(q.pop().is_none());
        assert_eq!(q.unschedulable_len(), 1);
        q.add_or_update(pod("g", json!({})), t);
        assert_eq!(names(&mut q), vec!["g"]);
    }

    #[test]
    fn bind_failures_retry_after_backoff() {
        let mut q = q();
        let t = Instant::now();
        q.add_or_update(p("a", 0), t);
        q.pop();
        q.retry_after_backoff("uid-a", t);
        assert_eq!(q.backoff_len(), 1);
        q.flush(t + Duration::from_secs(1));
        assert_eq!(q.active_len(), 1);
    }
}
