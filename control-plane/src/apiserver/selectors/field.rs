//! Field selectors: `field=value`, `field==value`, `field!=value`, comma
//! separated, with `\,` `\=` `\\` escapes. Each kind supports a fixed set of
//! fields (as in Kubernetes); anything else is a 400 at the API.

use serde_json::Value;

use crate::apiserver::kinds::{KindId, Resource};
use crate::apiserver::objects;

/// Why a field selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    /// Syntax error.
    #[error("invalid selector: '{0}'; can't understand '{1}'")]
    Syntax(String, String),
    /// A field this kind does not index.
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

/// One `field op value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    /// e.g. `spec.nodeName`.
    pub field: String,
    /// The literal value (unescaped).
    pub value: String,
    /// True for `!=`.
    pub negated: bool,
}

/// A parsed field selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// AND-ed terms.
    pub terms: Vec<FieldTerm>,
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

fn unescape(s: &str) -> Result<String, ()> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                _ => return Err(()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Finds the first unescaped operator in a term.
fn split_term(term: &str) -> Option<(String, &'static str, String)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        for op in ["!=", "==", "="] {
            if term[i..].starts_with(op) {
                return Some((term[..i].to_string(), op, term[i + op.len()..].to_string()));
            }
        }
        i += 1;
    }
    None
}

/// The fields a kind supports beyond `metadata.name` and `metadata.namespace`.
pub fn supported_fields(id: KindId) -> &'static [&'static str] {
    match id {
        KindId::Pod => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        KindId::Event => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        KindId::EventV1 => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
        KindId::Secret => &["type"],
        KindId::Node => &["spec.unschedulable"],
        KindId::Namespace => &["status.phase"],
        KindId::Job => &["status.successful"],
        KindId::ReplicaSet => &["status.replicas"],
        _ => &[],
    }
}

/// The string value of a selectable field of an object.
fn field_value(obj: &Value, field: &str) -> String {
    match field {
        "source" => objects::path_str(obj, "source.component").to_string(),
        "spec.hostNetwork" | "spec.unschedulable" => objects::path(obj, field)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
        _ => match objects::path(obj, field) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        },
    }
}

impl FieldSelector {
    /// Parses a selector string; "" selects everything.
    pub fn parse(s: &str) -> Result<Self, FieldSelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { terms });
        }
        for raw in split_unescaped(s, ',') {
            let (field, op, value) = split_term(&raw)
                .ok_or_else(|| FieldSelectorError::Syntax(s.to_string(), raw.clone()))?;
            let value = unescape(&value)
                .map_err(|_| FieldSelectorError::Syntax(s.to_string(), raw.clone()))?;
            terms.push(FieldTerm {
                field: field.trim().to_string(),
                value,
                negated: op == "!=",
            });
        }
        Ok(FieldSelector { terms })
    }

    /// Rejects fields the resource does not support.
    pub fn check_supported(&self, res: &Resource) -> Result<(), FieldSelectorError> {
        let extra: Vec<String> = res
            .custom
            .as_ref()
            .map(|c| c.selectable_fields.clone())
            .unwrap_or_default();
        for t in &self.terms {
            let f = t.field.as_str();
            let ok = f == "metadata.name"
                || (f == "metadata.namespace" && res.info.namespaced())
                || supported_fields(res.id).contains(&f)
                || extra.iter().any(|e| e == f);
            if !ok {
                return Err(FieldSelectorError::Unsupported(t.field.clone()));
            }
        }
        Ok(())
    }

    /// True if no term is set.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value of a `metadata.name=x` term, if the selector pins one name.
    pub fn exact_name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == "metadata.name" && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// True if `obj` satisfies every term.
    pub fn matches(&self, _res: &Resource, obj: &Value) -> bool {
        self.terms.iter().all(|t| {
            let v = field_value(obj, &t.field);
            (v == t.value) != t.negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::builtin_resources;
    use serde_json::json;

    fn res(plural: &str) -> Resource {
        builtin_resources()
            .into_iter()
            .find(|r| r.info.plural == plural)
            .expect("resource")
    }

    #[test]
    fn parses_operators_and_escapes() {
        let s = FieldSelector::parse("metadata.name=a\\,b,status.phase!=Failed,spec.nodeName==n1")
            .expect("parse");
        assert_eq!(
            s.terms,
            vec![
                FieldTerm {
                    field: "metadata.name".into(),
                    value: "a,b".into(),
                    negated: false
                },
                FieldTerm {
                    field: "status.phase".into(),
                    value: "Failed".into(),
                    negated: true
                },
                FieldTerm {
                    field: "spec.nodeName".into(),
                    value: "n1".into(),
                    negated: false
                },
            ]
        );
        assert!(FieldSelector::parse("nonsense").is_err());
        assert!(FieldSelector::parse("a=b\\x").is_err());
        assert!(FieldSelector::parse("").expect("empty").is_empty());
    }

    #[test]
    fn matches_pod_fields() {
        let pods = res("pods");
        let pod = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let unscheduled =
            json!({"metadata": {"name": "q"}, "spec": {}, "status": {"phase": "Pending"}});
        let sel = |s: &str| FieldSelector::parse(s).expect(s);
        assert!(sel("spec.nodeName=n1").matches(&pods, &pod));
        assert!(!sel("spec.nodeName=n1").matches(&pods, &unscheduled));
        assert!(sel("spec.nodeName=").matches(&pods, &unscheduled));
        assert!(sel("status.phase!=Succeeded,status.phase!=Failed").matches(&pods, &pod));
        assert!(sel("metadata.name=p,metadata.namespace=d").matches(&pods, &pod));
        assert!(!sel("metadata.name!=p").matches(&pods, &pod));
        assert_eq!(sel("metadata.name=p").exact_name(), Some("p"));
    }

    #[test]
    fn matches_event_and_secret_fields() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "p", "namespace": "d", "uid": "u"}, "source": {"component": "kubelet"}, "type": "Normal"});
        let s = FieldSelector::parse("involvedObject.name=p,involvedObject.namespace=d,involvedObject.uid=u,involvedObject.kind=Pod,source=kubelet").expect("parse");
        assert!(s.check_supported(&res("events")).is_ok());
        assert!(s.matches(&res("events"), &ev));
        let sec = json!({"type": "kubernetes.io/tls"});
        let s = FieldSelector::parse("type=kubernetes.io/tls").expect("parse");
        assert!(s.check_supported(&res("secrets")).is_ok());
        assert!(s.matches(&res("secrets"), &sec));
    }

    #[test]
    fn unsupported_fields_are_rejected() {
        let s = FieldSelector::parse("spec.foo=bar").expect("parse");
        assert_eq!(
            s.check_supported(&res("pods"))
                .expect_err("unsupported")
                .to_string(),
            "field label not supported: spec.foo"
        );
        let s = FieldSelector::parse("spec.nodeName=x").expect("parse");
        assert!(s.check_supported(&res("configmaps")).is_err());
        let s = FieldSelector::parse("metadata.namespace=x").expect("parse");
        assert!(s.check_supported(&res("nodes")).is_err());
        assert!(s.check_supported(&res("pods")).is_ok());
    }

    #[test]
    fn bool_fields_stringify() {
        let nodes = res("nodes");
        let s = FieldSelector::parse("spec.unschedulable=false").expect("parse");
        assert!(s.matches(&nodes, &json!({"spec": {}})));
        assert!(!s.matches(&nodes, &json!({"spec": {"unschedulable": true}})));
    }
}
