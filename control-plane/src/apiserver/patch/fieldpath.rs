//! Sets of field paths, as structured-merge-diff models them, and their
//! `FieldsV1` encoding in `metadata.managedFields`:
//! `{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{}}}}}`.
//!
//! A path is a list of elements: `f:<field>` (struct field or map key),
//! `k:{<key fields>}` (associative-list item), `v:<json>` (set item) or
//! `i:<n>` (list index). Elements are kept in their encoded string form so
//! the set is a plain sorted trie.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Errors decoding a `FieldsV1` document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldPathError {
    /// The document (or a nested value) is not a JSON object.
    #[error("FieldsV1 value at {path:?} is not an object")]
    NotAnObject {
        /// Encoded path to the offending value.
        path: String,
    },
    /// A key is not a valid path element.
    #[error("invalid path element {element:?}: {reason}")]
    BadElement {
        /// The key as found.
        element: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// One decoded path element.
#[derive(Clone, Debug, PartialEq)]
pub enum PathElement {
    /// A struct field or map key.
    Field(String),
    /// An associative-list item, identified by its key fields.
    Key(Map<String, Value>),
    /// A set item, identified by its value.
    Value(Value),
    /// A list item by position.
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key form: `f:name`, `k:{…}`, `v:…`, `i:3`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => format!("k:{}", Value::Object(fields.clone())),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse the `FieldsV1` key form.
    pub fn decode(s: &str) -> Result<PathElement, FieldPathError> {
        let bad = |reason: &str| FieldPathError::BadElement {
            element: s.to_string(),
            reason: reason.to_string(),
        };
        let (kind, rest) = s
            .split_once(':')
            .ok_or_else(|| bad("missing type prefix"))?;
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "k" => match serde_json::from_str(rest) {
                Ok(Value::Object(map)) => Ok(PathElement::Key(map)),
                _ => Err(bad("key is not a JSON object")),
            },
            "v" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|_| bad("value is not JSON")),
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| bad("index is not a number")),
            _ => Err(bad("unknown type prefix")),
        }
    }

    /// The human form used in conflict messages: `.name`, `[name="app"]`,
    /// `[="x"]`, `[3]`.
    pub fn display(&self) -> String {
        match self {
            PathElement::Field(name) => format!(".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            PathElement::Value(v) => format!("[={v}]"),
            PathElement::Index(i) => format!("[{i}]"),
        }
    }
}

/// Encoded form of a struct field / map key element.
pub fn field(name: &str) -> String {
    format!("f:{name}")
}

/// Human form of a path of encoded elements, e.g. `.spec.containers[name="app"].image`.
pub fn display_path(path: &[String]) -> String {
    path.iter()
        .map(|e| match PathElement::decode(e) {
            Ok(pe) => pe.display(),
            Err(_) => e.clone(),
        })
        .collect()
}

/// One node of the trie.
#[derive(Clone, Debug, Default, PartialEq)]
struct Node {
    /// The path ending here is itself in the set.
    member: bool,
    /// Paths continuing below.
    children: FieldSet,
}

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSet {
    entries: BTreeMap<String, Node>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// True if the set holds no path.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Add `path` (encoded elements). An empty path is ignored.
    pub fn insert(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = match self.entries.get_mut(first) {
            Some(node) => node,
            None => self.entries.entry(first.clone()).or_default(),
        };
        if rest.is_empty() {
            node.member = true;
        } else {
            node.children.insert(rest);
        }
    }

    /// True if `path` is in the set.
    pub fn contains(&self, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        match self.entries.get(first) {
            Some(node) if rest.is_empty() => node.member,
            Some(node) => node.children.contains(rest),
            None => false,
        }
    }

    /// True if the set has `path` or anything below it.
    pub fn touches(&self, path: &[String]) -> bool {
        let Some((first, rest)) = path.split_first() else {
            return !self.is_empty();
        };
        match self.entries.get(first) {
            Some(_) if rest.is_empty() => true,
            Some(node) => node.children.touches(rest),
            None => false,
        }
    }

    /// The subset below element `element` (empty if none).
    pub fn child(&self, element: &str) -> Option<&FieldSet> {
        self.entries.get(element).map(|n| &n.children)
    }

    /// True if element `element` at this level is a member.
    pub fn has_member(&self, element: &str) -> bool {
        self.entries.get(element).is_some_and(|n| n.member)
    }

    /// Encoded elements present at this level (members or with children).
    pub fn elements(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Union of two sets.
    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.union_with(other);
        out
    }

    /// Adds every path of `other` to `self` (no copy of `self`).
    pub fn union_with(&mut self, other: &FieldSet) {
        for (k, node) in &other.entries {
            match self.entries.get_mut(k) {
                Some(mine) => {
                    mine.member |= node.member;
                    mine.children.union_with(&node.children);
                }
                None => {
                    self.entries.insert(k.clone(), node.clone());
                }
            }
        }
    }

    /// Removes the member `path` (its descendants stay), dropping nodes left
    /// empty.
    pub fn remove_member(&mut self, path: &[&str]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let Some(node) = self.entries.get_mut(*first) else {
            return;
        };
        if rest.is_empty() {
            node.member = false;
        } else {
            node.children.remove_member(rest);
        }
        if !node.member && node.children.is_empty() {
            self.entries.remove(*first);
        }
    }

    /// Paths of `self` that are not in `other`.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (k, node) in &self.entries {
            let (member, children) = match other.entries.get(k) {
                Some(o) => (
                    node.member && !o.member,
                    node.children.difference(&o.children),
                ),
                None => (node.member, node.children.clone()),
            };
            if member || !children.is_empty() {
                out.entries.insert(k.clone(), Node { member, children });
            }
        }
        out
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        for (k, node) in &self.entries {
            if let Some(o) = other.entries.get(k) {
                let member = node.member && o.member;
                let children = node.children.intersection(&o.children);
                if member || !children.is_empty() {
                    out.entries.insert(k.clone(), Node { member, children });
                }
            }
        }
        out
    }

    /// Every member path, in sorted order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, node) in &self.entries {
            prefix.push(k.clone());
            if node.member {
                out.push(prefix.clone());
            }
            node.children.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Drop the member paths listed (exact paths only; children stay).
    pub fn remove_paths(&mut self, paths: &[Vec<String>]) {
        for p in paths {
            self.remove_path(p);
        }
    }

    fn remove_path(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        if let Some(node) = self.entries.get_mut(first) {
            if rest.is_empty() {
                node.member = false;
            } else {
                node.children.remove_path(rest);
            }
            if !node.member && node.children.is_empty() {
                self.entries.remove(first);
            }
        }
    }

    /// The `FieldsV1` JSON form.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (k, node) in &self.entries {
            let mut inner = match node.children.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            map.insert(k.clone(), Value::Object(inner));
        }
        Value::Object(map)
    }

    /// Parse the `FieldsV1` JSON form. Element keys are validated.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldPathError> {
        Self::parse_level(value, "")
    }

    fn parse_level(value: &Value, at: &str) -> Result<FieldSet, FieldPathError> {
        let Value::Object(map) = value else {
            return Err(FieldPathError::NotAnObject {
                path: at.to_string(),
            });
        };
        let mut set = FieldSet::new();
        for (k, v) in map {
            if k == "." {
                continue;
            }
            PathElement::decode(k)?;
            let Value::Object(inner) = v else {
                return Err(FieldPathError::NotAnObject {
                    path: format!("{at}/{k}"),
                });
            };
            let children = Self::parse_level(v, &format!("{at}/{k}"))?;
            let member = inner.is_empty() || inner.contains_key(".");
            set.entries.insert(k.clone(), Node { member, children });
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trip() {
        let doc = json!({"f:metadata":{"f:labels":{".":{},"f:app":{}}},
            "f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}},
                      "f:replicas":{}}});
        let set = FieldSet::from_fields_v1(&doc).expect("parse");
        assert!(set.contains(&p(&["f:spec", "f:replicas"])));
        assert!(set.contains(&p(&["f:spec", "f:containers", "k:{\"name\":\"app\"}"])));
        assert!(set.contains(&p(&["f:metadata", "f:labels"])));
        assert!(!set.contains(&p(&["f:spec"])));
        assert!(set.touches(&p(&["f:spec"])));
        assert_eq!(set.to_fields_v1(), doc);
        assert_eq!(set.paths().len(), 6);
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = FieldSet::new();
        b.insert(&p(&["f:spec", "f:replicas"]));
        b.insert(&p(&["f:metadata", "f:name"]));
        assert_eq!(
            a.intersection(&b).paths(),
            vec![p(&["f:spec", "f:replicas"])]
        );
        assert_eq!(a.difference(&b).paths(), vec![p(&["f:spec", "f:paused"])]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
        let mut c = a.clone();
        c.remove_paths(&[p(&["f:spec", "f:paused"]), p(&["f:spec", "f:replicas"])]);
        assert!(c.is_empty());
    }

    #[test]
    fn elements_encode_and_display() {
        let key =
            PathElement::decode("k:{\"containerPort\":80,\"protocol\":\"TCP\"}").expect("key");
        assert_eq!(key.display(), "[containerPort=80,protocol=\"TCP\"]");
        assert_eq!(
            key.encode(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert_eq!(
            PathElement::decode("v:\"x\"").expect("v").display(),
            "[=\"x\"]"
        );
        assert_eq!(
            PathElement::decode("i:3").expect("i"),
            PathElement::Index(3)
        );
        assert!(PathElement::decode("zz").is_err());
        assert!(PathElement::decode("k:[1]").is_err());
        assert_eq!(
            display_path(&p(&[
                "f:spec",
                "f:containers",
                "k:{\"name\":\"app\"}",
                "f:image"
            ])),
            ".spec.containers[name=\"app\"].image"
        );
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
