//! Printers for apps/v1 and batch/v1 workloads (Deployments, ReplicaSets,
//! DaemonSets, StatefulSets, Jobs, CronJobs), as `kubectl get` shows them.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Column, age, age_col, col, format_labels, name_col};
use crate::apiserver::kinds::KindId;
use crate::apiserver::objects;
use crate::apiserver::selectors::LabelSelector;

fn containers_col() -> Column {
    col(
        "Containers",
        "string",
        "Names of each container in the template.",
        1,
    )
}
fn images_col() -> Column {
    col(
        "Images",
        "string",
        "Images referenced by each container in the template.",
        1,
    )
}
fn selector_col() -> Column {
    col(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        1,
    )
}

/// Columns of a workload kind, if it is one.
pub fn columns(id: KindId) -> Option<Vec<Column>> {
    let int = |n: &str, d: &str| col(n, "integer", d, 0);
    Some(match id {
        KindId::Deployment => vec![
            name_col(),
            col("Ready", "string", "Number of the pod with ready state", 0),
            int(
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            int(
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            age_col(),
            containers_col(),
            images_col(),
            selector_col(),
        ],
        KindId::ReplicaSet => vec![
            name_col(),
            int("Desired", "Replicas is the number of desired replicas."),
            int(
                "Current",
                "Replicas is the most recently observed number of replicas.",
            ),
            int(
                "Ready",
                "The number of ready replicas for this replica set.",
            ),
            age_col(),
            containers_col(),
            images_col(),
            selector_col(),
        ],
        KindId::DaemonSet => vec![
            name_col(),
            int(
                "Desired",
                "The total number of nodes that should be running the daemon pod.",
            ),
            int(
                "Current",
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            int(
                "Ready",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            int(
                "Up-to-date",
                "The total number of nodes that are running updated daemon pod",
            ),
            int(
                "Available",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            ),
            col(
                "Node Selector",
                "string",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            selector_col(),
        ],
        KindId::StatefulSet => vec![
            name_col(),
            col("Ready", "string", "Number of the pod with ready state", 0),
            age_col(),
            containers_col(),
            images_col(),
        ],
        KindId::Job => vec![
            name_col(),
            col("Status", "string", "Status of the job.", 0),
            col(
                "Completions",
                "string",
                "The completion status of the job.",
                0,
            ),
            col(
                "Duration",
                "string",
                "Time required to complete the job.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            selector_col(),
        ],
        KindId::CronJob => vec![
            name_col(),
            col(
                "Schedule",
                "string",
                "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
                0,
            ),
            col(
                "Timezone",
                "string",
                "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
                0,
            ),
            col(
                "Suspend",
                "boolean",
                "This flag tells the controller to suspend subsequent executions.",
                0,
            ),
            int("Active", "A list of pointers to currently running jobs."),
            col(
                "Last Schedule",
                "string",
                "Information when was the last time the job was successfully scheduled.",
                0,
            ),
            age_col(),
            containers_col(),
            images_col(),
            selector_col(),
        ],
        _ => return None,
    })
}

fn i(obj: &Value, path: &str) -> i64 {
    objects::path_i64(obj, path)
}

/// Containers and images of a pod template, comma-joined.
fn containers_images(template: Option<&Value>) -> (String, String) {
    let cs = template
        .and_then(|t| t.pointer("/spec/containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .map(|c| c["image"].as_str().unwrap_or(""))
        .collect();
    (names.join(","), images.join(","))
}

fn selector_string(sel: Option<&Value>) -> String {
    match sel.map(LabelSelector::from_label_selector) {
        Some(Ok(s)) if !s.is_empty() => s.to_selector_string(),
        Some(Ok(_)) | None => "<none>".to_string(),
        Some(Err(_)) => "<error>".to_string(),
    }
}

fn has_true_condition(obj: &Value, ty: &str) -> bool {
    objects::path(obj, "status.conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// Cells of a workload kind, if it is one.
pub fn cells(id: KindId, obj: &Value, now: Timestamp) -> Option<Vec<Value>> {
    let name = json!(objects::name(obj));
    let template = obj.pointer("/spec/template");
    let (containers, images) = containers_images(template);
    let selector = selector_string(obj.pointer("/spec/selector"));
    let age_s = json!(age(obj, now));
    Some(match id {
        KindId::Deployment => vec![
            name,
            json!(format!(
                "{}/{}",
                i(obj, "status.readyReplicas"),
                i(obj, "spec.replicas")
            )),
            json!(i(obj, "status.updatedReplicas")),
            json!(i(obj, "status.availableReplicas")),
            age_s,
            json!(containers),
            json!(images),
            json!(selector),
        ],
        KindId::ReplicaSet => vec![
            name,
            json!(i(obj, "spec.replicas")),
            json!(i(obj, "status.replicas")),
            json!(i(obj, "status.readyReplicas")),
            age_s,
            json!(containers),
            json!(images),
            json!(selector),
        ],
        KindId::DaemonSet => vec![
            name,
            json!(i(obj, "status.desiredNumberScheduled")),
            json!(i(obj, "status.currentNumberScheduled")),
            json!(i(obj, "status.numberReady")),
            json!(i(obj, "status.updatedNumberScheduled")),
            json!(i(obj, "status.numberAvailable")),
            json!(format_labels(
                obj.pointer("/spec/template/spec/nodeSelector")
            )),
            age_s,
            json!(containers),
            json!(images),
            json!(selector),
        ],
        KindId::StatefulSet => vec![
            name,
            json!(format!(
                "{}/{}",
                i(obj, "status.readyReplicas"),
                i(obj, "spec.replicas")
            )),
            age_s,
            json!(containers),
            json!(images),
        ],
        KindId::Job => job_cells(obj, now, name, age_s, containers, images, selector),
        KindId::CronJob => {
            let jt = obj.pointer("/spec/jobTemplate/spec/template");
            let (c, im) = containers_images(jt);
            let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let tz = Some(objects::path_str(obj, "spec.timeZone"))
                .filter(|s| !s.is_empty())
                .unwrap_or("<none>");
            let last = match objects::path(obj, "status.lastScheduleTime").and_then(Value::as_str) {
                Some(t) => super::age::since(Some(t), now),
                None => "<none>".to_string(),
            };
            vec![
                name,
                json!(objects::path_str(obj, "spec.schedule")),
                json!(tz),
                json!(suspend),
                json!(
                    objects::path(obj, "status.active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                ),
                json!(last),
                age_s,
                json!(c),
                json!(im),
                json!(selector_string(
                    obj.pointer("/spec/jobTemplate/spec/selector")
                )),
            ]
        }
        _ => return None,
    })
}

fn job_cells(
    obj: &Value,
    now: Timestamp,
    name: Value,
    age_s: Value,
    containers: String,
    images: String,
    selector: String,
) -> Vec<Value> {
    let succeeded = i(obj, "status.succeeded");
    let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let p = i(obj, "spec.parallelism");
            if p > 1 {
                format!("{succeeded}/1 of {p}")
            } else {
                format!("{succeeded}/1")
            }
        }
    };
    let start = objects::path(obj, "status.startTime")
        .and_then(Value::as_str)
        .and_then(objects::parse_time);
    let end = objects::path(obj, "status.completionTime")
        .and_then(Value::as_str)
        .and_then(objects::parse_time);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => super::age::human_duration(now.as_second() - s.as_second()),
        (Some(s), Some(e)) => super::age::human_duration(e.as_second() - s.as_second()),
    };
    let status = if has_true_condition(obj, "Complete") {
        "Complete"
    } else if has_true_condition(obj, "Failed") {
        "Failed"
    } else if objects::is_deleting(obj) {
        "Terminating"
    } else if has_true_condition(obj, "Suspended") {
        "Suspended"
    } else if has_true_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if has_true_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    vec![
        name,
        json!(status),
        json!(completions),
        json!(duration),
        age_s,
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-01-02T00:00:00Z".parse().expect("ts")
    }

    fn meta() -> Value {
        json!({"name": "web", "creationTimestamp": "2024-01-01T22:00:00Z"})
    }

    fn template() -> Value {
        json!({"spec": {"containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}})
    }

    #[test]
    fn deployment_row() {
        let d = json!({"metadata": meta(), "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
                       "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let c = cells(KindId::Deployment, &d, now()).expect("cells");
        assert_eq!(
            c,
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("120m"),
                json!("a,b"),
                json!("nginx:1,busybox"),
                json!("app=web")
            ]
        );
        assert_eq!(columns(KindId::Deployment).expect("cols").len(), c.len());
    }

    #[test]
    fn replicaset_daemonset_statefulset_rows() {
        let rs = json!({"metadata": meta(), "spec": {"replicas": 2, "template": template()}, "status": {"replicas": 2, "readyReplicas": 1}});
        assert_eq!(
            cells(KindId::ReplicaSet, &rs, now()).expect("rs")[1..4],
            [json!(2), json!(2), json!(1)]
        );
        let ds = json!({"metadata": meta(), "spec": {"template": {"spec": {"nodeSelector": {"os": "linux"}, "containers": []}}},
                        "status": {"desiredNumberScheduled": 3, "numberReady": 2}});
        let c = cells(KindId::DaemonSet, &ds, now()).expect("ds");
        assert_eq!(
            (c[1].clone(), c[3].clone(), c[6].clone()),
            (json!(3), json!(2), json!("os=linux"))
        );
        assert_eq!(columns(KindId::DaemonSet).expect("cols").len(), c.len());
        let sts = json!({"metadata": meta(), "spec": {"replicas": 1}, "status": {}});
        assert_eq!(
            cells(KindId::StatefulSet, &sts, now()).expect("sts")[1],
            json!("0/1")
        );
    }

    #[test]
    fn job_rows() {
        let running = json!({"metadata": meta(), "spec": {"completions": 3}, "status": {"succeeded": 1, "startTime": "2024-01-01T23:59:00Z"}});
        let c = cells(KindId::Job, &running, now()).expect("job");
        assert_eq!(c[1..4], [json!("Running"), json!("1/3"), json!("60s")]);
        let done = json!({"metadata": meta(), "spec": {"completions": 1}, "status": {"succeeded": 1,
            "startTime": "2024-01-01T23:00:00Z", "completionTime": "2024-01-01T23:00:30Z",
            "conditions": [{"type": "Complete", "status": "True"}]}});
        assert_eq!(
            cells(KindId::Job, &done, now()).expect("job")[1..4],
            [json!("Complete"), json!("1/1"), json!("30s")]
        );
        let par = json!({"metadata": meta(), "spec": {"parallelism": 4}, "status": {}});
        assert_eq!(
            cells(KindId::Job, &par, now()).expect("job")[2..4],
            [json!("0/1 of 4"), json!("")]
        );
    }

    #[test]
    fn cronjob_row() {
        let cj = json!({"metadata": meta(), "spec": {"schedule": "*/5 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": template()}}}, "status": {"active": [{}], "lastScheduleTime": "2024-01-01T23:55:00Z"}});
        let c = cells(KindId::CronJob, &cj, now()).expect("cj");
        assert_eq!(
            c[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m")
            ]
        );
        assert_eq!(columns(KindId::CronJob).expect("cols").len(), c.len());
    }
}
