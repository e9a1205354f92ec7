//! Pod and pod-template validation: the common cases Kubernetes rejects
//! (containers, names, images, ports, policies) and pod update rules.

use std::collections::HashSet;

use serde_json::Value;

use super::FieldErr;
use super::meta::dns1123_label;

const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

fn validate_container(
    c: &Value,
    path: &str,
    names: &mut HashSet<String>,
    errs: &mut Vec<FieldErr>,
) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        errs.push(FieldErr::required(&format!("{path}.name"), ""));
    } else {
        for m in dns1123_label(name) {
            errs.push(FieldErr::invalid(&format!("{path}.name"), name, &m));
        }
        if !names.insert(name.to_string()) {
            errs.push(FieldErr::duplicate(&format!("{path}.name"), name));
        }
    }
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    if image.trim().is_empty() {
        errs.push(FieldErr::required(&format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldErr::invalid(
            &format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str)
        && !PULL_POLICIES.contains(&p)
    {
        errs.push(FieldErr::not_supported(
            &format!("{path}.imagePullPolicy"),
            p,
            PULL_POLICIES,
        ));
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        let mut port_names = HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let pp = format!("{path}.ports[{i}]");
            let cp = p.get("containerPort").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&cp) {
                errs.push(FieldErr::invalid(
                    &format!("{pp}.containerPort"),
                    cp,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64)
                && !(0..=65535).contains(&hp)
            {
                errs.push(FieldErr::invalid(
                    &format!("{pp}.hostPort"),
                    hp,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(proto) = p.get("protocol").and_then(Value::as_str)
                && !PROTOCOLS.contains(&proto)
            {
                errs.push(FieldErr::not_supported(
                    &format!("{pp}.protocol"),
                    proto,
                    PROTOCOLS,
                ));
            }
            if let Some(n) = p.get("name").and_then(Value::as_str) {
                if !n.is_empty() && !port_names.insert(n.to_string()) {
                    errs.push(FieldErr::duplicate(&format!("{pp}.name"), n));
                }
                if n.len() > 15 {
                    errs.push(FieldErr::invalid(
                        &format!("{pp}.name"),
                        n,
                        "must be no more than 15 characters",
                    ));
                }
            }
        }
    }
    if let Some(env) = c.get("env").and_then(Value::as_array) {
        for (i, e) in env.iter().enumerate() {
            if e.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                errs.push(FieldErr::required(&format!("{path}.env[{i}].name"), ""));
            }
        }
    }
}

/// Validates a pod spec found at `path` (`spec` or `spec.template.spec`).
pub fn validate_pod_spec(spec: Option<&Value>, path: &str) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        errs.push(FieldErr::required(&format!("{path}.containers"), ""));
        return errs;
    };
    let mut names = HashSet::new();
    match spec.get("containers").and_then(Value::as_array) {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                validate_container(c, &format!("{path}.containers[{i}]"), &mut names, &mut errs);
            }
        }
        _ => errs.push(FieldErr::required(&format!("{path}.containers"), "")),
    }
    if let Some(cs) = spec.get("initContainers").and_then(Value::as_array) {
        for (i, c) in cs.iter().enumerate() {
            validate_container(
                c,
                &format!("{path}.initContainers[{i}]"),
                &mut names,
                &mut errs,
            );
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str)
        && !RESTART_POLICIES.contains(&p)
    {
        errs.push(FieldErr::not_supported(
            &format!("{path}.restartPolicy"),
            p,
            RESTART_POLICIES,
        ));
    }
    if let Some(p) = spec.get("dnsPolicy").and_then(Value::as_str)
        && !DNS_POLICIES.contains(&p)
    {
        errs.push(FieldErr::not_supported(
            &format!("{path}.dnsPolicy"),
            p,
            DNS_POLICIES,
        ));
    }
    if let Some(g) = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        && g < 0
    {
        errs.push(FieldErr::invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(a) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64)
        && a <= 0
    {
        errs.push(FieldErr::invalid(
            &format!("{path}.activeDeadlineSeconds"),
            a,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        let mut seen = HashSet::new();
        for (i, v) in vols.iter().enumerate() {
            let n = v.get("name").and_then(Value::as_str).unwrap_or("");
            if n.is_empty() {
                errs.push(FieldErr::required(&format!("{path}.volumes[{i}].name"), ""));
            } else if !seen.insert(n) {
                errs.push(FieldErr::duplicate(&format!("{path}.volumes[{i}].name"), n));
            }
        }
    }
    errs
}

/// The spec with the fields a pod update may change blanked out.
fn mutable_stripped(spec: Option<&Value>) -> Value {
    let mut s = spec.cloned().unwrap_or(Value::Null);
    if let Some(m) = s.as_object_mut() {
        for f in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            m.remove(f);
        }
        for list in ["containers", "initContainers"] {
            if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(c) = c.as_object_mut() {
                        c.remove("image");
                    }
                }
            }
        }
    }
    s
}

/// Validates a pod; on update, also the fields that may not change.
pub fn validate_pod(obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = validate_pod_spec(obj.get("spec"), "spec");
    if let Some(old) = old
        && mutable_stripped(obj.get("spec")) != mutable_stripped(old.get("spec"))
    {
        errs.push(FieldErr::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errs: &[FieldErr]) -> Vec<String> {
        errs.iter()
            .map(|e| format!("{}: {}", e.field, e.message()))
            .collect()
    }

    #[test]
    fn valid_pod_passes() {
        let pod = json!({"spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}]}});
        assert!(validate_pod(&pod, None).is_empty());
    }

    #[test]
    fn missing_containers() {
        assert_eq!(
            fields(&validate_pod(&json!({"spec": {}}), None)),
            ["spec.containers: Required value"]
        );
        assert_eq!(
            fields(&validate_pod(&json!({}), None)),
            ["spec.containers: Required value"]
        );
    }

    #[test]
    fn container_errors() {
        let pod = json!({"spec": {"containers": [
            {"image": "x"},
            {"name": "a", "image": ""},
            {"name": "a", "image": "y", "ports": [{"containerPort": 0, "protocol": "ICMP"}]},
            {"name": "Bad_Name", "image": "z"}
        ], "restartPolicy": "Sometimes"}});
        let f = fields(&validate_pod(&pod, None));
        assert!(
            f.contains(&"spec.containers[0].name: Required value".to_string()),
            "{f:?}"
        );
        assert!(
            f.contains(&"spec.containers[1].image: Required value".to_string()),
            "{f:?}"
        );
        assert!(
            f.contains(&"spec.containers[2].name: Duplicate value: \"a\"".to_string()),
            "{f:?}"
        );
        assert!(f.contains(&"spec.containers[2].ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive".to_string()), "{f:?}");
        assert!(
            f.iter().any(|s| s
                .starts_with("spec.containers[2].ports[0].protocol: Unsupported value: \"ICMP\"")),
            "{f:?}"
        );
        assert!(
            f.iter()
                .any(|s| s.starts_with("spec.containers[3].name: Invalid value: \"Bad_Name\"")),
            "{f:?}"
        );
        assert!(f.contains(&"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_string()), "{f:?}");
    }

    #[test]
    fn init_and_app_container_names_share_a_namespace() {
        let pod = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "initContainers": [{"name": "a", "image": "y"}]}});
        assert_eq!(
            fields(&validate_pod(&pod, None)),
            ["spec.initContainers[0].name: Duplicate value: \"a\""]
        );
    }

    #[test]
    fn updates_may_change_images_only() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "nodeName": "n"}});
        let image =
            json!({"spec": {"containers": [{"name": "a", "image": "x:2"}], "nodeName": "n"}});
        assert!(validate_pod(&image, Some(&old)).is_empty());
        let other = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["-v"]}], "nodeName": "n"}});
        let errs = validate_pod(&other, Some(&old));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .message()
                .starts_with("Forbidden: pod updates may not change fields other than")
        );
    }
}
