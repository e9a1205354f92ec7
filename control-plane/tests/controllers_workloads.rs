//! ReplicaSet and Deployment controllers against the in-process API server.

mod controllers_common;

use std::time::Duration;

use anyhow::Result;
use controllers_common::{eventually, live_pods, make_all_ready, start};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(15);

fn rs_json(name: &str, replicas: i32) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "hello.wasm"}]}
            }
        }
    })
}

#[tokio::test]
async fn replicaset_creates_scales_and_reports_status() -> Result<()> {
    let cluster = start(&["replicaset"]).await?;
    let client = cluster.client.clone();
    let rs_api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs: ReplicaSet = serde_json::from_value(rs_json("web", 3))?;
    rs_api.create(&PostParams::default(), &rs).await?;

    let pods = eventually("3 pods", T, || async {
        let pods = live_pods(&client, "default", "app=web").await?;
        Ok((pods.len() == 3).then_some(pods))
    })
    .await?;
    for p in &pods {
        let owner = p.owner_references().first().cloned();
        assert_eq!(owner.as_ref().map(|o| o.kind.as_str()), Some("ReplicaSet"));
        assert_eq!(owner.as_ref().and_then(|o| o.controller), Some(true));
        assert!(p.name_any().starts_with("web-"));
    }
    // No double creation while the cache catches up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live_pods(&client, "default", "app=web").await?.len(), 3);

    make_all_ready(&client, "default", "app=web").await?;
    eventually("ready status", T, || async {
        let rs = rs_api.get("web").await?;
        let s = rs.status.unwrap_or_default();
        Ok((s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == rs.metadata.generation)
            .then_some(()))
    })
    .await?;

    // Scale down to 1, then a deleted pod is replaced.
    rs_api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await?;
    let left = eventually("1 pod", T, || async {
        let pods = live_pods(&client, "default", "app=web").await?;
        Ok((pods.len() == 1).then_some(pods))
    })
    .await?;
    let pod_api: Api<Pod> = Api::default_namespaced(client.clone());
    pod_api
        .delete(&left[0].name_any(), &DeleteParams::default())
        .await?;
    eventually("replacement pod", T, || async {
        let pods = live_pods(&client, "default", "app=web").await?;
        Ok((pods.len() == 1 && pods[0].name_any() != left[0].name_any()).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn replicaset_adopts_orphans_and_releases_relabeled_pods() -> Result<()> {
    let cluster = start(&["replicaset"]).await?;
    let client = cluster.client.clone();
    let pod_api: Api<Pod> = Api::default_namespaced(client.clone());
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "hello.wasm"}]}
    }))?;
    pod_api.create(&PostParams::default(), &orphan).await?;
    let rs_api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    rs_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(rs_json("adopt", 2))?,
        )
        .await?;
    eventually("adoption", T, || async {
        let p = pod_api.get("orphan").await?;
        Ok(p.owner_references()
            .iter()
            .any(|o| o.name == "adopt" && o.controller == Some(true))
            .then_some(()))
    })
    .await?;
    eventually("2 pods in total", T, || async {
        Ok((live_pods(&client, "default", "app=adopt").await?.len() == 2).then_some(()))
    })
    .await?;
    // Relabel: the RS releases the pod and creates a replacement.
    pod_api
        .patch(
            "orphan",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
        )
        .await?;
    eventually("release", T, || async {
        let p = pod_api.get("orphan").await?;
        Ok(p.owner_references().is_empty().then_some(()))
    })
    .await?;
    eventually("replacement", T, || async {
        Ok((live_pods(&client, "default", "app=adopt").await?.len() == 2).then_some(()))
    })
    .await?;
    Ok(())
}

fn deploy_json(name: &str, replicas: i32, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

async fn wait_rollout(client: &kube::Client, name: &str, selector: &str) -> Result<Deployment> {
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    eventually("rollout complete", T, || async {
        make_all_ready(client, "default", selector).await?;
        let d = api.get(name).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let s = d.status.clone().unwrap_or_default();
        let done = d.metadata.generation <= s.observed_generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.conditions.iter().flatten().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            });
        Ok(done.then_some(d))
    })
    .await
}

async fn replicasets_of(client: &kube::Client, selector: &str) -> Result<Vec<ReplicaSet>> {
    let api: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

fn revision(rs: &ReplicaSet) -> String {
    rs.annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn deployment_rolls_out_updates_and_undoes() -> Result<()> {
    let cluster = start(&["replicaset", "deployment"]).await?;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(deploy_json("web", 1, "v1.wasm"))?,
    )
    .await?;
    let d = wait_rollout(&client, "web", "app=web").await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let conds = d
        .status
        .clone()
        .unwrap_or_default()
        .conditions
        .unwrap_or_default();
    assert!(conds.iter().any(|c| c.type_ == "Available"
        && c.status == "True"
        && c.reason.as_deref() == Some("MinimumReplicasAvailable")));

    // Scale 1 -> 5 -> 2.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await?;
    wait_rollout(&client, "web", "app=web").await?;
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 2}})),
    )
    .await?;
    wait_rollout(&client, "web", "app=web").await?;
    eventually("2 pods", T, || async {
        Ok((live_pods(&client, "default", "app=web").await?.len() == 2).then_some(()))
    })
    .await?;
    let rss = replicasets_of(&client, "app=web").await?;
    assert_eq!(rss.len(), 1);
    let first_hash = rss[0]
        .labels()
        .get("pod-template-hash")
        .cloned()
        .unwrap_or_default();
    assert_eq!(rss[0].name_any(), format!("web-{first_hash}"));

    // `kubectl set image`: a second ReplicaSet, revision 2, old one scaled to 0.
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2.wasm"}]}}}})),
    )
    .await?;
    let d = wait_rollout(&client, "web", "app=web").await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let rss = replicasets_of(&client, "app=web").await?;
    assert_eq!(rss.len(), 2);
    let old = rss
        .iter()
        .find(|r| r.name_any() == format!("web-{first_hash}"))
        .cloned();
    let old = old.ok_or_else(|| anyhow::anyhow!("old rs gone"))?;
    assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));
    assert_eq!(revision(&old), "1");

    // `kubectl rollout undo`: JSON patch of the template from the old RS
    // (hash label removed, creationTimestamp null, resources {}).
    let mut template = serde_json::to_value(old.spec.as_ref().and_then(|s| s.template.clone()))?;
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    template["metadata"]["creationTimestamp"] = serde_json::Value::Null;
    template["spec"]["containers"][0]["resources"] = json!({});
    let patch: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/template", "value": template}]),
    )?;
    api.patch("web", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await?;
    let d = wait_rollout(&client, "web", "app=web").await?;
    let rss = replicasets_of(&client, "app=web").await?;
    assert_eq!(
        rss.len(),
        2,
        "undo reuses the old ReplicaSet: {:?}",
        rss.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let reused = rss
        .iter()
        .find(|r| r.name_any() == format!("web-{first_hash}"))
        .cloned();
    let reused = reused.ok_or_else(|| anyhow::anyhow!("old rs gone"))?;
    assert_eq!(revision(&reused), "3");
    assert_eq!(
        reused
            .annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(reused.spec.as_ref().and_then(|s| s.replicas), Some(2));
    Ok(())
}

#[tokio::test]
async fn recreate_and_pause() -> Result<()> {
    let cluster = start(&["replicaset", "deployment"]).await?;
    let client = cluster.client.clone();
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deploy_json("rec", 3, "v1.wasm");
    d["spec"]["strategy"] = json!({"type": "Recreate"});
    api.create(&PostParams::default(), &serde_json::from_value(d)?)
        .await?;
    wait_rollout(&client, "rec", "app=rec").await?;

    // Pause: a template change creates no ReplicaSet.
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": true}})),
    )
    .await?;
    eventually("paused condition", T, || async {
        let d = api.get("rec").await?;
        Ok(d.status
            .unwrap_or_default()
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"))
            .then_some(()))
    })
    .await?;
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}})),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(replicasets_of(&client, "app=rec").await?.len(), 1);

    // Resume: Recreate scales the old set to zero before the new one grows.
    api.patch(
        "rec",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": false}})),
    )
    .await?;
    let d = wait_rollout(&client, "rec", "app=rec").await?;
    assert_eq!(
        d.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );
    let rss = replicasets_of(&client, "app=rec").await?;
    assert_eq!(rss.len(), 2);
    let sizes: Vec<i32> = rss
        .iter()
        .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .collect();
    assert!(sizes.contains(&0) && sizes.contains(&3), "{sizes:?}");
    Ok(())
}

#[tokio::test]
async fn deployment_benchmark_reports_rollout_times() -> Result<()> {
    use skiff_control_plane::controllers::bench::{
        BenchOptions, PatchStatusReady, bench_deployment,
    };
    let cluster = start(&["replicaset", "deployment", "garbagecollector"]).await?;
    let opts = BenchOptions {
        name: "bench".into(),
        replicas: 60,
        timeout: Duration::from_secs(45),
        ready: Some(std::sync::Arc::new(PatchStatusReady { concurrency: 16 })),
        ..BenchOptions::default()
    };
    let report = bench_deployment(cluster.client.clone(), opts).await?;
    assert_eq!(report.replicas, 60);
    assert!(report.to_available > Duration::ZERO);
    assert!(report.rolling_update.is_some());
    eprintln!("{report}");
    let rs_api: Api<ReplicaSet> = Api::default_namespaced(cluster.client.clone());
    eventually("cleanup", T, || async {
        Ok(rs_api
            .list(&ListParams::default().labels("app=bench"))
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    Ok(())
}
