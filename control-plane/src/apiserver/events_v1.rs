//! `events.k8s.io/v1` Events, served from the same storage as core/v1
//! Events (as Kubernetes does), converted field by field at the store
//! boundary. kube-runtime's event `Recorder` writes this version, while
//! `kubectl describe` reads core/v1 — both see the same objects.

use serde_json::{Map, Value};

/// (events.k8s.io/v1 field, core/v1 field) pairs that only differ in name.
const RENAMED: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, api_version: &str, to_core: bool) -> Value {
    let Some(m) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = RENAMED
            .iter()
            .find(|(v1, core)| if to_core { k == v1 } else { k == core })
            .map(|(v1, core)| if to_core { *core } else { *v1 })
            .unwrap_or(k.as_str());
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    Value::Object(out)
}

/// events.k8s.io/v1 → core/v1 (the storage format).
pub fn to_core(obj: &Value) -> Value {
    rename(obj, "v1", true)
}

/// core/v1 → events.k8s.io/v1.
pub fn from_core(obj: &Value) -> Value {
    rename(obj, "events.k8s.io/v1", false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "skiff/kubelet", "reportingInstance": "node-1", "eventTime": "2024-01-01T00:00:00.000000Z",
            "type": "Normal", "action": "Pull"});
        let core = to_core(&v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "pulled");
        assert_eq!(core["reportingComponent"], "skiff/kubelet");
        assert!(core.get("note").is_none());
        assert_eq!(from_core(&core), v1);
    }
}
