//! The node lifecycle controller's pure core: whether a node is healthy
//! from its heartbeats, the conditions and taints it should carry, when a
//! pod on a tainted node is evicted (tolerations), and the token bucket that
//! rate-limits evictions.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{NodeCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Taint of a node whose Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Taint of a node whose Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Conditions set to Unknown when the kubelet goes silent.
pub const MONITORED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A node's Ready status as the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Ready=True and heartbeats fresh.
    Ready,
    /// Ready=False (reported by the kubelet).
    NotReady,
    /// No heartbeat within the grace period, or Ready=Unknown.
    Unknown,
}

/// Readiness from the reported Ready condition and the last time any
/// heartbeat (Lease renewal or status update) was observed.
pub fn readiness(
    ready: Option<&NodeCondition>,
    last_heartbeat: Option<Timestamp>,
    now: Timestamp,
    grace: Duration,
) -> Readiness {
    let silent = match last_heartbeat {
        Some(t) => t + SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX) < now,
        None => true,
    };
    if silent {
        return Readiness::Unknown;
    }
    match ready.map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        _ => Readiness::Unknown,
    }
}

/// The conditions after the kubelet stopped posting status: every
/// monitored condition becomes Unknown (`NodeStatusUnknown`). `None` if
/// nothing changes.
pub fn conditions_unknown(current: &[NodeCondition], now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut out = current.to_vec();
    let mut changed = false;
    for type_ in MONITORED {
        let message = "Kubelet stopped posting node status.".to_string();
        match out.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some(message);
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                out.push(NodeCondition {
                    type_: (*type_).into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: None,
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

fn is_ours(t: &Taint) -> bool {
    t.key == NOT_READY || t.key == UNREACHABLE
}

/// The taints a node should carry for its readiness: `not-ready` or
/// `unreachable`, both NoSchedule and NoExecute (keeping `timeAdded` of
/// taints already there). `None` if the taints are already right.
pub fn desired_taints(
    current: &[Taint],
    readiness: Readiness,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let key = match readiness {
        Readiness::Ready => None,
        Readiness::NotReady => Some(NOT_READY),
        Readiness::Unknown => Some(UNREACHABLE),
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !is_ours(t) || Some(t.key.as_str()) == key)
        .cloned()
        .collect();
    if let Some(key) = key {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t.key == key && t.effect == effect) {
                out.push(Taint {
                    key: key.into(),
                    value: None,
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (out != current).then_some(out)
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// When a pod on a node with these taints must be evicted: `Some(at)` or
/// `None` (never). A NoExecute taint the pod does not tolerate evicts at
/// once, except that pods without a toleration for the not-ready /
/// unreachable taints get `default_toleration` (what admission adds).
/// Otherwise the smallest `tolerationSeconds` after the taint was added.
pub fn eviction_time(
    tolerations: &[Toleration],
    taints: &[Taint],
    default_toleration: Duration,
    now: Timestamp,
) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        let secs = if matching.is_empty() {
            if is_ours(taint) {
                Some(default_toleration.as_secs() as i64)
            } else {
                Some(0)
            }
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .map(|s| s.max(0))
        };
        if let Some(secs) = secs {
            let at = added + SignedDuration::from_secs(secs);
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    earliest
}

/// A token bucket (like client-go's flowcontrol rate limiter) limiting how
/// many evictions happen per second.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Timestamp,
}

impl TokenBucket {
    /// `rate` tokens per second, up to `burst` saved; starts full.
    pub fn new(rate: f64, burst: f64, now: Timestamp) -> Self {
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_take(&mut self, now: Timestamp) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64().max(0.0);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn cond(type_: &str, status: &str) -> NodeCondition {
        NodeCondition {
            type_: type_.into(),
            status: status.into(),
            ..NodeCondition::default()
        }
    }

    #[test]
    fn silence_beyond_the_grace_period_is_unknown() {
        let g = Duration::from_secs(50);
        let ready = cond("Ready", "True");
        assert_eq!(
            readiness(Some(&ready), Some(ts(100)), ts(149), g),
            Readiness::Ready
        );
        assert_eq!(
            readiness(Some(&ready), Some(ts(100)), ts(151), g),
            Readiness::Unknown
        );
        assert_eq!(
            readiness(Some(&cond("Ready", "False")), Some(ts(100)), ts(110), g),
            Readiness::NotReady
        );
        assert_eq!(
            readiness(None, Some(ts(100)), ts(110), g),
            Readiness::Unknown
        );
        assert_eq!(
            readiness(Some(&ready), None, ts(110), g),
            Readiness::Unknown
        );
    }

    #[test]
    fn conditions_turn_unknown_once() {
        let current = vec![cond("Ready", "True"), cond("MemoryPressure", "False")];
        let out = conditions_unknown(&current, ts(5)).unwrap_or_default();
        assert_eq!(out.len(), 4);
        assert!(out.iter().all(|c| c.status == "Unknown"));
        let ready = out
            .iter()
            .find(|c| c.type_ == "Ready")
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(conditions_unknown(&out, ts(6)), None);
    }

    #[test]
    fn taints_follow_readiness() {
        let other = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let unknown = desired_taints(std::slice::from_ref(&other), Readiness::Unknown, ts(10))
            .unwrap_or_default();
        assert_eq!(unknown.len(), 3);
        assert!(unknown.iter().any(|t| t.key == UNREACHABLE
            && t.effect == "NoExecute"
            && t.time_added == Some(Time(ts(10)))));
        assert!(
            unknown
                .iter()
                .any(|t| t.key == UNREACHABLE && t.effect == "NoSchedule")
        );
        assert_eq!(
            desired_taints(&unknown, Readiness::Unknown, ts(20)),
            None,
            "timeAdded kept"
        );
        let not_ready = desired_taints(&unknown, Readiness::NotReady, ts(30)).unwrap_or_default();
        assert!(not_ready.iter().all(|t| t.key != UNREACHABLE));
        assert!(
            not_ready
                .iter()
                .any(|t| t.key == NOT_READY && t.effect == "NoExecute")
        );
        assert_eq!(
            desired_taints(&not_ready, Readiness::Ready, ts(40)),
            Some(vec![other.clone()])
        );
        assert_eq!(desired_taints(&[other], Readiness::Ready, ts(40)), None);
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            value: None,
            toleration_seconds: secs,
        }
    }

    #[test]
    fn eviction_respects_toleration_seconds() {
        let taint = Taint {
            key: UNREACHABLE.into(),
            value: None,
            effect: "NoExecute".into(),
            time_added: Some(Time(ts(100))),
        };
        let default = Duration::from_secs(300);
        assert_eq!(
            eviction_time(&[], std::slice::from_ref(&taint), default, ts(100)),
            Some(ts(400)),
            "admission default"
        );
        let short = tol(UNREACHABLE, "Exists", "NoExecute", Some(5));
        assert_eq!(
            eviction_time(
                std::slice::from_ref(&short),
                std::slice::from_ref(&taint),
                default,
                ts(100)
            ),
            Some(ts(105))
        );
        let forever = tol(UNREACHABLE, "Exists", "NoExecute", None);
        assert_eq!(
            eviction_time(&[forever], std::slice::from_ref(&taint), default, ts(100)),
            None
        );
        let all = tol("", "Exists", "", None);
        assert_eq!(
            eviction_time(&[all], std::slice::from_ref(&taint), default, ts(100)),
            None,
            "tolerate everything"
        );
        let custom = Taint {
            key: "evict-me".into(),
            value: None,
            effect: "NoExecute".into(),
            time_added: Some(Time(ts(100))),
        };
        assert_eq!(
            eviction_time(&[short], &[taint, custom.clone()], default, ts(100)),
            Some(ts(100)),
            "untolerated custom taint"
        );
        let no_schedule = Taint {
            effect: "NoSchedule".into(),
            ..custom
        };
        assert_eq!(eviction_time(&[], &[no_schedule], default, ts(100)), None);
    }

    #[test]
    fn toleration_matching() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        assert!(tolerates(
            &Toleration {
                key: Some("k".into()),
                value: Some("v".into()),
                ..Toleration::default()
            },
            &t
        ));
        assert!(!tolerates(
            &Toleration {
                key: Some("k".into()),
                value: Some("x".into()),
                ..Toleration::default()
            },
            &t
        ));
        assert!(tolerates(&tol("k", "Exists", "NoExecute", None), &t));
        assert!(!tolerates(&tol("k", "Exists", "NoSchedule", None), &t));
    }

    #[test]
    fn token_bucket_limits_the_rate() {
        let mut b = TokenBucket::new(0.1, 1.0, ts(0));
        assert!(b.try_take(ts(0)));
        assert!(!b.try_take(ts(5)));
        assert!(b.try_take(ts(10)));
        assert!(!b.try_take(ts(11)));
    }
}
