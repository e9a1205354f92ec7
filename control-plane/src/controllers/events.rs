//! Kubernetes Events (core/v1) for what users see in `kubectl describe`:
//! `SuccessfulCreate`, `ScalingReplicaSet`, `SawCompletedJob`, …
//!
//! Recording never blocks or fails a reconcile: events go through a bounded
//! queue to one background task that posts them, and are dropped (with a
//! debug log) when the queue is full or the API server refuses them.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Client, Resource};
use tokio::sync::mpsc;

/// Events waiting to be posted before new ones are dropped.
const QUEUE: usize = 4096;

/// `Normal` or `Warning`, as Kubernetes spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Expected operation.
    Normal,
    /// Something went wrong.
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

/// Posts events as one component (e.g. `replicaset-controller`).
#[derive(Clone)]
pub struct Recorder {
    component: &'static str,
    tx: mpsc::Sender<Event>,
}

impl Recorder {
    /// Starts the posting task for `component`.
    pub fn new(client: Client, component: &'static str) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(QUEUE);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let ns = event
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client.clone(), &ns);
                if let Err(err) = api.create(&PostParams::default(), &event).await {
                    tracing::debug!(%err, reason = ?event.reason, "event not recorded");
                }
            }
        });
        Recorder { component, tx }
    }

    /// Records an event about `obj`.
    pub fn record<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let event = build_event(
            self.component,
            obj,
            type_,
            reason,
            message,
            Timestamp::now(),
        );
        if self.tx.try_send(event).is_err() {
            tracing::debug!(reason, "event queue full; dropping event");
        }
    }
}

/// The Event object for `obj`, as client-go's recorder builds it.
pub fn build_event<K: Resource<DynamicType = ()>>(
    component: &str,
    obj: &K,
    type_: EventType,
    reason: &str,
    message: String,
    now: Timestamp,
) -> Event {
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    // Cluster-scoped objects' events live in `default`, as in Kubernetes.
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: None,
        },
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.as_str().to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(component.to_string()),
        action: None,
        related: None,
        series: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    #[test]
    fn events_reference_the_object() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-abc".into()),
                namespace: Some("prod".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        };
        let ev = build_event(
            "replicaset-controller",
            &rs,
            EventType::Normal,
            "SuccessfulCreate",
            "Created pod: web-abc-x1".into(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("prod"));
        assert!(
            ev.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("web-abc."))
        );
        assert_eq!(ev.involved_object.kind.as_deref(), Some("ReplicaSet"));
        assert_eq!(ev.involved_object.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(
            ev.source.and_then(|s| s.component).as_deref(),
            Some("replicaset-controller")
        );
    }
}
