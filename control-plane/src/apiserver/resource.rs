//! One registry entry per kind: everything the generic handlers need to serve
//! a resource, as data. A new built-in kind or a CRD is a new `ResourceInfo`,
//! never a new handler.

use std::sync::Arc;

/// Whether objects live in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `/namespaces/{ns}/{plural}/{name}`.
    Namespaced,
    /// `/{plural}/{name}`.
    Cluster,
}

/// A subresource served under `/{plural}/{name}/{sub}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subresource {
    /// e.g. `status`, `scale`, `binding`, `log`, `exec`.
    pub name: &'static str,
    /// Group of the subresource's kind (`autoscaling` for `scale`), "" for core.
    pub group: &'static str,
    /// Version of the subresource's kind.
    pub version: &'static str,
    /// Kind it answers (`Scale`, `Binding`, or the parent's kind for `status`).
    pub kind: &'static str,
    /// Verbs, e.g. `["get","patch","update"]`.
    pub verbs: &'static [&'static str],
}

/// Everything the API server knows about one resource kind.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// API group; "" for core.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Pod`.
    pub kind: String,
    /// List kind, e.g. `PodList`.
    pub list_kind: String,
    /// Plural resource name in URLs, e.g. `pods`.
    pub plural: String,
    /// Singular name, e.g. `pod`.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub scope: Scope,
    /// kubectl short names, e.g. `["po"]`.
    pub short_names: Vec<String>,
    /// Categories, e.g. `["all"]`.
    pub categories: Vec<String>,
    /// Verbs on the collection and objects.
    pub verbs: Vec<&'static str>,
    /// Served subresources.
    pub subresources: Vec<Subresource>,
    /// True if `.spec` and `.status` are split: main-resource writes ignore
    /// `.status` and `/status` writes ignore everything but `.status`.
    pub has_status_subresource: bool,
    /// For custom resources: the structural OpenAPI v3 schema of this version.
    pub crd_schema: Option<Arc<serde_json::Value>>,
}

impl ResourceInfo {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True for namespaced kinds.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }
}
