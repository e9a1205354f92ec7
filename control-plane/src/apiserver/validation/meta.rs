//! Name, label and annotation validation with Kubernetes' exact messages
//! (`k8s.io/apimachinery/pkg/util/validation`).

use serde_json::Value;

use super::FieldErr;
use crate::apiserver::objects;

const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";

/// Total size limit of all annotations (keys + values), 256 KiB.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// Kubernetes' `RegexError` wording (note the double space before "or").
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push_str(&format!("'{e}', "));
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn max_len(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn is_label_pattern(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && lower_alnum(b[0])
        && lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| lower_alnum(c) || c == b'-')
}

/// DNS-1123 subdomain check; returns the Kubernetes messages.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len(253));
    }
    if !s.split('.').all(is_label_pattern) {
        errs.push(regex_error(SUBDOMAIN_MSG, SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// DNS-1123 label check; returns the Kubernetes messages.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !is_label_pattern(s) {
        errs.push(regex_error(LABEL_MSG, LABEL_FMT, &["my-name", "123-abc"]));
    }
    errs
}

/// DNS-1035 label check (service names); returns the Kubernetes messages.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !(is_label_pattern(s) && s.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(
            DNS1035_MSG,
            DNS1035_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Qualified name check (label and annotation keys): `[prefix/]name`.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len(63)));
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Label value check.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len(63));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// First qualified-name error, for selector parsing.
pub fn check_qualified_name(s: &str) -> Result<(), String> {
    qualified_name(s).into_iter().next().map_or(Ok(()), Err)
}

/// First label-value error, for selector parsing.
pub fn check_label_value(s: &str) -> Result<(), String> {
    label_value(s).into_iter().next().map_or(Ok(()), Err)
}

/// How an object's name is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (most kinds).
    Subdomain,
    /// DNS-1123 label (namespaces).
    Label,
    /// DNS-1035 label (services).
    Dns1035,
    /// Only path-segment rules (e.g. custom resources).
    PathSegment,
}

fn path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    let mut errs = Vec::new();
    for bad in ["/", "%"] {
        if name.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// Applies a rule to a name; with `prefix` (generateName) a trailing '-' is allowed.
pub fn check_name(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix && name.ends_with('-') {
        masked = format!("{}a", &name[..name.len() - 1]);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => dns1123_subdomain(name),
        NameRule::Label => dns1123_label(name),
        NameRule::Dns1035 => dns1035_label(name),
        NameRule::PathSegment => path_segment(name),
    }
}

/// Validates `metadata` (name, generateName, namespace presence, labels,
/// annotations) of an object about to be stored.
pub fn validate_object_meta(obj: &Value, rule: NameRule, namespaced: bool) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let Some(meta) = objects::meta(obj) else {
        errs.push(FieldErr::required("metadata", ""));
        return errs;
    };
    let name = objects::name(obj);
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !generate.is_empty() {
        for m in check_name(rule, generate, true) {
            errs.push(FieldErr::invalid("metadata.generateName", generate, &m));
        }
    }
    if name.is_empty() {
        errs.push(FieldErr::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else {
        for m in check_name(rule, name, false) {
            errs.push(FieldErr::invalid("metadata.name", name, &m));
        }
    }
    let ns = objects::namespace(obj);
    if namespaced && ns.is_empty() {
        errs.push(FieldErr::required("metadata.namespace", ""));
    } else if !namespaced && !ns.is_empty() {
        errs.push(FieldErr::forbidden(
            "metadata.namespace",
            "not allowed on this type",
        ));
    }
    for (field, map) in [
        ("labels", meta.get("labels")),
        ("annotations", meta.get("annotations")),
    ] {
        match map {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                let path = format!("metadata.{field}");
                let mut total = 0usize;
                for (k, v) in m {
                    let Some(v) = v.as_str() else {
                        errs.push(FieldErr::invalid(
                            &path,
                            k.as_str(),
                            "values must be strings",
                        ));
                        continue;
                    };
                    total += k.len() + v.len();
                    let key_errs = if field == "labels" {
                        qualified_name(k)
                    } else {
                        qualified_name(&k.to_ascii_lowercase())
                    };
                    for msg in key_errs {
                        errs.push(FieldErr::invalid(&path, k.as_str(), &msg));
                    }
                    if field == "labels" {
                        for msg in label_value(v) {
                            errs.push(FieldErr::invalid(&path, v, &msg));
                        }
                    }
                }
                if field == "annotations" && total > TOTAL_ANNOTATION_SIZE {
                    errs.push(FieldErr::too_long(&path, TOTAL_ANNOTATION_SIZE));
                }
            }
            Some(_) => errs.push(FieldErr::invalid(
                &format!("metadata.{field}"),
                "",
                "must be a map of strings",
            )),
        }
    }
    if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
        errs.extend(validate_owner_references(refs));
    }
    if let Some(f) = meta.get("finalizers").and_then(Value::as_array) {
        for (i, v) in f.iter().enumerate() {
            let s = v.as_str().unwrap_or("");
            for m in qualified_name(s) {
                errs.push(FieldErr::invalid(
                    &format!("metadata.finalizers[{i}]"),
                    s,
                    &m,
                ));
            }
        }
    }
    errs
}

/// `ValidateOwnerReferences`: required fields and at most one controller.
pub fn validate_owner_references(refs: &[Value]) -> Vec<FieldErr> {
    let mut errs = Vec::new();
    let path = "metadata.ownerReferences";
    for r in refs {
        for (field, what) in [
            ("apiVersion", "version"),
            ("kind", "kind"),
            ("name", "name"),
            ("uid", "uid"),
        ] {
            if r.get(field)
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                errs.push(FieldErr::invalid(
                    &format!("{path}.{field}"),
                    "",
                    &format!("{what} must not be empty"),
                ));
            }
        }
    }
    let controllers: Vec<String> = refs
        .iter()
        .filter(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            format!(
                "{}/{} name={}",
                r.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
                r.get("kind").and_then(Value::as_str).unwrap_or(""),
                r.get("name").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    if controllers.len() > 1 {
        errs.push(FieldErr::invalid(
            path,
            Value::Array(refs.to_vec()),
            &format!("Only one reference can have Controller set to true. Found \"true\" in references for {}", controllers.join(" and ")),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subdomains() {
        assert!(dns1123_subdomain("web-1.example.com").is_empty());
        assert_eq!(
            dns1123_subdomain("Web"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert!(!dns1123_subdomain("-a").is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
        assert_eq!(
            dns1123_subdomain(&"a".repeat(254))[0],
            "must be no more than 253 characters"
        );
    }

    #[test]
    fn labels_and_dns1035() {
        assert!(dns1123_label("123-abc").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert_eq!(
            dns1123_label("a_b")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
        assert!(dns1035_label("web").is_empty());
        assert!(!dns1035_label("1web").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn qualified_names() {
        assert!(qualified_name("app").is_empty());
        assert!(qualified_name("example.com/My_Name.1").is_empty());
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert!(qualified_name("a/b/c")[0].starts_with("a qualified name must consist"));
        assert!(
            qualified_name("Example.com/x")[0]
                .starts_with("prefix part a lowercase RFC 1123 subdomain")
        );
        assert_eq!(
            qualified_name("bad key")[0],
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        assert_eq!(
            qualified_name(&"a".repeat(64))[0],
            "name part must be no more than 63 characters"
        );
    }

    #[test]
    fn label_values() {
        assert!(label_value("").is_empty());
        assert!(label_value("v1.2_x-y").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(!label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn generate_name_allows_trailing_dash() {
        assert!(check_name(NameRule::Subdomain, "web-", true).is_empty());
        assert!(!check_name(NameRule::Subdomain, "web-", false).is_empty());
        assert!(!check_name(NameRule::PathSegment, "a/b", false).is_empty());
        assert!(check_name(NameRule::PathSegment, "Any_Name", false).is_empty());
    }

    #[test]
    fn object_meta_errors() {
        let ok = json!({"metadata": {"name": "a", "namespace": "d", "labels": {"app": "web"}, "annotations": {"x/y": "any value"}}});
        assert!(validate_object_meta(&ok, NameRule::Subdomain, true).is_empty());
        let bad = json!({"metadata": {"labels": {"bad key": "v", "ok": "-bad"}}});
        let errs = validate_object_meta(&bad, NameRule::Subdomain, false);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "metadata.labels"]
        );
        assert_eq!(
            errs[0].message(),
            "Required value: name or generateName is required"
        );
        assert!(
            errs[1]
                .message()
                .starts_with("Invalid value: \"bad key\": name part must consist")
        );
        let big = json!({"metadata": {"name": "a", "annotations": {"k": "x".repeat(TOTAL_ANNOTATION_SIZE)}}});
        let errs = validate_object_meta(&big, NameRule::Subdomain, false);
        assert_eq!(
            errs[0].message(),
            "Too long: must have at most 262144 bytes"
        );
        let cluster = json!({"metadata": {"name": "a", "namespace": "x"}});
        assert_eq!(
            validate_object_meta(&cluster, NameRule::Subdomain, false)[0].field,
            "metadata.namespace"
        );
    }

    #[test]
    fn owner_references() {
        let ok = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]);
        assert!(validate_owner_references(ok.as_array().expect("refs")).is_empty());
        let missing = json!([{"kind": "ReplicaSet", "name": "rs"}]);
        let errs = validate_owner_references(missing.as_array().expect("refs"));
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.ownerReferences.apiVersion",
                "metadata.ownerReferences.uid"
            ]
        );
        assert_eq!(
            errs[0].message(),
            "Invalid value: \"\": version must not be empty"
        );
        let two = json!([
            {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true}
        ]);
        let errs = validate_owner_references(two.as_array().expect("refs"));
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .detail
                .starts_with("Only one reference can have Controller set to true")
        );
    }
}
