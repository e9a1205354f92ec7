//! Node registration, the Lease heartbeat and status posting: the I/O around
//! [`node_status`].
//!
//! [`NodeRegistrar::register`] creates the Node (or refreshes labels and status of an
//! existing one, as a restarted kubelet does). [`NodeRegistrar::run`] then renews the Lease
//! in `kube-node-lease` every heartbeat and posts the status when it changed or every
//! `status_report_interval`. API errors there are logged and retried at the next beat: a
//! flaky API server must not stop the node.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, NodeStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use crate::Error;
use crate::host::{HostInfo, HostUsage};
use crate::node_status::{self, StatusInputs};

/// Namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// `spec.leaseDurationSeconds` of node leases (Kubernetes' default, 4 × 10 s).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// Field manager of the node agent's writes.
pub const FIELD_MANAGER: &str = "skiff-kubelet";

/// Registers one Node and keeps its Lease and status fresh.
#[derive(Clone)]
pub struct NodeRegistrar {
    client: Client,
    /// The Node's name.
    pub name: String,
    /// Host facts.
    pub host: HostInfo,
    /// Labels (standard + configured).
    pub labels: BTreeMap<String, String>,
    /// A pod CIDR to write into `spec.podCIDR` if the node has none.
    pub static_pod_cidr: Option<String>,
    /// Status inputs that do not change (handlers, max pods, port).
    pub inputs: StatusInputs,
    /// Where the data dir is (for disk usage).
    pub data_dir: std::path::PathBuf,
    /// Lease renewal interval.
    pub heartbeat: Duration,
    /// Post the status at least this often.
    pub report_interval: Duration,
    /// Measure usage from the host (`false` for fake nodes: no pressure, ever).
    pub measure_usage: bool,
}

impl NodeRegistrar {
    /// A registrar for `name`.
    pub fn new(client: Client, name: String, host: HostInfo, inputs: StatusInputs) -> Self {
        NodeRegistrar {
            client,
            name,
            host,
            labels: BTreeMap::new(),
            static_pod_cidr: None,
            inputs,
            data_dir: std::env::temp_dir(),
            heartbeat: Duration::from_secs(10),
            report_interval: Duration::from_secs(300),
            measure_usage: true,
        }
    }

    fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    fn usage(&self) -> HostUsage {
        if self.measure_usage {
            HostUsage::detect(&self.data_dir)
        } else {
            HostUsage {
                memory_available_bytes: u64::MAX,
                disk_available_bytes: 1,
                disk_total_bytes: 1,
            }
        }
    }

    fn status(&self, previous: Option<&NodeStatus>) -> NodeStatus {
        node_status::desired_status(
            &self.host,
            &self.usage(),
            &self.inputs,
            previous,
            Timestamp::now(),
        )
    }

    /// Create the Node, or update labels, `spec.podCIDR` (when static and unset) and status
    /// of an existing one. Returns the Node as stored.
    pub async fn register(&self) -> Result<Node, Error> {
        let nodes = self.nodes();
        let existing = nodes
            .get_opt(&self.name)
            .await
            .map_err(|e| Error::api(format!("get node {}", self.name), e))?;
        let node = match existing {
            None => {
                let node = node_status::new_node(
                    &self.name,
                    self.labels.clone(),
                    self.static_pod_cidr.clone(),
                    self.status(None),
                );
                match nodes.create(&PostParams::default(), &node).await {
                    Ok(created) => {
                        // Status is ignored on create by the API server: post it.
                        self.post_status(&created, true).await?
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        // Lost a race with ourselves (restart); update instead.
                        return Box::pin(self.register()).await;
                    }
                    Err(e) => return Err(Error::api(format!("create node {}", self.name), e)),
                }
            }
            Some(node) => {
                let mut patch = serde_json::json!({"metadata": {"labels": self.labels}});
                let has_cidr = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.pod_cidr.as_deref())
                    .is_some_and(|c| !c.is_empty());
                if let (false, Some(cidr)) = (has_cidr, &self.static_pod_cidr) {
                    patch["spec"] = serde_json::json!({"podCIDR": cidr, "podCIDRs": [cidr]});
                }
                let node = nodes
                    .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| Error::api(format!("update node {}", self.name), e))?;
                self.post_status(&node, true).await?
            }
        };
        self.renew_lease(&node).await?;
        tracing::info!(node = %self.name, "node registered");
        Ok(node)
    }

    /// Post the status if it changed (or `force`). Returns the node as stored.
    async fn post_status(&self, node: &Node, force: bool) -> Result<Node, Error> {
        let status = self.status(node.status.as_ref());
        if !force && !node_status::status_changed(node.status.as_ref(), &status) {
            return Ok(node.clone());
        }
        let patch = serde_json::json!({"status": status});
        self.nodes()
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::api(format!("update status of node {}", self.name), e))
    }

    /// Create or renew this node's Lease.
    pub async fn renew_lease(&self, node: &Node) -> Result<(), Error> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let now = MicroTime(Timestamp::now());
        let patch = serde_json::json!({
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": now,
            }
        });
        match leases
            .patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(LEASE_NAMESPACE.to_owned()),
                        owner_references: node.metadata.uid.as_ref().map(|uid| {
                            vec![OwnerReference {
                                api_version: "v1".to_owned(),
                                kind: "Node".to_owned(),
                                name: self.name.clone(),
                                uid: uid.clone(),
                                ..OwnerReference::default()
                            }]
                        }),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.name.clone()),
                        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
                        renew_time: Some(now),
                        ..LeaseSpec::default()
                    }),
                };
                match leases.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(e) => Err(Error::api(format!("create lease {}", self.name), e)),
                }
            }
            Err(e) => Err(Error::api(format!("renew lease {}", self.name), e)),
        }
    }

    /// Register (retrying until the API server answers), then heartbeat forever.
    ///
    /// `readiness` carries whether the node can run pods and, if not, why; a change is
    /// posted at once. `registered` is set once the Node exists and is Ready.
    pub async fn run(
        mut self,
        mut readiness: watch::Receiver<Readiness>,
        registered: watch::Sender<Option<Node>>,
    ) {
        let mut delay = Duration::from_millis(200);
        let mut node = loop {
            self.apply_readiness(&readiness.borrow_and_update());
            match self.register().await {
                Ok(node) => break node,
                Err(error) => {
                    tracing::warn!(node = %self.name, %error, "registration failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(7));
                }
            }
        };
        registered.send_replace(Some(node.clone()));
        let mut last_report = tokio::time::Instant::now();
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await;
        // Once nobody reports readiness any more, the last value stands.
        let mut readiness_open = true;
        loop {
            let readiness_changed = tokio::select! {
                _ = beat.tick() => false,
                changed = readiness.changed(), if readiness_open => {
                    readiness_open = changed.is_ok();
                    readiness_open
                }
            };
            self.apply_readiness(&readiness.borrow_and_update());
            if !readiness_changed && let Err(error) = self.renew_lease(&node).await {
                tracing::warn!(node = %self.name, %error, "lease renewal failed");
            }
            let force = last_report.elapsed() >= self.report_interval;
            match self.post_status(&node, force).await {
                Ok(updated) => {
                    if updated.metadata.resource_version != node.metadata.resource_version {
                        last_report = tokio::time::Instant::now();
                        registered.send_replace(Some(updated.clone()));
                    }
                    node = updated;
                }
                Err(error) => {
                    tracing::warn!(node = %self.name, %error, "status update failed");
                    // The node may have been deleted (e.g. by an admin): re-register.
                    if let Ok(n) = self.register().await {
                        node = n;
                        registered.send_replace(Some(node.clone()));
                    }
                }
            }
        }
    }

    fn apply_readiness(&mut self, readiness: &Readiness) {
        self.inputs.ready = readiness.ready;
        self.inputs.not_ready_message = readiness.message.clone();
    }
}

/// Whether the node can run pods, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// Why not (the Ready condition's message).
    pub message: Option<String>,
}

impl Readiness {
    /// Ready.
    pub fn ready() -> Self {
        Readiness {
            ready: true,
            message: None,
        }
    }

    /// Not ready because of `message`.
    pub fn not_ready(message: impl Into<String>) -> Self {
        Readiness {
            ready: false,
            message: Some(message.into()),
        }
    }
}
