//! Kubernetes Events about pods, as the kubelet records them (`kubectl describe pod` shows
//! them): source component `kubelet`, host = node name, repeated events aggregated into one
//! with a growing `count`.
//!
//! Recording never blocks a pod worker: events go through a bounded channel to one task
//! that writes them (dropping, with a debug log, if the API server falls far behind).

use std::collections::HashMap;

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

#[derive(Debug)]
struct Pending {
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
    /// A recorder writing through `client` as node `node_name`; spawns the writer task.
    pub fn new(client: Client, node_name: String) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(writer(client, node_name, rx));
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

async fn writer(client: Client, node_name: String, mut rx: mpsc::Receiver<Pending>) {
    // Key → (event name, count).
    let mut seen: HashMap<EventKey, (String, i32)> = HashMap::new();
    while let Some(p) = rx.recv().await {
        let namespace = p
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
        let now = Timestamp::now();
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
