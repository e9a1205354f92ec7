//! The service account controller (Kubernetes' `serviceaccount-controller`):
//! every active namespace has a `default` ServiceAccount, re-created if it
//! is deleted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use super::error::is_namespace_terminating;
use super::error::{Error, KubeResultExt, is_conflict};
use super::informer::Informer;
use super::{Shared, run_controller};

/// Name of the account every namespace gets.
pub const DEFAULT: &str = "default";

/// State shared by reconciles.
pub struct Ctx {
    client: Client,
    accounts: Store<ServiceAccount>,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let ns_informer: Informer<Namespace> = shared.informers.get();
    let sa_informer: Informer<ServiceAccount> = shared.informers.get();
    let (ns_stream, sa_stream) = (ns_informer.stream(), sa_informer.stream());
    ns_informer.ready().await;
    sa_informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        accounts: sa_informer.store(),
    });
    let controller = Controller::for_stream(ns_stream, ns_informer.store()).watches_stream(
        sa_stream,
        |sa: ServiceAccount| {
            (sa.name_any() == DEFAULT)
                .then(|| ObjectRef::<Namespace>::new(&sa.namespace().unwrap_or_default()))
        },
    );
    run_controller(
        "serviceaccount",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// Ensures the namespace's `default` ServiceAccount exists.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    let terminating = ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating
        || ctx
            .accounts
            .get(&ObjectRef::new(DEFAULT).within(&name))
            .is_some()
    {
        return Ok(Action::await_change());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT.into()),
            namespace: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_conflict(&e) || is_namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).ctx(|| format!("creating the default service account in {name}")),
    }
}
