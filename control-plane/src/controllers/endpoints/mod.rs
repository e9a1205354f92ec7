//! The Endpoints controller (Kubernetes' `endpoints-controller`): for every
//! Service with a selector, an Endpoints object of the same name listing the
//! matching pods' IPs (ready and not ready) with the resolved target ports.
//! When a Service goes away, so does its Endpoints object.
//!
//! [`slices`] is the EndpointSlice controller; [`logic`] has the contents.

pub mod logic;
pub mod slices;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::is_namespace_terminating;
use super::error::{Error, KubeResultExt, is_conflict, is_not_found};
use super::informer::Informer;
use super::owners::LabelMatcher;
use super::{Shared, run_controller};

/// State shared by reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let svc_informer: Informer<Service> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let ep_informer: Informer<Endpoints> = shared.informers.get();
    let (svc_stream, pod_stream, ep_stream) = (
        svc_informer.stream(),
        pod_informer.stream(),
        ep_informer.stream(),
    );
    let deletions = svc_informer.stream();
    svc_informer.ready().await;
    pod_informer.ready().await;
    ep_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        endpoints: ep_informer.store(),
    });
    let services = svc_informer.store();
    let eps = ep_informer.store();
    let for_pods = (services.clone(), eps.clone());
    let controller = Controller::for_stream(svc_stream, services.clone())
        .watches_stream(pod_stream, move |pod: Pod| {
            services_for_pod(&for_pods.0, &pod, |svc| {
                for_pods
                    .1
                    .get(&same_name(svc))
                    .is_some_and(|ep| references_pod(&ep, &pod))
            })
        })
        .watches_stream(ep_stream, |ep: Endpoints| {
            Some(
                ObjectRef::<Service>::new(&ep.name_any())
                    .within(&ep.namespace().unwrap_or_default()),
            )
        });
    let cleanup = delete_orphaned_endpoints(shared.client.clone(), services, deletions);
    tokio::join!(
        run_controller(
            "endpoint",
            controller,
            shared.config.concurrent_syncs,
            reconcile,
            ctx.clone()
        ),
        cleanup
    );
    Ok(())
}

/// Services to wake for a pod: those selecting it now, and those that
/// `listed` says currently list it (it may have been relabeled away).
pub fn services_for_pod(
    services: &Store<Service>,
    pod: &Pod,
    listed: impl Fn(&Service) -> bool,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.namespace().unwrap_or_default();
    services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
        .filter(|s| {
            logic::selector(s).is_some_and(|sel| {
                LabelMatcher::from_map(sel).matches(pod.metadata.labels.as_ref())
            }) || listed(s)
        })
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// The Endpoints object named like `svc`.
fn same_name(svc: &Service) -> ObjectRef<Endpoints> {
    ObjectRef::new(&svc.name_any()).within(&svc.namespace().unwrap_or_default())
}

fn references_pod(ep: &Endpoints, pod: &Pod) -> bool {
    let name = pod.metadata.name.as_deref();
    ep.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .flatten()
            .chain(s.not_ready_addresses.iter().flatten())
            .any(|a| a.target_ref.as_ref().and_then(|r| r.name.as_deref()) == name)
    })
}

/// Pods of the Service's namespace matching its selector.
pub fn selected_pods(pods: &Store<Pod>, svc: &Service) -> Vec<Arc<Pod>> {
    let Some(sel) = logic::selector(svc) else {
        return Vec::new();
    };
    let matcher = LabelMatcher::from_map(sel);
    let ns = svc.namespace();
    pods.state()
        .into_iter()
        .filter(|p| p.namespace() == ns && matcher.matches(p.metadata.labels.as_ref()))
        .collect()
}

/// Writes the Endpoints object of a Service with a selector.
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if logic::selector(&svc).is_none() {
        // Selector-less Services have user-managed Endpoints.
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected_pods(&ctx.pods, &svc);
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let subsets = logic::endpoint_subsets(&svc, &refs);
    let mut labels = svc.labels().clone();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let current = ctx.endpoints.get(&same_name(&svc));
    let want_subsets = (!subsets.is_empty()).then_some(subsets);
    if let Some(cur) = &current
        && cur.subsets == want_subsets
        && cur.metadata.labels.clone().unwrap_or_default() == labels
    {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    let mut ep = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            ..ObjectMeta::default()
        },
        subsets: want_subsets,
    };
    let result = match current {
        Some(cur) => {
            ep.metadata.resource_version = cur.metadata.resource_version.clone();
            ep.metadata.annotations = cur.metadata.annotations.clone();
            api.replace(&name, &PostParams::default(), &ep).await
        }
        None => api.create(&PostParams::default(), &ep).await,
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).ctx(|| format!("writing endpoints {ns}/{name}")),
    }
}

/// Deletes the Endpoints of Services that were deleted (the Controller only
/// reconciles Services that exist).
async fn delete_orphaned_endpoints(
    client: Client,
    services: Store<Service>,
    changes: impl futures::Stream<Item = Result<Service, kube::runtime::watcher::Error>> + Send,
) {
    let mut changes = std::pin::pin!(changes);
    while let Some(Ok(svc)) = changes.next().await {
        if services.get(&ObjectRef::from_obj(&svc)).is_some() {
            continue;
        }
        let ns = svc.namespace().unwrap_or_default();
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        match api.delete(&svc.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(err) => {
                tracing::warn!(%err, service = %svc.name_any(), "deleting endpoints of a deleted service failed")
            }
        }
    }
}
