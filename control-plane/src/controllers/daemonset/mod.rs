//! The DaemonSet controller (Kubernetes' `daemonset-controller`): one pod
//! per eligible node, pinned through required node affinity on
//! `metadata.name` and left to the scheduler to bind, with the automatic
//! daemon tolerations; pods on ineligible nodes, extra pods and failed pods
//! are deleted. Updates follow RollingUpdate (`maxUnavailable`, `maxSurge`)
//! or OnDelete; pods carry the template hash in `controller-revision-hash`.
//!
//! Start at [`reconcile`]; node eligibility is in [`logic`].

pub mod logic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::deployment::hash::compute_hash;
use super::deployment::util::scaled_value;
use super::error::{Error, KubeResultExt, is_not_found};
use super::events::{EventType, Recorder};
use super::expectations::{Expectations, Seen};
use super::informer::Informer;
use super::owners::{self, LabelMatcher, Owner, controller_of, controller_ref};
use super::pods::{self, is_available, is_ready};
use super::replicaset::is_namespace_terminating;
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

/// One level-triggered sync of a DaemonSet (Kubernetes' `syncDaemonSet`).
pub async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let key = format!("{ns}/{name}");
    let spec = ds.spec.clone().unwrap_or_default();
    let matcher = LabelMatcher::new(Some(&spec.selector), &format!("daemonset {key}"))?;
    let needs_sync = ctx.expectations.satisfied(&key, |n| {
        match ctx.pods.get(&ObjectRef::new(n).within(&ns)) {
            None => Seen::Absent,
            Some(p) if p.metadata.deletion_timestamp.is_some() => Seen::Terminating,
            Some(_) => Seen::Present,
        }
    });
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
    let candidates: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let owner = Owner {
        reference: controller_ref(ds.as_ref()),
        namespace: &ns,
        deleting: ds.metadata.deletion_timestamp.is_some(),
    };
    let uid = ds.uid().unwrap_or_default();
    let owned = owners::claim(&pod_api, &owner, &matcher, candidates, || {
        owners::owner_still_current(&ds_api, &name, &uid)
    })
    .await?;

    let hash = compute_hash(
        &spec.template,
        ds.status.as_ref().and_then(|s| s.collision_count),
    );
    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    logic::with_auto_tolerations(&mut template_spec);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = Timestamp::now();
    let nodes = ctx.nodes.state();
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(n) = logic::target_node(pod) {
            by_node.entry(n).or_default().push(pod.clone());
        }
    }
    let is_current = |p: &Pod| p.labels().get(REVISION_HASH) == Some(&hash);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = strategy.rolling_update.clone().unwrap_or_default();

    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<Arc<Pod>> = Vec::new();
    let (mut desired, mut scheduled, mut misscheduled, mut ready, mut available, mut updated) =
        (0, 0, 0, 0, 0, 0);
    let mut unavailable_nodes = 0;
    // (node, old available pod) candidates for a rolling replacement.
    let mut old_pods: Vec<(String, Arc<Pod>, bool)> = Vec::new();
    for node in &nodes {
        let node_name = node.name_any();
        let eligible = logic::fits(&template_spec, node);
        let mut pods_here = by_node.remove(&node_name).unwrap_or_default();
        if !eligible {
            if !pods_here.is_empty() {
                misscheduled += 1;
            }
            delete.extend(pods_here);
            continue;
        }
        desired += 1;
        // Failed daemon pods are deleted and replaced.
        let (failed, mut live): (Vec<_>, Vec<_>) = pods_here
            .drain(..)
            .partition(|p| pods::phase(p) == "Failed");
        delete.extend(failed);
        if live.is_empty() {
            unavailable_nodes += 1;
            create_on.push(node_name);
            continue;
        }
        scheduled += 1;
        live.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let any_available = live.iter().any(|p| is_available(p, min_ready, now));
        if live.iter().any(|p| is_ready(p)) {
            ready += 1;
        }
        if any_available {
            available += 1;
        } else {
            unavailable_nodes += 1;
        }
        let (current, old): (Vec<_>, Vec<_>) = live.into_iter().partition(|p| is_current(p));
        if !current.is_empty() {
            updated += 1;
        }
        // Keep the oldest current pod; extra current pods go.
        delete.extend(current.iter().skip(1).cloned());
        if !current.is_empty() {
            // A current pod exists (surge): old ones go once it is available.
            if rolling && current.iter().any(|p| is_available(p, min_ready, now)) {
                delete.extend(old);
            }
        } else if let Some(first) = old.first() {
            delete.extend(old.iter().skip(1).cloned());
            if rolling {
                old_pods.push((
                    node_name,
                    first.clone(),
                    is_available(first, min_ready, now),
                ));
            }
        }
    }
    // Pods pinned to nodes that no longer exist.
    delete.extend(by_node.into_values().flatten());

    if rolling && !old_pods.is_empty() {
        let max_unavailable = ru
            .max_unavailable
            .as_ref()
            .map_or(Ok(1), |v| scaled_value(v, desired, false))
            .unwrap_or(1);
        let max_surge = ru
            .max_surge
            .as_ref()
            .map_or(Ok(0), |v| scaled_value(v, desired, true))
            .unwrap_or(0);
        let mut budget_unavailable = (max_unavailable - unavailable_nodes).max(0);
        let mut budget_surge = max_surge;
        for (node, pod, avail) in old_pods {
            if !avail {
                // Replacing an unavailable pod costs no availability.
                delete.push(pod);
            } else if budget_surge > 0 {
                budget_surge -= 1;
                create_on.push(node);
            } else if budget_unavailable > 0 {
                budget_unavailable -= 1;
                delete.push(pod);
            }
        }
    }

    let mut manage_error = None;
    if needs_sync && ds.metadata.deletion_timestamp.is_none() {
        if let Err(e) = delete_pods(&ctx, &ds, &key, &pod_api, &delete).await {
            manage_error = Some(e);
        }
        if manage_error.is_none()
            && let Err(e) =
                create_pods(&ctx, &ds, &key, &pod_api, &template_spec, &hash, create_on).await
        {
            manage_error = Some(e);
        }
    }

    let old_status = ds.status.clone().unwrap_or_default();
    let status = DaemonSetStatus {
        current_number_scheduled: scheduled,
        desired_number_scheduled: desired,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some((desired - available).max(0)),
        updated_number_scheduled: Some(updated),
        observed_generation: ds.metadata.generation,
        collision_count: old_status.collision_count,
        conditions: old_status.conditions.clone(),
    };
    if status != old_status {
        let to_json = |s: &DaemonSetStatus| {
            serde_json::to_value(s).map_err(|source| Error::Json {
                context: "serializing DaemonSet status".into(),
                source,
            })
        };
        let diff = owners::merge_diff(&to_json(&old_status)?, &to_json(&status)?);
        if !diff.is_null() {
            ds_api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": diff })),
                )
                .await
                .ctx(|| format!("updating status of daemonset {key}"))?;
        }
    }
    if let Some(e) = manage_error {
        return Err(e);
    }
    if !needs_sync || (min_ready > 0 && available < desired) {
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
    template_spec: &k8s_openapi::api::core::v1::PodSpec,
    hash: &str,
    nodes: Vec<String>,
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
    let pp = PostParams::default();
    let results = join_all(pods.iter().map(|p| pod_api.create(&pp, p))).await;
    let mut created = Vec::new();
    let mut first_err = None;
    for r in results {
        match r {
            Ok(p) => {
                ctx.recorder.record(
                    ds,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.name_any()),
                );
                created.push(p.name_any());
            }
            Err(e) if is_namespace_terminating(&e) => {}
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

async fn delete_pods(
    ctx: &Ctx,
    ds: &DaemonSet,
    key: &str,
    pod_api: &Api<Pod>,
    victims: &[Arc<Pod>],
) -> Result<(), Error> {
    if victims.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
    ctx.expectations.expect_deletions(key, names.clone());
    let dp = DeleteParams::default();
    let results = join_all(names.iter().map(|n| pod_api.delete(n, &dp))).await;
    for (n, r) in names.iter().zip(results) {
        match r {
            Ok(_) => ctx.recorder.record(
                ds,
                EventType::Normal,
                "SuccessfulDelete",
                format!("Deleted pod: {n}"),
            ),
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                ctx.expectations.forget(key);
                return Err(e).ctx(|| format!("deleting daemon pod {n}"));
            }
        }
    }
    Ok(())
}
