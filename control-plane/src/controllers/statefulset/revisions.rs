//! StatefulSet history: the set's template stored as ControllerRevisions
//! through the shared [`history`](crate::controllers::history) helpers,
//! labelled `controller.kubernetes.io/hash`; the set's status names its
//! current and update revisions, and pods carry the revision's name in
//! `controller-revision-hash`.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::controllers::history;
pub use crate::controllers::history::{HASH_LABEL, template_of};

/// A revision as the controller uses it: its name and pod template.
#[derive(Clone, Debug, PartialEq)]
pub struct Revision {
    /// `<set>-<hash>`; pods carry it in `controller-revision-hash`.
    pub name: String,
    /// The pod template of this revision.
    pub template: PodTemplateSpec,
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
    history::new_revision(set, &template, number, collision_count, HASH_LABEL, None)
}
