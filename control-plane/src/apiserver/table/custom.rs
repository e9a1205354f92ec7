//! Printing custom resources from a CRD's `additionalPrinterColumns`
//! (default: a single `Age` column), with the simple JSONPath subset CRDs
//! use: `.a.b`, `.a[0]`, `.a[*].b`, `.a['x.y']`, `.a[?(@.k=="v")].b`.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Column, col, name_col};
use crate::apiserver::crd::PrinterColumn;
use crate::apiserver::kinds::Resource;
use crate::apiserver::objects;

fn printer_columns(res: &Resource) -> Vec<PrinterColumn> {
    let cols = res
        .custom
        .as_ref()
        .map(|c| c.printer_columns.clone())
        .unwrap_or_default();
    if !cols.is_empty() {
        return cols;
    }
    vec![PrinterColumn {
        name: "Age".into(),
        type_: "date".into(),
        format: String::new(),
        description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
        priority: 0,
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// Name plus the printer columns.
pub fn columns(res: &Resource) -> Vec<Column> {
    let mut out = vec![name_col()];
    for c in printer_columns(res) {
        let mut column = col(&c.name, &c.type_, &c.description, c.priority);
        column.format = c.format;
        out.push(column);
    }
    out
}

/// Cells for one custom object.
pub fn cells(res: &Resource, obj: &Value, now: Timestamp) -> Vec<Value> {
    let mut out = vec![json!(objects::name(obj))];
    for c in printer_columns(res) {
        let vals = eval(obj, &c.json_path);
        let cell = match vals.as_slice() {
            [] => Value::Null,
            [one] if c.type_ == "date" => match one.as_str() {
                Some(s) => json!(super::age::since(Some(s), now)),
                None => Value::Null,
            },
            [one] => match (c.type_.as_str(), one) {
                ("string", Value::String(_))
                | ("integer" | "number", Value::Number(_))
                | ("boolean", Value::Bool(_)) => one.clone(),
                (_, Value::String(s)) => json!(s),
                (_, other) => json!(other.to_string()),
            },
            many => json!(
                many.iter()
                    .map(|v| v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        out.push(cell);
    }
    out
}

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(String, String),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let chars: Vec<char> = p.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let mut name = String::new();
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    name.push(chars[i]);
                    i += 1;
                }
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let end = (i..chars.len()).find(|&j| chars[j] == ']')?;
                let inner: String = chars[i + 1..end].iter().collect();
                i = end + 1;
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Ok(n) = inner.parse::<usize>() {
                    steps.push(Step::Index(n));
                } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                {
                    steps.push(Step::Field(q.to_string()));
                } else if let Some(f) = inner.strip_prefix("?(@.").and_then(|s| s.strip_suffix(')'))
                {
                    let (k, v) = f.split_once("==")?;
                    steps.push(Step::Filter(
                        k.trim().to_string(),
                        v.trim().trim_matches(|c| c == '"' || c == '\'').to_string(),
                    ));
                } else {
                    return None;
                }
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// Evaluates a JSONPath; returns all matches.
pub fn eval(obj: &Value, path: &str) -> Vec<Value> {
    let Some(steps) = parse(path) else {
        return Vec::new();
    };
    let mut cur = vec![obj.clone()];
    for step in steps {
        let mut next = Vec::new();
        for v in cur {
            match &step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f) {
                        next.push(x.clone());
                    }
                }
                Step::Index(n) => {
                    if let Some(x) = v.get(*n) {
                        next.push(x.clone());
                    }
                }
                Step::All => {
                    if let Some(a) = v.as_array() {
                        next.extend(a.iter().cloned());
                    } else if let Some(m) = v.as_object() {
                        next.extend(m.values().cloned());
                    }
                }
                Step::Filter(k, want) => {
                    if let Some(a) = v.as_array() {
                        next.extend(
                            a.iter()
                                .filter(|x| {
                                    objects::path(x, k)
                                        .map(|v| {
                                            v.as_str()
                                                .map(str::to_string)
                                                .unwrap_or_else(|| v.to_string())
                                        })
                                        .as_deref()
                                        == Some(want.as_str())
                                })
                                .cloned(),
                        );
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::crd::{compute_status, default_crd, resources_from_crd};
    use crate::apiserver::registry::Registry;

    #[test]
    fn jsonpath_subset() {
        let o = json!({"spec": {"size": 3, "items": [{"n": "a"}, {"n": "b"}], "m": {"a.b": "dotted"}},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]}});
        assert_eq!(eval(&o, ".spec.size"), vec![json!(3)]);
        assert_eq!(eval(&o, ".spec.items[1].n"), vec![json!("b")]);
        assert_eq!(eval(&o, ".spec.items[*].n"), vec![json!("a"), json!("b")]);
        assert_eq!(eval(&o, ".spec.m['a.b']"), vec![json!("dotted")]);
        assert_eq!(
            eval(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert!(eval(&o, ".missing.path").is_empty());
        assert!(eval(&o, "garbage").is_empty());
    }

    fn widget(cols: Value) -> Resource {
        let mut crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object"}},
                          "additionalPrinterColumns": cols}]}});
        default_crd(&mut crd);
        crd["status"] = compute_status(&crd, None, &Registry::new());
        resources_from_crd(&crd).remove(0)
    }

    #[test]
    fn default_columns_are_name_and_age() {
        let r = widget(json!([]));
        let names: Vec<String> = columns(&r).into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["Name", "Age"]);
        let now: Timestamp = "2024-01-01T00:01:00Z".parse().expect("ts");
        let o = json!({"metadata": {"name": "w", "creationTimestamp": "2024-01-01T00:00:00Z"}});
        assert_eq!(cells(&r, &o, now), vec![json!("w"), json!("60s")]);
    }

    #[test]
    fn printer_columns_are_evaluated() {
        let r = widget(
            json!([{"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                              {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "priority": 1}]),
        );
        let cols = columns(&r);
        assert_eq!((cols[1].name.as_str(), cols[2].priority), ("Size", 1));
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().expect("ts");
        let o = json!({"metadata": {"name": "w"}, "spec": {"size": 2}});
        assert_eq!(cells(&r, &o, now), vec![json!("w"), json!(2), Value::Null]);
    }
}
