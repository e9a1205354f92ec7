//! Node lifecycle, node IPAM and DaemonSet controllers (placement, rolling
//! update, history as ControllerRevisions) against the in-process API server
//! with fake nodes (the test posts their heartbeats).

mod controllers_common;

use std::time::Duration;

use anyhow::Result;
use controllers_common::{eventually, start_with};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const T: Duration = Duration::from_secs(15);

async fn add_node(client: &Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
            )?,
        )
        .await?;
    heartbeat(client, name).await
}

/// What a kubelet does: Ready=True status and a Lease renewal.
async fn heartbeat(client: &Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = jiff::Timestamp::now().to_string();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})),
        )
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let micro = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro}});
    match leases.get_opt(name).await? {
        None => {
            leases
                .create(&PostParams::default(), &serde_json::from_value(lease)?)
                .await?;
        }
        Some(_) => {
            leases
                .patch(name, &PatchParams::default(), &Patch::Merge(&lease))
                .await?;
        }
    }
    Ok(())
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn silent_node_goes_unknown_gets_tainted_and_its_pods_evicted() -> Result<()> {
    let cluster = start_with(&["nodelifecycle", "nodeipam"], |c| {
        c.node_monitor_grace_period = Duration::from_secs(2);
        c.node_monitor_period = Duration::from_millis(200);
        c.pod_eviction_timeout = Duration::from_secs(300);
    })
    .await?;
    let client = cluster.client.clone();
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let _ = nss
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "kube-node-lease"}}))?,
        )
        .await;
    add_node(&client, "n1").await?;
    add_node(&client, "n2").await?;
    let nodes: Api<Node> = Api::all(client.clone());
    // Pod CIDRs: one distinct /24 each.
    let cidrs = eventually("pod CIDRs", T, || async {
        let a = nodes.get("n1").await?.spec.and_then(|s| s.pod_cidr);
        let b = nodes.get("n2").await?.spec.and_then(|s| s.pod_cidr);
        Ok(a.zip(b))
    })
    .await?;
    assert_ne!(cidrs.0, cidrs.1);
    for c in [&cidrs.0, &cidrs.1] {
        assert!(c.starts_with("10.244.") && c.ends_with(".0/24"), "{c}");
    }

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = |name: &str, tolerations: serde_json::Value| -> Result<Pod> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "tolerations": tolerations, "containers": [{"name": "c", "image": "x.wasm"}]}
        }))?)
    };
    pods.create(&PostParams::default(), &pod("short", json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]))?).await?;
    pods.create(&PostParams::default(), &pod("forever", json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]))?).await?;

    // n2 keeps heartbeating; n1 falls silent.
    let hb_client = client.clone();
    let beats = tokio::spawn(async move {
        loop {
            let _ = heartbeat(&hb_client, "n2").await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let n1 = eventually("n1 unknown and tainted", T, || async {
        let n = nodes.get("n1").await?;
        let tainted = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| {
                t.iter()
                    .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute")
            });
        Ok((ready_status(&n).as_deref() == Some("Unknown") && tainted).then_some(n))
    })
    .await?;
    let reason = n1
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.reason.clone());
    assert_eq!(reason.as_deref(), Some("NodeStatusUnknown"));
    eventually("short-toleration pod evicted", T, || async {
        let p = pods.get_opt("short").await?;
        Ok(p.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(()))
    })
    .await?;
    let forever = pods.get("forever").await?;
    assert!(
        forever.metadata.deletion_timestamp.is_none(),
        "tolerates forever"
    );
    let n2 = nodes.get("n2").await?;
    assert_eq!(ready_status(&n2).as_deref(), Some("True"));
    assert!(
        n2.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_none_or(|t| t.is_empty())
    );

    // n1 comes back: taints go.
    heartbeat(&client, "n1").await?;
    eventually("n1 untainted", T, || async {
        heartbeat(&client, "n1").await?;
        let n = nodes.get("n1").await?;
        Ok(n.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_none_or(|t| t.is_empty())
            .then_some(()))
    })
    .await?;
    beats.abort();
    Ok(())
}

#[tokio::test]
async fn daemonset_runs_one_pod_per_eligible_node() -> Result<()> {
    let cluster = start_with(&["daemonset"], |_| {}).await?;
    let client = cluster.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    for n in ["a", "b", "c"] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": n}}))?,
            )
            .await?;
    }
    // c is dedicated: the daemon does not tolerate it.
    nodes
        .patch("c", &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}})))
        .await?;
    let dss: Api<DaemonSet> = Api::default_namespaced(client.clone());
    dss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "agent"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "agent.wasm"}]}}
            }
        }))?,
    )
    .await?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let list = eventually("two daemon pods", T, || async {
        let l = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        Ok((l.len() == 2).then_some(l))
    })
    .await?;
    let mut targets: Vec<String> = list
        .iter()
        .filter_map(|p| {
            let terms = p
                .spec
                .as_ref()?
                .affinity
                .as_ref()?
                .node_affinity
                .as_ref()?
                .required_during_scheduling_ignored_during_execution
                .as_ref()?;
            terms.node_selector_terms[0].match_fields.as_ref()?[0]
                .values
                .as_ref()?
                .first()
                .cloned()
        })
        .collect();
    targets.sort();
    assert_eq!(targets, ["a", "b"]);
    for p in &list {
        let tols = p
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        assert!(tols.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.toleration_seconds.is_none()
        ));
        assert!(p.labels().contains_key("controller-revision-hash"));
    }
    let ds = eventually("status", T, || async {
        let d = dss.get("agent").await?;
        Ok(d.status
            .clone()
            .filter(|s| s.desired_number_scheduled == 2 && s.current_number_scheduled == 2)
            .map(|_| d))
    })
    .await?;
    assert_eq!(
        ds.status.and_then(|s| s.observed_generation),
        ds.metadata.generation
    );
    // A new node gets a pod; a removed one loses it.
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "d"}}))?,
        )
        .await?;
    eventually("pod on the new node", T, || async {
        Ok((pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .len()
            == 3)
            .then_some(()))
    })
    .await?;
    // Update the template: RollingUpdate replaces pods (maxUnavailable 1).
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent-v2.wasm"}]}}}})),
    )
    .await?;
    eventually("all pods updated", T, || async {
        let l = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        let live: Vec<&Pod> = l
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let updated = live.iter().all(|p| {
            p.spec
                .as_ref()
                .is_some_and(|s| s.containers[0].image.as_deref() == Some("agent-v2.wasm"))
        });
        Ok((live.len() == 3 && updated).then_some(()))
    })
    .await?;

    // Each template is a ControllerRevision `<set>-<hash>`, numbered, whose
    // hash label is the one the pods carry; going back to the first
    // template renumbers its revision instead of storing it again.
    let revs: Api<ControllerRevision> = Api::default_namespaced(client.clone());
    let history = || async {
        let mut l: Vec<(i64, String, String)> = revs
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .iter()
            .map(|r| {
                let hash = r
                    .labels()
                    .get("controller-revision-hash")
                    .cloned()
                    .unwrap_or_default();
                (r.revision, r.name_any(), hash)
            })
            .collect();
        l.sort();
        anyhow::Ok(l)
    };
    let two = history().await?;
    assert_eq!(two.len(), 2, "{two:?}");
    assert_eq!((two[0].0, two[1].0), (1, 2));
    for (_, name, hash) in &two {
        assert_eq!(name, &format!("agent-{hash}"));
    }
    let pod_hashes: Vec<String> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await?
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.labels().get("controller-revision-hash").cloned())
        .collect();
    assert!(
        pod_hashes.iter().all(|h| *h == two[1].2),
        "{pod_hashes:?} vs {two:?}"
    );
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "agent.wasm"}]}}}})),
    )
    .await?;
    let back = eventually("revision 1 renumbered", T, || async {
        let h = history().await?;
        Ok((h.len() == 2 && h[1].0 == 3).then_some(h))
    })
    .await?;
    assert_eq!(back[1].1, two[0].1, "the first revision is reused");
    assert_eq!(back[0].1, two[1].1);
    Ok(())
}
