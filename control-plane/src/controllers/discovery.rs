//! Which resource kinds the API server serves, for controllers that must
//! handle every kind (garbage collector, namespace deletion), custom
//! resources included.

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope};

use super::error::{Error, KubeResultExt};

/// One served resource kind.
#[derive(Clone, Debug)]
pub struct Kind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// True for namespaced kinds.
    pub namespaced: bool,
    /// Verbs it supports.
    pub verbs: Vec<String>,
}

impl Kind {
    /// True if every one of `verbs` is supported.
    pub fn supports(&self, verbs: &[&str]) -> bool {
        verbs.iter().all(|v| self.verbs.iter().any(|s| s == v))
    }

    /// `group/version/plural`, unique per kind version.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.resource.group, self.resource.version, self.resource.plural
        )
    }
}

/// Every kind in each group's preferred version (sub-resources excluded).
pub async fn served_kinds(client: &Client) -> Result<Vec<Kind>, Error> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .ctx(|| "discovering API resources".into())?;
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            kinds.push(kind_of(resource, &caps));
        }
    }
    Ok(kinds)
}

fn kind_of(resource: ApiResource, caps: &ApiCapabilities) -> Kind {
    Kind {
        namespaced: caps.scope == Scope::Namespaced,
        verbs: caps.operations.clone(),
        resource,
    }
}

/// `apiVersion` split into group and version (`v1` → `("", "v1")`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(
            split_api_version("stable.example.com/v1beta1"),
            ("stable.example.com", "v1beta1")
        );
    }
}
