//! Admission against the in-process API server on a real redb file, with
//! the resource quota controller running: ResourceQuota enforcement (and
//! its race safety, updates of Services charged what they add, and the
//! `FailedCreate` events of controllers it refuses), LimitRange defaults and
//! ranges, DefaultTolerationSeconds, and the stock kubectl seeing
//! Kubernetes' refusal messages.

mod controllers_common;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use controllers_common::{eventually, kubectl_available, start_redb};
use k8s_openapi::api::apps::v1::{DaemonSet, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Event, LimitRange, Node, Pod, ResourceQuota, Service};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_updates_are_charged_what_they_add() -> Result<()> {
    let cluster = start_redb(&["resourcequota"]).await?;
    let client = cluster.client.clone();
    create_quota(
        &client,
        "svc",
        json!({"services": "5", "services.nodeports": "2", "services.loadbalancers": "0"}),
    )
    .await?;
    // `default` holds the `kubernetes` Service (ClusterIP): counted, no node ports.
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let existing = services.list(&Default::default()).await?.items.len();
    let count = |n: usize| (existing + n).to_string();
    wait_used(
        &client,
        "svc",
        json!({"services": count(0), "services.nodeports": "0", "services.loadbalancers": "0"}),
    )
    .await?;
    let svc = |name: &str, ports: &[i32]| -> Result<Service> {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| json!({"name": format!("p{p}"), "port": p}))
            .collect();
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": ports}
        }))?)
    };
    services
        .create(&PostParams::default(), &svc("web", &[80, 443, 8080])?)
        .await?;
    services
        .create(&PostParams::default(), &svc("one", &[80])?)
        .await?;

    // ClusterIP → NodePort with three ports needs three node ports: refused,
    // and nothing is charged.
    let to_node_port = json!({"spec": {"type": "NodePort"}});
    let err = services
        .patch("web", &PatchParams::default(), &Patch::Merge(&to_node_port))
        .await
        .expect_err("over the node port quota");
    assert_eq!(
        refusal(err)?,
        (
            403,
            "services \"web\" is forbidden: exceeded quota: svc, requested: services.nodeports=3, used: services.nodeports=0, limited: services.nodeports=2"
                .to_string()
        )
    );
    let stored = services.get("web").await?;
    assert_eq!(
        stored.spec.and_then(|s| s.type_).as_deref(),
        Some("ClusterIP")
    );
    assert_eq!(
        used(&client, "svc").await?,
        json!({"services": count(2), "services.nodeports": "0", "services.loadbalancers": "0"})
    );

    // One port fits, and is charged by the update itself.
    services
        .patch("one", &PatchParams::default(), &Patch::Merge(&to_node_port))
        .await?;
    assert_eq!(
        used(&client, "svc").await?,
        json!({"services": count(2), "services.nodeports": "1", "services.loadbalancers": "0"})
    );
    // A second port adds one more; a third would not fit. The turn to
    // NodePort above woke the controller, and its recount may read the
    // quota after this update's charge but list the Services before the
    // update is stored, writing 1 for a moment (Kubernetes' quota has the
    // same window); the update's own event then recounts 2.
    let two_ports =
        json!({"spec": {"ports": [{"name": "p80", "port": 80}, {"name": "p81", "port": 81}]}});
    services
        .patch("one", &PatchParams::default(), &Patch::Merge(&two_ports))
        .await?;
    wait_used(
        &client,
        "svc",
        json!({"services": count(2), "services.nodeports": "2", "services.loadbalancers": "0"}),
    )
    .await?;
    let err = services
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "LoadBalancer"}})),
        )
        .await
        .expect_err("no load balancers allowed");
    assert_eq!(
        refusal(err)?.1,
        "services \"one\" is forbidden: exceeded quota: svc, requested: services.loadbalancers=1, used: services.loadbalancers=0, limited: services.loadbalancers=0"
    );
    // Label changes add nothing and pass even when the quota is full.
    services
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await?;
    // Going back to ClusterIP gives the node ports back (the controller
    // recounts at once), and the other Service then fits.
    services
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await?;
    wait_used(
        &client,
        "svc",
        json!({"services": count(2), "services.nodeports": "0", "services.loadbalancers": "0"}),
    )
    .await?;
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "NodePort", "ports": [{"name": "p80", "port": 80}, {"name": "p443", "port": 443}]}})),
        )
        .await?;
    assert_eq!(
        used(&client, "svc").await?,
        json!({"services": count(2), "services.nodeports": "2", "services.loadbalancers": "0"})
    );
    Ok(())
}

/// Messages of the `FailedCreate` events about `kind`/`name`.
async fn failed_creates(client: &Client, kind: &str, name: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::default_namespaced(client.clone());
    Ok(events
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("FailedCreate")
                && e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .filter_map(|e| e.message)
        .collect())
}

/// True if `m` is `Error creating: pods "<prefix><suffix>" is forbidden: <rest>`.
fn is_refused_create(m: &str, prefix: &str, rest: &str) -> bool {
    m.strip_prefix(&format!("Error creating: pods \"{prefix}"))
        .and_then(|m| m.split_once('"'))
        .is_some_and(|(suffix, tail)| {
            !suffix.is_empty() && tail == format!(" is forbidden: {rest}")
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_refused_by_quota_record_failed_create() -> Result<()> {
    let cluster = start_redb(&["resourcequota", "job", "replicaset", "daemonset"]).await?;
    let client = cluster.client.clone();
    create_quota(&client, "q", json!({"pods": "0"})).await?;
    wait_used(&client, "q", json!({"pods": "0"})).await?;
    let template = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "hello.wasm"}]}});
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    jobs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "batch"}, "spec": {"template": template}}),
        )?,
    )
    .await?;
    let mut always = template.clone();
    always["spec"]["restartPolicy"] = json!("Always");
    let rss: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    rss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
            "replicas": 1, "selector": {"matchLabels": {"app": "x"}}, "template": always}}))?,
    )
    .await?;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}}))?,
        )
        .await?;
    let mut daemon = always.clone();
    daemon["metadata"]["labels"] = json!({"app": "agent"});
    let dss: Api<DaemonSet> = Api::default_namespaced(client.clone());
    dss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "agent"}, "spec": {
            "selector": {"matchLabels": {"app": "agent"}}, "template": daemon}}))?,
    )
    .await?;

    let rest = "exceeded quota: q, requested: pods=1, used: pods=0, limited: pods=0";
    for (kind, name, prefix) in [
        ("Job", "batch", "batch-"),
        ("ReplicaSet", "web", "web-"),
        ("DaemonSet", "agent", "agent-"),
    ] {
        let messages = eventually(&format!("FailedCreate on {kind} {name}"), T, || async {
            let m = failed_creates(&client, kind, name).await?;
            Ok((!m.is_empty()).then_some(m))
        })
        .await?;
        assert!(
            messages.iter().all(|m| is_refused_create(m, prefix, rest)),
            "{kind} {name}: {messages:?}"
        );
    }
    let rs = rss.get("web").await?;
    let failure = rs
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "ReplicaFailure")
        .context("ReplicaFailure condition")?;
    assert_eq!(failure.reason.as_deref(), Some("FailedCreate"));
    let message = failure.message.unwrap_or_default();
    assert!(
        message.starts_with("pods \"web-") && message.ends_with(&format!("is forbidden: {rest}")),
        "{message}"
    );
    Ok(())
}
