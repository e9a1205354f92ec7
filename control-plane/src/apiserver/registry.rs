//! The resource registry: built-in kinds plus the custom resources of
//! Established CRDs, looked up by (group, version, plural) or by kind.
//!
//! Custom entries are replaced as a whole per CRD whenever a CRD is
//! created, updated or deleted (see `crd`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use parking_lot::RwLock;

use super::kinds::{Resource, builtin_resources};
use super::resource::ResourceInfo;

/// Interns a string for the `&'static str` fields of [`super::resource::Subresource`].
/// CRD groups are few; each distinct string is leaked once.
pub fn intern(s: &str) -> &'static str {
    static TABLE: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(HashSet::new()));
    let mut guard = match table.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(existing) = guard.get(s) {
        return existing;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    guard.insert(leaked);
    leaked
}

/// One API group with its versions, preferred first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupVersions {
    /// Group name ("" for core).
    pub group: String,
    /// Versions in preference order.
    pub versions: Vec<String>,
}

/// Built-in and custom resources.
pub struct Registry {
    builtins: Vec<Arc<Resource>>,
    /// CRD name → its served versions.
    custom: RwLock<BTreeMap<String, Vec<Arc<Resource>>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with every built-in kind.
    pub fn new() -> Self {
        Registry {
            builtins: builtin_resources().into_iter().map(Arc::new).collect(),
            custom: RwLock::new(BTreeMap::new()),
        }
    }

    /// Every served resource: built-ins first, then custom resources.
    pub fn all(&self) -> Vec<Arc<Resource>> {
        let mut out = self.builtins.clone();
        for list in self.custom.read().values() {
            out.extend(list.iter().cloned());
        }
        out
    }

    /// The [`ResourceInfo`]s of every served resource (for OpenAPI).
    pub fn infos(&self) -> Vec<ResourceInfo> {
        self.all().iter().map(|r| r.info.clone()).collect()
    }

    /// Finds a resource by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Resource>> {
        let hit = |r: &&Arc<Resource>| {
            r.info.group == group && r.info.version == version && r.info.plural == plural
        };
        if let Some(r) = self.builtins.iter().find(hit) {
            return Some(r.clone());
        }
        self.custom
            .read()
            .values()
            .flat_map(|l| l.iter())
            .find(hit)
            .cloned()
    }

    /// Finds a built-in resource by plural in the given group (any version).
    pub fn builtin(&self, group: &str, plural: &str) -> Option<Arc<Resource>> {
        self.builtins
            .iter()
            .find(|r| r.info.group == group && r.info.plural == plural)
            .cloned()
    }

    /// True if a built-in or another CRD already serves `plural` or `kind`
    /// in `group`; returns the conflicting name.
    pub fn name_conflict(
        &self,
        crd_name: &str,
        group: &str,
        plural: &str,
        kind: &str,
    ) -> Option<String> {
        if let Some(r) = self
            .builtins
            .iter()
            .find(|r| r.info.group == group && (r.info.plural == plural || r.info.kind == kind))
        {
            return Some(if r.info.plural == plural {
                plural.to_string()
            } else {
                kind.to_string()
            });
        }
        let custom = self.custom.read();
        for (name, list) in custom.iter() {
            if name == crd_name {
                continue;
            }
            for r in list.iter().filter(|r| r.info.group == group) {
                if r.info.plural == plural {
                    return Some(plural.to_string());
                }
                if r.info.kind == kind {
                    return Some(kind.to_string());
                }
            }
        }
        None
    }

    /// Replaces the served versions of one CRD (empty = stop serving).
    pub fn set_custom(&self, crd_name: &str, resources: Vec<Resource>) {
        let mut custom = self.custom.write();
        if resources.is_empty() {
            custom.remove(crd_name);
        } else {
            custom.insert(
                crd_name.to_string(),
                resources.into_iter().map(Arc::new).collect(),
            );
        }
    }

    /// API groups other than core, in discovery order, with their versions.
    pub fn groups(&self) -> Vec<GroupVersions> {
        let mut out: Vec<GroupVersions> = Vec::new();
        for r in self.all() {
            if r.info.group.is_empty() {
                continue;
            }
            match out.iter_mut().find(|g| g.group == r.info.group) {
                Some(g) => {
                    if !g.versions.contains(&r.info.version) {
                        g.versions.push(r.info.version.clone());
                    }
                }
                None => out.push(GroupVersions {
                    group: r.info.group.clone(),
                    versions: vec![r.info.version.clone()],
                }),
            }
        }
        for g in &mut out {
            g.versions
                .sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        out
    }

    /// Resources served in one group version, in discovery order.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<Resource>> {
        self.all()
            .into_iter()
            .filter(|r| r.info.group == group && r.info.version == version)
            .collect()
    }
}

/// Kubernetes' version priority: GA > beta > alpha, then by number
/// (`v2` > `v1` > `v1beta2` > `v1beta1` > `v1alpha1`), then others.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    for (prefix, rank) in [("beta", 2u8), ("alpha", 1u8)] {
        if let Some(n) = tail.strip_prefix(prefix)
            && let Ok(minor) = n.parse::<u32>()
        {
            return (rank, major, minor);
        }
    }
    (0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_builtins() {
        let r = Registry::new();
        assert_eq!(
            r.lookup("apps", "v1", "deployments")
                .map(|d| d.info.kind.clone()),
            Some("Deployment".into())
        );
        assert!(r.lookup("apps", "v2", "deployments").is_none());
        assert!(r.lookup("", "v1", "deployments").is_none());
    }

    #[test]
    fn groups_in_order() {
        let names: Vec<String> = Registry::new()
            .groups()
            .into_iter()
            .map(|g| g.group)
            .collect();
        assert_eq!(
            names,
            [
                "apps",
                "batch",
                "coordination.k8s.io",
                "events.k8s.io",
                "node.k8s.io",
                "discovery.k8s.io",
                "apiextensions.k8s.io"
            ]
        );
    }

    #[test]
    fn version_priorities() {
        let mut v = vec!["v1alpha1", "v1", "v2beta1", "v1beta1", "v2", "foo"];
        v.sort_by_key(|x| std::cmp::Reverse(version_priority(x)));
        assert_eq!(v, ["v2", "v1", "v2beta1", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn intern_dedups() {
        let a = intern("example.com");
        let b = intern("example.com");
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn conflicts_with_builtins() {
        let r = Registry::new();
        assert_eq!(
            r.name_conflict("x", "apps", "deployments", "Foo"),
            Some("deployments".into())
        );
        assert_eq!(
            r.name_conflict("x", "example.com", "deployments", "Foo"),
            None
        );
    }
}
