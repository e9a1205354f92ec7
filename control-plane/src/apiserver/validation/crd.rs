//! CustomResourceDefinition validation (apiextensions.k8s.io/v1): names,
//! scope, versions, storage version and required schemas.

use std::collections::HashSet;

use serde_json::Value;

use super::FieldErr;
use super::meta::{dns1035_label, dns1123_subdomain};
use crate::apiserver::objects;

/// Validates a CRD; on update, group, names.plural and scope are immutable.
pub fn validate_crd(obj: &Value, old: Option<&Value>) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let group = objects::path_str(obj, "spec.group");
    let plural = objects::path_str(obj, "spec.names.plural");
    let kind = objects::path_str(obj, "spec.names.kind");
    if group.is_empty() {
        errs.push(FieldErr::required("spec.group", ""));
    } else {
        for m in dns1123_subdomain(group) {
            errs.push(FieldErr::invalid("spec.group", group, &m));
        }
        if !group.contains('.') {
            errs.push(FieldErr::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    if plural.is_empty() {
        errs.push(FieldErr::required("spec.names.plural", ""));
    } else {
        for m in dns1035_label(plural) {
            errs.push(FieldErr::invalid("spec.names.plural", plural, &m));
        }
    }
    let singular = objects::path_str(obj, "spec.names.singular");
    if !singular.is_empty() {
        for m in dns1035_label(singular) {
            errs.push(FieldErr::invalid("spec.names.singular", singular, &m));
        }
    }
    if kind.is_empty() {
        errs.push(FieldErr::required("spec.names.kind", ""));
    }
    let expected = format!("{plural}.{group}");
    let name = objects::name(obj);
    if !plural.is_empty() && !group.is_empty() && name != expected {
        errs.push(FieldErr::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = objects::path_str(obj, "spec.scope");
    if !["Namespaced", "Cluster"].contains(&scope) {
        if scope.is_empty() {
            errs.push(FieldErr::required("spec.scope", ""));
        } else {
            errs.push(FieldErr::not_supported(
                "spec.scope",
                scope,
                &["Cluster", "Namespaced"],
            ));
        }
    }
    let versions = objects::path(obj, "spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldErr::invalid(
            "spec.versions",
            Value::Null,
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldErr::invalid(
                "spec.versions",
                Value::Null,
                "must have exactly one version marked as storage version",
            ));
        }
        let mut seen = HashSet::new();
        for (i, v) in versions.iter().enumerate() {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
            let path = format!("spec.versions[{i}]");
            if vname.is_empty() {
                errs.push(FieldErr::required(&format!("{path}.name"), ""));
            } else if !seen.insert(vname) {
                errs.push(FieldErr::duplicate(&format!("{path}.name"), vname));
            }
            if v.get("served").and_then(Value::as_bool).is_none() {
                errs.push(FieldErr::required(&format!("{path}.served"), ""));
            }
            let schema = v.get("schema").and_then(|s| s.get("openAPIV3Schema"));
            match schema {
                None => errs.push(FieldErr::required(
                    &format!("{path}.schema.openAPIV3Schema"),
                    "schemas are required",
                )),
                Some(s) if s.get("type").and_then(Value::as_str) != Some("object") => {
                    errs.push(FieldErr::invalid(
                        &format!("{path}.schema.openAPIV3Schema.type"),
                        s.get("type").cloned().unwrap_or(Value::Null),
                        "must be object at the root",
                    ))
                }
                Some(_) => {}
            }
        }
    }
    if let Some(old) = old {
        if objects::is_deleting(old) {
            return errs;
        }
        for f in ["spec.group", "spec.names.plural", "spec.scope"] {
            let (n, o) = (objects::path_str(obj, f), objects::path_str(old, f));
            if n != o {
                errs.push(FieldErr::immutable(f, n));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd() -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
    }

    #[test]
    fn valid_crd_passes() {
        assert!(validate_crd(&crd(), None).is_empty());
    }

    #[test]
    fn name_must_be_plural_dot_group() {
        let mut c = crd();
        c["metadata"]["name"] = json!("gadgets.example.com");
        let errs = validate_crd(&c, None);
        assert_eq!(
            errs[0].message(),
            "Invalid value: \"gadgets.example.com\": must be spec.names.plural+\".\"+spec.group"
        );
    }

    #[test]
    fn exactly_one_storage_version_and_schema() {
        let mut c = crd();
        c["spec"]["versions"] = json!([{"name": "v1", "served": true, "storage": false}]);
        let f: Vec<String> = validate_crd(&c, None)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            f,
            ["spec.versions", "spec.versions[0].schema.openAPIV3Schema"]
        );
    }

    #[test]
    fn group_and_scope_are_immutable() {
        let mut c = crd();
        c["spec"]["scope"] = json!("Cluster");
        let errs = validate_crd(&c, Some(&crd()));
        assert_eq!(errs[0].field, "spec.scope");
    }
}
