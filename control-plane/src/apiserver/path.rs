//! Parsing of API paths: `/api`, `/apis`, `/apis/{g}`, `/api/v1`,
//! `/apis/{g}/{v}` and `[/watch][/namespaces/{ns}]/{plural}[/{name}[/{sub}]]`
//! under both, following Kubernetes' `RequestInfoFactory` (including
//! `namespaces/{name}/status|finalize` as namespace subresources).

use percent_encoding::percent_decode_str;

/// A parsed API path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiPath {
    /// `/api`
    LegacyRoot,
    /// `/apis`
    GroupsRoot,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    GroupVersion {
        /// Group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource request.
    Resource(ResourcePath),
}

/// The resource part of a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from `/namespaces/{ns}/…`.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, …).
    pub subresource: Option<String>,
    /// Remaining segments after the subresource (e.g. proxy paths).
    pub rest: Vec<String>,
    /// True for the legacy `/watch/` prefix.
    pub watch_prefix: bool,
}

fn decode(seg: &str) -> String {
    percent_decode_str(seg).decode_utf8_lossy().into_owned()
}

/// Parses a request path; `None` if it is not an API path.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segs: Vec<String> = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(decode)
        .collect();
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") => match segs.len() {
            1 => return Some(ApiPath::LegacyRoot),
            _ => (String::new(), segs[1].clone(), &segs[2..]),
        },
        Some("apis") => match segs.len() {
            1 => return Some(ApiPath::GroupsRoot),
            2 => return Some(ApiPath::Group(segs[1].clone())),
            _ => (segs[1].clone(), segs[2].clone(), &segs[3..]),
        },
        _ => return None,
    };
    if group.is_empty() && segs.first().map(String::as_str) == Some("apis") {
        return None;
    }
    if rest.is_empty() {
        return Some(ApiPath::GroupVersion { group, version });
    }
    let mut parts: &[String] = rest;
    let mut watch_prefix = false;
    if parts[0] == "watch" {
        watch_prefix = true;
        parts = &parts[1..];
    }
    let mut namespace = None;
    if parts.first().map(String::as_str) == Some("namespaces") && parts.len() > 1 {
        namespace = Some(parts[1].clone());
        if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
            parts = &parts[2..];
        } else {
            // `/namespaces/{name}[/status|finalize]` addresses the namespace itself.
            return Some(ApiPath::Resource(ResourcePath {
                group,
                version,
                namespace: None,
                plural: "namespaces".into(),
                name: namespace,
                subresource: parts.get(2).cloned(),
                rest: Vec::new(),
                watch_prefix,
            }));
        }
    }
    if parts.is_empty() || parts.iter().any(String::is_empty) {
        return None;
    }
    Some(ApiPath::Resource(ResourcePath {
        group,
        version,
        namespace,
        plural: parts[0].clone(),
        name: parts.get(1).cloned(),
        subresource: parts.get(2).cloned(),
        rest: parts.get(3..).map(|r| r.to_vec()).unwrap_or_default(),
        watch_prefix,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> ResourcePath {
        match parse(p) {
            Some(ApiPath::Resource(r)) => r,
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn roots_and_group_versions() {
        assert_eq!(parse("/api"), Some(ApiPath::LegacyRoot));
        assert_eq!(parse("/api/"), Some(ApiPath::LegacyRoot));
        assert_eq!(parse("/apis"), Some(ApiPath::GroupsRoot));
        assert_eq!(parse("/apis/apps"), Some(ApiPath::Group("apps".into())));
        assert_eq!(
            parse("/api/v1"),
            Some(ApiPath::GroupVersion {
                group: "".into(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(ApiPath::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        assert_eq!(parse("/healthz"), None);
    }

    #[test]
    fn namespaced_resources() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(
            (
                r.plural.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("pods", Some("web"), Some("status"))
        );
        let r = res("/apis/apps/v1/namespaces/x/deployments");
        assert_eq!(
            (r.group.as_str(), r.plural.as_str(), r.name.clone()),
            ("apps", "deployments", None)
        );
        let r = res("/api/v1/pods");
        assert_eq!((r.namespace.clone(), r.plural.as_str()), (None, "pods"));
    }

    #[test]
    fn namespaces_themselves() {
        let r = res("/api/v1/namespaces");
        assert_eq!((r.plural.as_str(), r.name.clone()), ("namespaces", None));
        let r = res("/api/v1/namespaces/team");
        assert_eq!(
            (r.plural.as_str(), r.name.as_deref(), r.namespace.clone()),
            ("namespaces", Some("team"), None)
        );
        let r = res("/api/v1/namespaces/team/finalize");
        assert_eq!(
            (r.name.as_deref(), r.subresource.as_deref()),
            (Some("team"), Some("finalize"))
        );
    }

    #[test]
    fn legacy_watch_and_escapes() {
        let r = res("/api/v1/watch/namespaces/default/pods/web");
        assert!(r.watch_prefix);
        assert_eq!(r.name.as_deref(), Some("web"));
        let r = res("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aadmin");
        assert_eq!(r.name.as_deref(), Some("system:admin"));
        let r = res("/api/v1/namespaces/d/pods/p/proxy/a/b");
        assert_eq!(r.rest, vec!["a", "b"]);
    }
}
