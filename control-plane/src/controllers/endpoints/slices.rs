//! The EndpointSlice controller (Kubernetes' `endpointslice-controller`):
//! for every Service with a selector, EndpointSlices (`discovery.k8s.io/v1`)
//! owned by the Service, labelled `kubernetes.io/service-name`, holding its
//! endpoints with ready / serving / terminating conditions, at most 100 per
//! slice. A Service without endpoints keeps one empty placeholder slice.
//! Slices of deleted Services are removed by the garbage collector.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::logic::{self, MANAGED_BY, MANAGED_BY_LABEL, SERVICE_NAME_LABEL, SliceContent};
use super::{selected_pods, services_for_pod};
use crate::controllers::error::is_namespace_terminating;
use crate::controllers::error::{Error, KubeResultExt, is_not_found};
use crate::controllers::informer::Informer;
use crate::controllers::owners::controller_ref;
use crate::controllers::{Shared, run_controller};

/// State shared by reconciles.
pub struct Ctx {
    client: Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let svc_informer: Informer<Service> = shared.informers.get();
    let pod_informer: Informer<Pod> = shared.informers.get();
    let slice_informer: Informer<EndpointSlice> = shared.informers.get();
    let (svc_stream, pod_stream, slice_stream) = (
        svc_informer.stream(),
        pod_informer.stream(),
        slice_informer.stream(),
    );
    svc_informer.ready().await;
    pod_informer.ready().await;
    slice_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        pods: pod_informer.store(),
        slices: slice_informer.store(),
    });
    let services = svc_informer.store();
    let for_pods = (services.clone(), slice_informer.store());
    let controller = Controller::for_stream(svc_stream, services)
        .watches_stream(pod_stream, move |pod: Pod| {
            services_for_pod(&for_pods.0, &pod, |svc| {
                slices_of(&for_pods.1, svc).iter().any(|s| {
                    s.endpoints.iter().any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.name.as_ref())
                            == pod.metadata.name.as_ref()
                    })
                })
            })
        })
        .watches_stream(slice_stream, |slice: EndpointSlice| {
            let svc = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
            Some(ObjectRef::<Service>::new(&svc).within(&slice.namespace().unwrap_or_default()))
        });
    run_controller(
        "endpointslice",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// The slices this controller manages for `svc`.
fn slices_of(slices: &Store<EndpointSlice>, svc: &Service) -> Vec<Arc<EndpointSlice>> {
    let name = svc.name_any();
    let ns = svc.namespace();
    slices
        .state()
        .into_iter()
        .filter(|s| {
            s.namespace() == ns
                && s.labels().get(SERVICE_NAME_LABEL) == Some(&name)
                && s.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        })
        .collect()
}

fn content_of(slice: &EndpointSlice) -> SliceContent {
    SliceContent {
        address_type: slice.address_type.clone(),
        ports: slice.ports.clone().unwrap_or_default(),
        endpoints: slice.endpoints.clone(),
    }
}

/// Brings the Service's slices to the desired contents, reusing existing
/// slices where possible.
pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if logic::selector(&svc).is_none() {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let pods = selected_pods(&ctx.pods, &svc);
    let refs: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
    let mut desired = logic::desired_slices(&svc, &refs);
    if desired.is_empty() {
        desired.push(SliceContent {
            address_type: "IPv4".into(),
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    let mut labels: BTreeMap<String, String> = svc.labels().clone();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());

    let mut existing = slices_of(&ctx.slices, &svc);
    existing.sort_by_key(|s| s.name_any());
    let mut unused: Vec<Option<Arc<EndpointSlice>>> = existing.into_iter().map(Some).collect();
    let mut todo: Vec<SliceContent> = Vec::new();
    // Unchanged slices stay as they are.
    for want in desired {
        let same = unused.iter_mut().find(|s| {
            s.as_ref()
                .is_some_and(|s| content_of(s) == want && s.labels() == &labels)
        });
        match same {
            Some(slot) => *slot = None,
            None => todo.push(want),
        }
    }
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    for want in todo {
        let reuse = unused
            .iter_mut()
            .find(|s| {
                s.as_ref()
                    .is_some_and(|s| s.address_type == want.address_type)
            })
            .and_then(Option::take);
        let mut slice = EndpointSlice {
            metadata: ObjectMeta {
                generate_name: Some(format!("{name}-")),
                namespace: Some(ns.clone()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![controller_ref(svc.as_ref())]),
                ..ObjectMeta::default()
            },
            address_type: want.address_type,
            endpoints: want.endpoints,
            ports: Some(want.ports),
        };
        let result = match reuse {
            Some(old) => {
                slice.metadata.name = old.metadata.name.clone();
                slice.metadata.generate_name = None;
                slice.metadata.resource_version = old.metadata.resource_version.clone();
                api.replace(&old.name_any(), &PostParams::default(), &slice)
                    .await
            }
            None => api.create(&PostParams::default(), &slice).await,
        };
        match result {
            Ok(_) => {}
            Err(e) if is_namespace_terminating(&e) => return Ok(Action::await_change()),
            Err(e) => {
                return Err(e).ctx(|| format!("writing endpoint slices of service {ns}/{name}"));
            }
        }
    }
    for old in unused.into_iter().flatten() {
        match api.delete(&old.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(e).ctx(|| format!("deleting endpoint slice {ns}/{}", old.name_any()));
            }
        }
    }
    Ok(Action::await_change())
}
