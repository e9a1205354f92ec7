//! The resource quota controller (Kubernetes' `resourcequota-controller`):
//! keeps each ResourceQuota's `status.hard` (a copy of `spec.hard`) and
//! `status.used` true to what is stored: pods and their compute requests
//! and limits, Services (node ports, load balancers) and object counts
//! (`configmaps`, `count/deployments.apps`, custom resources too).
//!
//! Admission (`apiserver::admission::quota`) charges `status.used` as
//! objects are created or grow; this controller gives usage back when
//! objects go away or shrink (a pod is deleted or finishes, a Service stops
//! being NodePort or LoadBalancer, a Service, ConfigMap or Secret is
//! deleted), recounts when a quota's spec changes, and recounts everything
//! every [`ControllerManagerConfig::resource_quota_sync_period`]. Like
//! Kubernetes it ignores status-only quota changes (they are admission's
//! charges), and writes with the quota's resourceVersion so it never
//! overwrites a charge it did not see. The arithmetic is shared with
//! admission: `apiserver::admission::quota::evaluate`.
//!
//! [`ControllerManagerConfig::resource_quota_sync_period`]: super::ControllerManagerConfig::resource_quota_sync_period

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ConfigMap, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, predicates};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;

use super::discovery::{Kind, served_kinds};
use super::error::{Error, KubeResultExt, is_not_found};
use super::informer::{Informer, Watchable};
use super::{Shared, run_controller};
use crate::apiserver::admission::quantity::Quantity;
use crate::apiserver::admission::quota::evaluate::{self, Evaluator, Usage};

/// State shared by reconciles.
pub struct Ctx {
    client: Client,
    kinds: Mutex<Vec<Kind>>,
    resync: Duration,
}

/// The quotas in `ns` that limit something `evaluator` measures.
fn quotas_for(
    quotas: &Store<ResourceQuota>,
    ns: Option<String>,
    evaluator: &Evaluator,
) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .iter()
        .filter(|q| q.namespace() == ns)
        .filter(|q| {
            let hard = q.spec.as_ref().and_then(|s| s.hard.as_ref());
            hard.is_some_and(|h| h.keys().any(|k| evaluator.handles(k)))
        })
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

/// True if `obj` is no longer in its informer's cache (deleted), or the
/// cache holds a different object of the same name.
fn gone<K: Watchable>(store: &Store<K>, obj: &K) -> bool {
    store
        .get(&ObjectRef::from_obj(obj))
        .is_none_or(|cur| cur.meta().uid != obj.meta().uid)
}

/// Wakes the quotas an object of kind `K` counts against when it is deleted
/// (Kubernetes' replenishment).
fn on_delete<K: Watchable>(
    store: Store<K>,
    quotas: Store<ResourceQuota>,
    evaluator: Evaluator,
) -> impl Fn(K) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    move |obj: K| {
        if gone(&store, &obj) {
            quotas_for(&quotas, obj.namespace(), &evaluator)
        } else {
            Vec::new()
        }
    }
}

/// Wakes the quotas limiting Services when one is deleted or its usage
/// changes (Kubernetes' replenishment on a changed quota service type: a
/// NodePort turned ClusterIP gives its node ports back at once). Remembers
/// each Service's last usage by UID.
fn on_service_change(
    store: Store<Service>,
    quotas: Store<ResourceQuota>,
) -> impl Fn(Service) -> Vec<ObjectRef<ResourceQuota>> + Send + Sync + 'static {
    let seen: Mutex<std::collections::HashMap<String, Usage>> = Mutex::default();
    move |svc: Service| {
        let uid = svc.uid().unwrap_or_default();
        let changed = if gone(&store, &svc) {
            seen.lock().remove(&uid);
            true
        } else {
            let usage = evaluate::service_usage(&svc);
            seen.lock()
                .insert(uid, usage.clone())
                .is_some_and(|before| before != usage)
        };
        if changed {
            quotas_for(&quotas, svc.namespace(), &Evaluator::Services)
        } else {
            Vec::new()
        }
    }
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let quota_informer: Informer<ResourceQuota> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let svc_informer: Informer<Service> = shared.informers.get();
    let cm_informer: Informer<ConfigMap> = shared.informers.get();
    let secret_informer: Informer<Secret> = shared.informers.get();
    let quota_stream = quota_informer
        .stream()
        .predicate_filter(predicates::generation, Default::default());
    let (pod_stream, svc_stream, cm_stream, secret_stream) = (
        pod_informer.stream(),
        svc_informer.stream(),
        cm_informer.stream(),
        secret_informer.stream(),
    );
    quota_informer.ready().await;
    pod_informer.ready().await;
    svc_informer.ready().await;
    cm_informer.ready().await;
    secret_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        kinds: Mutex::new(Vec::new()),
        resync: shared.config.resource_quota_sync_period,
    });
    let quotas = quota_informer.store();
    let pods = pod_informer.store();
    let pod_quotas = quotas.clone();
    let controller = Controller::for_stream(quota_stream, quota_informer.store())
        // A pod gives its usage back when it is deleted, starts terminating
        // or finishes.
        .watches_stream(pod_stream, move |pod: Pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            let released = pod.metadata.deletion_timestamp.is_some()
                || matches!(phase, Some("Succeeded" | "Failed"))
                || gone(&pods, &pod);
            if released {
                quotas_for(&pod_quotas, pod.namespace(), &Evaluator::Pods)
            } else {
                Vec::new()
            }
        })
        .watches_stream(
            svc_stream,
            on_service_change(svc_informer.store(), quotas.clone()),
        )
        .watches_stream(
            cm_stream,
            on_delete(
                cm_informer.store(),
                quotas.clone(),
                Evaluator::for_resource("", "configmaps"),
            ),
        )
        .watches_stream(
            secret_stream,
            on_delete(
                secret_informer.store(),
                quotas,
                Evaluator::for_resource("", "secrets"),
            ),
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

async fn kind_for(ctx: &Ctx, group: &str, plural: &str) -> Result<Option<Kind>, Error> {
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

fn parse_map(m: Option<&BTreeMap<String, KQuantity>>) -> Usage {
    m.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0).ok()?)))
        .collect()
}

/// When the next terminating pod stops counting (deletion time plus grace).
fn next_release(pods: &[Pod], now: Timestamp) -> Option<Duration> {
    pods.iter()
        .filter(|p| evaluate::pod_counts(p, now))
        .filter_map(|p| {
            let ts = p.metadata.deletion_timestamp.as_ref()?.0;
            let grace = p.metadata.deletion_grace_period_seconds?;
            let at = ts + jiff::SignedDuration::from_secs(grace);
            let wait = now.duration_until(at).as_secs_f64().max(0.0);
            Some(Duration::from_secs_f64(wait) + Duration::from_secs(1))
        })
        .min()
}

/// Recounts one quota's usage and publishes it with its `hard`.
pub async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = quota.namespace().unwrap_or_default();
    let name = quota.name_any();
    let api: Api<ResourceQuota> = Api::namespaced(ctx.client.clone(), &ns);
    // Work from a fresh read: the write below is guarded by its resourceVersion.
    let mut fresh = match api.get(&name).await {
        Ok(q) => q,
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e).ctx(|| format!("reading quota {ns}/{name}")),
    };
    let hard_raw = fresh
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let hard = parse_map(Some(&hard_raw));
    let now = Timestamp::now();

    let pods: Vec<Pod> = if Evaluator::Pods.matching(hard.keys()).is_empty() {
        Vec::new()
    } else {
        Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .ctx(|| format!("listing pods in {ns}"))?
            .items
    };
    let services: Vec<Service> = if Evaluator::Services.matching(hard.keys()).is_empty() {
        Vec::new()
    } else {
        Api::<Service>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .ctx(|| format!("listing services in {ns}"))?
            .items
    };
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for key in hard.keys() {
        let Some((group, plural)) = evaluate::counted_resource(key) else {
            continue;
        };
        let Some(kind) = kind_for(&ctx, &group, &plural).await? else {
            continue;
        };
        let objs: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &kind.resource);
        match objs.list_metadata(&ListParams::default()).await {
            Ok(list) => {
                counts.insert(key.clone(), list.items.len() as i64);
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("counting {plural} in {ns}")),
        }
    }
    let pod_refs: Vec<&Pod> = pods.iter().collect();
    let svc_refs: Vec<&Service> = services.iter().collect();
    let used = evaluate::recompute(&fresh, &hard, &pod_refs, &svc_refs, &counts, now);
    let requeue = next_release(&pods, now).map_or(ctx.resync, |d| d.min(ctx.resync));

    let status = fresh.status.clone().unwrap_or_default();
    let current_used = parse_map(status.used.as_ref());
    if status.hard.as_ref() == Some(&hard_raw) && current_used == used {
        return Ok(Action::requeue(requeue));
    }
    fresh.status = Some(ResourceQuotaStatus {
        hard: Some(hard_raw),
        used: Some(
            used.iter()
                .map(|(k, v)| (k.clone(), KQuantity(v.to_string())))
                .collect(),
        ),
    });
    api.replace_status(&name, &PostParams::default(), &fresh)
        .await
        .ctx(|| format!("updating usage of quota {ns}/{name}"))?;
    tracing::debug!(quota = %format!("{ns}/{name}"), "quota usage updated");
    Ok(Action::requeue(requeue))
}
