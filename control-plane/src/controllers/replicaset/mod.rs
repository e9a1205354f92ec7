//! The ReplicaSet controller (Kubernetes' `replicaset-controller`): keeps
//! `spec.replicas` active pods matching the selector, adopting orphans and
//! releasing strays, creating in slow-start batches and deleting the best
//! victims first, and reports `status`.
//!
//! Start at [`reconcile`]; the decisions live in [`logic`].

pub mod logic;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::{Error, KubeResultExt};
use super::events::Recorder;
use super::expectations::{Expectations, seen_pod};
use super::informer::Informer;
use super::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use super::pods::{self, PodControl, is_active};
use super::{Shared, run_controller};
use logic::{
    BURST_REPLICAS, SLOW_START_INITIAL_BATCH, calculate_status, pods_to_delete, slow_start_batch,
};

/// State shared by all ReplicaSet reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let rs_informer: Informer<ReplicaSet> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let (rs_stream, pod_stream) = (rs_informer.stream(), pod_informer.stream());
    rs_informer.ready().await;
    pod_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        replicasets: rs_informer.store(),
        expectations: Expectations::default(),
        recorder: Recorder::new(shared.client.clone(), "replicaset-controller"),
    });
    let rs_store = rs_informer.store();
    let controller = Controller::for_stream(rs_stream, rs_informer.store())
        .watches_stream(pod_stream, move |pod: Pod| owners_of_pod(&rs_store, &pod));
    run_controller(
        "replicaset",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// The ReplicaSets to wake for a pod event: its controller if that is a
/// ReplicaSet, or every ReplicaSet whose selector matches an orphan.
pub fn owners_of_pod(replicasets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let ns = pod.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&pod.metadata) {
        return if r.kind == "ReplicaSet" && r.api_version == "apps/v1" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    replicasets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()))
        .filter(|rs| {
            LabelMatcher::new(rs.spec.as_ref().map(|s| &s.selector), "")
                .is_ok_and(|m| m.matches(pod.metadata.labels.as_ref()))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

/// One level-triggered sync of a ReplicaSet (Kubernetes' `syncReplicaSet`).
pub async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let key = format!("{ns}/{name}");
    let what = format!("replicaset {key}");
    let needs_sync = ctx
        .expectations
        .satisfied(&key, |n| seen_pod(&ctx.pods, &ns, n));
    let spec = rs.spec.clone().unwrap_or_default();
    let matcher = LabelMatcher::new(Some(&spec.selector), &what)?;

    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()) && is_active(p))
        .collect();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner {
        reference: controller_ref(rs.as_ref()),
        namespace: &ns,
        deleting: rs.metadata.deletion_timestamp.is_some(),
    };
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = rs.uid().unwrap_or_default();
    let owned = owners::claim(&pod_api, &owner, &matcher, candidates, || {
        owners::owner_still_current(&rs_api, &name, &uid)
    })
    .await?;

    let mut manage_error = None;
    if needs_sync
        && rs.metadata.deletion_timestamp.is_none()
        && let Err(err) = manage_replicas(&rs, &owned, &ctx, &key).await
    {
        manage_error = Some(err);
    }

    let now = Timestamp::now();
    let status = calculate_status(
        &rs,
        &owned,
        manage_error.as_ref().map(Error::user_message).as_deref(),
        now,
    );
    let status_changed = update_status(&rs_api, &rs, &status).await?;
    if let Some(err) = manage_error {
        return Err(err);
    }
    let desired = spec.replicas.unwrap_or(1);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    if min_ready > 0
        && status.ready_replicas.unwrap_or(0) == desired
        && status.available_replicas.unwrap_or(0) != desired
    {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    if !needs_sync || status_changed {
        // The cache will wake us when the expected pods show up; this timer
        // only guards against a lost event.
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    Ok(Action::await_change())
}

/// Creates or deletes pods to reach `spec.replicas` (Kubernetes'
/// `manageReplicas`).
async fn manage_replicas(
    rs: &ReplicaSet,
    owned: &[Arc<Pod>],
    ctx: &Ctx,
    key: &str,
) -> Result<(), Error> {
    let ns = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let spec = rs.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1).max(0) as usize;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    if owned.len() < desired {
        let diff = (desired - owned.len()).min(BURST_REPLICAS);
        let Some(template) = spec.template.as_ref() else {
            return Err(Error::InvalidSpec {
                object: format!("replicaset {key}"),
                message: "spec.template is required".into(),
            });
        };
        let pod =
            pods::pod_from_template(template, &ns, &format!("{name}-"), Some(controller_ref(rs)));
        let control = PodControl {
            api: &pod_api,
            recorder: &ctx.recorder,
            owner: rs,
        };
        let (created, err) =
            slow_start_batch(diff, SLOW_START_INITIAL_BATCH, || control.create(&pod)).await;
        let created: Vec<String> = created.into_iter().flatten().collect();
        ctx.expectations.expect_creations(key, created);
        if let Some(e) = err {
            return Err(e).ctx(|| format!("creating pods for replicaset {key}"));
        }
    } else if owned.len() > desired {
        let diff = (owned.len() - desired).min(BURST_REPLICAS);
        let related = related_pods(rs, ctx);
        let victims = pods_to_delete(owned, &related, diff, Timestamp::now());
        let control = PodControl {
            api: &pod_api,
            recorder: &ctx.recorder,
            owner: rs,
        };
        control
            .delete_expected(&ctx.expectations, key, &victims, &DeleteParams::default())
            .await?;
    }
    Ok(())
}

/// Pods of every ReplicaSet with the same controller (Kubernetes'
/// `getIndirectlyRelatedPods`), for the colocation rank.
fn related_pods(rs: &ReplicaSet, ctx: &Ctx) -> Vec<Arc<Pod>> {
    let Some(controller) = controller_of(&rs.metadata) else {
        return Vec::new();
    };
    let ns = rs.namespace().unwrap_or_default();
    let siblings: Vec<LabelMatcher> = ctx
        .replicasets
        .state()
        .iter()
        .filter(|o| o.namespace().as_deref() == Some(ns.as_str()))
        .filter(|o| controller_of(&o.metadata).is_some_and(|c| c.uid == controller.uid))
        .filter_map(|o| LabelMatcher::new(o.spec.as_ref().map(|s| &s.selector), "").ok())
        .collect();
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| {
            siblings
                .iter()
                .any(|m| m.matches(p.metadata.labels.as_ref()))
        })
        .collect()
}

/// Writes `status` (with `observedGeneration`) if it differs from the
/// cached one; returns whether it wrote.
async fn update_status(
    api: &Api<ReplicaSet>,
    rs: &ReplicaSet,
    status: &k8s_openapi::api::apps::v1::ReplicaSetStatus,
) -> Result<bool, Error> {
    let mut status = status.clone();
    status.observed_generation = rs.metadata.generation;
    let old = rs.status.clone().unwrap_or_default();
    let name = rs.name_any();
    let what = format!("replicaset {}/{name}", rs.namespace().unwrap_or_default());
    owners::patch_status(api, &name, &old, &status, &what).await
}
