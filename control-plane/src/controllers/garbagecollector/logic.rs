//! The garbage collector's decisions (Kubernetes' `attemptToDeleteItem`,
//! `processDeletingDependentsItem` and orphaning), as pure functions of what
//! is known about an object and its owners.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// Finalizer of an owner deleted with `propagationPolicy: Orphan`.
pub const ORPHAN: &str = "orphan";
/// Finalizer of an owner deleted with `propagationPolicy: Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";

/// What the collector found for one owner reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists (same UID) and is not waiting for its dependents.
    Solid,
    /// The owner is gone, or a different object now has its name.
    Dangling,
    /// The owner is being deleted in the foreground: dependents go first.
    Waiting,
    /// The owner's kind is unknown to discovery: leave the object alone.
    Unknown,
}

/// How to delete an object, as a `propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Delete dependents in the background.
    Background,
    /// Delete dependents first.
    Foreground,
    /// Keep dependents.
    Orphan,
}

impl Propagation {
    /// The policy as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
            Propagation::Orphan => "Orphan",
        }
    }
}

/// What to do with an object whose owners were examined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it as it is.
    Keep,
    /// Keep it but drop these owner references (by UID): dangling ones, or
    /// owners waiting in the foreground while another owner is solid.
    RemoveOwners(Vec<String>),
    /// Delete it with this policy.
    Delete(Propagation),
}

/// Kubernetes' `attemptToDeleteItem` decision for an object that is not
/// itself being deleted. `finalizers` are the object's own.
pub fn attempt_to_delete(
    owners: &[(OwnerReference, OwnerState)],
    finalizers: &[String],
    has_dependents: bool,
) -> Verdict {
    if owners.is_empty() || owners.iter().any(|(_, s)| *s == OwnerState::Unknown) {
        return Verdict::Keep;
    }
    let solid = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Solid)
        .count();
    let waiting = owners
        .iter()
        .filter(|(_, s)| *s == OwnerState::Waiting)
        .count();
    if solid > 0 {
        let remove: Vec<String> = owners
            .iter()
            .filter(|(_, s)| matches!(s, OwnerState::Dangling | OwnerState::Waiting))
            .map(|(r, _)| r.uid.clone())
            .collect();
        return if remove.is_empty() {
            Verdict::Keep
        } else {
            Verdict::RemoveOwners(remove)
        };
    }
    if waiting > 0 && has_dependents {
        // Its own dependents must go before it, so that the owner waiting
        // in the foreground sees the whole tree deleted first.
        return Verdict::Delete(Propagation::Foreground);
    }
    let policy = if finalizers.iter().any(|f| f == ORPHAN) {
        Propagation::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Verdict::Delete(policy)
}

/// The owner reference list after removing references to `uids`; `None`
/// when nothing would change.
pub fn without_owners(refs: &[OwnerReference], uids: &[String]) -> Option<Vec<OwnerReference>> {
    let kept: Vec<OwnerReference> = refs
        .iter()
        .filter(|r| !uids.contains(&r.uid))
        .cloned()
        .collect();
    (kept.len() != refs.len()).then_some(kept)
}

/// The finalizer list without `finalizer`; `None` when it is not there.
pub fn without_finalizer(finalizers: &[String], finalizer: &str) -> Option<Vec<String>> {
    finalizers.iter().any(|f| f == finalizer).then(|| {
        finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect()
    })
}

/// True if a dependent's reference to `owner_uid` blocks the owner's
/// foreground deletion.
pub fn blocks_owner(refs: &[OwnerReference], owner_uid: &str) -> bool {
    refs.iter()
        .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    #[test]
    fn objects_with_a_solid_owner_survive_and_shed_dead_references() {
        use OwnerState::*;
        assert_eq!(
            attempt_to_delete(&[(r("a"), Solid)], &[], false),
            Verdict::Keep
        );
        assert_eq!(
            attempt_to_delete(
                &[(r("a"), Solid), (r("b"), Dangling), (r("c"), Waiting)],
                &[],
                true
            ),
            Verdict::RemoveOwners(vec!["b".into(), "c".into()])
        );
        assert_eq!(attempt_to_delete(&[], &[], false), Verdict::Keep);
        assert_eq!(
            attempt_to_delete(&[(r("a"), Dangling), (r("b"), Unknown)], &[], false),
            Verdict::Keep
        );
    }

    #[test]
    fn orphaned_objects_are_deleted_with_the_right_policy() {
        use OwnerState::*;
        assert_eq!(
            attempt_to_delete(&[(r("a"), Dangling)], &[], false),
            Verdict::Delete(Propagation::Background)
        );
        assert_eq!(
            attempt_to_delete(&[(r("a"), Waiting)], &[], true),
            Verdict::Delete(Propagation::Foreground),
            "a waiting owner's dependent with its own dependents goes in the foreground"
        );
        assert_eq!(
            attempt_to_delete(&[(r("a"), Waiting)], &[], false),
            Verdict::Delete(Propagation::Background)
        );
        assert_eq!(
            attempt_to_delete(&[(r("a"), Dangling)], &[ORPHAN.to_string()], false),
            Verdict::Delete(Propagation::Orphan)
        );
        assert_eq!(
            attempt_to_delete(&[(r("a"), Dangling)], &[FOREGROUND.to_string()], false),
            Verdict::Delete(Propagation::Foreground)
        );
    }

    #[test]
    fn list_edits() {
        let refs = vec![r("a"), r("b")];
        assert_eq!(
            without_owners(&refs, &["a".into()]).map(|v| v.len()),
            Some(1)
        );
        assert_eq!(without_owners(&refs, &["z".into()]), None);
        let fins = vec!["orphan".to_string(), "x".to_string()];
        assert_eq!(
            without_finalizer(&fins, ORPHAN),
            Some(vec!["x".to_string()])
        );
        assert_eq!(without_finalizer(&fins, FOREGROUND), None);
        let mut nb = r("a");
        nb.block_owner_deletion = None;
        assert!(blocks_owner(&refs, "a"));
        assert!(!blocks_owner(&[nb], "a"));
        assert_eq!(Propagation::Foreground.as_str(), "Foreground");
    }
}
