//! Controller history as ControllerRevisions (Kubernetes' `history`
//! package), shared by the StatefulSet and DaemonSet controllers: a revision
//! stores the owner's pod template as a strategic-merge "replace" patch
//! (`{"spec": {"template": {…, "$patch": "replace"}}}`, exactly what
//! `kubectl rollout undo` applies back), is named `<owner>-<hash>` and
//! numbered; the newest number is the current template.
//!
//! The arithmetic is pure ([`new_revision`], [`equal`], [`to_truncate`]);
//! [`owned`], [`sync`] and [`truncate`] apply it through the API.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::deployment::hash::compute_hash;
use super::error::{Error, KubeResultExt, is_conflict, is_not_found};
use super::owners::{self, LabelMatcher, Owner, controller_ref};

/// Label on a StatefulSet's ControllerRevisions holding the revision's hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The revision data for `template`: `{"spec": {"template": {…, "$patch": "replace"}}}`.
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

/// `ControllerRevisionName`: the owner's name (cut to 223 characters) and hash.
pub fn revision_name(owner_name: &str, hash: &str) -> String {
    let prefix: String = owner_name.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The hash of a revision: the value of `hash_label`, else the name's suffix.
pub fn hash_of(rev: &ControllerRevision, hash_label: &str) -> Option<String> {
    rev.labels().get(hash_label).cloned().or_else(|| {
        rev.metadata
            .name
            .as_deref()
            .and_then(|n| n.rsplit_once('-'))
            .map(|(_, h)| h.to_string())
    })
}

/// The revision `owner`'s `template` would be stored as, numbered `number`
/// (`NewControllerRevision`): labelled with the template's labels plus
/// `hash_label`, carrying `annotations` (a DaemonSet's own), controlled by
/// the owner.
pub fn new_revision<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
    number: i64,
    collision_count: Option<i32>,
    hash_label: &str,
    annotations: Option<BTreeMap<String, String>>,
) -> ControllerRevision {
    let hash = compute_hash(template, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(hash_label.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&owner.name_any(), &hash)),
            namespace: owner.namespace(),
            labels: Some(labels),
            annotations: annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![controller_ref(owner)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(patch_data(template))),
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
/// (`truncateHistory` / `cleanupHistory`): oldest first, never one a pod or
/// the status uses.
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

/// The ControllerRevisions `owner` controls, adopting matching orphans and
/// releasing strays, sorted by revision number.
pub async fn owned<F, Fut>(
    rev_api: &Api<ControllerRevision>,
    owner: &Owner<'_>,
    matcher: &LabelMatcher,
    key: &str,
    can_adopt: F,
) -> Result<Vec<ControllerRevision>, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, Error>>,
{
    let all: Vec<Arc<ControllerRevision>> = rev_api
        .list(&ListParams::default())
        .await
        .ctx(|| format!("listing revisions for {key}"))?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut out: Vec<ControllerRevision> = owners::claim(rev_api, owner, matcher, all, can_adopt)
        .await?
        .into_iter()
        .map(|r| (*r).clone())
        .collect();
    out.sort_by_key(|r| r.revision);
    Ok(out)
}

/// Makes `candidate` (the owner's current template, numbered one past the
/// newest) the newest revision (`constructHistory` /
/// `getStatefulSetRevisions`): an equal revision that is already newest is
/// reused, an older equal one is renumbered, otherwise the candidate is
/// created. A name taken by different data is a hash collision: the owner's
/// `status.collisionCount` is bumped and the sync retried. `owned` (sorted by
/// number) is kept up to date.
pub async fn sync<K>(
    owner: &K,
    key: &str,
    rev_api: &Api<ControllerRevision>,
    owner_api: &Api<K>,
    owned: &mut Vec<ControllerRevision>,
    candidate: ControllerRevision,
    collision_count: Option<i32>,
) -> Result<ControllerRevision, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let latest = owned.last().map(|r| r.revision);
    if let Some(eq) = owned.iter().rev().find(|r| equal(r, &candidate)) {
        if Some(eq.revision) == latest {
            return Ok(eq.clone());
        }
        // An older revision is current again: renumber it as the newest.
        let name = eq.name_any();
        let renumbered = rev_api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"revision": candidate.revision})),
            )
            .await
            .ctx(|| format!("renumbering revision {name} of {key}"))?;
        if let Some(slot) = owned.iter_mut().find(|r| r.name_any() == name) {
            *slot = renumbered.clone();
        }
        owned.sort_by_key(|r| r.revision);
        return Ok(renumbered);
    }
    match rev_api.create(&PostParams::default(), &candidate).await {
        Ok(created) => {
            owned.push(created.clone());
            Ok(created)
        }
        Err(e) if is_conflict(&e) => {
            let name = candidate.name_any();
            let existing = rev_api
                .get(&name)
                .await
                .ctx(|| format!("reading revision {name} of {key}"))?;
            if equal(&existing, &candidate) {
                return Ok(existing);
            }
            // A hash collision: salt the next hash.
            let count = collision_count.unwrap_or(0) + 1;
            owner_api
                .patch_status(
                    &owner.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"collisionCount": count}})),
                )
                .await
                .ctx(|| format!("bumping collisionCount of {key}"))?;
            Err(Error::InvalidSpec {
                object: key.to_string(),
                message: format!(
                    "revision {name} collides with another template; retrying with collisionCount {count}"
                ),
            })
        }
        Err(e) => Err(e).ctx(|| format!("creating a revision for {key}")),
    }
}

/// Deletes the revisions [`to_truncate`] picks.
pub async fn truncate(
    rev_api: &Api<ControllerRevision>,
    key: &str,
    owned: &[ControllerRevision],
    live: &[&str],
    limit: i32,
) -> Result<(), Error> {
    for old in to_truncate(owned, live, limit) {
        let name = old.name_any();
        match rev_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx(|| format!("deleting old revision {name} of {key}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DaemonSet, StatefulSet};

    fn set(image: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        }))
        .expect("set")
    }

    fn revision(image: &str, number: i64, collisions: Option<i32>) -> ControllerRevision {
        let s = set(image);
        let template = s.spec.clone().map(|s| s.template).unwrap_or_default();
        new_revision(&s, &template, number, collisions, HASH_LABEL, None)
    }

    #[test]
    fn revisions_round_trip_and_compare_by_data() {
        let a = revision("x:1", 1, None);
        let name = a.metadata.name.clone().expect("name");
        assert!(name.starts_with("web-") && name.len() > 5, "{name}");
        let labels = a.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(Some(&name[4..]), labels.get(HASH_LABEL).map(String::as_str));
        assert_eq!(hash_of(&a, HASH_LABEL).as_deref(), Some(&name[4..]));
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
        let same = revision("x:1", 7, None);
        let other = revision("x:2", 2, None);
        assert!(equal(&a, &same));
        assert!(!equal(&a, &other));
        assert_ne!(a.metadata.name, other.metadata.name);
        assert_ne!(
            revision("x:1", 1, Some(1)).metadata.name,
            a.metadata.name,
            "collisions change the hash"
        );
        assert_eq!(next_number(&[a.clone(), other.clone()]), 3);
        assert_eq!(next_number(&[]), 1);
    }

    #[test]
    fn daemonset_revisions_carry_the_pod_hash_label_and_annotations() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u2",
                         "annotations": {"kubernetes.io/change-cause": "v2"}},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "a:2"}]}}}
        }))
        .expect("ds");
        let template = ds.spec.clone().map(|s| s.template).unwrap_or_default();
        let rev = new_revision(
            &ds,
            &template,
            2,
            None,
            "controller-revision-hash",
            ds.metadata.annotations.clone(),
        );
        let hash = compute_hash(&template, None);
        assert_eq!(rev.name_any(), format!("agent-{hash}"));
        assert_eq!(rev.namespace().as_deref(), Some("kube-system"));
        assert_eq!(
            rev.labels().get("controller-revision-hash"),
            Some(&hash),
            "the label daemon pods carry"
        );
        assert_eq!(
            rev.annotations()
                .get("kubernetes.io/change-cause")
                .map(String::as_str),
            Some("v2")
        );
        let owner = rev.owner_references()[0].clone();
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("DaemonSet", Some(true))
        );
        assert_eq!(rev.revision, 2);
    }

    #[test]
    fn truncation_keeps_live_and_newest() {
        let revs: Vec<ControllerRevision> = (1..=5)
            .map(|n| revision(&format!("x:{n}"), n, None))
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
