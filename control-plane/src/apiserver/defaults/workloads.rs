//! Defaults of apps/v1 and batch/v1 workloads (`SetDefaults_Deployment`,
//! `_ReplicaSet`, `_DaemonSet`, `_StatefulSet`, `_Job`, `_CronJob`) and the
//! selector a Job gets on create.

use serde_json::{Value, json};

use super::pods::{default_template, set_default};
use crate::apiserver::kinds::KindId;
use crate::apiserver::objects;

/// Defaults for Deployments, ReplicaSets, DaemonSets and StatefulSets.
pub fn default_workload(id: KindId, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    match id {
        KindId::Deployment => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "strategy", json!({}));
            if let Some(st) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
                set_default(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                        set_default(ru, "maxUnavailable", json!("25%"));
                        set_default(ru, "maxSurge", json!("25%"));
                    }
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
        }
        KindId::ReplicaSet => set_default(spec, "replicas", json!(1)),
        KindId::DaemonSet => {
            set_default(spec, "updateStrategy", json!({}));
            if let Some(st) = spec
                .get_mut("updateStrategy")
                .and_then(Value::as_object_mut)
            {
                set_default(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                        set_default(ru, "maxUnavailable", json!(1));
                        set_default(ru, "maxSurge", json!(0));
                    }
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
        }
        KindId::StatefulSet => {
            set_default(spec, "replicas", json!(1));
            set_default(spec, "podManagementPolicy", json!("OrderedReady"));
            set_default(spec, "updateStrategy", json!({}));
            if let Some(st) = spec
                .get_mut("updateStrategy")
                .and_then(Value::as_object_mut)
            {
                set_default(st, "type", json!("RollingUpdate"));
                if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                    set_default(st, "rollingUpdate", json!({}));
                    if let Some(ru) = st.get_mut("rollingUpdate").and_then(Value::as_object_mut) {
                        set_default(ru, "partition", json!(0));
                    }
                }
            }
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        _ => {}
    }
    default_template(spec.get_mut("template"));
}

fn default_job_spec(spec: &mut serde_json::Map<String, Value>) {
    let has_completions = spec.get("completions").is_some_and(|v| !v.is_null());
    let has_parallelism = spec.get("parallelism").is_some_and(|v| !v.is_null());
    if !has_completions && !has_parallelism {
        spec.insert("completions".into(), json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec.get("podFailurePolicy").is_none() {
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    }
    default_template(spec.get_mut("template"));
}

/// Defaults for Jobs.
pub fn default_job(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        default_job_spec(spec);
    }
}

/// Defaults for CronJobs (pod template defaults inside the job template).
pub fn default_cronjob(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "concurrencyPolicy", json!("Allow"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "successfulJobsHistoryLimit", json!(3));
    set_default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(js) = spec.get_mut("jobTemplate").and_then(|t| t.get_mut("spec")) {
        default_template(js.get_mut("template"));
    }
}

/// A new Job's generated selector and template labels (unless
/// `spec.manualSelector` is true). Needs `metadata.uid` and `name` set.
pub fn job_selector(obj: &mut Value) {
    let uid = objects::uid(obj).to_string();
    let name = objects::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    let meta = objects::meta_mut(template);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
        l.insert("batch.kubernetes.io/job-name".into(), json!(name));
        l.insert("controller-uid".into(), json!(uid));
        l.insert("job-name".into(), json!(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx"}]}}}});
        default_workload(KindId::Deployment, &mut d);
        let s = &d["spec"];
        assert_eq!(s["replicas"], 1);
        assert_eq!(
            s["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(s["revisionHistoryLimit"], 10);
        assert_eq!(s["progressDeadlineSeconds"], 600);
        assert_eq!(s["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            s["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        let mut r = json!({"spec": {"strategy": {"type": "Recreate"}}});
        default_workload(KindId::Deployment, &mut r);
        assert!(r["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn daemonset_and_statefulset_defaults() {
        let mut ds = json!({"spec": {}});
        default_workload(KindId::DaemonSet, &mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"],
            json!({"maxUnavailable": 1, "maxSurge": 0})
        );
        let mut sts = json!({"spec": {}});
        default_workload(KindId::StatefulSet, &mut sts);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
    }

    #[test]
    fn job_defaults_and_selector() {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u1"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": []}}}});
        default_job(&mut j);
        job_selector(&mut j);
        let s = &j["spec"];
        assert_eq!(
            (
                s["completions"].clone(),
                s["parallelism"].clone(),
                s["backoffLimit"].clone()
            ),
            (json!(1), json!(1), json!(6))
        );
        assert_eq!(
            s["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u1"
        );
        assert_eq!(s["template"]["metadata"]["labels"]["job-name"], "pi");
        let mut p = json!({"spec": {"parallelism": 3}});
        default_job(&mut p);
        assert!(p["spec"].get("completions").is_none());
    }

    #[test]
    fn cronjob_defaults() {
        let mut c = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}});
        default_cronjob(&mut c);
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
            "ClusterFirst"
        );
    }
}
