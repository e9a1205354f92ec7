//! What every workload controller does with pods (Kubernetes' `podutil` /
//! `controller_utils`): the pure predicates (active, ready, available) and
//! building a pod from a template, then [`PodControl`], the thin shell that
//! creates and deletes a controller's pods and records the events users see
//! on the controller.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::error::{Error, KubeResultExt, api_message, is_namespace_terminating, is_not_found};
use super::events::{EventType, Recorder};
use super::expectations::Expectations;

/// `status.phase` of a pod, `Pending` when unset (as the API server defaults).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Kubernetes' `IsPodActive`: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let p = phase(pod);
    p != "Succeeded" && p != "Failed" && pod.metadata.deletion_timestamp.is_none()
}

/// True once `metadata.deletionTimestamp` is set.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's condition of this type, if reported.
pub fn condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// `Ready=True`.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (the Ready condition's transition time),
/// `None` if it is not ready or the time is unknown.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    condition(pod, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Kubernetes' `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) < now,
        None => false,
    }
}

/// How long until a ready pod becomes available, if it is ready but not yet
/// available (for requeueing).
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<SignedDuration> {
    let since = ready_since(pod)?;
    let at = since + SignedDuration::from_secs(i64::from(min_ready_seconds));
    (at >= now).then(|| at.duration_since(now))
}

/// Kubernetes' `GetPodFromTemplate`: a pod for `template` in `namespace`,
/// named by the server from `generate_name`, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    generate_name: &str,
    owner: Option<OwnerReference>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: meta.labels.filter(|l| !l.is_empty()),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Labels of an object, empty if unset.
pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Kubernetes' `RealPodControl`: creates and deletes the pods of one
/// controller, recording `SuccessfulCreate` / `FailedCreate` (`Error
/// creating: pods "web-x1" is forbidden: exceeded quota: ...`) and
/// `SuccessfulDelete` / `FailedDelete` events on the controller.
pub struct PodControl<'a, K> {
    /// Pods of the controller's namespace.
    pub api: &'a Api<Pod>,
    /// The controller's event recorder.
    pub recorder: &'a Recorder,
    /// The controller the events are about.
    pub owner: &'a K,
}

impl<K: Resource<DynamicType = ()>> PodControl<'_, K> {
    /// Creates `pod`, returning the name it got, or `None` when its
    /// namespace is being terminated (the controller then stops quietly).
    pub async fn create(&self, pod: &Pod) -> Result<Option<String>, kube::Error> {
        match self.api.create(&PostParams::default(), pod).await {
            Ok(created) => {
                let name = created.name_any();
                self.recorder.record(
                    self.owner,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {name}"),
                );
                Ok(Some(name))
            }
            Err(e) if is_namespace_terminating(&e) => Ok(None),
            Err(e) => {
                self.recorder.record(
                    self.owner,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating: {}", api_message(&e)),
                );
                Err(e)
            }
        }
    }

    /// Deletes the pod `name`; one already gone counts as deleted.
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<(), kube::Error> {
        match self.api.delete(name, params).await {
            Ok(_) => {
                self.recorder.record(
                    self.owner,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                self.recorder.record(
                    self.owner,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Error deleting: {}", api_message(&e)),
                );
                Err(e)
            }
        }
    }

    /// Deletes all of `names` concurrently; on failure, the first failed
    /// pod's name and error (the others were still attempted).
    pub async fn delete_all(
        &self,
        names: &[String],
        params: &DeleteParams,
    ) -> Result<(), (String, kube::Error)> {
        let results = join_all(names.iter().map(|n| self.delete(n, params))).await;
        match names
            .iter()
            .zip(results)
            .find_map(|(n, r)| r.err().map(|e| (n, e)))
        {
            Some((name, e)) => Err((name.clone(), e)),
            None => Ok(()),
        }
    }

    /// Deletes `victims` for the controller `key` (`namespace/name`),
    /// expecting its cache to see them go; a failure forgets the
    /// expectations, so the next sync looks again.
    pub async fn delete_expected(
        &self,
        expectations: &Expectations,
        key: &str,
        victims: &[Arc<Pod>],
        params: &DeleteParams,
    ) -> Result<(), Error> {
        if victims.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = victims.iter().map(|p| p.name_any()).collect();
        expectations.expect_deletions(key, names.clone());
        if let Err((name, e)) = self.delete_all(&names, params).await {
            expectations.forget(key);
            let kind = K::kind(&()).to_lowercase();
            return Err(e).ctx(|| format!("deleting pod {name} of {kind} {key}"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for pods in unit tests.
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A pod named `name` with a phase, optional node and Ready time.
    pub fn pod(name: &str, phase: &str, node: &str, ready_at: Option<Timestamp>) -> Pod {
        let conditions = ready_at.map(|t| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(t)),
                ..PodCondition::default()
            }]
        });
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions,
                ..PodStatus::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn active_excludes_finished_and_deleting_pods() {
        assert!(is_active(&pod("a", "Running", "n", None)));
        assert!(is_active(&pod("a", "Pending", "", None)));
        assert!(!is_active(&pod("a", "Succeeded", "n", None)));
        assert!(!is_active(&pod("a", "Failed", "n", None)));
        let mut deleting = pod("a", "Running", "n", None);
        deleting.metadata.deletion_timestamp = Some(Time(ts(10)));
        assert!(!is_active(&deleting));
        let mut no_status = pod("a", "Running", "n", None);
        no_status.status = None;
        assert_eq!(phase(&no_status), "Pending");
    }

    #[test]
    fn available_needs_min_ready_seconds_of_readiness() {
        let now = ts(1000);
        let ready = pod("a", "Running", "n", Some(ts(990)));
        assert!(is_ready(&ready));
        assert!(is_available(&ready, 0, now));
        assert!(is_available(&ready, 9, now));
        assert!(
            !is_available(&ready, 10, now),
            "exactly at the boundary is not yet available"
        );
        assert!(!is_available(&ready, 30, now));
        assert_eq!(
            until_available(&ready, 30, now),
            Some(SignedDuration::from_secs(20))
        );
        let not_ready = pod("b", "Running", "n", None);
        assert!(!is_available(&not_ready, 0, now));
    }

    #[test]
    fn pod_from_template_copies_metadata_and_sets_owner() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                name: Some("ignored".into()),
                ..ObjectMeta::default()
            }),
            spec: Some(Default::default()),
        };
        let owner = OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: "u1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let p = pod_from_template(&template, "ns1", "web-", Some(owner.clone()));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(p.metadata.name, None);
        assert_eq!(p.metadata.namespace.as_deref(), Some("ns1"));
        assert_eq!(
            labels(&p.metadata).get("app").map(String::as_str),
            Some("web")
        );
        assert_eq!(p.metadata.owner_references, Some(vec![owner]));
        assert!(p.spec.is_some());
    }
}
