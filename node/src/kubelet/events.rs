//! Kubernetes Events about pods, as the kubelet records them (`kubectl describe pod` shows
//! them): source component `kubelet`, host = node name, repeated events aggregated into one
//! with a growing `count`.
//!
//! Recording never blocks a pod worker: events go through a bounded channel to one task
//! that writes them (dropping, with a debug log, if the API server falls far behind). The
//! task writes at most [`EventLimit::qps`] events a second after a burst of
//! [`EventLimit::burst`], as the kubelet's `--event-qps` (50) and `--event-burst` (100) do:
//! in a burst of pod starts, their four events a pod wait rather than compete with the
//! pods' own writes for the API server.

use std::collections::HashMap;
use std::num::NonZeroU32;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// How fast events are written: the kubelet's `--event-qps` and `--event-burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimit {
    /// Events written per second; 0 writes them without a limit.
    pub qps: u32,
    /// Events written at once before the rate applies (at least 1).
    pub burst: u32,
}

impl Default for EventLimit {
    fn default() -> Self {
        EventLimit {
            qps: 50,
            burst: 100,
        }
    }
}

impl EventLimit {
    /// The limiter the writer waits on; `None` without a limit.
    fn limiter(self) -> Option<governor::DefaultDirectRateLimiter> {
        let qps = NonZeroU32::new(self.qps)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Some(governor::RateLimiter::direct(
            governor::Quota::per_second(qps).allow_burst(burst),
        ))
    }
}

#[derive(Debug)]
struct Pending {
    /// When it happened: the event's timestamps, however long it waits for the limit.
    at: Timestamp,
    involved: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Records events; cheap to clone.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Pending>>,
}

impl Recorder {
    /// A recorder writing through `client` as node `node_name` at most as fast as `limit`
    /// allows; spawns the writer task.
    pub fn new(client: Client, node_name: String, limit: EventLimit) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(client, node_name, limit, rx));
        Recorder { tx: Some(tx) }
    }

    /// A recorder that drops everything (unit tests).
    pub fn disabled() -> Self {
        Recorder { tx: None }
    }

    /// Record an event about `pod`, optionally about one of its containers (`fieldPath`).
    pub fn pod_event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        type_: EventType,
        reason: &str,
        message: impl Into<String>,
    ) {
        let Some(tx) = &self.tx else { return };
        let field_path = container.map(|name| {
            let spec = pod.spec.as_ref();
            let init = spec
                .and_then(|s| s.init_containers.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.name == name));
            if init {
                format!("spec.initContainers{{{name}}}")
            } else {
                format!("spec.containers{{{name}}}")
            }
        });
        let involved = ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        let pending = Pending {
            at: Timestamp::now(),
            involved,
            type_,
            reason: reason.to_owned(),
            message: message.into(),
        };
        if tx.try_send(pending).is_err() {
            tracing::debug!(reason, "event dropped: recorder backlog full");
        }
    }
}

/// What makes two events the same one: (namespace, uid, fieldPath, reason, message).
type EventKey = (String, String, String, String, String);

async fn writer(
    client: Client,
    node_name: String,
    limit: EventLimit,
    mut rx: mpsc::Receiver<Pending>,
) {
    let limiter = limit.limiter();
    // Key → (event name, count).
    let mut seen: HashMap<EventKey, (String, i32)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        // Creates and aggregating patches alike, as the kubelet's client limits them all.
        if let Some(limiter) = &limiter {
            limiter.until_ready().await;
        }
        let namespace = p
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = p.at;
        let key = (
            namespace.clone(),
            p.involved.uid.clone().unwrap_or_default(),
            p.involved.field_path.clone().unwrap_or_default(),
            p.reason.clone(),
            p.message.clone(),
        );
        if let Some((name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": Time(now)});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(error) => {
                    tracing::debug!(%error, "event aggregation failed; creating a new one");
                }
            }
        }
        let name = format!(
            "{}.{:x}",
            p.involved.name.clone().unwrap_or_default(),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: p.involved,
            reason: Some(p.reason),
            message: Some(p.message),
            type_: Some(p.type_.as_str().to_owned()),
            source: Some(EventSource {
                component: Some("kubelet".to_owned()),
                host: Some(node_name.clone()),
            }),
            reporting_component: Some("kubelet".to_owned()),
            reporting_instance: Some(node_name.clone()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Event::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if seen.len() > 10_000 {
                    seen.clear();
                }
                seen.insert(key, (name, 1));
            }
            Err(error) => tracing::debug!(%error, "cannot record event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_is_the_kubelets() {
        assert_eq!(
            EventLimit::default(),
            EventLimit {
                qps: 50,
                burst: 100
            }
        );
    }

    #[test]
    fn a_burst_passes_at_once_and_then_the_rate_applies() {
        let limiter = EventLimit { qps: 5, burst: 3 }.limiter().expect("limited");
        for i in 0..3 {
            assert!(limiter.check().is_ok(), "event {i} of the burst");
        }
        assert!(limiter.check().is_err(), "the fourth waits");
    }

    #[test]
    fn zero_qps_is_no_limit_and_zero_burst_is_one() {
        assert!(EventLimit { qps: 0, burst: 100 }.limiter().is_none());
        let limiter = EventLimit { qps: 1, burst: 0 }.limiter().expect("limited");
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
    }
}
