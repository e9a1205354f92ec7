// NOT YET COMPILED: written while every build on the shared machine was being
// SIGKILLed. Declare `pub mod resourcequota;` in controllers/mod.rs (and add
// "resourcequota" to ALL_CONTROLLERS / start()) once it builds.
//! The resource quota controller (Kubernetes' `resourcequota-controller`):
//! keeps each ResourceQuota's `status.hard` (a copy of `spec.hard`) and
//! `status.used` current: pods and their compute requests/limits, Services
//! (and their node ports / load balancers), and object counts
//! (`configmaps`, `count/deployments.apps`, …). Enforcement (refusing a
//! create that would exceed `hard`) is the API server's admission; it reads
//! and bumps `status.used`, which this controller then recomputes.
//!
//! Usage arithmetic lives in [`logic`].

pub mod logic;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;

use super::discovery::{Kind, served_kinds};
use super::error::{Error, KubeResultExt, is_not_found};
use super::informer::Informer;
use super::{Shared, run_controller};

/// How often usage is recomputed even without pod changes.
const RESYNC: Duration = Duration::from_secs(30);

/// State shared by reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    kinds: Mutex<Vec<Kind>>,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let quota_informer: Informer<ResourceQuota> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let (quota_stream, pod_stream) = (quota_informer.stream(), pod_informer.stream());
    quota_informer.ready().await;
    pod_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        kinds: Mutex::new(Vec::new()),
    });
    let quotas = quota_informer.store();
    let controller = Controller::for_stream(quota_stream, quota_informer.store()).watches_stream(
        pod_stream,
        move |pod: Pod| {
            let ns = pod.namespace();
            quotas
                .state()
                .iter()
                .filter(|q| q.namespace() == ns)
                .map(|q| ObjectRef::from_obj(q.as_ref()))
                .collect::<Vec<_>>()
        },
    );
    run_controller(
        "resourcequota",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

async fn kind_for(ctx: &Ctx, plural: &str, group: &str) -> Result<Option<Kind>, Error> {
    let find = |kinds: &[Kind]| {
        kinds
            .iter()
            .find(|k| k.resource.plural == plural && k.resource.group == group)
            .cloned()
    };
    if let Some(k) = find(&ctx.kinds.lock()) {
        return Ok(Some(k));
    }
    let fresh = served_kinds(&ctx.client).await?;
    let found = find(&fresh);
    *ctx.kinds.lock() = fresh;
    Ok(found)
}

/// Recomputes one quota's usage.
pub async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let name = quota.name_any();
    let hard: BTreeMap<String, Quantity> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .collect();
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let mut used: BTreeMap<String, String> = logic::pod_usage(hard.keys(), &refs);
    let needs_services = hard
        .keys()
        .any(|k| k == "services.nodeports" || k == "services.loadbalancers");
    if needs_services {
        let svcs: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
        let list = svcs
            .list(&ListParams::default())
            .await
            .ctx(|| format!("listing services in {ns}"))?
            .items;
        let of_type = |t: &str| {
            list.iter()
                .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some(t))
                .count()
        };
        let node_ports: usize = list
            .iter()
            .filter(|s| {
                matches!(
                    s.spec.as_ref().and_then(|s| s.type_.as_deref()),
                    Some("NodePort" | "LoadBalancer")
                )
            })
            .map(|s| {
                s.spec
                    .as_ref()
                    .and_then(|s| s.ports.as_ref())
                    .map_or(0, Vec::len)
            })
            .sum();
        if hard.contains_key("services.nodeports") {
            used.insert("services.nodeports".into(), node_ports.to_string());
        }
        if hard.contains_key("services.loadbalancers") {
            used.insert(
                "services.loadbalancers".into(),
                of_type("LoadBalancer").to_string(),
            );
        }
    }
    for key in hard.keys() {
        let Some((plural, group)) = logic::counted_kind(key) else {
            continue;
        };
        let Some(kind) = kind_for(&ctx, &plural, &group).await? else {
            continue;
        };
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &ns, &kind.resource);
        match api.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                used.insert(key.clone(), list.items.len().to_string());
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("counting {plural} in {ns}")),
        }
    }
    let status = quota.status.clone().unwrap_or_default();
    let current_used: BTreeMap<String, String> = status
        .used
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, Quantity(v))| (k, v))
        .collect();
    let hard_matches = status.hard.as_ref() == Some(&hard);
    if hard_matches && current_used == used {
        return Ok(Action::requeue(RESYNC));
    }
    let used_json: BTreeMap<String, Quantity> =
        used.into_iter().map(|(k, v)| (k, Quantity(v))).collect();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // A merge patch of whole maps would keep stale keys; send the full status.
    let mut stale = serde_json::Map::new();
    for k in status
        .used
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !used_json.contains_key(*k))
    {
        stale.insert(k.clone(), serde_json::Value::Null);
    }
    let mut used_value = serde_json::to_value(&used_json).map_err(|source| Error::Json {
        context: "quota usage".into(),
        source,
    })?;
    if let Some(obj) = used_value.as_object_mut() {
        obj.extend(stale);
    }
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"hard": hard, "used": used_value}})),
    )
    .await
    .ctx(|| format!("updating usage of quota {ns}/{name}"))?;
    Ok(Action::requeue(RESYNC))
}
