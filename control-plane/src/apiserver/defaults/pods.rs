//! Pod defaulting: `SetDefaults_PodSpec`/`Container`/probes/volumes, the
//! admission defaults a real cluster adds on create (service account,
//! priority, `DefaultTolerationSeconds`) and the initial status (phase,
//! QoS class).

use serde_json::{Map, Value, json};

/// Sets `map[key] = value` unless the key is present (and non-null).
pub fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// `imagePullPolicy` default: `Always` for `:latest` or untagged images,
/// otherwise `IfNotPresent` (digests count as pinned).
pub fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_probe(p: &mut Value) {
    let Some(m) = p.as_object_mut() else { return };
    set_default(m, "timeoutSeconds", json!(1));
    set_default(m, "periodSeconds", json!(10));
    set_default(m, "successThreshold", json!(1));
    set_default(m, "failureThreshold", json!(3));
    if let Some(h) = m.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_default(h, "path", json!("/"));
        set_default(h, "scheme", json!("HTTP"));
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    set_default(m, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(m, "terminationMessagePolicy", json!("File"));
    set_default(m, "imagePullPolicy", json!(pull_policy_for(&image)));
    set_default(m, "resources", json!({}));
    if let Some(ports) = m.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = m.get_mut(probe) {
            default_probe(p);
        }
    }
    if let Some(env) = m.get_mut("env").and_then(Value::as_array_mut) {
        for e in env {
            if let Some(fr) = e
                .pointer_mut("/valueFrom/fieldRef")
                .and_then(Value::as_object_mut)
            {
                set_default(fr, "apiVersion", json!("v1"));
            }
        }
    }
}

/// `SetDefaults_PodSpec` and nested defaults; used for pods and templates.
pub fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    set_default(m, "dnsPolicy", json!("ClusterFirst"));
    set_default(m, "restartPolicy", json!("Always"));
    set_default(m, "terminationGracePeriodSeconds", json!(30));
    set_default(m, "securityContext", json!({}));
    set_default(m, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(vols) = m.get_mut("volumes").and_then(Value::as_array_mut) {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for src in ["configMap", "secret"] {
                if let Some(s) = v.get_mut(src).and_then(Value::as_object_mut) {
                    set_default(s, "defaultMode", json!(420));
                }
            }
            if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
                set_default(h, "type", json!(""));
            }
        }
    }
}

/// Defaults for a pod template (`spec.template`).
pub fn default_template(template: Option<&mut Value>) {
    if let Some(spec) = template.and_then(|t| t.get_mut("spec")) {
        default_pod_spec(spec);
    }
}

fn has_toleration(tols: &[Value], key: &str) -> bool {
    tols.iter().any(|t| {
        let k = t.get("key").and_then(Value::as_str).unwrap_or("");
        let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (k == key || (k.is_empty() && op == "Exists"))
            && (effect.is_empty() || effect == "NoExecute")
    })
}

/// Admission-time defaults for a new pod: service account, priority,
/// service links and the not-ready/unreachable tolerations (300 s).
pub fn admit_pod(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let sa = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    let mut tols = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !has_toleration(&tols, key) {
            tols.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    spec.insert("tolerations".into(), Value::Array(tols));
}

fn has_resources(c: &Value, kind: &str) -> bool {
    c.get("resources")
        .and_then(|r| r.get(kind))
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("cpu") || m.contains_key("memory"))
}

/// The pod's QoS class (`BestEffort`, `Burstable`, `Guaranteed`).
pub fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let any = containers
        .iter()
        .any(|c| has_resources(c, "requests") || has_resources(c, "limits"));
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = c.pointer(&format!("/resources/limits/{r}"));
            let request = c.pointer(&format!("/resources/requests/{r}"));
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The status of a newly created pod.
pub fn initial_status(pod: &Value) -> Value {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    json!({"phase": "Pending", "qosClass": qos_class(&spec)})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies() {
        assert_eq!(pull_policy_for("nginx"), "Always");
        assert_eq!(pull_policy_for("nginx:latest"), "Always");
        assert_eq!(pull_policy_for("nginx:1.25"), "IfNotPresent");
        assert_eq!(pull_policy_for("localhost:5000/app"), "Always");
        assert_eq!(pull_policy_for("localhost:5000/app:v1"), "IfNotPresent");
        assert_eq!(pull_policy_for("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn pod_spec_defaults_look_like_kubernetes() {
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}}}], "volumes": [{"name": "c", "configMap": {"name": "x"}}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["securityContext"], json!({}));
        let c = &spec["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["readinessProbe"]["periodSeconds"], 10);
        assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 420);
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut spec = json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never"}]});
        default_pod_spec(&mut spec);
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
    }

    #[test]
    fn admission_adds_tolerations_once() {
        let mut pod = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]}});
        admit_pod(&mut pod);
        let tols = pod["spec"]["tolerations"].as_array().expect("tolerations");
        assert_eq!(tols.len(), 2);
        assert_eq!(tols[0]["tolerationSeconds"], 10);
        assert_eq!(tols[1]["key"], "node.kubernetes.io/unreachable");
        assert_eq!(tols[1]["tolerationSeconds"], 300);
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["serviceAccount"], "default");
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
        assert_eq!(
            qos_class(&json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]})),
            "Burstable"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})
            ),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(
                &json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]})
            ),
            "Burstable"
        );
    }
}
