//! API discovery: legacy (`APIVersions`, `APIGroupList`, `APIGroup`,
//! `APIResourceList` with subresource entries) and aggregated
//! (`APIGroupDiscoveryList` v2 and v2beta1, labelled with the exact
//! Content-Type kubectl asked for).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::ApiState;
use super::errors::{ApiError, ApiResult};
use super::kinds::Resource;
use super::negotiate::{self, DiscoveryVersion, Endpoint, Output};
use super::path::ApiPath;
use super::registry::GroupVersions;

/// Serves a discovery path.
pub fn serve(state: &ApiState, p: &ApiPath, headers: &HeaderMap) -> ApiResult<Response> {
    let endpoint = match p {
        ApiPath::LegacyRoot | ApiPath::GroupsRoot => Endpoint::DiscoveryRoot,
        _ => Endpoint::Plain,
    };
    let out = negotiate::choose(headers, endpoint)?;
    let body = match (p, out) {
        (ApiPath::LegacyRoot, Output::Discovery(v)) => aggregated(state, v, true),
        (ApiPath::GroupsRoot, Output::Discovery(v)) => aggregated(state, v, false),
        (ApiPath::LegacyRoot, _) => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": state.config().advertise_address}],
        }),
        (ApiPath::GroupsRoot, _) => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": state.registry().groups().iter().map(api_group).collect::<Vec<_>>(),
        }),
        (ApiPath::Group(g), _) => {
            let groups = state.registry().groups();
            let found = groups
                .iter()
                .find(|x| &x.group == g)
                .ok_or_else(ApiError::path_not_found)?;
            let mut v = api_group(found);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        }
        (ApiPath::GroupVersion { group, version }, _) => {
            let list = state.registry().in_group_version(group, version);
            if list.is_empty() {
                return Err(ApiError::path_not_found());
            }
            resource_list(group, version, &list)
        }
        (ApiPath::Resource(_), _) => return Err(ApiError::path_not_found()),
    };
    Ok(negotiate::respond(StatusCode::OK, out, &body))
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn api_group(g: &GroupVersions) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(&g.group, v), "version": v}))
        .collect();
    json!({"name": g.group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

fn with_optional_lists(mut v: Value, r: &Resource) -> Value {
    if !r.info.short_names.is_empty() {
        v["shortNames"] = json!(r.info.short_names);
    }
    if !r.info.categories.is_empty() {
        v["categories"] = json!(r.info.categories);
    }
    v
}

/// The legacy `APIResourceList` of one group version.
pub fn resource_list(group: &str, version: &str, list: &[std::sync::Arc<Resource>]) -> Value {
    let mut resources = Vec::new();
    for r in list {
        let i = &r.info;
        resources.push(with_optional_lists(
            json!({"name": i.plural, "singularName": i.singular, "namespaced": i.namespaced(), "kind": i.kind, "verbs": i.verbs}),
            r,
        ));
        for s in &i.subresources {
            let mut e = json!({"name": format!("{}/{}", i.plural, s.name), "singularName": "", "namespaced": i.namespaced(),
                               "kind": s.kind, "verbs": s.verbs});
            if s.group != i.group || s.version != i.version {
                e["group"] = json!(s.group);
                e["version"] = json!(s.version);
            }
            resources.push(e);
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, version), "resources": resources})
}

fn discovery_resource(r: &Resource) -> Value {
    let i = &r.info;
    let subs: Vec<Value> = i
        .subresources
        .iter()
        .map(|s| {
            json!({"subresource": s.name, "responseKind": {"group": s.group, "version": s.version, "kind": s.kind}, "verbs": s.verbs})
        })
        .collect();
    let mut v = with_optional_lists(
        json!({
            "resource": i.plural,
            "responseKind": {"group": i.group, "version": i.version, "kind": i.kind},
            "scope": if i.namespaced() { "Namespaced" } else { "Cluster" },
            "singularResource": i.singular,
            "verbs": i.verbs,
        }),
        r,
    );
    if !subs.is_empty() {
        v["subresources"] = json!(subs);
    }
    v
}

fn aggregated(state: &ApiState, v: DiscoveryVersion, core: bool) -> Value {
    let reg = state.registry();
    let groups: Vec<GroupVersions> = if core {
        vec![GroupVersions {
            group: String::new(),
            versions: vec!["v1".into()],
        }]
    } else {
        reg.groups()
    };
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|ver| {
                    let rs: Vec<Value> = reg
                        .in_group_version(&g.group, ver)
                        .iter()
                        .map(|r| discovery_resource(r))
                        .collect();
                    json!({"version": ver, "resources": rs, "freshness": "Current"})
                })
                .collect();
            let meta = if g.group.is_empty() {
                json!({"creationTimestamp": null})
            } else {
                json!({"name": g.group, "creationTimestamp": null})
            };
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{}", v.as_str()), "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::Registry;

    #[test]
    fn apps_resource_list_has_scale_subresources() {
        let reg = Registry::new();
        let list = resource_list("apps", "v1", &reg.in_group_version("apps", "v1"));
        let rs = list["resources"].as_array().expect("resources");
        let scale = rs
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("scale entry");
        assert_eq!(
            (
                scale["group"].clone(),
                scale["version"].clone(),
                scale["kind"].clone()
            ),
            (json!("autoscaling"), json!("v1"), json!("Scale"))
        );
        let status = rs
            .iter()
            .find(|r| r["name"] == "deployments/status")
            .expect("status entry");
        assert!(status.get("group").is_none());
        let d = rs
            .iter()
            .find(|r| r["name"] == "deployments")
            .expect("deployments");
        assert_eq!(d["shortNames"], json!(["deploy"]));
        assert_eq!(d["categories"], json!(["all"]));
        assert_eq!(list["groupVersion"], "apps/v1");
    }

    #[test]
    fn core_list_has_pod_subresources() {
        let reg = Registry::new();
        let list = resource_list("", "v1", &reg.in_group_version("", "v1"));
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for n in [
            "pods",
            "pods/log",
            "pods/exec",
            "pods/attach",
            "pods/portforward",
            "pods/status",
            "pods/binding",
            "namespaces/finalize",
            "nodes/proxy",
        ] {
            assert!(names.contains(&n), "{n} missing");
        }
        assert_eq!(list["groupVersion"], "v1");
    }
}
