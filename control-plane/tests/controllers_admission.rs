//! Admission against the in-process API server on a real redb file, with
//! the resource quota controller running: ResourceQuota enforcement (and
//! its race safety), LimitRange defaults and ranges, DefaultTolerationSeconds,
//! and the stock kubectl seeing Kubernetes' refusal messages.

mod controllers_common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use controllers_common::{eventually, kubectl_available, start_redb};
use k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Pod, ResourceQuota};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

fn pod(name: &str, resources: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "hello.wasm", "resources": resources}]}
    }))?)
}

async fn create_quota(client: &Client, name: &str, hard: Value) -> Result<()> {
    let api: Api<ResourceQuota> = Api::default_namespaced(client.clone());
    let q: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))?;
    api.create(&PostParams::default(), &q).await?;
    Ok(())
}

/// `status.used` of a quota as plain strings.
async fn used(client: &Client, name: &str) -> Result<Value> {
    let api: Api<ResourceQuota> = Api::default_namespaced(client.clone());
    let q = api.get(name).await?;
    Ok(serde_json::to_value(q.status.and_then(|s| s.used))?)
}

/// Waits until the controller published `status.used == want`.
async fn wait_used(client: &Client, name: &str, want: Value) -> Result<()> {
    eventually(&format!("quota {name} used {want}"), T, || async {
        Ok((used(client, name).await? == want).then_some(()))
    })
    .await
}

/// The `Status` of a refused call: (code, message).
fn refusal(err: kube::Error) -> Result<(u16, String)> {
    match err {
        kube::Error::Api(s) => Ok((s.code, s.message)),
        other => bail!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_quota_refuses_the_third_pod_and_deletes_give_usage_back() -> Result<()> {
    let cluster = start_redb(&["resourcequota"]).await?;
    let client = cluster.client.clone();
    create_quota(&client, "q", json!({"pods": "2", "count/pods": "5"})).await?;
    wait_used(&client, "q", json!({"pods": "0", "count/pods": "0"})).await?;

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    pods.create(&pp, &pod("p1", json!({}))?).await?;
    pods.create(&pp, &pod("p2", json!({}))?).await?;
    let err = pods
        .create(&pp, &pod("p3", json!({}))?)
        .await
        .expect_err("over quota");
    assert_eq!(
        refusal(err)?,
        (
            403,
            "pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
                .to_string()
        )
    );
    assert_eq!(
        used(&client, "q").await?,
        json!({"pods": "2", "count/pods": "2"})
    );

    // A finished pod stops counting against `pods` (not `count/pods`).
    pods.patch_status(
        "p1",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await?;
    wait_used(&client, "q", json!({"pods": "1", "count/pods": "2"})).await?;
    pods.create(&pp, &pod("p3", json!({}))?).await?;
    // A deleted pod gives everything back.
    pods.delete("p2", &DeleteParams::default()).await?;
    wait_used(&client, "q", json!({"pods": "1", "count/pods": "2"})).await?;
    // A create refused for another reason is not charged.
    let dup = pods
        .create(&pp, &pod("p3", json!({}))?)
        .await
        .expect_err("exists");
    assert_eq!(refusal(dup)?.0, 409);
    assert_eq!(
        used(&client, "q").await?,
        json!({"pods": "1", "count/pods": "2"})
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compute_quota_needs_requests_and_sums_them() -> Result<()> {
    let cluster = start_redb(&["resourcequota"]).await?;
    let client = cluster.client.clone();
    create_quota(
        &client,
        "compute",
        json!({"requests.cpu": "1", "requests.memory": "1Gi", "limits.memory": "2Gi"}),
    )
    .await?;
    wait_used(
        &client,
        "compute",
        json!({"requests.cpu": "0", "requests.memory": "0", "limits.memory": "0"}),
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let err = pods
        .create(&pp, &pod("bare", json!({}))?)
        .await
        .expect_err("no requests");
    assert_eq!(
        refusal(err)?,
        (
            403,
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: app; requests.cpu for: app; requests.memory for: app"
                .to_string()
        )
    );
    // Requests default to limits, as Kubernetes' pod defaulting does.
    let sized = json!({"requests": {"cpu": "600m"}, "limits": {"memory": "512Mi"}});
    pods.create(&pp, &pod("a", sized.clone())?).await?;
    let a = pods.get("a").await?;
    let requested = a
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].resources.clone());
    assert_eq!(
        serde_json::to_value(requested.and_then(|r| r.requests))?,
        json!({"cpu": "600m", "memory": "512Mi"})
    );
    assert_eq!(
        used(&client, "compute").await?,
        json!({"requests.cpu": "600m", "requests.memory": "512Mi", "limits.memory": "512Mi"})
    );
    let err = pods
        .create(&pp, &pod("b", sized)?)
        .await
        .expect_err("cpu exhausted");
    assert_eq!(
        refusal(err)?.1,
        "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_overrun_a_quota() -> Result<()> {
    let cluster = start_redb(&["resourcequota"]).await?;
    let client = cluster.client.clone();
    create_quota(&client, "five", json!({"pods": "5"})).await?;
    wait_used(&client, "five", json!({"pods": "0"})).await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let attempts = (0..20).map(|i| {
        let pods = pods.clone();
        async move {
            let p = pod(&format!("race-{i}"), json!({}))?;
            Ok::<_, anyhow::Error>(pods.create(&PostParams::default(), &p).await)
        }
    });
    let results = futures::future::join_all(attempts).await;
    let mut created = 0;
    for r in results {
        match r? {
            Ok(_) => created += 1,
            Err(e) => {
                let (code, msg) = refusal(e)?;
                assert_eq!(code, 403, "{msg}");
                assert!(msg.contains("exceeded quota: five"), "{msg}");
            }
        }
    }
    assert_eq!(created, 5);
    let stored = pods.list(&Default::default()).await?.items.len();
    assert_eq!(stored, 5);
    assert_eq!(used(&client, "five").await?, json!({"pods": "5"}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_count_quota_follows_creates_and_deletes() -> Result<()> {
    let cluster = start_redb(&["resourcequota"]).await?;
    let client = cluster.client.clone();
    create_quota(
        &client,
        "objects",
        json!({"configmaps": "2", "count/deployments.apps": "0"}),
    )
    .await?;
    // The namespace already holds kube-root-ca.crt? Whatever it holds is counted.
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let existing = cms.list(&Default::default()).await?.items.len();
    let free = 2 - existing as i64;
    wait_used(
        &client,
        "objects",
        json!({"configmaps": existing.to_string(), "count/deployments.apps": "0"}),
    )
    .await?;
    let cm = |n: &str| -> Result<ConfigMap> {
        Ok(serde_json::from_value(
            json!({"metadata": {"name": n}, "data": {"k": "v"}}),
        )?)
    };
    for i in 0..free {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"))?)
            .await?;
    }
    let err = cms
        .create(&PostParams::default(), &cm("extra")?)
        .await
        .expect_err("full");
    assert_eq!(
        refusal(err)?.1,
        "configmaps \"extra\" is forbidden: exceeded quota: objects, requested: configmaps=1, used: configmaps=2, limited: configmaps=2"
    );
    let deploys: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::default_namespaced(client.clone());
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))?;
    let err = deploys
        .create(&PostParams::default(), &d)
        .await
        .expect_err("no deployments allowed");
    assert_eq!(
        refusal(err)?.1,
        "deployments.apps \"d\" is forbidden: exceeded quota: objects, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0"
    );
    if free > 0 {
        cms.delete("cm-0", &DeleteParams::default()).await?;
        wait_used(
            &client,
            "objects",
            json!({"configmaps": "1", "count/deployments.apps": "0"}),
        )
        .await?;
        cms.create(&PostParams::default(), &cm("extra")?).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_range_defaults_and_bounds_pods() -> Result<()> {
    let cluster = start_redb(&[]).await?;
    let client = cluster.client.clone();
    let lrs: Api<LimitRange> = Api::default_namespaced(client.clone());
    let lr: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "limits"},
        "spec": {"limits": [{"type": "Container",
            "max": {"cpu": "1"},
            "min": {"cpu": "50m"},
            "defaultRequest": {"cpu": "250m"},
            "maxLimitRequestRatio": {"cpu": "4"}}]}
    }))?;
    lrs.create(&PostParams::default(), &lr).await?;
    // The LimitRange itself is defaulted: `default` from `max`.
    let stored = lrs.get("limits").await?;
    let item = &stored.spec.context("spec")?.limits[0];
    assert_eq!(serde_json::to_value(&item.default)?, json!({"cpu": "1"}));

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = pods
        .create(&PostParams::default(), &pod("defaulted", json!({}))?)
        .await?;
    let res = p
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].resources.clone());
    assert_eq!(
        serde_json::to_value(&res)?,
        json!({"limits": {"cpu": "1"}, "requests": {"cpu": "250m"}})
    );
    assert_eq!(
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("kubernetes.io/limit-ranger"))
            .map(String::as_str),
        Some("LimitRanger plugin set: cpu request for container app; cpu limit for container app")
    );
    assert_eq!(
        p.status.and_then(|s| s.qos_class).as_deref(),
        Some("Burstable")
    );

    let err = pods
        .create(
            &PostParams::default(),
            &pod(
                "greedy",
                json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "2"}}),
            )?,
        )
        .await
        .expect_err("over max");
    assert_eq!(
        refusal(err)?,
        (
            403,
            "pods \"greedy\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, cpu max limit to request ratio per Container is 4, but provided ratio is 10.000000]"
                .to_string()
        )
    );
    let err = pods
        .create(
            &PostParams::default(),
            &pod(
                "tiny",
                json!({"requests": {"cpu": "10m"}, "limits": {"cpu": "20m"}}),
            )?,
        )
        .await
        .expect_err("under min");
    assert_eq!(
        refusal(err)?.1,
        "pods \"tiny\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_get_default_not_ready_and_unreachable_tolerations() -> Result<()> {
    let cluster = start_redb(&[]).await?;
    let pods: Api<Pod> = Api::default_namespaced(cluster.client.clone());
    let plain = pods
        .create(&PostParams::default(), &pod("plain", json!({}))?)
        .await?;
    let tols = serde_json::to_value(plain.spec.and_then(|s| s.tolerations))?;
    assert_eq!(
        tols,
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    let own: Pod = serde_json::from_value(json!({
        "metadata": {"name": "own"},
        "spec": {"containers": [{"name": "app", "image": "x"}],
                 "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}
    }))?;
    let own = pods.create(&PostParams::default(), &own).await?;
    let tols = serde_json::to_value(own.spec.and_then(|s| s.tolerations))?;
    assert_eq!(
        tols,
        json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    // Tolerating every taint covers both.
    let all: Pod = serde_json::from_value(json!({
        "metadata": {"name": "all"},
        "spec": {"containers": [{"name": "app", "image": "x"}], "tolerations": [{"operator": "Exists"}]}
    }))?;
    let all = pods.create(&PostParams::default(), &all).await?;
    assert_eq!(
        serde_json::to_value(all.spec.and_then(|s| s.tolerations))?,
        json!([{"operator": "Exists"}])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_sees_the_quota_refusal() -> Result<()> {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return Ok(());
    }
    let cluster = start_redb(&["resourcequota"]).await?;
    let k = std::sync::Arc::new(cluster.kubectl().await?);
    let client = cluster.client.clone();
    let k1 = k.clone();
    tokio::task::spawn_blocking(move || k1.ok(&["create", "quota", "q", "--hard", "pods=2"]))
        .await??;
    wait_used(&client, "q", json!({"pods": "0"})).await?;
    let k2 = k.clone();
    let (first, second, third) = tokio::task::spawn_blocking(move || {
        (
            k2.run(&["run", "p1", "--image", "hello.wasm"]),
            k2.run(&["run", "p2", "--image", "hello.wasm"]),
            k2.run(&["run", "p3", "--image", "hello.wasm"]),
        )
    })
    .await?;
    assert!(first.0 && first.1.contains("pod/p1 created"), "{first:?}");
    assert!(second.0, "{second:?}");
    assert!(!third.0, "{third:?}");
    assert_eq!(
        third.2.trim(),
        "Error from server (Forbidden): pods \"p3\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
    let described =
        tokio::task::spawn_blocking(move || k.ok(&["describe", "quota", "q"])).await??;
    assert!(
        described
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["pods", "2", "2"]),
        "{described}"
    );
    Ok(())
}
