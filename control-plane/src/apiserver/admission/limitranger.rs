//! The LimitRanger admission plugin for pods: fills in missing container
//! requests and limits from each LimitRange's `defaultRequest` / `default`
//! (noting it in the `kubernetes.io/limit-ranger` annotation), then refuses
//! pods outside a range's `min`, `max` or `maxLimitRequestRatio`, per
//! container or per pod, with Kubernetes' messages. Also the LimitRange
//! object's own defaults (`SetDefaults_LimitRangeItem`).
//!
//! Pure functions; [`super`] reads the namespace's LimitRanges.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{LimitRange, LimitRangeItem, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use serde_json::{Map, Value, json};

use super::quantity::Quantity;
use super::quota::evaluate::{Usage, pod_resources};

/// Annotation recording which defaults LimitRanger applied.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// `SetDefaults_Pod`'s resource rule: a container with a limit but no
/// request for a resource requests its limit.
pub fn default_requests_from_limits(pod: &mut Value) {
    for list in ["containers", "initContainers"] {
        let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")) else {
            continue;
        };
        for c in cs.as_array_mut().into_iter().flatten() {
            let Some(res) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = res.entry("requests").or_insert_with(|| json!({}));
            if let Some(r) = requests.as_object_mut() {
                for (k, v) in limits {
                    r.entry(k).or_insert(v);
                }
            }
        }
    }
}

fn container_defaults(lr: &LimitRange) -> (Map<String, Value>, Map<String, Value>) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    let items = lr.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or(&[]);
    for item in items.iter().filter(|i| i.type_ == "Container") {
        for (k, v) in item.default_request.iter().flatten() {
            requests.insert(k.clone(), json!(v.0));
        }
        for (k, v) in item.default.iter().flatten() {
            limits.insert(k.clone(), json!(v.0));
        }
    }
    (requests, limits)
}

fn merge_missing(
    res: &mut Map<String, Value>,
    field: &str,
    defaults: &Map<String, Value>,
) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let target = res.entry(field).or_insert_with(|| json!({}));
    let Some(t) = target.as_object_mut() else {
        return Vec::new();
    };
    let mut set = Vec::new();
    for (k, v) in defaults {
        if !t.contains_key(k) {
            t.insert(k.clone(), v.clone());
            set.push(k.clone());
        }
    }
    set.sort();
    set
}

/// Applies one LimitRange's container defaults to a pod (JSON), as
/// `PodMutateLimitFunc`, and records them in the annotation.
pub fn apply_defaults(lr: &LimitRange, pod: &mut Value) {
    let (requests, limits) = container_defaults(lr);
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (list, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(cs) = pod
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let res = c.entry("resources").or_insert_with(|| json!({}));
            let Some(res) = res.as_object_mut() else {
                continue;
            };
            let set_limits = merge_missing(res, "limits", &limits);
            let set_requests = merge_missing(res, "requests", &requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {prefix} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = crate::apiserver::objects::meta_mut(pod);
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = ann.as_object_mut() {
        a.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

fn parse(list: Option<&BTreeMap<String, KQuantity>>) -> Usage {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::parse(&v.0).ok()?)))
        .collect()
}

fn min_constraint(
    kind: &str,
    r: &str,
    enforced: &Quantity,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let Some(rq) = req.get(r) else {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if rq.milli_value() < enforced.milli_value() {
        return Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but request is {rq}"
        ));
    }
    match lim.get(r) {
        Some(l) if l.milli_value() < enforced.milli_value() => Some(format!(
            "minimum {r} usage per {kind} is {enforced}, but limit is {l}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    r: &str,
    enforced: &Quantity,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let Some(l) = lim.get(r) else {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if l.milli_value() > enforced.milli_value() {
        return Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but limit is {l}"
        ));
    }
    match req.get(r) {
        Some(rq) if rq.milli_value() > enforced.milli_value() => Some(format!(
            "maximum {r} usage per {kind} is {enforced}, but request is {rq}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    r: &str,
    enforced: &Quantity,
    req: &Usage,
    lim: &Usage,
) -> Option<String> {
    let rq = req.get(r).map_or(0, Quantity::milli_value);
    if rq == 0 {
        return Some(format!(
            "{r} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    let l = lim.get(r).map_or(0, Quantity::milli_value);
    if l == 0 {
        return Some(format!(
            "{r} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / rq as f64;
    if observed * 1000.0 > enforced.milli_value() as f64 {
        return Some(format!(
            "{r} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    None
}

fn check_item(item: &LimitRangeItem, kind: &str, req: &Usage, lim: &Usage, errs: &mut Vec<String>) {
    for (r, v) in parse(item.min.as_ref()) {
        errs.extend(min_constraint(kind, &r, &v, req, lim));
    }
    for (r, v) in parse(item.max.as_ref()) {
        errs.extend(max_constraint(kind, &r, &v, req, lim));
    }
    for (r, v) in parse(item.max_limit_request_ratio.as_ref()) {
        errs.extend(ratio_constraint(kind, &r, &v, req, lim));
    }
}

/// Checks a pod against one LimitRange (`PodValidateLimitFunc`); the error
/// is the Forbidden reason, `[a, b]` when several constraints fail.
pub fn validate(lr: &LimitRange, pod: &Pod) -> Result<(), String> {
    let mut errs = Vec::new();
    let items = lr.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or(&[]);
    let spec = pod.spec.clone().unwrap_or_default();
    for item in items {
        match item.type_.as_str() {
            "Container" => {
                for c in spec
                    .containers
                    .iter()
                    .chain(spec.init_containers.iter().flatten())
                {
                    let r = c.resources.as_ref();
                    let req = parse(r.and_then(|r| r.requests.as_ref()));
                    let lim = parse(r.and_then(|r| r.limits.as_ref()));
                    check_item(item, "Container", &req, &lim, &mut errs);
                }
            }
            "Pod" => {
                let req = pod_resources(pod, true);
                let lim = pod_resources(pod, false);
                check_item(item, "Pod", &req, &lim, &mut errs);
            }
            _ => {}
        }
    }
    // An aggregate error drops duplicates and brackets several messages.
    let mut seen = BTreeSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// `SetDefaults_LimitRangeItem` for a LimitRange object (JSON): for
/// `Container` items a missing `default` comes from `max`, a missing
/// `defaultRequest` from `default`, then from `min`.
pub fn default_limit_range(obj: &mut Value) {
    let Some(items) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items.iter_mut().filter_map(Value::as_object_mut) {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let get = |item: &Map<String, Value>, k: &str| -> Map<String, Value> {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let mut default = get(item, "default");
        for (k, v) in get(item, "max") {
            default.entry(k).or_insert(v);
        }
        let mut default_request = get(item, "defaultRequest");
        for (k, v) in default.iter() {
            default_request.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in get(item, "min") {
            default_request.entry(k).or_insert(v);
        }
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !default_request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(default_request));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(limits: Value) -> LimitRange {
        serde_json::from_value(json!({"metadata": {"name": "lr"}, "spec": {"limits": limits}}))
            .expect("lr")
    }

    fn pod_json(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "image": "x", "resources": resources}
        ], "initContainers": [{"name": "init", "image": "x"}]}})
    }

    #[test]
    fn defaults_fill_only_missing_values_and_annotate() {
        let range = lr(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]));
        let mut pod = pod_json(json!({"limits": {"cpu": "2"}}));
        default_requests_from_limits(&mut pod);
        apply_defaults(&range, &mut pod);
        let app = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(app["limits"], json!({"cpu": "2", "memory": "256Mi"}));
        // The request comes from the container's own limit first.
        assert_eq!(app["requests"], json!({"cpu": "2", "memory": "128Mi"}));
        let init = &pod["spec"]["initContainers"][0]["resources"];
        assert_eq!(init["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: memory request for container app; memory limit for container app; \
             cpu, memory request for init container init; cpu, memory limit for init container init"
        );
    }

    #[test]
    fn min_max_and_ratio_messages_match_kubernetes() {
        let range = lr(json!([{"type": "Container",
            "min": {"cpu": "100m"}, "max": {"cpu": "1", "memory": "1Gi"},
            "maxLimitRequestRatio": {"cpu": "2"}}]));
        let p = |res: Value| -> Pod {
            serde_json::from_value(
                json!({"spec": {"containers": [{"name": "a", "image": "x", "resources": res}]}}),
            )
            .expect("pod")
        };
        assert_eq!(
            validate(&range, &p(json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "2", "memory": "2Gi"}}))),
            Err("[maximum cpu usage per Container is 1, but limit is 2, maximum memory usage per Container is 1Gi, but limit is 2Gi, cpu max limit to request ratio per Container is 2, but provided ratio is 10.000000]".to_string())
        );
        assert_eq!(
            validate(
                &range,
                &p(json!({"requests": {"cpu": "50m"}, "limits": {"cpu": "100m", "memory": "1Gi"}}))
            ),
            Err("minimum cpu usage per Container is 100m, but request is 50m".to_string())
        );
        assert_eq!(
            validate(&range, &p(json!({"limits": {"cpu": "500m", "memory": "512Mi"}}))),
            Err("[minimum cpu usage per Container is 100m.  No request is specified, cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]".to_string())
        );
        assert_eq!(
            validate(
                &range,
                &p(json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}))
            ),
            Ok(())
        );
        let pod_range = lr(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
        let two: Pod = serde_json::from_value(json!({"spec": {"containers": [
            {"name": "a", "image": "x", "resources": {"limits": {"cpu": "600m"}}},
            {"name": "b", "image": "x", "resources": {"limits": {"cpu": "600m"}}}]}}))
        .expect("pod");
        assert_eq!(
            validate(&pod_range, &two),
            Err("maximum cpu usage per Pod is 1, but limit is 1200m".to_string())
        );
    }

    #[test]
    fn limit_range_object_defaults() {
        let mut obj = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}, "default": {"memory": "1Gi"}},
            {"type": "Pod", "max": {"cpu": "4"}}
        ]}});
        default_limit_range(&mut obj);
        let c = &obj["spec"]["limits"][0];
        assert_eq!(c["default"], json!({"cpu": "2", "memory": "1Gi"}));
        assert_eq!(c["defaultRequest"], json!({"cpu": "2", "memory": "1Gi"}));
        assert!(obj["spec"]["limits"][1].get("default").is_none());
    }
}
