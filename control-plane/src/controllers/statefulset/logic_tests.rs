use super::*;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::json;

fn set(replicas: i32, extra: serde_json::Value) -> StatefulSet {
    let mut v = json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "set-uid", "generation": 2},
        "spec": {"replicas": replicas, "serviceName": "nginx",
                 "selector": {"matchLabels": {"app": "web"}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, val) in extra {
            spec.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).expect("set")
}

fn rev(name: &str, image: &str) -> Revision {
    let template: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": image}]}
    }))
    .expect("template");
    Revision {
        name: name.into(),
        template,
    }
}

/// A stored pod of `set` at `ordinal` and `revision`, Running+Ready or Pending.
fn pod(s: &StatefulSet, revision: &Revision, ordinal: i32, ready: bool) -> Arc<Pod> {
    let mut p = new_pod(s, revision, ordinal);
    let status = if ready {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
               "lastTransitionTime": "2024-01-01T00:00:00Z"}]})
    } else {
        json!({"phase": "Pending"})
    };
    p.status = Some(serde_json::from_value(status).expect("status"));
    Arc::new(p)
}

fn names(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .map(|s| match s {
            Step::Create(p) => format!("create {}", p.name_any()),
            Step::Delete { name, why } => format!("delete {name} ({why})"),
            Step::Relabel { name, .. } => format!("relabel {name}"),
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::now()
}

#[test]
fn ordinals_parse_from_names() {
    assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
    assert_eq!(parent_and_ordinal("my-db-12"), Some(("my-db", 12)));
    assert_eq!(parent_and_ordinal("web"), None);
    assert_eq!(parent_and_ordinal("web-x1"), None);
    assert_eq!(parent_and_ordinal("web-"), None);
}

#[test]
fn pods_get_their_stable_identity() {
    let s = set(3, json!({}));
    let p = new_pod(&s, &rev("web-abc", "x"), 2);
    assert_eq!(p.name_any(), "web-2");
    let labels = p.metadata.labels.clone().expect("labels");
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-2");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "2");
    assert_eq!(labels["controller-revision-hash"], "web-abc");
    assert_eq!(labels["app"], "web");
    let spec = p.spec.clone().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("web-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let owner = &p.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("StatefulSet", "set-uid", Some(true))
    );
    assert!(p.metadata.generate_name.is_none());
    assert!(identity_matches("web", &p, 2));
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time() {
    let s = set(3, json!({}));
    let r = rev("web-1", "x");
    let p = plan(&s, &[], &r, &r, None, now());
    assert_eq!(names(&p.steps), ["create web-0"]);
    assert_eq!(p.status.replicas, 0);
    let pending = [pod(&s, &r, 0, false)];
    assert!(plan(&s, &pending, &r, &r, None, now()).steps.is_empty());
    let ready = [pod(&s, &r, 0, true)];
    let p = plan(&s, &ready, &r, &r, None, now());
    assert_eq!(names(&p.steps), ["create web-1"]);
    assert_eq!(p.status.ready_replicas, Some(1));
    assert_eq!(p.status.observed_generation, Some(2));
}

#[test]
fn parallel_creates_and_deletes_everything_at_once() {
    let s = set(3, json!({"podManagementPolicy": "Parallel"}));
    let r = rev("web-1", "x");
    assert_eq!(
        names(&plan(&s, &[], &r, &r, None, now()).steps),
        ["create web-0", "create web-1", "create web-2"]
    );
    let small = set(1, json!({"podManagementPolicy": "Parallel"}));
    let pods: Vec<Arc<Pod>> = (0..3).map(|i| pod(&small, &r, i, i != 1)).collect();
    assert_eq!(
        names(&plan(&small, &pods, &r, &r, None, now()).steps),
        ["delete web-2 (scale down)", "delete web-1 (scale down)"]
    );
}

#[test]
fn ordered_scale_down_removes_the_highest_ordinal_when_all_are_healthy() {
    let s = set(2, json!({}));
    let r = rev("web-1", "x");
    let pods: Vec<Arc<Pod>> = (0..4).map(|i| pod(&s, &r, i, true)).collect();
    assert_eq!(
        names(&plan(&s, &pods, &r, &r, None, now()).steps),
        ["delete web-3 (scale down)"]
    );
    let mut sick = pods.clone();
    sick[1] = pod(&s, &r, 1, false);
    assert!(plan(&s, &sick, &r, &r, None, now()).steps.is_empty());
    // An unhealthy condemned pod that is the first unhealthy one may go.
    let mut sick_top = pods;
    sick_top[2] = pod(&s, &r, 2, false);
    assert_eq!(
        names(&plan(&s, &sick_top, &r, &r, None, now()).steps),
        ["delete web-3 (scale down)"]
    );
}

#[test]
fn rolling_update_replaces_highest_first_and_honours_the_partition() {
    let s = set(3, json!({}));
    let old = rev("web-old", "x:1");
    let new = rev("web-new", "x:2");
    let pods: Vec<Arc<Pod>> = (0..3).map(|i| pod(&s, &old, i, true)).collect();
    let p = plan(&s, &pods, &old, &new, None, now());
    assert_eq!(names(&p.steps), ["delete web-2 (update)"]);
    assert_eq!(p.status.current_replicas, Some(2));
    assert_eq!(p.status.updated_replicas, None);
    assert_eq!(p.status.current_revision.as_deref(), Some("web-old"));
    assert_eq!(p.status.update_revision.as_deref(), Some("web-new"));

    // web-2 recreated at the new revision but not ready yet: wait.
    let mut mid = pods.clone();
    mid[2] = pod(&s, &new, 2, false);
    assert!(plan(&s, &mid, &old, &new, None, now()).steps.is_empty());
    mid[2] = pod(&s, &new, 2, true);
    assert_eq!(
        names(&plan(&s, &mid, &old, &new, None, now()).steps),
        ["delete web-1 (update)"]
    );
    // A missing pod is recreated at the update revision.
    let gap = [pods[0].clone(), mid[2].clone()];
    let p = plan(&s, &gap, &old, &new, None, now());
    match p.steps.as_slice() {
        [Step::Create(c)] => {
            assert_eq!(c.name_any(), "web-1");
            assert_eq!(c.labels()["controller-revision-hash"], "web-new");
        }
        other => panic!("unexpected {other:?}"),
    }

    let partitioned = set(
        3,
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
    );
    let done = [
        pods[0].clone(),
        pods[1].clone(),
        pod(&partitioned, &new, 2, true),
    ];
    let p = plan(&partitioned, &done, &old, &new, None, now());
    assert!(p.steps.is_empty(), "{:?}", p.steps);
    assert_eq!(p.status.updated_replicas, Some(1));
    assert_eq!(p.status.current_revision.as_deref(), Some("web-old"));
    // Below the partition a deleted pod comes back at the current revision.
    let hole = [pods[0].clone(), done[2].clone()];
    match plan(&partitioned, &hole, &old, &new, None, now())
        .steps
        .as_slice()
    {
        [Step::Create(c)] => assert_eq!(c.labels()["controller-revision-hash"], "web-old"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn finished_rollouts_promote_the_update_revision() {
    let s = set(2, json!({}));
    let new = rev("web-new", "x:2");
    let old = rev("web-old", "x:1");
    let pods: Vec<Arc<Pod>> = (0..2).map(|i| pod(&s, &new, i, true)).collect();
    let p = plan(&s, &pods, &old, &new, Some(1), now());
    assert!(p.steps.is_empty());
    assert_eq!(p.status.current_revision.as_deref(), Some("web-new"));
    assert_eq!(p.status.current_replicas, Some(2));
    assert_eq!(p.status.updated_replicas, Some(2));
    assert_eq!(p.status.available_replicas, Some(2));
    assert_eq!(p.status.collision_count, Some(1));
}

#[test]
fn on_delete_leaves_old_pods_alone() {
    let s = set(2, json!({"updateStrategy": {"type": "OnDelete"}}));
    let old = rev("web-old", "x:1");
    let new = rev("web-new", "x:2");
    let pods: Vec<Arc<Pod>> = (0..2).map(|i| pod(&s, &old, i, true)).collect();
    let p = plan(&s, &pods, &old, &new, None, now());
    assert!(p.steps.is_empty());
    assert_eq!(p.status.current_revision.as_deref(), Some("web-old"));
    // A deleted pod comes back at the update revision.
    match plan(&s, &pods[..1], &old, &new, None, now())
        .steps
        .as_slice()
    {
        [Step::Create(c)] => assert_eq!(c.labels()["controller-revision-hash"], "web-new"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn failed_pods_are_deleted_and_missing_labels_restored() {
    let s = set(2, json!({}));
    let r = rev("web-1", "x");
    let mut failed = (*pod(&s, &r, 0, true)).clone();
    if let Some(st) = failed.status.as_mut() {
        st.phase = Some("Failed".into());
    }
    let p = plan(&s, &[Arc::new(failed)], &r, &r, None, now());
    assert_eq!(names(&p.steps), ["delete web-0 (failed)"]);
    let mut bare = (*pod(&s, &r, 0, true)).clone();
    if let Some(l) = bare.metadata.labels.as_mut() {
        l.remove(POD_NAME_LABEL);
    }
    let p = plan(
        &s,
        &[Arc::new(bare), pod(&s, &r, 1, true)],
        &r,
        &r,
        None,
        now(),
    );
    assert_eq!(names(&p.steps), ["relabel web-0"]);
}

#[test]
fn min_ready_seconds_holds_the_next_pod_back() {
    let s = set(2, json!({"minReadySeconds": 30}));
    let r = rev("web-1", "x");
    let mut fresh = (*pod(&s, &r, 0, true)).clone();
    if let Some(c) = fresh.status.as_mut().and_then(|st| st.conditions.as_mut()) {
        c[0].last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now()));
    }
    let p = plan(&s, &[Arc::new(fresh)], &r, &r, None, now());
    assert!(p.steps.is_empty());
    let wait = p.requeue_after.expect("requeue");
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(32),
        "{wait:?}"
    );
    assert_eq!(p.status.available_replicas, Some(0));
    assert_eq!(p.status.ready_replicas, Some(1));
}
