//! The node lifecycle controller (Kubernetes' `node-lifecycle-controller`
//! with its taint-based eviction and the orphan part of `pod-garbage-
//! collector`): every monitor period it
//!
//! - watches each node's heartbeats (its Lease in `kube-node-lease` and its
//!   Ready condition); silence past the grace period (50 s) turns the
//!   node's conditions Unknown and marks its pods not ready;
//! - taints nodes `node.kubernetes.io/unreachable` / `not-ready`
//!   (NoSchedule and NoExecute), NoExecute taints rate-limited by
//!   `node_eviction_rate`;
//! - evicts pods on NoExecute-tainted nodes once their `tolerationSeconds`
//!   ran out (pods without a toleration get `pod_eviction_timeout`);
//! - force-deletes pods bound to nodes that no longer exist (after 40 s).
//!
//! Decisions are in [`logic`].

pub mod logic;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::Shared;
use super::error::{Error, KubeResultExt, is_not_found};
use super::events::{EventType, Recorder};
use super::informer::Informer;
use super::pods::is_ready;
use logic::{Readiness, TokenBucket};

/// Namespace of the node heartbeat Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a pod bound to a missing node is left alone (Kubernetes' podgc quarantine).
const ORPHAN_QUARANTINE: SignedDuration = SignedDuration::from_secs(40);

/// The monitor's memory between rounds.
struct Monitor {
    client: Client,
    grace: Duration,
    default_toleration: Duration,
    bucket: TokenBucket,
    /// Last heartbeat signature per node and when it was first seen.
    heartbeats: HashMap<String, (String, Timestamp)>,
    /// Nodes whose pods were already marked not ready.
    marked: HashMap<String, bool>,
    /// Pods bound to missing nodes, with when that was first seen.
    orphans: HashMap<String, Timestamp>,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let nodes: Informer<Node> = shared.informers.get();
    let pods: Informer<Pod> = shared.informers.get();
    let leases: Informer<Lease> = shared.informers.get_with(LEASE_NAMESPACE, || {
        (
            Api::namespaced(shared.client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        )
    });
    nodes.ready().await;
    pods.ready().await;
    leases.ready().await;
    let config = &shared.config;
    let mut monitor = Monitor {
        client: shared.client.clone(),
        grace: config.node_monitor_grace_period,
        default_toleration: config.pod_eviction_timeout,
        bucket: TokenBucket::new(config.node_eviction_rate, 1.0, Timestamp::now()),
        heartbeats: HashMap::new(),
        marked: HashMap::new(),
        orphans: HashMap::new(),
        recorder: Recorder::new(shared.client.clone(), "node-controller"),
    };
    loop {
        let now = Timestamp::now();
        let node_list = nodes.store().state();
        let lease_store = leases.store();
        for node in &node_list {
            let lease = lease_store
                .state()
                .into_iter()
                .find(|l| l.name_any() == node.name_any());
            if let Err(err) = monitor
                .check_node(node, lease.as_deref(), &pods.store().state(), now)
                .await
            {
                tracing::warn!(node = %node.name_any(), %err, "node health update failed");
            }
        }
        let names: Vec<String> = node_list.iter().map(|n| n.name_any()).collect();
        monitor.heartbeats.retain(|n, _| names.contains(n));
        let next = monitor.evict(&node_list, &pods.store().state(), now).await;
        let wait = next
            .map(|t| {
                Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(config.node_monitor_period)
            .clamp(Duration::from_millis(50), config.node_monitor_period);
        tokio::time::sleep(wait).await;
    }
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

impl Monitor {
    /// Updates one node's conditions, taints and pods' readiness.
    async fn check_node(
        &mut self,
        node: &Node,
        lease: Option<&Lease>,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> Result<(), Error> {
        let name = node.name_any();
        let ready = ready_condition(node);
        let signature = format!(
            "{:?}/{:?}",
            lease
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0),
            ready
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0)
        );
        let entry = self
            .heartbeats
            .entry(name.clone())
            .or_insert_with(|| (signature.clone(), now));
        if entry.0 != signature {
            *entry = (signature, now);
        }
        let readiness = logic::readiness(ready, Some(entry.1), now, self.grace);
        let api: Api<Node> = Api::all(self.client.clone());
        if readiness == Readiness::Unknown {
            let current = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            if let Some(conditions) = logic::conditions_unknown(&current, now) {
                tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"conditions": conditions}})),
                )
                .await
                .ctx(|| format!("marking node {name} unknown"))?;
                self.recorder.record(
                    node,
                    EventType::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
            if !self.marked.get(&name).copied().unwrap_or(false) {
                self.mark_pods_not_ready(&name, pods).await?;
                self.marked.insert(name.clone(), true);
            }
        } else {
            self.marked.remove(&name);
        }
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if let Some(taints) = logic::desired_taints(&current, readiness, now) {
            let adds_no_execute = taints.iter().any(|t| {
                t.effect == "NoExecute"
                    && !current
                        .iter()
                        .any(|c| c.key == t.key && c.effect == t.effect)
            });
            if adds_no_execute && !self.bucket.try_take(now) {
                return Ok(());
            }
            let patch = json!({"spec": {"taints": taints}, "metadata": {"resourceVersion": node.resource_version()}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .ctx(|| format!("updating taints of node {name}"))?;
        }
        Ok(())
    }

    /// Kubernetes' `MarkPodsNotReady` for a silent node.
    async fn mark_pods_not_ready(&self, node: &str, pods: &[Arc<Pod>]) -> Result<(), Error> {
        for pod in pods
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
        {
            if !is_ready(pod) {
                continue;
            }
            let conditions: Vec<_> = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|mut c| {
                    if c.type_ == "Ready" {
                        c.status = "False".into();
                        c.last_transition_time = Some(
                            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
                        );
                    }
                    c
                })
                .collect();
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            match api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"conditions": conditions}})),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e).ctx(|| format!("marking pod {} not ready", pod.name_any()));
                }
            }
        }
        Ok(())
    }

    /// Evicts due pods; returns the next time an eviction falls due.
    async fn evict(
        &mut self,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> Option<Timestamp> {
        let by_name: HashMap<String, &Arc<Node>> =
            nodes.iter().map(|n| (n.name_any(), n)).collect();
        let mut next: Option<Timestamp> = None;
        let mut seen_orphans = Vec::new();
        for pod in pods {
            let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
            let Some(node) = by_name.get(&node_name) else {
                // Bound to a node that is gone: force-delete after quarantine.
                let since = *self.orphans.entry(key.clone()).or_insert(now);
                seen_orphans.push(key);
                if since + ORPHAN_QUARANTINE <= now {
                    self.delete_pod(pod, Some(0)).await;
                } else {
                    let at = since + ORPHAN_QUARANTINE;
                    next = Some(next.map_or(at, |n| n.min(at)));
                }
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let taints = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if !taints.iter().any(|t| t.effect == "NoExecute") {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            match logic::eviction_time(&tolerations, &taints, self.default_toleration, now) {
                Some(at) if at <= now => {
                    self.recorder.record(
                        pod.as_ref(),
                        EventType::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {key}"),
                    );
                    self.delete_pod(pod, None).await;
                }
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        self.orphans.retain(|k, _| seen_orphans.contains(k));
        next
    }

    async fn delete_pod(&self, pod: &Pod, grace: Option<u32>) {
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let dp = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        match api.delete(&pod.name_any(), &dp).await {
            Ok(_) => tracing::info!(pod = %pod.name_any(), "evicted pod"),
            Err(e) if is_not_found(&e) => {}
            Err(err) => tracing::warn!(pod = %pod.name_any(), %err, "evicting pod failed"),
        }
    }
}
