//! Controller references (Kubernetes' `ControllerRefManager`): which objects a
//! controller owns, adopting matching orphans and releasing owned objects
//! that no longer match its selector. Decisions are pure; [`claim`] applies
//! them through the API with optimistic concurrency. Also the status write
//! every controller shares ([`patch_status`]: a merge patch of what changed).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::api::{Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{Error, KubeResultExt, is_not_found};

/// The controlling owner reference of an object, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controlling owner reference to `owner` (`controller` and
/// `blockOwnerDeletion` set), as `metav1.NewControllerRef` makes.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A label selector as Kubernetes evaluates it: `None` (a nil selector)
/// selects nothing, an empty selector selects everything.
#[derive(Clone, Debug)]
pub struct LabelMatcher(Option<Selector>);

impl LabelMatcher {
    /// Parses `selector` of the object `object` (for error messages).
    pub fn new(selector: Option<&LabelSelector>, object: &str) -> Result<Self, Error> {
        match selector {
            None => Ok(LabelMatcher(None)),
            Some(sel) => Selector::try_from(sel.clone())
                .map(|s| LabelMatcher(Some(s)))
                .map_err(|source| Error::Selector {
                    object: object.to_string(),
                    source,
                }),
        }
    }

    /// Matches a plain label map (`matchLabels` only, as Services use).
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        LabelMatcher(Some(labels.clone().into_iter().collect()))
    }

    /// True if these labels are selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        match &self.0 {
            None => false,
            Some(sel) => {
                let empty = BTreeMap::new();
                sel.matches(labels.unwrap_or(&empty))
            }
        }
    }

    /// True for a selector that selects every object (an empty one).
    pub fn selects_all(&self) -> bool {
        self.0.as_ref().is_some_and(Selector::selects_all)
    }
}

/// What a controller does with one candidate child (Kubernetes'
/// `ClaimObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still matching: keep it.
    Owned,
    /// An orphan that matches: adopt it.
    Adopt,
    /// Ours but no longer matching: release it.
    Release,
    /// Someone else's, or not for us: leave it alone.
    Ignore,
}

/// Decides the claim on `child` by the owner with `owner_uid`.
pub fn decide_claim(
    owner_uid: &str,
    owner_deleting: bool,
    owner_namespace: Option<&str>,
    child: &ObjectMeta,
    matches: bool,
) -> Claim {
    if let Some(r) = controller_of(child) {
        if r.uid != owner_uid {
            return Claim::Ignore;
        }
        if matches {
            return Claim::Owned;
        }
        return if owner_deleting {
            Claim::Ignore
        } else {
            Claim::Release
        };
    }
    if owner_deleting || !matches || child.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    if owner_namespace.is_some_and(|ns| !ns.is_empty() && Some(ns) != child.namespace.as_deref()) {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// A JSON merge patch adding `owner` to `child`'s owner references, guarded
/// by the child's resourceVersion.
pub fn adopt_patch(child: &ObjectMeta, owner: &OwnerReference) -> Value {
    let mut refs = child.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner.uid);
    refs.push(owner.clone());
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": child.resource_version}})
}

/// A JSON merge patch removing the reference to `owner_uid`, guarded by the
/// child's resourceVersion.
pub fn release_patch(child: &ObjectMeta, owner_uid: &str) -> Value {
    let refs: Vec<OwnerReference> = child
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    let refs = if refs.is_empty() {
        Value::Null
    } else {
        json!(refs)
    };
    json!({"metadata": {"ownerReferences": refs, "resourceVersion": child.resource_version}})
}

/// The owner side of a claim.
pub struct Owner<'a> {
    /// Controller reference children get.
    pub reference: OwnerReference,
    /// The owner's namespace.
    pub namespace: &'a str,
    /// True if the owner is being deleted.
    pub deleting: bool,
}

/// Claims `candidates` for `owner`: returns the children it owns after
/// adopting matching orphans and releasing non-matching ones. `can_adopt`
/// re-reads the owner from the API server before the first adoption (so a
/// deleted and re-created owner of the same name never adopts).
pub async fn claim<C, F, Fut>(
    api: &Api<C>,
    owner: &Owner<'_>,
    matcher: &LabelMatcher,
    candidates: Vec<Arc<C>>,
    can_adopt: F,
) -> Result<Vec<Arc<C>>, Error>
where
    C: Resource + Clone + DeserializeOwned + Debug,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<bool, Error>>,
{
    let mut owned = Vec::with_capacity(candidates.len());
    let mut can_adopt = Some(can_adopt);
    let mut adoption_allowed = None;
    for child in candidates {
        let decision = decide_claim(
            &owner.reference.uid,
            owner.deleting,
            Some(owner.namespace),
            child.meta(),
            matcher.matches(child.meta().labels.as_ref()),
        );
        let name = child.name_any();
        match decision {
            Claim::Owned => owned.push(child),
            Claim::Ignore => {}
            Claim::Release => {
                let patch = release_patch(child.meta(), &owner.reference.uid);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(e).ctx(|| {
                            format!(
                                "releasing {name} from {} {}",
                                owner.reference.kind, owner.reference.name
                            )
                        });
                    }
                }
            }
            Claim::Adopt => {
                let allowed = match adoption_allowed {
                    Some(a) => a,
                    None => {
                        let check = can_adopt.take().map(|f| f());
                        let a = match check {
                            Some(fut) => fut.await?,
                            None => false,
                        };
                        adoption_allowed = Some(a);
                        a
                    }
                };
                if !allowed {
                    continue;
                }
                let patch = adopt_patch(child.meta(), &owner.reference);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(updated) => owned.push(Arc::new(updated)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => {
                        return Err(e).ctx(|| {
                            format!(
                                "adopting {name} by {} {}",
                                owner.reference.kind, owner.reference.name
                            )
                        });
                    }
                }
            }
        }
    }
    Ok(owned)
}

/// Kubernetes' `RecheckDeletionTimestamp`: the owner may adopt only if a
/// fresh read shows the same UID and no deletion timestamp.
pub async fn owner_still_current<K>(api: &Api<K>, name: &str, uid: &str) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api
        .get_opt(name)
        .await
        .ctx(|| format!("re-reading {name} before adoption"))?
    {
        Some(fresh) => {
            Ok(fresh.meta().uid.as_deref() == Some(uid)
                && fresh.meta().deletion_timestamp.is_none())
        }
        None => Ok(false),
    }
}

/// Writes `new` as the status of `name` by a merge patch of what differs
/// from `old` (nothing when equal; an object that is gone is left alone).
/// `what` names the object for errors (`replicaset default/web`). Returns
/// whether it wrote.
pub async fn patch_status<K, S>(
    api: &Api<K>,
    name: &str,
    old: &S,
    new: &S,
    what: &str,
) -> Result<bool, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    S: serde::Serialize + PartialEq,
{
    if old == new {
        return Ok(false);
    }
    let to_json = |s: &S| {
        serde_json::to_value(s).map_err(|source| Error::Json {
            context: format!("serializing the status of {what}"),
            source,
        })
    };
    let diff = merge_diff(&to_json(old)?, &to_json(new)?);
    if diff.is_null() {
        return Ok(false);
    }
    match api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).ctx(|| format!("updating status of {what}")),
    }
}

/// An RFC 7386 JSON merge patch turning `old` into `new`: changed keys,
/// removed keys as `null`, arrays replaced whole. `Value::Null` if equal.
pub fn merge_diff(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            let mut patch = serde_json::Map::new();
            for (k, nv) in n {
                match o.get(k) {
                    Some(ov) if ov == nv => {}
                    Some(ov @ Value::Object(_)) if nv.is_object() => {
                        let sub = merge_diff(ov, nv);
                        if !sub.is_null() {
                            patch.insert(k.clone(), sub);
                        }
                    }
                    _ => {
                        patch.insert(k.clone(), nv.clone());
                    }
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                }
            }
            if patch.is_empty() {
                Value::Null
            } else {
                Value::Object(patch)
            }
        }
        _ if old == new => Value::Null,
        _ => new.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(refs: Option<Vec<OwnerReference>>) -> ObjectMeta {
        ObjectMeta {
            name: Some("child".into()),
            namespace: Some("default".into()),
            resource_version: Some("7".into()),
            owner_references: refs,
            ..ObjectMeta::default()
        }
    }

    fn oref(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("rs-{uid}"),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn claim_decisions_follow_kubernetes() {
        let ours = meta(Some(vec![oref("me", true)]));
        let theirs = meta(Some(vec![oref("other", true)]));
        let orphan = meta(None);
        let non_controller = meta(Some(vec![oref("me", false)]));
        let d = |m: &ObjectMeta, deleting, matches| {
            decide_claim("me", deleting, Some("default"), m, matches)
        };
        assert_eq!(d(&ours, false, true), Claim::Owned);
        assert_eq!(
            d(&ours, true, true),
            Claim::Owned,
            "owning needs no action, even while deleting"
        );
        assert_eq!(d(&ours, false, false), Claim::Release);
        assert_eq!(d(&ours, true, false), Claim::Ignore);
        assert_eq!(d(&theirs, false, true), Claim::Ignore);
        assert_eq!(d(&orphan, false, true), Claim::Adopt);
        assert_eq!(
            d(&non_controller, false, true),
            Claim::Adopt,
            "a non-controller reference is no controller"
        );
        assert_eq!(d(&orphan, true, true), Claim::Ignore);
        assert_eq!(d(&orphan, false, false), Claim::Ignore);
        let mut deleting_child = orphan.clone();
        deleting_child.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(d(&deleting_child, false, true), Claim::Ignore);
        assert_eq!(
            decide_claim("me", false, Some("other-ns"), &orphan, true),
            Claim::Ignore
        );
    }

    #[test]
    fn adopt_and_release_patches_keep_other_references() {
        let child = meta(Some(vec![oref("gc-owner", false)]));
        let patch = adopt_patch(&child, &oref("me", true));
        let refs = patch["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[1]["uid"], "me");
        assert_eq!(refs[1]["controller"], true);
        assert_eq!(patch["metadata"]["resourceVersion"], "7");

        let owned = meta(Some(vec![oref("gc-owner", false), oref("me", true)]));
        let patch = release_patch(&owned, "me");
        let refs = patch["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0]["uid"], "gc-owner");
        let only_us = meta(Some(vec![oref("me", true)]));
        assert_eq!(
            release_patch(&only_us, "me")["metadata"]["ownerReferences"],
            Value::Null
        );
    }

    #[test]
    fn nil_selector_selects_nothing_and_empty_selects_all() -> Result<(), Error> {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let nil = LabelMatcher::new(None, "rs x")?;
        assert!(!nil.matches(Some(&labels)));
        let empty = LabelMatcher::new(Some(&LabelSelector::default()), "rs x")?;
        assert!(empty.selects_all());
        assert!(empty.matches(Some(&labels)));
        assert!(empty.matches(None));
        let web = LabelMatcher::new(
            Some(&LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            }),
            "rs x",
        )?;
        assert!(web.matches(Some(&labels)));
        assert!(!web.matches(None));
        assert!(!web.selects_all());
        Ok(())
    }

    #[test]
    fn merge_diff_emits_changes_and_nulls() {
        let old = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2], "gone": true});
        let new = json!({"a": 1, "b": {"c": 2, "d": 4}, "e": [1], "added": "x"});
        assert_eq!(
            merge_diff(&old, &new),
            json!({"b": {"d": 4}, "e": [1], "gone": null, "added": "x"})
        );
        assert_eq!(merge_diff(&old, &old), Value::Null);
        assert_eq!(merge_diff(&json!(null), &json!({"a": 1})), json!({"a": 1}));
    }
}
