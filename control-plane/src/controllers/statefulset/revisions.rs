//! StatefulSet history as ControllerRevisions (Kubernetes' `history`
//! package): a revision stores the pod template as a strategic-merge
//! "replace" patch of the set, is named `<set>-<hash>`, and is numbered; the
//! set's status names its current and update revisions. Pure functions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::controllers::deployment::hash::compute_hash;
use crate::controllers::owners::controller_ref;

/// Label on ControllerRevisions holding the revision's hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// A revision as the controller uses it: its name and pod template.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// `<set>-<hash>`; pods carry it in `controller-revision-hash`.
    pub name: String,
    /// The pod template of this revision.
    pub template: PodTemplateSpec,
}

/// The revision data of a set: `{"spec": {"template": {…, "$patch": "replace"}}}`.
pub fn patch_data(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template stored in a revision, if its data holds one.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// `ControllerRevisionName`: the set's name (cut to 223 characters) and hash.
pub fn revision_name(set_name: &str, hash: &str) -> String {
    let prefix: String = set_name.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The revision the set's current template would be stored as, numbered
/// `number` (`newRevision`).
pub fn new_revision(
    set: &StatefulSet,
    number: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let template = set
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let hash = compute_hash(&template, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&set.name_any(), &hash)),
            namespace: set.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(patch_data(&template))),
        revision: number,
    }
}

/// True if two revisions store the same data (`FindEqualRevisions`).
pub fn equal(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// The next revision number after `revisions` (1 for none).
pub fn next_number(revisions: &[ControllerRevision]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Non-live revisions to delete so that at most `limit` remain
/// (`truncateHistory`): oldest first, never one a pod or the status uses.
pub fn to_truncate<'a>(
    revisions: &'a [ControllerRevision],
    live: &[&str],
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let mut history: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(&r.name_any().as_str()))
        .collect();
    history.sort_by_key(|r| r.revision);
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = history.len().saturating_sub(keep);
    history.truncate(excess);
    history
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .expect("set")
    }

    #[test]
    fn revisions_round_trip_and_compare_by_data() {
        let a = new_revision(&set("x:1"), 1, None);
        let name = a.metadata.name.clone().expect("name");
        assert!(name.starts_with("web-") && name.len() > 5, "{name}");
        let labels = a.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(Some(&name[4..]), labels.get(HASH_LABEL).map(String::as_str));
        assert_eq!(
            a.data
                .as_ref()
                .map(|d| d.0["spec"]["template"]["$patch"].clone()),
            Some(json!("replace"))
        );
        let t = template_of(&a).expect("template");
        assert_eq!(
            t.spec.expect("spec").containers[0].image.as_deref(),
            Some("x:1")
        );
        let same = new_revision(&set("x:1"), 7, None);
        let other = new_revision(&set("x:2"), 2, None);
        assert!(equal(&a, &same));
        assert!(!equal(&a, &other));
        assert_ne!(a.metadata.name, other.metadata.name);
        assert_ne!(
            new_revision(&set("x:1"), 1, Some(1)).metadata.name,
            a.metadata.name,
            "collisions change the hash"
        );
        assert_eq!(next_number(&[a.clone(), other.clone()]), 3);
        assert_eq!(next_number(&[]), 1);
    }

    #[test]
    fn truncation_keeps_live_and_newest() {
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|n| new_revision(&set(&format!("x:{n}")), n, None))
            .collect();
        let live_name = revs[0].name_any();
        let gone = to_truncate(&revs, &[live_name.as_str()], 2);
        let numbers: Vec<i64> = gone.iter().map(|r| r.revision).collect();
        assert_eq!(
            numbers,
            vec![2, 3],
            "oldest non-live first; revision 1 is live"
        );
        assert!(to_truncate(&revs, &[], 10).is_empty());
    }
}
