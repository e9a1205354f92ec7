//! Typed operations on JSON objects for server-side apply, after
//! structured-merge-diff: the field set of a value, the comparison of two
//! values, the apply merge (configuration wins, associative lists merge by
//! key) and removal of fields nobody owns any more.
//!
//! Type information comes from [`TypeNode`]; where it is missing, objects
//! are treated as granular maps and lists as atomic, as SMD does for
//! untyped values.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, PathElement, field};
use crate::apiserver::schema::node::{ListKind, TypeNode};

/// How a value is walked.
enum Shape<'a> {
    /// Owned and compared as one value.
    Leaf,
    /// An object whose members are tracked one by one.
    Map,
    /// A list whose items are tracked one by one.
    List(ListKind<'a>),
}

fn shape<'a>(node: &TypeNode<'a>, value: &Value) -> Shape<'a> {
    match value {
        Value::Object(_) if matches!(node, TypeNode::Scalar) || node.is_atomic() => Shape::Leaf,
        Value::Object(_) => Shape::Map,
        Value::Array(_) => match node.list_kind() {
            ListKind::Atomic => Shape::Leaf,
            kind => Shape::List(kind),
        },
        _ => Shape::Leaf,
    }
}

/// The path element of list item `item` (at `index`) in a list of `kind`.
fn item_element(kind: &ListKind, item: &Value, index: usize) -> String {
    match kind {
        ListKind::Map(keys) => {
            let mut fields = Map::new();
            for key in keys {
                match item.get(*key) {
                    Some(v) if !v.is_null() => {
                        fields.insert((*key).to_string(), v.clone());
                    }
                    // Kubernetes defaults a port's protocol, and SMD uses
                    // that default for a missing key field.
                    _ if *key == "protocol" => {
                        fields.insert("protocol".into(), Value::String("TCP".into()));
                    }
                    _ => {}
                }
            }
            if fields.is_empty() {
                PathElement::Index(index).encode()
            } else {
                PathElement::Key(fields).encode()
            }
        }
        ListKind::Set => PathElement::Value(item.clone()).encode(),
        ListKind::Atomic => PathElement::Index(index).encode(),
    }
}

/// The set of fields `value` sets.
pub fn to_field_set(value: &Value, node: TypeNode) -> FieldSet {
    let mut set = FieldSet::new();
    walk_set(value, node, &mut Vec::new(), &mut set);
    set
}

fn walk_set(value: &Value, node: TypeNode, path: &mut Vec<String>, set: &mut FieldSet) {
    match shape(&node, value) {
        Shape::Leaf => set.insert(path),
        Shape::List(kind) => {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                path.push(item_element(&kind, item, i));
                walk_set(item, node.item(), path, set);
                set.insert(path);
                path.pop();
            }
        }
        Shape::Map => {
            for (k, child) in value.as_object().into_iter().flatten() {
                path.push(field(k));
                walk_set(child, node.child(k), path, set);
                let empty_map = child.as_object().is_some_and(Map::is_empty);
                if child.is_null() || empty_map || !node.declares(k) {
                    set.insert(path);
                }
                path.pop();
            }
        }
    }
}

/// What changed between two versions of an object.
#[derive(Debug, Default)]
pub struct Comparison {
    /// Fields present only in the new version.
    pub added: FieldSet,
    /// Leaf fields whose value changed.
    pub modified: FieldSet,
    /// Fields present only in the old version.
    pub removed: FieldSet,
}

/// Compare `old` with `new`.
pub fn compare(old: &Value, new: &Value, node: TypeNode) -> Comparison {
    let mut out = Comparison::default();
    compare_at(Some(old), Some(new), node, &mut Vec::new(), &mut out);
    out
}

fn compare_at(
    old: Option<&Value>,
    new: Option<&Value>,
    node: TypeNode,
    path: &mut Vec<String>,
    out: &mut Comparison,
) {
    match (old, new) {
        (None, None) => {}
        // An unchanged subtree adds, removes and modifies nothing: skip walking it (a
        // status update leaves the rest of the object as it was).
        (Some(o), Some(n)) if json_eq(o, n) => {}
        (None, Some(n)) => insert_all(n, node, path, &mut out.added),
        (Some(o), None) => insert_all(o, node, path, &mut out.removed),
        // A null container compares like an empty one: its items are added
        // or removed, the field itself is not.
        (Some(Value::Null), Some(n)) if !matches!(shape(&node, n), Shape::Leaf) => {
            let empty = empty_like(n);
            compare_at(Some(&empty), Some(n), node, path, out);
        }
        (Some(o), Some(Value::Null)) if !matches!(shape(&node, o), Shape::Leaf) => {
            let empty = empty_like(o);
            compare_at(Some(o), Some(&empty), node, path, out);
        }
        (Some(o), Some(n)) => match (shape(&node, o), shape(&node, n)) {
            (Shape::Map, Shape::Map) => {
                let (om, nm) = (o.as_object(), n.as_object());
                let mut keys: Vec<&String> = om.into_iter().flat_map(|m| m.keys()).collect();
                keys.extend(nm.into_iter().flat_map(|m| m.keys()));
                keys.sort();
                keys.dedup();
                for k in keys {
                    path.push(field(k));
                    compare_at(o.get(k), n.get(k), node.child(k), path, out);
                    path.pop();
                }
            }
            (Shape::List(kind), Shape::List(_)) => {
                let old_items = index_items(&kind, o);
                let new_items = index_items(&kind, n);
                let mut elements: Vec<&String> = old_items
                    .iter()
                    .chain(new_items.iter())
                    .map(|(e, _)| e)
                    .collect();
                elements.sort();
                elements.dedup();
                let item = node.item();
                // The first item of an element wins, as before duplicates are refused.
                fn by_element<'v>(items: &'v [(String, &'v Value)]) -> HashMap<&'v str, &'v Value> {
                    items.iter().rev().map(|(e, v)| (e.as_str(), *v)).collect()
                }
                let (old_by, new_by) = (by_element(&old_items), by_element(&new_items));
                for e in elements {
                    path.push(e.clone());
                    let (ov, nv) = (old_by.get(e.as_str()), new_by.get(e.as_str()));
                    compare_at(ov.copied(), nv.copied(), item, path, out);
                    path.pop();
                }
            }
            _ => {
                if !json_eq(o, n) {
                    out.modified.insert(path);
                }
            }
        },
    }
}

/// Insert `path` and every path below it (SMD's added/removed subtrees).
fn insert_all(value: &Value, node: TypeNode, path: &mut Vec<String>, set: &mut FieldSet) {
    set.insert(path);
    match shape(&node, value) {
        Shape::Leaf => {}
        Shape::List(kind) => {
            for (i, item) in value.as_array().into_iter().flatten().enumerate() {
                path.push(item_element(&kind, item, i));
                insert_all(item, node.item(), path, set);
                path.pop();
            }
        }
        Shape::Map => {
            for (k, child) in value.as_object().into_iter().flatten() {
                path.push(field(k));
                insert_all(child, node.child(k), path, set);
                path.pop();
            }
        }
    }
}

fn empty_like(v: &Value) -> Value {
    match v {
        Value::Array(_) => Value::Array(Vec::new()),
        _ => Value::Object(Map::new()),
    }
}

fn index_items<'a>(kind: &ListKind, list: &'a Value) -> Vec<(String, &'a Value)> {
    list.as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, item)| (item_element(kind, item, i), item))
        .collect()
}

/// JSON equality with numbers compared by value.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Merge an apply configuration into the live object: configuration values
/// win, granular maps merge member by member, associative lists and sets
/// merge item by item (keeping the live order around the configured items).
pub fn merge(live: &Value, config: &Value, node: TypeNode) -> Value {
    match (shape(&node, live), shape(&node, config)) {
        (Shape::Map, Shape::Map) => {
            let mut out = live.as_object().cloned().unwrap_or_default();
            for (k, c) in config.as_object().into_iter().flatten() {
                let merged = match out.get(k) {
                    Some(l) => merge(l, c, node.child(k)),
                    None => c.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Shape::List(kind), Shape::List(_)) => merge_lists(live, config, &kind, node.item()),
        _ => config.clone(),
    }
}

fn merge_lists(live: &Value, config: &Value, kind: &ListKind, item: TypeNode) -> Value {
    let lhs = index_items(kind, live);
    let rhs = index_items(kind, config);
    let in_lhs: HashSet<&str> = lhs.iter().map(|(e, _)| e.as_str()).collect();
    let in_rhs: HashSet<&str> = rhs.iter().map(|(e, _)| e.as_str()).collect();
    let find_lhs = |e: &str| lhs.iter().find(|(x, _)| x == e).map(|(_, v)| v);
    let merge_item = |e: &str, r: &Value| match find_lhs(e) {
        Some(l) => merge(l, r, item),
        None => r.clone(),
    };
    // Items of the configuration that the live list has too, in config order.
    let mut shared = rhs
        .iter()
        .filter(|(e, _)| in_lhs.contains(e.as_str()))
        .map(|(e, _)| e.as_str());
    let mut next_shared = shared.next();
    let mut merged_rhs: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            let pe = lhs[li].0.as_str();
            if pe == rhs[ri].0 {
                merged_rhs.insert(pe);
                out.push(merge(lhs[li].1, rhs[ri].1, item));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            // A live item the config moves later: emit it when the config
            // reaches it.
            if in_rhs.contains(pe) && next_shared.is_some_and(|n| n != pe) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            let pe = lhs[li].0.as_str();
            if !in_rhs.contains(pe) {
                out.push(lhs[li].1.clone());
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let pe = rhs[ri].0.as_str();
            merged_rhs.insert(pe);
            out.push(merge_item(pe, rhs[ri].1));
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        } else if li < lhs.len() && in_rhs.contains(lhs[li].0.as_str()) {
            li += 1;
        }
    }
    Value::Array(out)
}

/// Remove from `value` every field listed in `last` that nobody owns in
/// `keep` (the union of all managers' sets after the apply).
pub fn remove_unowned(value: &mut Value, last: &FieldSet, keep: &FieldSet, node: TypeNode) {
    match value {
        Value::Object(map) => {
            for element in last.elements() {
                let Ok(PathElement::Field(name)) = PathElement::decode(element) else {
                    continue;
                };
                match keep.child(element) {
                    None => {
                        map.remove(&name);
                    }
                    Some(kept) => {
                        if let (Some(child), Some(last_child)) =
                            (map.get_mut(&name), last.child(element))
                        {
                            remove_unowned(child, last_child, kept, node.child(&name));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let kind = node.list_kind();
            if kind == ListKind::Atomic {
                return;
            }
            let item_node = node.item();
            let elements: Vec<String> = items
                .iter()
                .enumerate()
                .map(|(i, v)| item_element(&kind, v, i))
                .collect();
            let mut keep_flags = Vec::with_capacity(items.len());
            for (item, element) in items.iter_mut().zip(&elements) {
                let Some(last_child) = last.child(element) else {
                    keep_flags.push(true);
                    continue;
                };
                match keep.child(element) {
                    None => keep_flags.push(false),
                    Some(kept) => {
                        remove_unowned(item, last_child, kept, item_node);
                        keep_flags.push(true);
                    }
                }
            }
            let mut flags = keep_flags.into_iter();
            items.retain(|_| flags.next().unwrap_or(true));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> TypeNode<'static> {
        TypeNode::builtin("io.k8s.api.apps.v1.Deployment")
    }

    #[test]
    fn field_set_matches_kubernetes_encoding() {
        let obj = json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","labels":{"app":"web"}},
            "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},
                "template":{"metadata":{"labels":{"app":"web"}},
                    "spec":{"containers":[{"name":"nginx","image":"nginx","ports":[{"containerPort":80}],"resources":{}}]}}}});
        let set = to_field_set(&obj, deploy());
        let expected = json!({
            "f:apiVersion":{},"f:kind":{},
            "f:metadata":{"f:labels":{".":{},"f:app":{}},"f:name":{}},
            "f:spec":{"f:replicas":{},"f:selector":{},
                "f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},
                    "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{},
                        "f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}},
                        "f:resources":{}}}}}}});
        // labels: a map, so its keys are members and "labels" itself is not
        // (Kubernetes writes `"f:labels":{".":{},…}` only when it is empty-able;
        // SMD marks map fields whose value is a non-empty map as non-members).
        let mut want = FieldSet::from_fields_v1(&expected).expect("expected set");
        want.remove_paths(&[
            vec!["f:metadata".into(), "f:labels".into()],
            vec![
                "f:spec".into(),
                "f:template".into(),
                "f:metadata".into(),
                "f:labels".into(),
            ],
        ]);
        assert_eq!(set, want, "{}", set.to_fields_v1());
    }

    #[test]
    fn compare_reports_added_modified_removed() {
        let old = json!({"spec":{"replicas":1,"paused":false,"template":{"spec":{"containers":[{"name":"a","image":"x"}]}}}});
        let new = json!({"spec":{"replicas":2,"minReadySeconds":5,"template":{"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}}}});
        let c = compare(&old, &new, deploy());
        assert_eq!(
            c.modified.paths(),
            vec![vec!["f:spec".to_string(), "f:replicas".to_string()]]
        );
        assert!(
            c.added
                .contains(&["f:spec".into(), "f:minReadySeconds".into()])
        );
        assert!(c.added.contains(&[
            "f:spec".into(),
            "f:template".into(),
            "f:spec".into(),
            "f:containers".into(),
            "k:{\"name\":\"b\"}".into(),
            "f:image".into()
        ]));
        assert_eq!(
            c.removed.paths(),
            vec![vec!["f:spec".to_string(), "f:paused".to_string()]]
        );
        let same = compare(&old, &old, deploy());
        assert!(same.added.is_empty() && same.modified.is_empty() && same.removed.is_empty());
        // 2 and 2.0 are the same number.
        let c = compare(
            &json!({"spec":{"replicas":2}}),
            &json!({"spec":{"replicas":2.0}}),
            deploy(),
        );
        assert!(c.modified.is_empty());
    }

    #[test]
    fn merge_lists_by_key_and_keeps_live_order() {
        let live = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"a","image":"a1","args":["x"]},{"name":"b","image":"b1"},{"name":"c","image":"c1"}]}}}});
        let config = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"c","image":"c2"},{"name":"d","image":"d1"},{"name":"a","image":"a2"}]}}}});
        let out = merge(&live, &config, deploy());
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["b", "c", "d", "a"]);
        let a = &out["spec"]["template"]["spec"]["containers"][3];
        assert_eq!(a, &json!({"name":"a","image":"a2","args":["x"]}));
        // Atomic lists (args) and labels selector (atomic struct) are replaced.
        let live = json!({"spec":{"selector":{"matchLabels":{"a":"1"}}}});
        let config = json!({"spec":{"selector":{"matchLabels":{"b":"2"}}}});
        assert_eq!(
            merge(&live, &config, deploy())["spec"]["selector"],
            json!({"matchLabels":{"b":"2"}})
        );
    }

    #[test]
    fn remove_unowned_drops_fields_and_items() {
        let mut obj = json!({"spec":{"replicas":2,"paused":true,"template":{"spec":{"containers":[
            {"name":"a","image":"a1"},{"name":"b","image":"b1"}]}}}});
        let last = to_field_set(&obj, deploy());
        let kept_obj = json!({"spec":{"replicas":2,"template":{"spec":{"containers":[{"name":"a","image":"a1"}]}}}});
        let keep = to_field_set(&kept_obj, deploy());
        remove_unowned(&mut obj, &last, &keep, deploy());
        assert_eq!(obj, kept_obj);
    }
}
