//! `componentstatuses` (read-only, computed on each request): one entry per
//! registered component probe plus `etcd-0` for the store, like the real
//! (deprecated) API.

use serde_json::{Value, json};

use super::ApiState;

fn status(name: &str, result: Result<(), String>) -> Value {
    let condition = match result {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "message": "", "error": e}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1", "metadata": {"name": name}, "conditions": [condition]})
}

/// Computes every component's status.
pub async fn compute(state: &ApiState) -> Vec<Value> {
    let mut out = Vec::new();
    for (name, probe) in &state.config().component_probes {
        out.push(status(name, probe()));
    }
    let store = match state.store().get("/registry/health").await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    out.push(status("etcd-0", store));
    out.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_shapes() {
        assert_eq!(
            status("scheduler", Ok(()))["conditions"][0]["status"],
            "True"
        );
        let bad = status("controller-manager", Err("connection refused".into()));
        assert_eq!(bad["conditions"][0]["error"], "connection refused");
        assert_eq!(bad["metadata"]["name"], "controller-manager");
    }
}
