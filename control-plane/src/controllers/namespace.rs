//! The namespace controller (Kubernetes' `namespace-controller`): when a
//! namespace is deleted, deletes every namespaced object in it, of every
//! served kind (custom resources included, found through discovery), waits
//! until they are gone, then removes the `kubernetes` finalizer through the
//! `finalize` subresource so the API server can remove the namespace.
//!
//! This replaces the API server's built-in stand-in finalizer task.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use super::discovery::served_kinds;
use super::error::{Error, KubeResultExt, is_not_found};
use super::informer::Informer;
use super::{Shared, run_controller};

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// State shared by namespace reconciles.
pub struct Ctx {
    client: Client,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let informer: Informer<Namespace> = shared.informers.get();
    let stream = informer.stream();
    informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
    });
    let controller = Controller::for_stream(stream, informer.store());
    run_controller(
        "namespace",
        controller,
        shared.config.concurrent_syncs,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// True if `spec.finalizers` still holds `kubernetes`.
pub fn awaits_us(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// The namespace with our finalizer removed from `spec.finalizers`.
pub fn finalized(ns: &Namespace) -> Namespace {
    let mut ns = ns.clone();
    if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    ns
}

/// Drains a terminating namespace, then finalizes it.
pub async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() || !awaits_us(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let remaining = delete_content(&ctx.client, &name).await?;
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace still has content");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &finalized(&ns))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace finalized");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e).ctx(|| format!("finalizing namespace {name}")),
    }
}

/// Deletes every object in namespace `ns`; returns how many still exist
/// (including those being deleted gracefully).
pub async fn delete_content(client: &Client, ns: &str) -> Result<usize, Error> {
    let mut remaining = 0;
    for kind in served_kinds(client).await? {
        if !kind.namespaced || !kind.supports(&["list", "delete"]) {
            continue;
        }
        // Events are deleted last-effort like any other kind.
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &kind.resource);
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(e)
                    .ctx(|| format!("listing {} in namespace {ns}", kind.resource.plural));
            }
        };
        for item in list.items {
            remaining += 1;
            if item.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match api
                .delete(&item.name_any(), &DeleteParams::background())
                .await
            {
                Ok(either) => {
                    if either.is_right() {
                        remaining -= 1;
                    }
                }
                Err(e) if is_not_found(&e) => remaining -= 1,
                Err(e) => {
                    return Err(e).ctx(|| {
                        format!("deleting {} {ns}/{}", kind.resource.plural, item.name_any())
                    });
                }
            }
        }
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;

    #[test]
    fn finalizing_removes_only_our_finalizer() {
        let ns = Namespace {
            spec: Some(NamespaceSpec {
                finalizers: Some(vec!["kubernetes".into(), "other".into()]),
            }),
            ..Namespace::default()
        };
        assert!(awaits_us(&ns));
        let done = finalized(&ns);
        assert!(!awaits_us(&done));
        assert_eq!(
            done.spec.and_then(|s| s.finalizers),
            Some(vec!["other".to_string()])
        );
        assert!(!awaits_us(&Namespace::default()));
    }
}
