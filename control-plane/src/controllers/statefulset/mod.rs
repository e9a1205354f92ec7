//! The StatefulSet controller (Kubernetes' `statefulset-controller`): pods
//! with stable names `<set>-<ordinal>`, hostnames and subdomains, created
//! and removed in order (OrderedReady) or all at once (Parallel), updated by
//! RollingUpdate (highest ordinal first, down to `partition`) or OnDelete.
//! The set's history is kept as ControllerRevisions (`<set>-<hash>`), whose
//! names pods carry in `controller-revision-hash`; `status` reports
//! current/update revisions and replica counts, so `kubectl rollout status
//! statefulset` works.
//!
//! Start at [`reconcile`]; the decisions are in [`logic::plan`], revision
//! bookkeeping in [`revisions`]. `volumeClaimTemplates` are not acted on
//! (Skiff has no persistent volumes yet).

pub mod logic;
pub mod revisions;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::error::is_namespace_terminating;
use super::error::{Error, KubeResultExt, api_message, is_conflict, is_not_found};
use super::events::{EventType, Recorder};
use super::history;
use super::informer::Informer;
use super::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use super::{Shared, run_controller};
use logic::{POD_INDEX_LABEL, POD_NAME_LABEL, REVISION_LABEL, Step};
use revisions::Revision;

/// State shared by StatefulSet reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    recorder: Recorder,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let set_informer: Informer<StatefulSet> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let (set_stream, pod_stream) = (set_informer.stream(), pod_informer.stream());
    set_informer.ready().await;
    pod_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        recorder: Recorder::new(shared.client.clone(), "statefulset-controller"),
    });
    let controller = Controller::for_stream(set_stream, set_informer.store()).watches_stream(
        pod_stream,
        |pod: Pod| {
            let r = controller_of(&pod.metadata).filter(|r| r.kind == "StatefulSet")?;
            Some(
                ObjectRef::<StatefulSet>::new(&r.name).within(&pod.namespace().unwrap_or_default()),
            )
        },
    );
    run_controller(
        "statefulset",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// The set's current and update revisions, creating (or renumbering) the
/// update revision as needed (`getStatefulSetRevisions`).
async fn sync_revisions(
    set: &StatefulSet,
    key: &str,
    rev_api: &Api<ControllerRevision>,
    set_api: &Api<StatefulSet>,
    owned: &mut Vec<ControllerRevision>,
) -> Result<(Revision, Revision), Error> {
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let candidate = revisions::new_revision(set, history::next_number(owned), collision_count);
    let update_cr = history::sync(
        set,
        &format!("statefulset {key}"),
        rev_api,
        set_api,
        owned,
        candidate,
        collision_count,
    )
    .await?;
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let update = Revision {
        name: update_cr.name_any(),
        template: template.clone(),
    };
    let wanted = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = match owned
        .iter()
        .find(|r| Some(r.name_any()) == wanted && wanted.is_some())
    {
        Some(cr) => Revision {
            name: cr.name_any(),
            template: revisions::template_of(cr).unwrap_or(template),
        },
        None => update.clone(),
    };
    Ok((current, update))
}

/// One level-triggered sync of a StatefulSet.
pub async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let key = format!("{ns}/{name}");
    let spec = set.spec.clone().unwrap_or_default();
    let matcher = LabelMatcher::new(Some(&spec.selector), &format!("statefulset {key}"))?;
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let set_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = Owner {
        reference: controller_ref(set.as_ref()),
        namespace: &ns,
        deleting: set.metadata.deletion_timestamp.is_some(),
    };
    let uid = set.uid().unwrap_or_default();

    let mut owned_revs = history::owned(
        &rev_api,
        &owner,
        &matcher,
        &format!("statefulset {key}"),
        || owners::owner_still_current(&set_api, &name, &uid),
    )
    .await?;
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let owned_pods = owners::claim(&pod_api, &owner, &matcher, candidates, || {
        owners::owner_still_current(&set_api, &name, &uid)
    })
    .await?;

    let (current, update) = sync_revisions(&set, &key, &rev_api, &set_api, &mut owned_revs).await?;
    let now = jiff::Timestamp::now();
    let collision_count = set.status.as_ref().and_then(|s| s.collision_count);
    let plan = logic::plan(&set, &owned_pods, &current, &update, collision_count, now);

    let mut step_error = None;
    for step in &plan.steps {
        match execute(&ctx, &set, &key, &pod_api, step).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                step_error = Some(e);
                break;
            }
        }
    }

    update_status(&set, &key, &set_api, &plan.status).await?;
    if let Some(e) = step_error {
        return Err(e);
    }

    let mut live: Vec<String> = vec![current.name.clone(), update.name.clone()];
    live.extend(
        owned_pods
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL).cloned()),
    );
    let live_refs: Vec<&str> = live.iter().map(String::as_str).collect();
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::truncate(&rev_api, &key, &owned_revs, &live_refs, limit).await?;
    Ok(match plan.requeue_after {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Carries out one step; `Ok(false)` stops the sync without an error (the
/// cache was behind: the pod already exists).
async fn execute(
    ctx: &Ctx,
    set: &StatefulSet,
    key: &str,
    pod_api: &Api<Pod>,
    step: &Step,
) -> Result<bool, Error> {
    let set_name = set.name_any();
    match step {
        Step::Create(pod) => {
            let pod_name = pod.name_any();
            match pod_api.create(&PostParams::default(), pod).await {
                Ok(_) => {
                    ctx.recorder.record(
                        set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                    );
                    Ok(true)
                }
                Err(e) if is_conflict(&e) || is_namespace_terminating(&e) => Ok(false),
                Err(e) => {
                    ctx.recorder.record(
                        set,
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                            api_message(&e)
                        ),
                    );
                    Err(e).ctx(|| format!("creating pod {pod_name} for statefulset {key}"))
                }
            }
        }
        Step::Delete { name, why } => {
            tracing::debug!(statefulset = %key, pod = %name, why, "deleting pod");
            match pod_api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    ctx.recorder.record(
                        set,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("delete Pod {name} in StatefulSet {set_name} successful"),
                    );
                    Ok(true)
                }
                Err(e) if is_not_found(&e) => Ok(true),
                Err(e) => {
                    ctx.recorder.record(
                        set,
                        EventType::Warning,
                        "FailedDelete",
                        format!(
                            "delete Pod {name} in StatefulSet {set_name} failed error: {}",
                            api_message(&e)
                        ),
                    );
                    Err(e).ctx(|| format!("deleting pod {name} of statefulset {key}"))
                }
            }
        }
        Step::Relabel { name, ordinal } => {
            let patch = json!({"metadata": {"labels": {
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: ordinal.to_string(),
            }}});
            match pod_api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_not_found(&e) => Ok(true),
                Err(e) => Err(e).ctx(|| format!("restoring identity of pod {name} of {key}")),
            }
        }
    }
}

async fn update_status(
    set: &StatefulSet,
    key: &str,
    set_api: &Api<StatefulSet>,
    status: &StatefulSetStatus,
) -> Result<(), Error> {
    let old = set.status.clone().unwrap_or_default();
    owners::patch_status(
        set_api,
        &set.name_any(),
        &old,
        status,
        &format!("statefulset {key}"),
    )
    .await?;
    Ok(())
}
