//! Defaulting, so that stored objects (and `kubectl get -o yaml`) look like
//! Kubernetes': the `SetDefaults_*` functions of each kind, plus what a
//! real server's registry strategies set on create (initial status, job
//! selectors, namespace finalizers).
//!
//! Pure functions over JSON. Service IP allocation is not here (it needs the
//! store): see `ipalloc`.

pub mod pods;
pub mod workloads;

use serde_json::{Value, json};

use super::kinds::{KindId, Resource};
use pods::set_default;

/// Applies the kind's defaults (on every create and update).
pub fn apply(res: &Resource, obj: &mut Value) {
    match res.id {
        KindId::Pod => {
            if let Some(spec) = obj.get_mut("spec") {
                pods::default_pod_spec(spec);
            }
        }
        KindId::Deployment | KindId::ReplicaSet | KindId::DaemonSet | KindId::StatefulSet => {
            workloads::default_workload(res.id, obj)
        }
        KindId::Job => workloads::default_job(obj),
        KindId::CronJob => workloads::default_cronjob(obj),
        KindId::Service => default_service(obj),
        KindId::Secret => default_secret(obj),
        KindId::Namespace => {
            if let Some(m) = obj.as_object_mut() {
                let status = m.entry("status").or_insert_with(|| json!({}));
                if let Some(s) = status.as_object_mut() {
                    set_default(s, "phase", json!("Active"));
                }
            }
            let name = super::objects::name(obj).to_string();
            let meta = super::objects::meta_mut(obj);
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        KindId::CustomResourceDefinition => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "conversion", json!({"strategy": "None"}));
            }
        }
        KindId::LimitRange => super::admission::limitranger::default_limit_range(obj),
        _ => {}
    }
}

/// Create-only preparation (Kubernetes' `PrepareForCreate` + admission):
/// initial status, pod admission defaults, job selectors, namespace finalizers.
pub fn prepare_for_create(res: &Resource, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    match res.id {
        KindId::Pod => {
            pods::admit_pod(obj);
            let status = pods::initial_status(obj);
            obj["status"] = status;
        }
        KindId::Namespace => {
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                s.insert("finalizers".into(), json!(["kubernetes"]));
            }
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        KindId::Node => {}
        KindId::Job => {
            workloads::job_selector(obj);
            obj["status"] = json!({});
        }
        KindId::CustomResourceDefinition => {
            m.remove("status");
        }
        _ if res.info.has_status_subresource => {
            m.insert("status".into(), json!({}));
        }
        _ => {}
    }
}

fn default_service(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "ExternalName" {
        return;
    }
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            set_default(p, "targetPort", port);
        }
    }
}

fn default_secret(obj: &mut Value) {
    use base64::Engine;
    let Some(m) = obj.as_object_mut() else { return };
    set_default(m, "type", json!("Opaque"));
    // stringData is write-only: merged into data, as the real API server does.
    if let Some(Value::Object(sd)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| json!({}));
        if let Some(d) = data.as_object_mut() {
            for (k, v) in sd {
                let s = v.as_str().unwrap_or_default();
                d.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::builtin_resources;

    fn res(plural: &str) -> Resource {
        builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == plural)
            .expect("resource")
    }

    #[test]
    fn service_defaults() {
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        apply(&res("services"), &mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        let mut np =
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": "http"}]}});
        apply(&res("services"), &mut np);
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["ports"][0]["targetPort"], "http");
    }

    #[test]
    fn secret_string_data_is_merged() {
        let mut s = json!({"stringData": {"user": "admin"}, "data": {"x": "eA=="}});
        apply(&res("secrets"), &mut s);
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"x": "eA==", "user": "YWRtaW4="}})
        );
    }

    #[test]
    fn namespace_create() {
        let mut ns = json!({"metadata": {"name": "team"}});
        prepare_for_create(&res("namespaces"), &mut ns);
        apply(&res("namespaces"), &mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team"
        );
    }

    #[test]
    fn pod_create_sets_pending_status() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}, "status": {"phase": "Running"}});
        prepare_for_create(&res("pods"), &mut pod);
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn status_is_cleared_on_create_for_split_kinds() {
        let mut d = json!({"spec": {}, "status": {"replicas": 5}});
        prepare_for_create(&res("deployments"), &mut d);
        assert_eq!(d["status"], json!({}));
        let mut cm = json!({"data": {}});
        prepare_for_create(&res("configmaps"), &mut cm);
        assert!(cm.get("status").is_none());
    }
}
