//! The Deployment controller (Kubernetes' `deployment-controller`): rolls a
//! Deployment's pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, RollingUpdate (within maxSurge and
//! maxUnavailable) or Recreate, with revisions, history cleanup, pause,
//! proportional scaling and the Progressing/Available conditions that
//! `kubectl rollout status` reads.
//!
//! Start at [`reconcile`]; every decision is a pure function in [`util`]
//! (numbers, conditions) or [`hash`] (template identity); [`sync`] holds the
//! API writes of one sync.

pub mod hash;
mod sync;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use super::error::Error;
use super::events::Recorder;
use super::informer::Informer;
use super::owners::{LabelMatcher, controller_of};
use super::{Shared, run_controller};
use sync::DeploymentSync;

/// State shared by all Deployment reconciles.
pub struct Ctx {
    client: Client,
    replicasets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let d_informer: Informer<Deployment> = shared.informers.get();
    let rs_informer: Informer<ReplicaSet> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let (d_stream, rs_stream, pod_stream) = (
        d_informer.stream(),
        rs_informer.stream(),
        pod_informer.stream(),
    );
    d_informer.ready().await;
    rs_informer.ready().await;
    pod_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        replicasets: rs_informer.store(),
        pods: pod_informer.store(),
        recorder: Recorder::new(shared.client.clone(), "deployment-controller"),
    });
    let deployments = d_informer.store();
    let for_rs = deployments.clone();
    let for_pods = (deployments.clone(), rs_informer.store());
    let controller = Controller::for_stream(d_stream, deployments)
        .watches_stream(rs_stream, move |rs: ReplicaSet| {
            deployments_for_rs(&for_rs, &rs)
        })
        .watches_stream(pod_stream, move |pod: Pod| {
            recreate_deployment_for_pod(&for_pods.0, &for_pods.1, &pod)
        });
    run_controller(
        "deployment",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// Deployments to wake for a ReplicaSet event: its controller, or every
/// Deployment whose selector matches an orphan.
pub fn deployments_for_rs(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&rs.metadata) {
        return if r.kind == "Deployment" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            LabelMatcher::new(d.spec.as_ref().map(|s| &s.selector), "")
                .is_ok_and(|m| m.matches(rs.metadata.labels.as_ref()))
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// A Recreate Deployment waits for its old pods to be gone; wake it when
/// one of its pods changes (Kubernetes does this on pod deletion).
fn recreate_deployment_for_pod(
    deployments: &Store<Deployment>,
    replicasets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace()?;
    let rs_ref = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = replicasets.get(&ObjectRef::new(&rs_ref.name).within(&ns))?;
    let d_ref = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&d_ref.name).within(&ns);
    let d = deployments.get(&key)?;
    (!util::is_rolling(&d)).then_some(key)
}

/// One level-triggered sync of a Deployment (Kubernetes' `syncDeployment`).
pub async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let mut sync = DeploymentSync::new(&d, &ctx)?;
    if sync.selects_everything() {
        sync.observe_generation_only().await?;
        return Ok(Action::await_change());
    }
    sync.claim_replicasets().await?;
    if d.metadata.deletion_timestamp.is_some() {
        sync.status_only().await?;
        return Ok(Action::await_change());
    }
    sync.check_paused_conditions().await?;
    let paused = sync
        .deployment()
        .spec
        .as_ref()
        .and_then(|s| s.paused)
        .unwrap_or(false);
    if paused || sync.is_scaling_event().await? {
        sync.scale_and_sync_status().await?;
        return Ok(sync.next_action());
    }
    if util::is_rolling(sync.deployment()) {
        sync.rollout_rolling().await?;
    } else {
        sync.rollout_recreate().await?;
    }
    Ok(sync.next_action())
}
