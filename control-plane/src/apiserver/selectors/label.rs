//! Label selectors in Kubernetes' string syntax:
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>1`, `k<1`,
//! comma-separated and AND-ed.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::apiserver::objects;
use crate::apiserver::validation::meta::{check_label_value, check_qualified_name};

/// Why a label selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct LabelSelectorError(pub String);

/// One requirement of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// `k=v` / `k==v` / `k in (..)`: the label exists and has one of the values.
    In(String, BTreeSet<String>),
    /// `k!=v` / `k notin (..)`: the label is absent or has none of the values.
    NotIn(String, BTreeSet<String>),
    /// `k`: the label exists.
    Exists(String),
    /// `!k`: the label is absent.
    DoesNotExist(String),
    /// `k>n`: the label is an integer greater than n.
    Gt(String, i64),
    /// `k<n`: the label is an integer less than n.
    Lt(String, i64),
}

impl Requirement {
    fn matches(&self, labels: &[(&str, &str)]) -> bool {
        let get = |k: &str| labels.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        match self {
            Requirement::In(k, vals) => get(k).is_some_and(|v| vals.contains(v)),
            Requirement::NotIn(k, vals) => get(k).is_none_or(|v| !vals.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
            Requirement::Gt(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            Requirement::Lt(k, n) => get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// AND-ed requirements.
    pub requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Ident(String),
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    Comma,
    Open,
    Close,
}

fn lex(s: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '=' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::DoubleEq);
                i += 2;
            }
            '=' => {
                out.push(Tok::Eq);
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::NotEq);
                i += 2;
            }
            '!' => {
                out.push(Tok::Bang);
                i += 1;
            }
            '>' => {
                out.push(Tok::Gt);
                i += 1;
            }
            '<' => {
                out.push(Tok::Lt);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !" \t\n\r=!<>,()".contains(chars[i]) {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
        }
    }
    out
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn err(&self, what: &str) -> LabelSelectorError {
        let found = match self.toks.get(self.pos.saturating_sub(1)) {
            Some(Tok::Ident(s)) => s.clone(),
            Some(t) => format!("{t:?}"),
            None => "end of string".to_string(),
        };
        LabelSelectorError(format!("found '{found}', expected: {what}"))
    }

    fn key(&mut self) -> Result<String, LabelSelectorError> {
        match self.next() {
            Some(Tok::Ident(k)) => {
                check_qualified_name(&k)
                    .map_err(|m| LabelSelectorError(format!("invalid label key \"{k}\": {m}")))?;
                Ok(k)
            }
            _ => Err(self.err("identifier")),
        }
    }

    fn value(&mut self) -> Result<String, LabelSelectorError> {
        // An empty value is allowed: `k=` or `k=,j=x`.
        match self.peek() {
            Some(Tok::Ident(_)) => match self.next() {
                Some(Tok::Ident(v)) => {
                    check_label_value(&v).map_err(|m| {
                        LabelSelectorError(format!("invalid label value: \"{v}\": {m}"))
                    })?;
                    Ok(v)
                }
                _ => Err(self.err("identifier")),
            },
            _ => Ok(String::new()),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, LabelSelectorError> {
        if self.next() != Some(Tok::Open) {
            return Err(self.err("'('"));
        }
        let mut vals = BTreeSet::new();
        loop {
            match self.peek() {
                Some(Tok::Close) => {
                    self.next();
                    break;
                }
                Some(Tok::Comma) => {
                    self.next();
                    vals.insert(String::new());
                }
                Some(Tok::Ident(_)) => {
                    vals.insert(self.value()?);
                    match self.next() {
                        Some(Tok::Comma) => {}
                        Some(Tok::Close) => break,
                        _ => return Err(self.err("',' or ')'")),
                    }
                }
                _ => return Err(self.err("',', ')' or identifier")),
            }
        }
        Ok(vals)
    }

    fn requirement(&mut self) -> Result<Requirement, LabelSelectorError> {
        if self.peek() == Some(&Tok::Bang) {
            self.next();
            return Ok(Requirement::DoesNotExist(self.key()?));
        }
        let key = self.key()?;
        match self.peek().cloned() {
            None | Some(Tok::Comma) => Ok(Requirement::Exists(key)),
            Some(Tok::Eq) | Some(Tok::DoubleEq) => {
                self.next();
                Ok(Requirement::In(key, BTreeSet::from([self.value()?])))
            }
            Some(Tok::NotEq) => {
                self.next();
                Ok(Requirement::NotIn(key, BTreeSet::from([self.value()?])))
            }
            Some(Tok::Gt) | Some(Tok::Lt) => {
                let gt = self.next() == Some(Tok::Gt);
                let v = self.value()?;
                let n = v.parse::<i64>().map_err(|_| {
                    LabelSelectorError(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer, got \"{v}\""
                    ))
                })?;
                Ok(if gt {
                    Requirement::Gt(key, n)
                } else {
                    Requirement::Lt(key, n)
                })
            }
            Some(Tok::Ident(op)) if op == "in" || op == "notin" => {
                self.next();
                let vals = self.set()?;
                Ok(if op == "in" {
                    Requirement::In(key, vals)
                } else {
                    Requirement::NotIn(key, vals)
                })
            }
            _ => {
                self.next();
                Err(self.err("'=', '!=', '==', 'in', notin'"))
            }
        }
    }
}

impl LabelSelector {
    /// Parses a selector string; "" selects everything.
    pub fn parse(s: &str) -> Result<Self, LabelSelectorError> {
        let mut p = Parser {
            toks: lex(s),
            pos: 0,
        };
        let mut requirements = Vec::new();
        if p.toks.is_empty() {
            return Ok(LabelSelector { requirements });
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Tok::Comma) => {}
                Some(_) => return Err(p.err("','")),
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// Builds a selector from a `metav1.LabelSelector` JSON object
    /// (`matchLabels` + `matchExpressions`).
    pub fn from_label_selector(sel: &Value) -> Result<Self, LabelSelectorError> {
        let mut requirements = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = v.as_str().unwrap_or_default().to_string();
                requirements.push(Requirement::In(k.clone(), BTreeSet::from([v])));
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: BTreeSet<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                requirements.push(match op {
                    "In" => Requirement::In(key, values),
                    "NotIn" => Requirement::NotIn(key, values),
                    "Exists" => Requirement::Exists(key),
                    "DoesNotExist" => Requirement::DoesNotExist(key),
                    other => {
                        return Err(LabelSelectorError(format!(
                            "\"{other}\" is not a valid label selector operator"
                        )));
                    }
                });
            }
        }
        Ok(LabelSelector { requirements })
    }

    /// True if no requirement is set.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// True if the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels = objects::string_map(obj, "labels");
        self.matches_labels(&labels)
    }

    /// True if the given labels satisfy every requirement.
    pub fn matches_labels(&self, labels: &[(&str, &str)]) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// The selector as Kubernetes prints it (`app=web,tier in (a,b)`).
    pub fn to_selector_string(&self) -> String {
        let set = |vals: &BTreeSet<String>| vals.iter().cloned().collect::<Vec<_>>().join(",");
        self.requirements
            .iter()
            .map(|r| match r {
                Requirement::In(k, v) if v.len() == 1 => format!("{k}={}", set(v)),
                Requirement::In(k, v) => format!("{k} in ({})", set(v)),
                Requirement::NotIn(k, v) if v.len() == 1 => format!("{k}!={}", set(v)),
                Requirement::NotIn(k, v) => format!("{k} notin ({})", set(v)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
                Requirement::Gt(k, n) => format!("{k}>{n}"),
                Requirement::Lt(k, n) => format!("{k}<{n}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"labels": labels}})
    }

    fn m(sel: &str, labels: Value) -> bool {
        LabelSelector::parse(sel).expect(sel).matches(&obj(labels))
    }

    #[test]
    fn equality_operators() {
        assert!(m("app=web", json!({"app": "web"})));
        assert!(m("app==web", json!({"app": "web"})));
        assert!(!m("app=web", json!({"app": "db"})));
        assert!(!m("app=web", json!({})));
        assert!(m("app!=web", json!({"app": "db"})));
        assert!(m("app!=web", json!({})), "!= matches absent labels");
        assert!(!m("app!=web", json!({"app": "web"})));
    }

    #[test]
    fn set_operators() {
        assert!(m("env in (prod, dev)", json!({"env": "dev"})));
        assert!(!m("env in (prod,dev)", json!({"env": "qa"})));
        assert!(!m("env in (prod)", json!({})));
        assert!(m("env notin (prod,dev)", json!({"env": "qa"})));
        assert!(
            m("env notin (prod)", json!({})),
            "notin matches absent labels"
        );
        assert!(!m("env notin (prod)", json!({"env": "prod"})));
    }

    #[test]
    fn existence_operators() {
        assert!(m("app", json!({"app": ""})));
        assert!(!m("app", json!({})));
        assert!(m("!app", json!({})));
        assert!(!m("!app", json!({"app": "x"})));
    }

    #[test]
    fn numeric_operators() {
        assert!(m("n>3", json!({"n": "4"})));
        assert!(!m("n>3", json!({"n": "3"})));
        assert!(m("n<3", json!({"n": "1"})));
        assert!(!m("n<3", json!({"n": "x"})));
    }

    #[test]
    fn conjunctions_and_whitespace() {
        assert!(m(
            "app=web, tier in (fe),!legacy",
            json!({"app": "web", "tier": "fe"})
        ));
        assert!(!m("app=web,tier=be", json!({"app": "web", "tier": "fe"})));
        assert!(m("", json!({})));
        assert!(m("app=", json!({"app": ""})));
        assert!(m("example.com/team=a", json!({"example.com/team": "a"})));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "app=web,",
            "in (a)",
            "app in a",
            "app in (a",
            "app=(x)",
            "a b",
            "bad key!x=1=",
            "n>x",
            "x=a b",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
        let e = LabelSelector::parse("a@b=c").expect_err("invalid key");
        assert!(
            e.to_string().starts_with("unable to parse requirement"),
            "{e}"
        );
    }

    #[test]
    fn from_metav1_selector() {
        let sel = LabelSelector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}, {"key": "old", "operator": "DoesNotExist"}]
        }))
        .expect("selector");
        assert!(sel.matches(&obj(json!({"app": "web", "tier": "fe"}))));
        assert!(!sel.matches(&obj(json!({"app": "web", "tier": "fe", "old": "1"}))));
        assert_eq!(sel.to_selector_string(), "app=web,tier in (be,fe),!old");
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]})
            )
            .is_err()
        );
    }
}
