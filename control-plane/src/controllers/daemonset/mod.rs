//! The DaemonSet controller (Kubernetes' `daemonset-controller`): one pod
//! per eligible node, pinned through required node affinity on
//! `metadata.name` and left to the scheduler to bind, with the automatic
//! daemon tolerations; pods on ineligible nodes, extra pods and failed pods
//! are deleted. Updates follow RollingUpdate (`maxUnavailable`, `maxSurge`)
//! or OnDelete; pods carry the template hash in `controller-revision-hash`.
//! The set's history is kept as ControllerRevisions `<set>-<hash>` (shared
//! with the StatefulSet controller in [`history`]), so `kubectl rollout
//! history daemonset` and `rollout undo` work.
//!
//! Start at [`reconcile`]; node eligibility and the sync plan are in
//! [`logic`].

pub mod logic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use kube::api::DeleteParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::deployment::hash::compute_hash;
use super::error::{Error, KubeResultExt};
use super::events::Recorder;
use super::expectations::{Expectations, seen_pod};
use super::history;
use super::informer::Informer;
use super::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use super::pods::{self, PodControl};
use super::{Shared, run_controller};
use logic::REVISION_HASH;

/// State shared by DaemonSet reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    expectations: Expectations,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let ds_informer: Informer<DaemonSet> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let node_informer: Informer<Node> = shared.informers.get();
    let (ds_stream, pod_stream, node_stream) = (
        ds_informer.stream(),
        pod_informer.stream(),
        node_informer.stream(),
    );
    ds_informer.ready().await;
    pod_informer.ready().await;
    node_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        nodes: node_informer.store(),
        expectations: Expectations::default(),
        recorder: Recorder::new(shared.client.clone(), "daemonset-controller"),
    });
    let all_ds = ds_informer.store();
    let controller = Controller::for_stream(ds_stream, ds_informer.store())
        .watches_stream(pod_stream, |pod: Pod| {
            let r = controller_of(&pod.metadata).filter(|r| r.kind == "DaemonSet")?;
            Some(ObjectRef::<DaemonSet>::new(&r.name).within(&pod.namespace().unwrap_or_default()))
        })
        // Any node change may change eligibility: wake every DaemonSet.
        .watches_stream(node_stream, move |_node: Node| {
            all_ds
                .state()
                .iter()
                .map(|d| ObjectRef::from_obj(d.as_ref()))
                .collect::<Vec<_>>()
        });
    run_controller(
        "daemonset",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// The hash of the DaemonSet's current template: its newest
/// ControllerRevision's, created or renumbered as needed
/// (`constructHistory`). Old revisions beyond `revisionHistoryLimit` that no
/// pod uses are deleted.
async fn sync_history(
    ds: &DaemonSet,
    key: &str,
    owner: &Owner<'_>,
    matcher: &LabelMatcher,
    ds_api: &Api<DaemonSet>,
    rev_api: &Api<ControllerRevision>,
    owned_pods: &[Arc<Pod>],
) -> Result<String, Error> {
    let what = format!("daemonset {key}");
    let name = ds.name_any();
    let uid = ds.uid().unwrap_or_default();
    let mut owned = history::owned(rev_api, owner, matcher, &what, || {
        owners::owner_still_current(ds_api, &name, &uid)
    })
    .await?;
    let spec = ds.spec.clone().unwrap_or_default();
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let candidate = history::new_revision(
        ds,
        &spec.template,
        history::next_number(&owned),
        collision_count,
        REVISION_HASH,
        ds.metadata.annotations.clone(),
    );
    let current = history::sync(
        ds,
        &what,
        rev_api,
        ds_api,
        &mut owned,
        candidate,
        collision_count,
    )
    .await?;
    let hash = history::hash_of(&current, REVISION_HASH)
        .unwrap_or_else(|| compute_hash(&spec.template, collision_count));
    let mut live: Vec<String> = vec![current.name_any()];
    live.extend(
        owned_pods
            .iter()
            .filter_map(|p| p.labels().get(REVISION_HASH))
            .map(|h| history::revision_name(&name, h)),
    );
    let live: Vec<&str> = live.iter().map(String::as_str).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::truncate(rev_api, &what, &owned, &live, limit).await?;
    Ok(hash)
}

/// One level-triggered sync of a DaemonSet (Kubernetes' `syncDaemonSet`).
pub async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let spec = ds.spec.clone().unwrap_or_default();
    let matcher = LabelMatcher::new(Some(&spec.selector), &format!("daemonset {key}"))?;
    let needs_sync = ctx
        .expectations
        .satisfied(&key, |n| seen_pod(&ctx.pods, &ns, n));
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let deleting = ds.metadata.deletion_timestamp.is_some();
    let owner = Owner {
        reference: controller_ref(ds.as_ref()),
        namespace: &ns,
        deleting,
    };
    let uid = ds.uid().unwrap_or_default();
    let owned = owners::claim(&pod_api, &owner, &matcher, candidates, || {
        owners::owner_still_current(&ds_api, &name, &uid)
    })
    .await?;
    let collision_count = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = if deleting {
        compute_hash(&spec.template, collision_count)
    } else {
        sync_history(&ds, &key, &owner, &matcher, &ds_api, &rev_api, &owned).await?
    };

    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    logic::with_auto_tolerations(&mut template_spec);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let plan = logic::plan(
        &ctx.nodes.state(),
        &owned,
        &template_spec,
        &hash,
        &spec.update_strategy.clone().unwrap_or_default(),
        min_ready,
        Timestamp::now(),
    );

    let mut manage_error = None;
    if needs_sync && !deleting {
        let control = PodControl {
            api: &pod_api,
            recorder: &ctx.recorder,
            owner: ds.as_ref(),
        };
        if let Err(e) = control
            .delete_expected(
                &ctx.expectations,
                &key,
                &plan.delete,
                &DeleteParams::default(),
            )
            .await
        {
            manage_error = Some(e);
        }
        if manage_error.is_none()
            && let Err(e) = create_pods(
                &ctx,
                &ds,
                &key,
                &pod_api,
                &template_spec,
                &hash,
                &plan.create_on,
            )
            .await
        {
            manage_error = Some(e);
        }
    }

    let old_status = ds.status.clone().unwrap_or_default();
    let status = DaemonSetStatus {
        current_number_scheduled: plan.scheduled,
        desired_number_scheduled: plan.desired,
        number_misscheduled: plan.misscheduled,
        number_ready: plan.ready,
        number_available: Some(plan.available),
        number_unavailable: Some((plan.desired - plan.available).max(0)),
        updated_number_scheduled: Some(plan.updated),
        observed_generation: ds.metadata.generation,
        collision_count: old_status.collision_count,
        conditions: old_status.conditions.clone(),
    };
    owners::patch_status(
        &ds_api,
        &name,
        &old_status,
        &status,
        &format!("daemonset {key}"),
    )
    .await?;
    if let Some(e) = manage_error {
        return Err(e);
    }
    if !needs_sync || (min_ready > 0 && plan.available < plan.desired) {
        return Ok(Action::requeue(
            Duration::from_secs(min_ready.max(1) as u64),
        ));
    }
    Ok(Action::await_change())
}

async fn create_pods(
    ctx: &Ctx,
    ds: &DaemonSet,
    key: &str,
    pod_api: &Api<Pod>,
    template_spec: &PodSpec,
    hash: &str,
    nodes: &[String],
) -> Result<(), Error> {
    if nodes.is_empty() {
        return Ok(());
    }
    let spec = ds.spec.clone().unwrap_or_default();
    let ns = ds.namespace().unwrap_or_default();
    let mut template = spec.template.clone();
    template.spec = Some(template_spec.clone());
    let pods: Vec<Pod> = nodes
        .iter()
        .map(|node| {
            let mut pod = pods::pod_from_template(
                &template,
                &ns,
                &format!("{}-", ds.name_any()),
                Some(controller_ref(ds)),
            );
            let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.insert(REVISION_HASH.into(), hash.to_string());
            labels.insert(
                "pod-template-generation".into(),
                ds.metadata.generation.unwrap_or(1).to_string(),
            );
            if let Some(s) = pod.spec.as_mut() {
                logic::pin_to_node(s, node);
            }
            pod
        })
        .collect();
    let control = PodControl {
        api: pod_api,
        recorder: &ctx.recorder,
        owner: ds,
    };
    let results = join_all(pods.iter().map(|p| control.create(p))).await;
    let mut created = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(name) => created.extend(name),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    ctx.expectations.expect_creations(key, created);
    match first_err {
        Some(e) => Err(e).ctx(|| format!("creating daemon pods for {key}")),
        None => Ok(()),
    }
}
