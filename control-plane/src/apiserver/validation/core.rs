//! Validation of core/v1 services, config maps and secrets, and
//! node.k8s.io RuntimeClasses.

use std::collections::HashSet;

use serde_json::Value;

use super::FieldErr;
use super::meta::dns1123_label;
use crate::apiserver::kinds::KindId;

const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Services: type, ports, names, cluster IP immutability.
pub fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !SERVICE_TYPES.contains(&ty) {
        errs.push(FieldErr::not_supported("spec.type", ty, SERVICE_TYPES));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(FieldErr::required("spec.ports", ""));
    }
    if ty == "ExternalName"
        && spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        errs.push(FieldErr::required("spec.externalName", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldErr::required(&format!("{path}.name"), ""));
        } else if !name.is_empty() {
            for m in dns1123_label(name) {
                errs.push(FieldErr::invalid(&format!("{path}.name"), name, &m));
            }
            if !names.insert(name.to_string()) {
                errs.push(FieldErr::duplicate(&format!("{path}.name"), name));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldErr::invalid(
                &format!("{path}.port"),
                port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(proto) = p.get("protocol").and_then(Value::as_str)
            && !PROTOCOLS.contains(&proto)
        {
            errs.push(FieldErr::not_supported(
                &format!("{path}.protocol"),
                proto,
                PROTOCOLS,
            ));
        }
        if let Some(tp) = p.get("targetPort").and_then(Value::as_i64)
            && !(1..=65535).contains(&tp)
        {
            errs.push(FieldErr::invalid(
                &format!("{path}.targetPort"),
                tp,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if let Some(np) = p.get("nodePort").and_then(Value::as_i64)
            && np != 0
            && ty == "ClusterIP"
        {
            errs.push(FieldErr::forbidden(
                &format!("{path}.nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if let Some(old) = old {
        let ip = |o: &Value| {
            o.get("spec")
                .and_then(|s| s.get("clusterIP"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (new_ip, old_ip) = (ip(obj), ip(old));
        if !old_ip.is_empty() && new_ip != old_ip && ty != "ExternalName" {
            errs.push(FieldErr::immutable("spec.clusterIPs[0]", new_ip));
        }
    }
    errs
}

fn valid_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && !k.starts_with("..")
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// ConfigMaps and Secrets: keys and the `immutable` flag.
pub fn validate_config(id: KindId, obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let fields: &[&str] = if id == KindId::Secret {
        &["data", "stringData"]
    } else {
        &["data", "binaryData"]
    };
    let mut seen = HashSet::new();
    for f in fields {
        if let Some(m) = obj.get(*f).and_then(Value::as_object) {
            for k in m.keys() {
                if !valid_config_key(k) {
                    errs.push(FieldErr::invalid(
                        &format!("{f}[{k}]"),
                        k.as_str(),
                        "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                    ));
                }
                if id == KindId::ConfigMap && !seen.insert(k.clone()) {
                    errs.push(FieldErr::duplicate(&format!("data[{k}]"), k.as_str()));
                }
            }
        }
    }
    if id == KindId::Secret
        && let Some(m) = obj.get("data").and_then(Value::as_object)
    {
        for (k, v) in m {
            let ok = v.as_str().is_some_and(|s| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            });
            if !ok {
                errs.push(FieldErr::invalid(
                    &format!("data[{k}]"),
                    "<secret contents redacted>",
                    "illegal base64 data",
                ));
            }
        }
    }
    if let Some(old) = old {
        let immutable = old.get("immutable").and_then(Value::as_bool) == Some(true);
        if immutable {
            if obj.get("immutable").and_then(Value::as_bool) != Some(true) {
                errs.push(FieldErr::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            for f in fields {
                if obj.get(*f) != old.get(*f) {
                    errs.push(FieldErr::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        if id == KindId::Secret {
            let ty = |o: &Value| {
                o.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("Opaque")
                    .to_string()
            };
            if ty(obj) != ty(old) {
                errs.push(FieldErr::immutable("type", ty(obj)));
            }
        }
    }
    errs
}

/// RuntimeClasses: `handler` is a required DNS-1123 label.
pub fn validate_runtime_class(obj: &Value) -> Vec<FieldErr> {
    let handler = obj.get("handler").and_then(Value::as_str).unwrap_or("");
    if handler.is_empty() {
        return vec![FieldErr::required("handler", "")];
    }
    dns1123_label(handler)
        .into_iter()
        .map(|m| FieldErr::invalid("handler", handler, &m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_ports() {
        assert!(validate_service(&json!({"spec": {"ports": [{"port": 80}]}}), None).is_empty());
        let f = |o: Value| {
            validate_service(&o, None)
                .into_iter()
                .map(|e| e.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(f(json!({"spec": {}})), ["spec.ports"]);
        assert!(f(json!({"spec": {"clusterIP": "None"}})).is_empty());
        assert_eq!(
            f(json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})),
            ["spec.ports[0].name", "spec.ports[1].name"]
        );
        assert_eq!(
            f(json!({"spec": {"ports": [{"port": 0}]}})),
            ["spec.ports[0].port"]
        );
        assert_eq!(
            f(json!({"spec": {"type": "Bogus", "ports": [{"port": 1}]}})),
            ["spec.type"]
        );
        assert_eq!(
            f(json!({"spec": {"type": "ExternalName"}})),
            ["spec.externalName"]
        );
    }

    #[test]
    fn cluster_ip_is_immutable() {
        let old = json!({"spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        let new = json!({"spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 80}]}});
        let errs = validate_service(&new, Some(&old));
        assert_eq!(
            errs[0].message(),
            "Invalid value: \"10.96.0.11\": field is immutable"
        );
    }

    #[test]
    fn config_keys_and_immutability() {
        assert!(
            validate_config(KindId::ConfigMap, &json!({"data": {"a.b_C-1": "x"}}), None).is_empty()
        );
        assert_eq!(
            validate_config(KindId::ConfigMap, &json!({"data": {"a/b": "x"}}), None)[0].field,
            "data[a/b]"
        );
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(
            validate_config(KindId::ConfigMap, &new, Some(&old))[0].message(),
            "Forbidden: field is immutable when `immutable` is set"
        );
        assert!(
            validate_config(KindId::Secret, &json!({"data": {"a": "!!"}}), None)[0]
                .message()
                .ends_with("illegal base64 data")
        );
        assert!(
            validate_config(
                KindId::Secret,
                &json!({"type": "x"}),
                Some(&json!({"type": "Opaque"}))
            )[0]
            .message()
            .ends_with("field is immutable")
        );
    }

    #[test]
    fn runtime_class_handler() {
        assert!(validate_runtime_class(&json!({"handler": "wasmtime"})).is_empty());
        assert_eq!(validate_runtime_class(&json!({}))[0].field, "handler");
        assert!(!validate_runtime_class(&json!({"handler": "Bad"})).is_empty());
    }
}
