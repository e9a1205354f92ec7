//! The StatefulSet controller against the in-process API server on a real
//! redb file: ordered creation and scale-down, Parallel, rolling updates
//! (highest ordinal first, partitions), ControllerRevisions, status for
//! `kubectl rollout status`, and garbage collection of the pods.

mod controllers_common;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use controllers_common::{
    eventually, is_ready, kubectl_available, live_pods, make_ready, start_redb,
};
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

fn sts(name: &str, replicas: i32, extra: Value) -> Result<StatefulSet> {
    let mut v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "hello.wasm:1"}]}
            }
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    Ok(serde_json::from_value(v)?)
}

async fn names(client: &Client, app: &str) -> Result<BTreeSet<String>> {
    Ok(live_pods(client, "default", &format!("app={app}"))
        .await?
        .iter()
        .map(|p| p.name_any())
        .collect())
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

async fn wait_names(client: &Client, app: &str, want: &[&str]) -> Result<()> {
    let want = set_of(want);
    eventually(&format!("pods {want:?}"), T, || async {
        Ok((names(client, app).await? == want).then_some(()))
    })
    .await
}

async fn ready_pod(client: &Client, name: &str) -> Result<()> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = pods.get(name).await?;
    make_ready(client, &p, "node-1").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_scales_up_in_order_and_down_from_the_top() -> Result<()> {
    let cluster = start_redb(&["statefulset"]).await?;
    let client = cluster.client.clone();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(&PostParams::default(), &sts("web", 3, json!({}))?)
        .await?;

    wait_names(&client, "web", &["web-0"]).await?;
    // web-1 waits for web-0 to be Running and Ready.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(names(&client, "web").await?, set_of(&["web-0"]));
    ready_pod(&client, "web-0").await?;
    wait_names(&client, "web", &["web-0", "web-1"]).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(names(&client, "web").await?, set_of(&["web-0", "web-1"]));
    ready_pod(&client, "web-1").await?;
    wait_names(&client, "web", &["web-0", "web-1", "web-2"]).await?;
    ready_pod(&client, "web-2").await?;

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let p = pods.get("web-1").await?;
    let labels = p.labels();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    let spec = p.spec.clone().context("spec")?;
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let owner = p.owner_references().first().cloned().context("owner")?;
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("StatefulSet", "web", Some(true))
    );

    let status = eventually("status of 3 ready replicas", T, || async {
        let s = sets.get("web").await?;
        let st = s.status.clone().unwrap_or_default();
        Ok((st.replicas == 3
            && st.ready_replicas == Some(3)
            && st.available_replicas == Some(3)
            && st.current_replicas == Some(3)
            && st.updated_replicas == Some(3)
            && st.observed_generation == s.metadata.generation)
            .then_some(st))
    })
    .await?;
    let revision = status.current_revision.clone().context("currentRevision")?;
    assert_eq!(status.update_revision.as_deref(), Some(revision.as_str()));
    assert!(revision.starts_with("web-"), "{revision}");
    assert_eq!(labels["controller-revision-hash"], revision);
    let revs: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    let stored = revs.get(&revision).await?;
    assert_eq!(stored.revision, 1);
    assert_eq!(
        stored.owner_references().first().map(|o| o.name.as_str()),
        Some("web")
    );

    // Scale down to one: web-2 goes before web-1, one at a time.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let now = names(&client, "web").await?;
        if now.contains("web-2") && !now.contains("web-1") {
            bail!("web-1 was removed before web-2: {now:?}");
        }
        if now == set_of(&["web-0"]) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("scale down stuck at {now:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("status of 1 replica", T, || async {
        let st = sets.get("web").await?.status.unwrap_or_default();
        Ok((st.replicas == 1 && st.ready_replicas == Some(1)).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_policy_creates_every_pod_at_once() -> Result<()> {
    let cluster = start_redb(&["statefulset"]).await?;
    let client = cluster.client.clone();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(
        &PostParams::default(),
        &sts("par", 3, json!({"podManagementPolicy": "Parallel"}))?,
    )
    .await?;
    // No pod is ready, yet all three exist.
    wait_names(&client, "par", &["par-0", "par-1", "par-2"]).await?;
    sets.patch(
        "par",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await?;
    wait_names(&client, "par", &[]).await?;
    Ok(())
}

/// Marks every pod ready until each carries `revision`; returns the order
/// in which pods first showed up at that revision.
async fn roll(client: &Client, app: &str, revision: &str, count: usize) -> Result<Vec<String>> {
    let mut order: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let pods = live_pods(client, "default", &format!("app={app}")).await?;
        for p in &pods {
            let at = p
                .labels()
                .get("controller-revision-hash")
                .map(String::as_str)
                == Some(revision);
            if at && !order.contains(&p.name_any()) {
                order.push(p.name_any());
            }
        }
        // Only the pods this poll saw: a pod listed afresh here could be made ready, and
        // the next one updated, before the next poll, which would then see both at once.
        for p in pods.iter().filter(|p| !is_ready(p)) {
            make_ready(client, p, "node-1").await?;
        }
        if order.len() == count {
            return Ok(order);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("rollout stuck; updated so far: {order:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn update_revision_after(sets: &Api<StatefulSet>, name: &str, old: &str) -> Result<String> {
    eventually("a new update revision", T, || async {
        let st = sets.get(name).await?.status.unwrap_or_default();
        Ok(st.update_revision.filter(|r| r != old))
    })
    .await
}

async fn current_revision(sets: &Api<StatefulSet>, name: &str) -> Result<String> {
    eventually("a current revision", T, || async {
        let st = sets.get(name).await?.status.unwrap_or_default();
        Ok(st.current_revision)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_goes_highest_first_and_kubectl_rollout_status_finishes() -> Result<()> {
    if !kubectl_available() {
        eprintln!("kubectl not found; skipping");
        return Ok(());
    }
    let cluster = start_redb(&["statefulset"]).await?;
    let client = cluster.client.clone();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(&PostParams::default(), &sts("db", 3, json!({}))?)
        .await?;
    let first = current_revision(&sets, "db").await?;
    roll(&client, "db", &first, 3).await?;
    let k = std::sync::Arc::new(cluster.kubectl().await?);
    let k1 = k.clone();
    let out = tokio::task::spawn_blocking(move || {
        k1.ok(&["rollout", "status", "statefulset/db", "--timeout=20s"])
    })
    .await??;
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );

    let k2 = k.clone();
    tokio::task::spawn_blocking(move || {
        k2.ok(&["set", "image", "statefulset/db", "c=hello.wasm:2"])
    })
    .await??;
    let second = update_revision_after(&sets, "db", &first).await?;
    let k3 = k.clone();
    let status = tokio::task::spawn_blocking(move || {
        k3.run(&["rollout", "status", "statefulset/db", "--timeout=20s"])
    });
    let order = roll(&client, "db", &second, 3).await?;
    assert_eq!(order, ["db-2", "db-1", "db-0"]);
    let (ok, out, err) = status.await?;
    assert!(ok, "rollout status: {err}\n{out}");
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );

    let st = sets.get("db").await?.status.unwrap_or_default();
    assert_eq!(st.current_revision.as_deref(), Some(second.as_str()));
    assert_eq!(st.updated_replicas, Some(3));
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let image = pods.get("db-0").await?.spec.context("spec")?.containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("hello.wasm:2"));
    let revs: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    let mut numbers: Vec<(String, i64)> = revs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|r| (r.name_any(), r.revision))
        .collect();
    numbers.sort_by_key(|(_, n)| *n);
    assert_eq!(numbers, [(first.clone(), 1), (second.clone(), 2)]);

    // kubectl reads the history from the ControllerRevisions and rolls back
    // by patching the set with revision 1's data, which is then reused (and
    // renumbered) rather than stored again.
    let k4 = k.clone();
    let (history, undo) = tokio::task::spawn_blocking(move || {
        (
            k4.ok(&["rollout", "history", "statefulset/db"]),
            k4.ok(&["rollout", "undo", "statefulset/db"]),
        )
    })
    .await?;
    let history = history?;
    let rows: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| !r.is_empty())
        .collect();
    assert!(
        rows.contains(&vec!["1", "<none>"]) && rows.contains(&vec!["2", "<none>"]),
        "{history}"
    );
    assert!(undo?.contains("statefulset.apps/db rolled back"));
    let back = update_revision_after(&sets, "db", &second).await?;
    assert_eq!(back, first);
    assert_eq!(revs.get(&first).await?.revision, 3);
    roll(&client, "db", &first, 3).await?;

    // The scale subresource drives the same controller.
    let k5 = k.clone();
    tokio::task::spawn_blocking(move || k5.ok(&["scale", "statefulset/db", "--replicas=2"]))
        .await??;
    wait_names(&client, "db", &["db-0", "db-1"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_update_keeps_lower_ordinals_at_the_current_revision() -> Result<()> {
    let cluster = start_redb(&["statefulset"]).await?;
    let client = cluster.client.clone();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let partitioned =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
    sets.create(&PostParams::default(), &sts("part", 3, partitioned)?)
        .await?;
    let first = current_revision(&sets, "part").await?;
    roll(&client, "part", &first, 3).await?;
    sets.patch(
        "part",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello.wasm:2"}]}}}})),
    )
    .await?;
    let second = update_revision_after(&sets, "part", &first).await?;
    let order = roll(&client, "part", &second, 1).await?;
    assert_eq!(order, ["part-2"]);
    eventually("partitioned status", T, || async {
        let st = sets.get("part").await?.status.unwrap_or_default();
        Ok((st.updated_replicas == Some(1)
            && st.ready_replicas == Some(3)
            && st.current_revision.as_deref() == Some(first.as_str()))
        .then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let rev_of = |p: &Pod| p.labels().get("controller-revision-hash").cloned();
    assert_eq!(rev_of(&pods.get("part-0").await?), Some(first.clone()));
    // A deleted pod below the partition comes back at the current revision.
    pods.delete("part-0", &DeleteParams::default()).await?;
    let back = eventually("part-0 recreated", T, || async {
        Ok(pods
            .get_opt("part-0")
            .await?
            .filter(|p| p.metadata.deletion_timestamp.is_none()))
    })
    .await?;
    assert_eq!(rev_of(&back), Some(first.clone()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_replaces_pods_only_when_deleted_and_gc_removes_them() -> Result<()> {
    let cluster = start_redb(&["statefulset", "garbagecollector"]).await?;
    let client = cluster.client.clone();
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(
        &PostParams::default(),
        &sts("od", 2, json!({"updateStrategy": {"type": "OnDelete"}}))?,
    )
    .await?;
    let first = current_revision(&sets, "od").await?;
    roll(&client, "od", &first, 2).await?;
    sets.patch(
        "od",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello.wasm:2"}]}}}})),
    )
    .await?;
    let second = update_revision_after(&sets, "od", &first).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    for n in ["od-0", "od-1"] {
        let p = pods.get(n).await?;
        assert_eq!(
            p.labels().get("controller-revision-hash"),
            Some(&first),
            "{n} untouched"
        );
    }
    pods.delete("od-1", &DeleteParams::default()).await?;
    let back = eventually("od-1 recreated at the update revision", T, || async {
        Ok(pods
            .get_opt("od-1")
            .await?
            .filter(|p| p.labels().get("controller-revision-hash") == Some(&second)))
    })
    .await?;
    assert_eq!(back.name_any(), "od-1");

    sets.delete("od", &DeleteParams::default()).await?;
    wait_names(&client, "od", &[]).await?;
    let revs: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    eventually("revisions collected", T, || async {
        Ok(revs
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    Ok(())
}
