//! Garbage collector, namespace and service account controllers against the
//! in-process API server.

mod controllers_common;

use std::time::Duration;

use anyhow::Result;
use controllers_common::{eventually, live_pods, start, start_full};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(15);

fn deploy(name: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "x.wasm"}]}
            }
        }
    }))?)
}

async fn count_rs(client: &kube::Client, sel: &str) -> Result<usize> {
    let api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    Ok(api
        .list(&ListParams::default().labels(sel))
        .await?
        .items
        .len())
}

async fn deployed(client: &kube::Client, name: &str, pods: usize) -> Result<()> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(&PostParams::default(), &deploy(name, pods as i32)?)
        .await?;
    let sel = format!("app={name}");
    eventually("pods", T, || async {
        Ok((live_pods(client, "default", &sel).await?.len() == pods).then_some(()))
    })
    .await
}

#[tokio::test]
async fn deletion_propagation_background_foreground_orphan() -> Result<()> {
    let cluster = start(&["replicaset", "deployment", "garbagecollector"]).await?;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());

    // Background (kubectl's default): deployment gone at once, then RS and pods.
    deployed(&client, "bg", 2).await?;
    api.delete("bg", &DeleteParams::background()).await?;
    eventually("bg cascade", T, || async {
        Ok((count_rs(&client, "app=bg").await? == 0
            && live_pods(&client, "default", "app=bg").await?.is_empty())
        .then_some(()))
    })
    .await?;

    // Foreground: the deployment stays (with the finalizer) until its
    // dependents are gone.
    deployed(&client, "fg", 2).await?;
    api.delete("fg", &DeleteParams::foreground()).await?;
    let d = api.get_opt("fg").await?;
    if let Some(d) = d {
        assert!(d.finalizers().iter().any(|f| f == "foregroundDeletion"));
    }
    eventually("fg cascade", T, || async {
        Ok((api.get_opt("fg").await?.is_none()
            && count_rs(&client, "app=fg").await? == 0
            && live_pods(&client, "default", "app=fg").await?.is_empty())
        .then_some(()))
    })
    .await?;

    // Orphan: the deployment goes, the RS and pods stay, without the owner.
    deployed(&client, "or", 2).await?;
    api.delete("or", &DeleteParams::orphan()).await?;
    eventually("orphaning", T, || async {
        let rs_api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
        let rss = rs_api
            .list(&ListParams::default().labels("app=or"))
            .await?
            .items;
        Ok((api.get_opt("or").await?.is_none()
            && rss.len() == 1
            && rss[0].owner_references().is_empty())
        .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        live_pods(&client, "default", "app=or").await?.len(),
        2,
        "orphaned pods survive"
    );
    Ok(())
}

#[tokio::test]
async fn dependents_of_a_missing_owner_are_collected_and_multi_owner_objects_kept() -> Result<()> {
    let cluster = start(&["garbagecollector"]).await?;
    let client = cluster.client.clone();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let owner = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "owner"}}))?,
        )
        .await?;
    let other = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}}))?,
        )
        .await?;
    let oref = |o: &ConfigMap| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.name_any(), "uid": o.uid()});
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "dep", "ownerReferences": [oref(&owner)]}}),
        )?,
    )
    .await?;
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "shared", "ownerReferences": [oref(&owner), oref(&other)]}}))?,
    )
    .await?;
    // A dependent of an owner that never existed is garbage at once.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "stray", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}]}}))?,
    )
    .await?;
    eventually("stray collected", T, || async {
        Ok(cms.get_opt("stray").await?.is_none().then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("dep").await?.is_some(), "owner alive: kept");

    cms.delete("owner", &DeleteParams::default()).await?;
    eventually(
        "dep collected, shared kept without the dead owner",
        T,
        || async {
            let shared = cms.get("shared").await?;
            Ok((cms.get_opt("dep").await?.is_none()
                && shared.owner_references().len() == 1
                && shared.owner_references()[0].name == "other")
                .then_some(()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn namespace_deletion_drains_builtin_and_custom_objects() -> Result<()> {
    let cluster = start_full(&["namespace", "serviceaccount"], false, |_| {}).await?;
    let client = cluster.client.clone();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}}))?,
    )
    .await?;

    // The service account controller gives it a default account.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "doomed");
    eventually("default service account", T, || async {
        Ok(sas.get_opt("default").await?.map(|_| ()))
    })
    .await?;
    sas.delete("default", &DeleteParams::default()).await?;
    eventually("default service account re-created", T, || async {
        Ok(sas.get_opt("default").await?.map(|_| ()))
    })
    .await?;

    // A CRD and one custom object in the namespace, plus built-in objects.
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    let widget_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "doomed", &widget_ar);
    let widget: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}}),
    )?;
    eventually("custom object created", T, || async {
        Ok(widgets
            .create(&PostParams::default(), &widget)
            .await
            .ok()
            .map(|_| ()))
    })
    .await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cm"}}))?,
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "doomed");
    pods.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x.wasm"}]}}))?).await?;

    nss.delete("doomed", &DeleteParams::default()).await?;
    eventually("namespace gone", Duration::from_secs(20), || async {
        Ok(nss.get_opt("doomed").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        widgets
            .list(&ListParams::default())
            .await
            .map(|l| l.items.is_empty())
            .unwrap_or(true)
    );
    Ok(())
}

#[tokio::test]
async fn endpoints_and_slices_follow_ready_pods() -> Result<()> {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let cluster = start(&["endpoint", "endpointslice", "garbagecollector"]).await?;
    let client = cluster.client.clone();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }))?,
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for name in ["a", "b"] {
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x.wasm", "ports": [{"name": "http", "containerPort": 8080}]}]}
            }))?,
        )
        .await?;
    }
    let a = pods.get("a").await?;
    controllers_common::make_ready(&client, &a, "node-1").await?;
    // b gets an IP but is not ready.
    let ip_b = controllers_common::next_ip();
    pods.patch_status(
        "b",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip_b}})),
    )
    .await?;
    let eps: Api<Endpoints> = Api::default_namespaced(client.clone());
    eventually("endpoints", T, || async {
        let Some(ep) = eps.get_opt("web").await? else {
            return Ok(None);
        };
        let subsets = ep.subsets.unwrap_or_default();
        let ok = subsets.len() == 1
            && subsets[0].addresses.as_ref().map(Vec::len) == Some(1)
            && subsets[0].not_ready_addresses.as_ref().map(Vec::len) == Some(1)
            && subsets[0]
                .ports
                .as_ref()
                .is_some_and(|p| p[0].port == 8080 && p[0].name.as_deref() == Some("http"));
        Ok(ok.then_some(()))
    })
    .await?;
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    let slice = eventually("slice", T, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?
            .items;
        Ok((list.len() == 1 && list[0].endpoints.len() == 2).then(|| list[0].clone()))
    })
    .await?;
    assert_eq!(
        slice.owner_references().first().map(|o| o.kind.as_str()),
        Some("Service")
    );
    assert_eq!(slice.address_type, "IPv4");
    let ready: Vec<Option<bool>> = slice
        .endpoints
        .iter()
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready))
        .collect();
    assert!(ready.contains(&Some(true)) && ready.contains(&Some(false)));

    // Relabeling a pod away removes it.
    pods.patch(
        "a",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await?;
    eventually("a removed", T, || async {
        let ep = eps.get("web").await?;
        Ok(ep
            .subsets
            .unwrap_or_default()
            .iter()
            .all(|s| s.addresses.is_none())
            .then_some(()))
    })
    .await?;
    // Deleting the service removes its endpoints and slices.
    svcs.delete("web", &DeleteParams::default()).await?;
    eventually("cleanup", T, || async {
        let no_slices = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await?
            .items
            .is_empty();
        Ok((eps.get_opt("web").await?.is_none() && no_slices).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_endpoint_slices() -> Result<()> {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    if !controllers_common::kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return Ok(());
    }
    let cluster = start(&["endpointslice"]).await?;
    let client = cluster.client.clone();
    let svcs: Api<Service> = Api::default_namespaced(client.clone());
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "shop"},
            "spec": {"selector": {"app": "shop"}, "ports": [{"port": 80, "targetPort": 8080}]}
        }))?,
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "shop-1", "labels": {"app": "shop"}},
            "spec": {"containers": [{"name": "c", "image": "x.wasm"}]}
        }))?,
    )
    .await?;
    let p = pods.get("shop-1").await?;
    controllers_common::make_ready(&client, &p, "node-1").await?;
    let ip = pods
        .get("shop-1")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .unwrap_or_default();
    let slices: Api<EndpointSlice> = Api::default_namespaced(client.clone());
    eventually("slice with the pod", T, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=shop"))
            .await?
            .items;
        Ok((list.len() == 1 && list[0].endpoints.len() == 1).then_some(()))
    })
    .await?;
    let k = cluster.kubectl().await?;
    let out = tokio::task::spawn_blocking(move || {
        k.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=shop",
        ])
    })
    .await??;
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert!(row[0].starts_with("shop-"), "{out}");
    assert_eq!(row[1..4], ["IPv4", "8080", ip.as_str()], "{out}");
    Ok(())
}
