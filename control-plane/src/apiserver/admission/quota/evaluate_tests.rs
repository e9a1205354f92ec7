use super::*;
use serde_json::json;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).expect("pod")
}

fn quota(name: &str, hard: serde_json::Value, used: serde_json::Value) -> ResourceQuota {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"hard": hard},
        "status": {"hard": hard, "used": used}
    }))
    .expect("quota")
}

fn with_cpu(name: &str, req: Option<&str>, lim: Option<&str>) -> Pod {
    let mut res = json!({});
    if let Some(r) = req {
        res["requests"] = json!({"cpu": r});
    }
    if let Some(l) = lim {
        res["limits"] = json!({"cpu": l});
    }
    pod(
        json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "x", "resources": res}]}}),
    )
}

fn now() -> Timestamp {
    Timestamp::now()
}

#[test]
fn pod_count_exceeded_message_matches_kubernetes() {
    let q = quota("q", json!({"pods": "2"}), json!({"pods": "2"}));
    let p = with_cpu("p3", None, None);
    let delta = pod_usage(&p, now());
    let err = check(&[q], &Evaluator::Pods, Some(&p), &delta).expect_err("refused");
    assert_eq!(
        err.0,
        "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
}

#[test]
fn admission_charges_every_matching_quota() {
    let a = quota(
        "a",
        json!({"pods": "5", "requests.cpu": "2"}),
        json!({"pods": "1", "requests.cpu": "500m"}),
    );
    let b = quota("b", json!({"configmaps": "3"}), json!({"configmaps": "0"}));
    let p = with_cpu("p", Some("250m"), None);
    let out = check(
        &[a.clone(), b],
        &Evaluator::Pods,
        Some(&p),
        &pod_usage(&p, now()),
    )
    .expect("fits");
    assert_eq!(out.len(), 1, "the configmap quota is not charged");
    assert_eq!(out[0].0, 0);
    assert_eq!(out[0].1["pods"].to_string(), "2");
    assert_eq!(out[0].1["requests.cpu"].to_string(), "750m");

    let big = with_cpu("big", Some("1600m"), None);
    let err = check(&[a], &Evaluator::Pods, Some(&big), &pod_usage(&big, now())).expect_err("cpu");
    assert_eq!(
        err.0,
        "exceeded quota: a, requested: requests.cpu=1600m, used: requests.cpu=500m, limited: requests.cpu=2"
    );
}

#[test]
fn compute_quota_requires_requests_per_container() {
    let q = quota(
        "compute",
        json!({"requests.cpu": "1", "limits.memory": "1Gi"}),
        json!({"requests.cpu": "0", "limits.memory": "0"}),
    );
    let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "b", "image": "x"},
        {"name": "a", "image": "x", "resources": {"requests": {"cpu": "1m"}}}
    ]}}));
    let err = check(&[q], &Evaluator::Pods, Some(&p), &pod_usage(&p, now())).expect_err("refused");
    assert_eq!(
        err.0,
        "failed quota: compute: must specify limits.memory for: a,b; requests.cpu for: b"
    );
}

#[test]
fn quota_without_published_status_is_not_enforced_and_missing_usage_is_unknown() {
    let fresh: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {"pods": "0"}}}))
            .expect("quota");
    let p = with_cpu("p", None, None);
    assert_eq!(
        check(&[fresh], &Evaluator::Pods, Some(&p), &pod_usage(&p, now())),
        Ok(vec![])
    );
    let half = quota(
        "q",
        json!({"pods": "3", "count/pods": "3"}),
        json!({"pods": "0"}),
    );
    let err =
        check(&[half], &Evaluator::Pods, Some(&p), &pod_usage(&p, now())).expect_err("unknown");
    assert_eq!(
        err.0,
        "status unknown for quota: q, resources: count/pods,pods"
    );
}

#[test]
fn object_counts_and_legacy_names() {
    let q = quota(
        "objs",
        json!({"configmaps": "1", "count/deployments.apps": "1", "services": "1"}),
        json!({"configmaps": "1", "count/deployments.apps": "0", "services": "0"}),
    );
    let cm = Evaluator::for_resource("", "configmaps");
    let delta = object_usage(&cm, &json!({}), now()).expect("usage");
    assert_eq!(
        check(std::slice::from_ref(&q), &cm, None, &delta)
            .expect_err("full")
            .0,
        "exceeded quota: objs, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"
    );
    let deploy = Evaluator::for_resource("apps", "deployments");
    let delta = object_usage(&deploy, &json!({}), now()).expect("usage");
    let out = check(std::slice::from_ref(&q), &deploy, None, &delta).expect("fits");
    assert_eq!(out[0].1["count/deployments.apps"].to_string(), "1");
    // Secrets are not limited by this quota at all.
    let secret = Evaluator::for_resource("", "secrets");
    let delta = object_usage(&secret, &json!({}), now()).expect("usage");
    assert_eq!(check(&[q], &secret, None, &delta), Ok(vec![]));
    assert_eq!(
        counted_resource("count/deployments.apps"),
        Some(("apps".into(), "deployments".into()))
    );
    assert_eq!(
        counted_resource("secrets"),
        Some((String::new(), "secrets".into()))
    );
    assert_eq!(counted_resource("count/pods"), None);
    assert_eq!(counted_resource("services"), None);
    assert_eq!(counted_resource("requests.cpu"), None);
}

#[test]
fn service_usage_counts_node_ports_and_load_balancers() {
    let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).expect("svc") };
    let np = service_usage(&svc(
        json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
    ));
    assert_eq!(np["services.nodeports"].to_string(), "2");
    assert_eq!(np["services.loadbalancers"].to_string(), "0");
    let lb = service_usage(&svc(json!({"spec": {"type": "LoadBalancer",
        "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}})));
    assert_eq!(lb["services.nodeports"].to_string(), "1");
    assert_eq!(lb["services.loadbalancers"].to_string(), "1");
    let ip = service_usage(&svc(json!({"spec": {"ports": [{"port": 80}]}})));
    assert_eq!(ip["services"].to_string(), "1");
    assert_eq!(ip["services.nodeports"].to_string(), "0");
}

#[test]
fn pod_resources_follow_init_and_sidecar_rules() {
    let p = pod(json!({"spec": {
        "containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
            {"name": "b", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
        ],
        "initContainers": [
            {"name": "side", "image": "x", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
            {"name": "init", "image": "x", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}
        ],
        "overhead": {"cpu": "10m"}
    }}));
    let req = pod_resources(&p, true);
    // max(100m + 100m + 50m sidecar, 2 + 50m) + 10m overhead.
    assert_eq!(req["cpu"].to_string(), "2060m");
    assert_eq!(req["memory"].to_string(), "128Mi");
    let lim = pod_resources(&p, false);
    assert_eq!(lim["cpu"].to_string(), "1010m");
    assert!(!lim.contains_key("memory"));
}

#[test]
fn finished_and_long_terminating_pods_stop_counting() {
    let mut p = with_cpu("p", Some("1"), None);
    assert_eq!(pod_usage(&p, now())["pods"].to_string(), "1");
    p.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let u = pod_usage(&p, now());
    assert!(!u.contains_key("pods"));
    assert_eq!(u["count/pods"].to_string(), "1");
    let mut stuck = with_cpu("s", None, None);
    let past = now() - jiff::SignedDuration::from_secs(120);
    stuck.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(past));
    stuck.metadata.deletion_grace_period_seconds = Some(30);
    assert!(!pod_counts(&stuck, now()));
    stuck.metadata.deletion_grace_period_seconds = Some(300);
    assert!(pod_counts(&stuck, now()));
}

#[test]
fn scopes_select_pods() {
    let q: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "be"},
        "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"],
                 "scopeSelector": {"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["low"]}]}},
    }))
    .expect("quota");
    let mut p = with_cpu("p", None, None);
    assert!(!matches_scopes(&q, Some(&p)), "no priority class");
    if let Some(s) = p.spec.as_mut() {
        s.priority_class_name = Some("low".into());
    }
    assert!(matches_scopes(&q, Some(&p)));
    assert!(!matches_scopes(&q, Some(&with_cpu("c", Some("1"), None))));
    assert!(!matches_scopes(&q, None), "only pods can be scoped");
}

#[test]
fn recompute_zeroes_and_sums() {
    let q = quota(
        "q",
        json!({"pods": "10", "requests.memory": "1Gi", "services.nodeports": "4", "configmaps": "5"}),
        json!({}),
    );
    let hard = status_hard(&q);
    let a = pod(
        json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": {"requests": {"memory": "64Mi"}}}]}}),
    );
    let b = a.clone();
    let counts: BTreeMap<String, i64> = [("configmaps".to_string(), 2)].into();
    let used = recompute(&q, &hard, &[&a, &b], &[], &counts, now());
    let shown: BTreeMap<&str, String> = used
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_string()))
        .collect();
    assert_eq!(
        shown,
        [
            ("configmaps", "2".to_string()),
            ("pods", "2".to_string()),
            ("requests.memory", "128Mi".to_string()),
            ("services.nodeports", "0".to_string()),
        ]
        .into()
    );
}
