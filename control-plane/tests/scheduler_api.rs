//! The scheduler against the real in-process API server (memory store):
//! nodes and pods created through the API, pods bound through
//! `pods/binding`, `FailedScheduling` text, requeue on node events,
//! preemption and leader election.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::{ApiConfig, ApiServer, BackgroundTasks};
use skiff_control_plane::scheduler::{self, LeaderElectionConfig, SchedulerConfig, State};
use skiff_control_plane::serve::in_process_client;
use skiff_control_plane::store::memory::MemoryStore;

async fn api_server() -> Result<(kube::Client, BackgroundTasks)> {
    let server = ApiServer::new(Arc::new(MemoryStore::new()), ApiConfig::default());
    server.bootstrap().await?;
    let bg = server.spawn_background();
    Ok((in_process_client(server.router(), "default"), bg))
}

fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        leader_election: LeaderElectionConfig {
            enabled: false,
            ..Default::default()
        },
        pod_initial_backoff: Duration::from_millis(100),
        pod_max_backoff: Duration::from_millis(500),
        ..Default::default()
    }
}

async fn create_node(client: &kube::Client, name: &str, cpu: &str, labels: Value) -> Result<()> {
    let mut all_labels = json!({"kubernetes.io/hostname": name});
    if let (Some(a), Some(b)) = (all_labels.as_object_mut(), labels.as_object()) {
        a.extend(b.clone());
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": all_labels},
        "status": {
            "capacity": {"cpu": cpu, "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "runtimeHandlers": [{"name": "docker"}, {"name": "wasmtime"}]
        }
    }))?;
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await?;
    Ok(())
}

async fn create_pod(client: &kube::Client, name: &str, cpu: &str, extra_spec: Value) -> Result<()> {
    let mut spec = json!({"containers": [{"name": "c", "image": "nginx",
        "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    if let (Some(a), Some(b)) = (spec.as_object_mut(), extra_spec.as_object()) {
        a.extend(b.clone());
    }
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await?;
    Ok(())
}

/// Polls `f` until it returns `Some`, for up to `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node_of(client: &kube::Client, pod: &str) -> Result<Option<String>> {
    let p = Api::<Pod>::namespaced(client.clone(), "default")
        .get_opt(pod)
        .await?;
    Ok(p.and_then(|p| p.spec?.node_name))
}

async fn events_for(client: &kube::Client, pod: &str, reason: &str) -> Result<Vec<Event>> {
    let list = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_pods_explains_failures_and_retries_on_node_events() -> Result<()> {
    let (client, _bg) = api_server().await?;
    create_node(&client, "node-1", "1", json!({"disk": "ssd"})).await?;
    create_node(&client, "node-2", "4", json!({})).await?;
    create_node(&client, "node-3", "4", json!({})).await?;
    let config = fast_config();
    let health = config.health.clone();
    let sched = tokio::spawn(scheduler::run(client.clone(), config));

    create_pod(&client, "web", "100m", json!({})).await?;
    let node = eventually(15, "web to be bound", || node_of(&client, "web")).await?;
    let scheduled = eventually(10, "Scheduled event", || async {
        Ok(events_for(&client, "web", "Scheduled")
            .await?
            .into_iter()
            .next())
    })
    .await?;
    assert_eq!(
        scheduled.message.as_deref(),
        Some(format!("Successfully assigned default/web to {node}").as_str())
    );
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(
        scheduled.source.and_then(|s| s.component).as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(
        scheduled.reporting_component.as_deref(),
        Some("default-scheduler")
    );
    let web = Api::<Pod>::namespaced(client.clone(), "default")
        .get("web")
        .await?;
    let cond = web.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        cond.iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "{cond:?}"
    );

    // Only node-1 has an SSD, and it is too small.
    create_pod(
        &client,
        "picky",
        "2",
        json!({"nodeSelector": {"disk": "ssd"}}),
    )
    .await?;
    let failed = eventually(15, "FailedScheduling event", || async {
        Ok(events_for(&client, "picky", "FailedScheduling")
            .await?
            .into_iter()
            .next())
    })
    .await?;
    let expected = "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. \
                    preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
                    2 Preemption is not helpful for scheduling.";
    assert_eq!(failed.message.as_deref(), Some(expected));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    let cond = eventually(10, "PodScheduled=False", || async {
        let p = Api::<Pod>::namespaced(client.clone(), "default")
            .get("picky")
            .await?;
        Ok(p.status.and_then(|s| s.conditions).and_then(|cs| {
            cs.into_iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        }))
    })
    .await?;
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(cond.message.as_deref(), Some(expected));
    assert_eq!(node_of(&client, "picky").await?, None);

    // A new node that fits: the pod is retried and lands there.
    create_node(&client, "node-4", "8", json!({"disk": "ssd"})).await?;
    let node = eventually(15, "picky to be bound", || node_of(&client, "picky")).await?;
    assert_eq!(node, "node-4");

    // No node runs a wasm pod's runtime? All of ours do: it binds too.
    create_pod(
        &client,
        "wasm",
        "10m",
        json!({"containers": [{"name": "c", "image": "hello.wasm"}]}),
    )
    .await?;
    eventually(15, "wasm pod to be bound", || node_of(&client, "wasm")).await?;

    // The loop counts a pod when the binding's response reaches it, which can be just after
    // a reader already sees the pod bound.
    let counted = eventually(5, "the loop to count 3 bindings", || async {
        Ok((health.scheduled() >= 3).then_some(()))
    })
    .await;
    assert!(counted.is_ok(), "scheduled {}", health.scheduled());
    assert!(health.check().is_ok());
    sched.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempts_lower_priority_pods() -> Result<()> {
    let (client, _bg) = api_server().await?;
    create_node(&client, "only", "2", json!({})).await?;
    let sched = tokio::spawn(scheduler::run(client.clone(), fast_config()));
    create_pod(
        &client,
        "low",
        "1500m",
        json!({"priority": 0, "terminationGracePeriodSeconds": 0}),
    )
    .await?;
    eventually(15, "low to be bound", || node_of(&client, "low")).await?;

    create_pod(&client, "high", "1", json!({"priority": 1000})).await?;
    let node = eventually(20, "high to be bound", || node_of(&client, "high")).await?;
    assert_eq!(node, "only");
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    assert!(
        pods.get_opt("low").await?.is_none(),
        "the victim was deleted"
    );
    let preempted = events_for(&client, "low", "Preempted").await?;
    let msg = preempted
        .first()
        .and_then(|e| e.message.clone())
        .context("Preempted event")?;
    assert!(
        msg.starts_with("Preempted by pod ") && msg.ends_with(" on node only"),
        "{msg}"
    );
    sched.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_share_one_lease() -> Result<()> {
    let (client, _bg) = api_server().await?;
    create_node(&client, "n1", "4", json!({})).await?;
    let cfg = |id: &str| SchedulerConfig {
        leader_election: LeaderElectionConfig {
            identity: id.into(),
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
            ..Default::default()
        },
        pod_initial_backoff: Duration::from_millis(100),
        pod_max_backoff: Duration::from_millis(500),
        ..Default::default()
    };
    let (a, b) = (cfg("a"), cfg("b"));
    let (ha, hb) = (a.health.clone(), b.health.clone());
    let ta = tokio::spawn(scheduler::run(client.clone(), a));
    let tb = tokio::spawn(scheduler::run(client.clone(), b));
    let leader = eventually(10, "a leader", || async {
        Ok(match (ha.state(), hb.state()) {
            (State::Leading, State::Standby) => Some("a"),
            (State::Standby, State::Leading) => Some("b"),
            _ => None,
        })
    })
    .await?;
    create_pod(&client, "p1", "100m", json!({})).await?;
    eventually(15, "p1 to be bound", || node_of(&client, "p1")).await?;
    let lease =
        Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "kube-system")
            .get("kube-scheduler")
            .await?;
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(leader)
    );

    // The leader dies without releasing: the other takes over after the lease expires.
    let (dead, survivor, survivor_health) = if leader == "a" {
        (ta, tb, hb)
    } else {
        (tb, ta, ha)
    };
    dead.abort();
    eventually(10, "the standby to take over", || async {
        Ok((survivor_health.state() == State::Leading).then_some(()))
    })
    .await?;
    create_pod(&client, "p2", "100m", json!({})).await?;
    eventually(15, "p2 to be bound", || node_of(&client, "p2")).await?;
    survivor.abort();
    Ok(())
}
