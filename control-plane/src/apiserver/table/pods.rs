//! The pod printer, computing Ready, Status (with reasons such as
//! `CrashLoopBackOff`, `Init:0/1`, `Completed`, `Terminating`) and Restarts
//! (`5 (3m ago)`) exactly as Kubernetes' `printPod` does.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Column, age, age_col, col, name_col};
use crate::apiserver::objects;

/// Pod columns.
pub fn columns() -> Vec<Column> {
    vec![
        name_col(),
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
            0,
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
            0,
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            0,
        ),
        age_col(),
        col(
            "IP",
            "string",
            "podIP is the IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            1,
        ),
        col(
            "Node",
            "string",
            "NodeName indicates in which node this pod is scheduled.",
            1,
        ),
        col(
            "Nominated Node",
            "string",
            "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
            1,
        ),
        col(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness.",
            1,
        ),
    ]
}

fn arr<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    objects::path(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    objects::path_str(v, path)
}

fn finished_at(status: &Value) -> Option<Timestamp> {
    status
        .pointer("/lastState/terminated/finishedAt")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn is_restartable_init(spec_containers: &[Value], name: &str) -> bool {
    spec_containers
        .iter()
        .find(|c| c["name"] == name)
        .is_some_and(|c| c["restartPolicy"] == "Always")
}

fn has_condition(pod: &Value, ty: &str) -> bool {
    arr(pod, "status.conditions")
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

/// The computed Ready, Status and Restarts cells.
pub fn summary(pod: &Value, now: Timestamp) -> (String, String, String) {
    let init_specs = arr(pod, "spec.initContainers");
    let mut total = arr(pod, "spec.containers").len();
    total += init_specs
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let phase = s(pod, "status.phase");
    let mut reason = if s(pod, "status.reason").is_empty() {
        phase.to_string()
    } else {
        s(pod, "status.reason").to_string()
    };
    if arr(pod, "status.conditions")
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    let init_statuses = arr(pod, "status.initContainerStatuses");
    for (i, c) in init_statuses.iter().enumerate() {
        let rc = c["restartCount"].as_i64().unwrap_or(0);
        restarts += rc;
        last_restart = later(last_restart, finished_at(c));
        let name = c["name"].as_str().unwrap_or("");
        let sidecar = is_restartable_init(init_specs, name);
        if sidecar {
            sidecar_restarts += rc;
            last_sidecar_restart = later(last_sidecar_restart, finished_at(c));
        }
        let term = c.pointer("/state/terminated");
        let waiting_reason = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        if term.is_some_and(|t| t["exitCode"].as_i64() == Some(0)) {
            continue;
        }
        if sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = term {
            let r = t["reason"].as_str().unwrap_or("");
            reason = if r.is_empty() {
                match t["signal"].as_i64().filter(|s| *s != 0) {
                    Some(sig) => format!("Init:Signal:{sig}"),
                    None => format!("Init:ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
                }
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, "status.containerStatuses").iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            last_restart = later(last_restart, finished_at(c));
            let waiting = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            let term = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = term {
                let r = t["reason"].as_str().unwrap_or("");
                reason = if !r.is_empty() {
                    r.to_string()
                } else {
                    match t["signal"].as_i64().filter(|s| *s != 0) {
                        Some(sig) => format!("Signal:{sig}"),
                        None => format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
                    }
                };
            } else if c["ready"].as_bool() == Some(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    if objects::is_deleting(pod) && s(pod, "status.reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if objects::is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            super::age::human_duration(now.as_second() - t.as_second())
        ),
        _ => restarts.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts_str)
}

/// Pod cells (wide columns included).
pub fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let (ready, status, restarts) = summary(pod, now);
    let ip = arr(pod, "status.podIPs")
        .first()
        .and_then(|p| p["ip"].as_str())
        .or_else(|| Some(s(pod, "status.podIP")))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let node = Some(s(pod, "spec.nodeName"))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let nominated = Some(s(pod, "status.nominatedNodeName"))
        .filter(|s| !s.is_empty())
        .unwrap_or("<none>");
    let gates = arr(pod, "spec.readinessGates");
    let gates_str = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conds = arr(pod, "status.conditions");
        let ok = gates
            .iter()
            .filter(|g| {
                conds
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        json!(objects::name(pod)),
        json!(ready),
        json!(status),
        json!(restarts),
        json!(age(pod, now)),
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates_str),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-01-01T01:00:00Z".parse().expect("ts")
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"}, "spec": spec, "status": status})
    }

    fn one() -> Value {
        json!({"containers": [{"name": "a"}]})
    }

    #[test]
    fn pending_pod() {
        let p = pod(one(), json!({"phase": "Pending"}));
        let c = cells(&p, now());
        assert_eq!(
            c,
            vec![
                json!("p"),
                json!("0/1"),
                json!("Pending"),
                json!("0"),
                json!("60m"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn running_and_ready() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"}),
            json!({"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}], "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"running": {}}}]}),
        );
        let c = cells(&p, now());
        assert_eq!(
            (c[1].clone(), c[2].clone(), c[5].clone(), c[6].clone()),
            (
                json!("1/2"),
                json!("Running"),
                json!("10.244.0.5"),
                json!("n1")
            )
        );
    }

    #[test]
    fn crash_loop_with_restart_age() {
        let p = pod(
            one(),
            json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 5,
             "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-01-01T00:55:00Z"}}}]}),
        );
        let (ready, status, restarts) = summary(&p, now());
        assert_eq!(
            (ready.as_str(), status.as_str(), restarts.as_str()),
            ("0/1", "CrashLoopBackOff", "5 (5m ago)")
        );
    }

    #[test]
    fn completed_and_error_exit_codes() {
        let done = pod(
            one(),
            json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        assert_eq!(summary(&done, now()).1, "Completed");
        let sig = pod(
            one(),
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}),
        );
        assert_eq!(summary(&sig, now()).1, "Signal:9");
        let code = pod(
            one(),
            json!({"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 3}}}]}),
        );
        assert_eq!(summary(&code, now()).1, "ExitCode:3");
    }

    #[test]
    fn completed_with_a_running_container_is_running_or_not_ready() {
        let status = |ready_cond: &str| {
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready_cond}], "containerStatuses": [
            {"name": "a", "ready": true, "state": {"running": {}}},
            {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]})
        };
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        assert_eq!(
            summary(&pod(spec.clone(), status("True")), now()).1,
            "Running"
        );
        assert_eq!(summary(&pod(spec, status("False")), now()).1, "NotReady");
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let waiting = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
            {"name": "i2", "state": {"running": {}}}]}),
        );
        assert_eq!(summary(&waiting, now()).1, "Init:1/2");
        let failed = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 2}}}]}),
        );
        assert_eq!(summary(&failed, now()).1, "Init:ExitCode:2");
        let backoff = pod(
            spec.clone(),
            json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
        );
        assert_eq!(summary(&backoff, now()).1, "Init:CrashLoopBackOff");
        let sidecar = pod(
            json!({"initContainers": [{"name": "s", "restartPolicy": "Always"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Running", "initContainerStatuses": [{"name": "s", "started": true, "ready": true, "restartCount": 1, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "a", "ready": true, "state": {"running": {}}}]}),
        );
        let (ready, status, restarts) = summary(&sidecar, now());
        assert_eq!(
            (ready.as_str(), status.as_str(), restarts.as_str()),
            ("2/2", "Running", "1")
        );
    }

    #[test]
    fn terminating_and_gates() {
        let mut p = pod(
            json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x"}, {"conditionType": "y"}]}),
            json!({"phase": "Running", "conditions": [{"type": "x", "status": "True"}]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:59:00Z");
        let c = cells(&p, now());
        assert_eq!(
            (c[2].clone(), c[8].clone()),
            (json!("Terminating"), json!("1/2"))
        );
        let mut done = pod(one(), json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:59:00Z");
        assert_eq!(summary(&done, now()).1, "Succeeded");
    }

    #[test]
    fn scheduling_gated() {
        let p = pod(
            one(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(summary(&p, now()).1, "SchedulingGated");
    }
}
