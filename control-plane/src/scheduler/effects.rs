//! What the scheduler writes to the API server: bindings
//! (`POST pods/{name}/binding`), core/v1 Events (`Scheduled`,
//! `FailedScheduling`, `Preempted`), the `PodScheduled=False` condition and
//! `nominatedNodeName` (merge patch on `pods/status`), and victim
//! deletions. The request bodies are built by pure, tested functions;
//! the calls run on spawned tasks so the scheduling loop never waits.
//! Events are written at most [`EVENT_QPS`] a second after a burst of
//! [`EVENT_BURST`], kube-scheduler's client defaults, so that in a burst of
//! pods they wait instead of competing with the bindings.

use std::num::NonZeroU32;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::pod_info::PodInfo;

/// Events written per second once the burst is spent (kube-scheduler's
/// `clientConnection.qps`).
pub const EVENT_QPS: NonZeroU32 = NonZeroU32::new(50).unwrap();
/// Events written at once (kube-scheduler's `clientConnection.burst`).
pub const EVENT_BURST: NonZeroU32 = NonZeroU32::new(100).unwrap();

/// Event type of `Scheduled` and `Preempted`.
pub const NORMAL: &str = "Normal";
/// Event type of `FailedScheduling`.
pub const WARNING: &str = "Warning";

/// How a failed attempt changes the pod's `status.nominatedNodeName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nomination {
    /// Leave it as it is.
    Keep,
    /// Preemption made room on this node.
    Set(String),
    /// Preemption found nothing: clear a stale nomination.
    Clear,
}

/// Who reports events: the scheduler's name and this instance's identity.
#[derive(Clone, Copy, Debug)]
pub struct Reporter<'a> {
    /// `source.component` and `reportingComponent` (`default-scheduler`).
    pub component: &'a str,
    /// `reportingInstance`.
    pub instance: &'a str,
}

/// Builds a core/v1 Event about `pod`, named like client-go names them
/// (`<pod>.<hex nanoseconds>`).
pub fn make_event(
    pod: &PodInfo,
    (reason, type_, action): (&str, &str, &str),
    message: String,
    reporter: Reporter<'_>,
    now: Timestamp,
) -> Event {
    let Reporter {
        component: scheduler_name,
        instance,
    } = reporter;
    let nanos = now.as_nanosecond();
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", pod.name, nanos.max(0))),
            namespace: Some(pod.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: pod.pod.metadata.uid.clone(),
            resource_version: pod.pod.metadata.resource_version.clone(),
            field_path: None,
        },
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some(type_.into()),
        action: Some(action.into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        source: Some(EventSource {
            component: Some(scheduler_name.into()),
            host: None,
        }),
        reporting_component: Some(scheduler_name.into()),
        reporting_instance: Some(instance.into()),
        related: None,
        series: None,
    }
}

/// The `Scheduled` event's message.
pub fn scheduled_message(pod: &PodInfo, node: &str) -> String {
    format!(
        "Successfully assigned {}/{} to {}",
        pod.namespace, pod.name, node
    )
}

/// The merge patch for `pods/status` after a failed attempt, or `None`
/// when the pod already says exactly that. The conditions list is sent
/// whole (a merge patch replaces lists), with `PodScheduled` replaced.
pub fn unschedulable_patch(
    pod: &Pod,
    message: &str,
    nomination: &Nomination,
    now: Timestamp,
) -> Option<Value> {
    let status = pod.status.as_ref();
    let conditions = status
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_ == "PodScheduled");
    let same_condition = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    });
    let nominated = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty());
    let nomination_patch = match nomination {
        Nomination::Keep => None,
        Nomination::Set(n) if nominated == Some(n.as_str()) => None,
        Nomination::Set(n) => Some(json!(n)),
        Nomination::Clear if nominated.is_none() => None,
        Nomination::Clear => Some(Value::Null),
    };
    if same_condition && nomination_patch.is_none() {
        return None;
    }
    let transition = match current {
        Some(c) if c.status == "False" => {
            c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(now)
        }
        _ => now,
    };
    let mut list: Vec<Value> = conditions
        .iter()
        .filter(|c| c.type_ != "PodScheduled")
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    list.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": Time(transition),
    }));
    let mut patch = json!({"status": {"conditions": list}});
    if let Some(n) = nomination_patch {
        patch["status"]["nominatedNodeName"] = n;
    }
    Some(patch)
}

/// The `Binding` posted to `pods/{name}/binding`.
pub fn make_binding(pod: &PodInfo, node: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid: pod.pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.into()),
            ..Default::default()
        },
    }
}

/// The outcome of a binding, reported back to the scheduling loop.
#[derive(Debug)]
pub struct BindOutcome {
    /// The pod.
    pub pod: Arc<PodInfo>,
    /// The node it was bound to.
    pub node: String,
    /// The API error, if the binding failed.
    pub error: Option<kube::Error>,
}

/// Whether a binding error means the pod needs no retry (gone, or bound
/// by someone else).
pub fn is_final_bind_error(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

/// Handles to write to the API server from spawned tasks.
#[derive(Clone)]
pub struct Effects {
    client: kube::Client,
    scheduler_name: Arc<str>,
    identity: Arc<str>,
    bind_permits: Arc<Semaphore>,
    events: mpsc::Sender<Event>,
}

impl Effects {
    /// Starts the event writer and returns the handles.
    pub fn new(
        client: kube::Client,
        scheduler_name: &str,
        identity: &str,
        bind_parallelism: usize,
    ) -> Effects {
        let (events, rx) = mpsc::channel::<Event>(8192);
        tokio::spawn(write_events(client.clone(), rx));
        Effects {
            client,
            scheduler_name: scheduler_name.into(),
            identity: identity.into(),
            bind_permits: Arc::new(Semaphore::new(bind_parallelism.max(1))),
            events,
        }
    }

    /// Records an event about `pod` (dropped, with a debug log, if the
    /// writer is overwhelmed: events are best effort, as in Kubernetes).
    pub fn event(&self, pod: &PodInfo, reason: &str, type_: &str, action: &str, message: String) {
        let reporter = Reporter {
            component: &self.scheduler_name,
            instance: &self.identity,
        };
        let ev = make_event(
            pod,
            (reason, type_, action),
            message,
            reporter,
            Timestamp::now(),
        );
        if self.events.try_send(ev).is_err() {
            tracing::debug!(pod = %pod.full_name(), reason, "event queue full, dropping event");
        }
    }

    /// Binds `pod` to `node` on a spawned task; the outcome goes to `done`.
    pub fn bind(&self, pod: Arc<PodInfo>, node: String, done: mpsc::UnboundedSender<BindOutcome>) {
        let client = self.client.clone();
        let permits = self.bind_permits.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let api: Api<Pod> = Api::namespaced(client, &pod.namespace);
            let binding = make_binding(&pod, &node);
            let error = api
                .create_subresource::<Binding, Value>(
                    "binding",
                    &pod.name,
                    &PostParams::default(),
                    &binding,
                )
                .await
                .err();
            let _ = done.send(BindOutcome { pod, node, error });
        });
    }

    /// After a failed attempt: the `FailedScheduling` event and the pod's
    /// `PodScheduled=False` condition (and nomination).
    pub fn failed_scheduling(&self, pod: &Arc<PodInfo>, message: String, nomination: Nomination) {
        self.event(
            pod,
            "FailedScheduling",
            WARNING,
            "Scheduling",
            message.clone(),
        );
        let Some(patch) = unschedulable_patch(&pod.pod, &message, &nomination, Timestamp::now())
        else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.name.clone();
        tokio::spawn(async move {
            if let Err(err) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pod = %name, %err, "could not update the pod's PodScheduled condition");
            }
        });
    }

    /// Clears the nomination of a lower-priority pod displaced by a preemptor.
    pub fn clear_nomination(&self, pod: &Arc<PodInfo>) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
        let name = pod.name.clone();
        tokio::spawn(async move {
            let patch = json!({"status": {"nominatedNodeName": null}});
            if let Err(err) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pod = %name, %err, "could not clear nominatedNodeName");
            }
        });
    }

    /// Deletes preemption victims (gracefully, guarded by uid) and records
    /// `Preempted` events on them.
    pub fn evict(&self, preemptor: &PodInfo, node: &str, victims: Vec<Arc<PodInfo>>) {
        let uid = preemptor.pod.metadata.uid.clone().unwrap_or_default();
        for victim in victims {
            self.event(
                &victim,
                "Preempted",
                NORMAL,
                "Preempting",
                format!("Preempted by pod {uid} on node {node}"),
            );
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
            tokio::spawn(async move {
                let dp = DeleteParams {
                    preconditions: victim.pod.metadata.uid.clone().map(|uid| Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                if let Err(err) = api.delete(&victim.name, &dp).await {
                    tracing::warn!(pod = %victim.full_name(), %err, "could not delete preemption victim");
                }
            });
        }
    }
}

async fn write_events(client: kube::Client, rx: mpsc::Receiver<Event>) {
    use futures::StreamExt;
    let limiter = governor::RateLimiter::direct(
        governor::Quota::per_second(EVENT_QPS).allow_burst(EVENT_BURST),
    );
    tokio_stream::wrappers::ReceiverStream::new(rx)
        .then(|ev| {
            let limiter = &limiter;
            async move {
                limiter.until_ready().await;
                ev
            }
        })
        .for_each_concurrent(16, |ev| {
            let client = client.clone();
            async move {
                let ns = ev
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let api: Api<Event> = Api::namespaced(client, &ns);
                if let Err(err) = api.create(&PostParams::default(), &ev).await {
                    tracing::debug!(%err, reason = ?ev.reason, "could not record event");
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::testing::pod;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn events_look_like_kube_schedulers() {
        let p = pod("web", json!({"metadata": {"resourceVersion": "7"}}));
        let reporter = Reporter {
            component: "default-scheduler",
            instance: "host_1",
        };
        let ev = make_event(
            &p,
            ("Scheduled", NORMAL, "Binding"),
            scheduled_message(&p, "node-1"),
            reporter,
            ts("2024-01-01T00:00:00Z"),
        );
        let v = serde_json::to_value(&ev).expect("json");
        assert_eq!(v["message"], "Successfully assigned default/web to node-1");
        assert_eq!(v["reason"], "Scheduled");
        assert_eq!(v["type"], "Normal");
        assert_eq!(v["source"]["component"], "default-scheduler");
        assert_eq!(v["reportingComponent"], "default-scheduler");
        assert_eq!(v["reportingInstance"], "host_1");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["involvedObject"]["uid"], "uid-web");
        assert_eq!(v["involvedObject"]["resourceVersion"], "7");
        assert_eq!(v["metadata"]["namespace"], "default");
        assert_eq!(v["metadata"]["name"], "web.17a6101701650000");
        assert_eq!(v["count"], 1);
        assert_eq!(v["firstTimestamp"], "2024-01-01T00:00:00Z");
    }

    #[test]
    fn unschedulable_condition_patch() {
        let now = ts("2024-01-01T00:00:00Z");
        let p = pod(
            "web",
            json!({"status": {"conditions": [{"type": "Initialized", "status": "True"}]}}),
        );
        let patch = unschedulable_patch(&p.pod, "0/1 nodes are available.", &Nomination::Keep, now)
            .expect("patch");
        let conds = patch["status"]["conditions"].as_array().expect("list");
        assert_eq!(conds.len(), 2, "other conditions are kept");
        assert_eq!(conds[1]["type"], "PodScheduled");
        assert_eq!(conds[1]["status"], "False");
        assert_eq!(conds[1]["reason"], "Unschedulable");
        assert_eq!(conds[1]["message"], "0/1 nodes are available.");
        assert!(patch["status"].get("nominatedNodeName").is_none());
        // Same condition again: nothing to do; a nomination still patches.
        let p2 = pod(
            "web",
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "m", "lastTransitionTime": "2023-01-01T00:00:00Z"}]}}),
        );
        assert!(unschedulable_patch(&p2.pod, "m", &Nomination::Keep, now).is_none());
        let patch =
            unschedulable_patch(&p2.pod, "m", &Nomination::Set("n1".into()), now).expect("patch");
        assert_eq!(patch["status"]["nominatedNodeName"], "n1");
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"], "2023-01-01T00:00:00Z",
            "transition time kept while the status stays False"
        );
        assert!(
            unschedulable_patch(&p2.pod, "m", &Nomination::Clear, now).is_none(),
            "nothing to clear"
        );
        let nominated = pod("web", json!({"status": {"nominatedNodeName": "n1"}}));
        let patch =
            unschedulable_patch(&nominated.pod, "m", &Nomination::Clear, now).expect("patch");
        assert!(patch["status"]["nominatedNodeName"].is_null());
    }

    #[test]
    fn binding_targets_the_node() {
        let b = make_binding(&pod("web", json!({})), "node-1");
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(v["metadata"]["name"], "web");
        assert_eq!(v["metadata"]["uid"], "uid-web");
        assert_eq!(v["target"]["kind"], "Node");
        assert_eq!(v["target"]["name"], "node-1");
    }
}
