//! Strategic merge patch, following the Kubernetes server's rules
//! (`MergeParallelList` and `IgnoreUnmatchedNulls` on):
//!
//! - maps merge key by key; `null` deletes; `$patch: replace|delete` on a map;
//! - lists merge only where the field's `patchStrategy` says `merge`: lists of
//!   objects by their `patchMergeKey` (with `$patch: delete|replace` elements),
//!   lists of scalars as sets; every other list is replaced;
//! - `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and
//!   `$retainKeys` directives.
//!
//! Error codes follow the API server: malformed directives are 400, lists of
//! lists 422, and inconsistencies such as a missing merge key surface as 500.

use serde_json::{Map, Value};

use super::PatchError;
use crate::apiserver::schema::node::TypeNode;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Apply strategic merge patch `patch` to `original`, typed by `node`.
pub(super) fn strategic_merge(
    original: Value,
    patch: Value,
    node: TypeNode,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadRequest("invalid JSON document".into()));
    };
    let original = match original {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    merge_map(original, patch, node).map(Value::Object)
}

/// What a list holds, as far as merging cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElemKind {
    Map,
    Scalar,
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    node: TypeNode,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.remove(DIRECTIVE);
                Ok(clean_map(patch))
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, node)?;

    // Deletions from primitive lists run after the ordinary keys so that the
    // result does not depend on key order.
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if let Some(list_key) = key.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            deletions.push((list_key.to_string(), value));
            continue;
        }
        merge_entry(&mut original, &key, value, node, false)?;
    }
    for (key, value) in deletions {
        merge_entry(&mut original, &key, value, node, true)?;
    }
    Ok(original)
}

/// Merge one patch entry into `original`.
fn merge_entry(
    original: &mut Map<String, Value>,
    key: &str,
    value: Value,
    node: TypeNode,
    is_delete_list: bool,
) -> Result<(), PatchError> {
    if value.is_null() {
        original.remove(key);
        return Ok(());
    }
    let child = node.child(key);
    let Some(current) = original.get_mut(key) else {
        if !is_delete_list {
            insert_clean(original, key, value);
        }
        return Ok(());
    };
    match (current, value) {
        (Value::Object(cur), Value::Object(p)) => {
            let merged = if child.smp().replace {
                clean_map(p)
            } else {
                merge_map(std::mem::take(cur), p, child)?
            };
            *cur = merged;
        }
        (Value::Array(cur), Value::Array(p)) => {
            let merged = merge_slice_handler(std::mem::take(cur), p, child, is_delete_list)?;
            *cur = merged;
        }
        (cur, value) => {
            if same_json_type(cur, &value) || !is_delete_list {
                match clean(value) {
                    Some(v) => *cur = v,
                    None => {
                        original.remove(key);
                    }
                }
            }
        }
    }
    Ok(())
}

fn same_json_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

fn insert_clean(map: &mut Map<String, Value>, key: &str, value: Value) {
    match clean(value) {
        Some(v) => {
            map.insert(key.to_string(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: TypeNode,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    let meta = node.smp();
    if meta.merge || is_delete_list {
        merge_slice(
            original,
            patch,
            node,
            meta.merge_key.unwrap_or(""),
            is_delete_list,
        )
    } else {
        Ok(clean_list(patch))
    }
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    node: TypeNode,
    merge_key: &str,
    is_delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let kind = element_kind(&original, &patch)?;
    let (original, patch, merged) = match kind {
        ElemKind::Scalar => {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|v| !patch.iter().any(|d| scalar_eq(v, d)))
                    .collect());
            }
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for v in original.iter().chain(patch.iter()) {
                if !merged.iter().any(|m| scalar_eq(m, v)) {
                    merged.push(v.clone());
                }
            }
            (original, patch, merged)
        }
        ElemKind::Map => {
            if merge_key.is_empty() {
                return Err(PatchError::Internal(
                    "cannot merge lists without merge key".to_string(),
                ));
            }
            let (original, patch) = merge_special_elements(original, patch, merge_key)?;
            let merged = merge_plain_elements(original.clone(), &patch, merge_key, node.item())?;
            (original, patch, merged)
        }
    };
    let key = if kind == ElemKind::Map { merge_key } else { "" };
    let (patch_items, server_only) = partition(merged, &patch, key)?;
    normalize_element_order(patch_items, server_only, &patch, &original, key, kind)
}

/// Handle `$patch: delete|replace` elements of a list of maps. Returns the
/// updated original and the patch without special elements.
fn merge_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Some(directive) = element.get(DIRECTIVE) else {
            plain.push(element);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = element.get(merge_key) else {
                    return Err(no_merge_key(&element, merge_key));
                };
                original.retain(|o| !o.get(merge_key).is_some_and(|v| scalar_eq(v, value)));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Internal(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => {
                let map = element.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(directive, &map));
            }
        }
    }
    if replace {
        return Ok((clean_list(plain), Vec::new()));
    }
    Ok((original, plain))
}

/// Merge patch elements into the original list by merge key; new elements
/// are appended.
fn merge_plain_elements(
    mut original: Vec<Value>,
    patch: &[Value],
    merge_key: &str,
    item: TypeNode,
) -> Result<Vec<Value>, PatchError> {
    for element in patch {
        let Some(Value::Object(p)) = Some(element) else {
            continue;
        };
        let Some(value) = p.get(merge_key) else {
            return Err(no_merge_key(element, merge_key));
        };
        let found = original
            .iter()
            .position(|o| o.get(merge_key).is_some_and(|v| scalar_eq(v, value)));
        match found {
            Some(i) => {
                let current = match std::mem::take(&mut original[i]) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                original[i] = Value::Object(merge_map(current, p.clone(), item)?);
            }
            None => {
                if let Some(v) = clean(element.clone()) {
                    original.push(v);
                }
            }
        }
    }
    Ok(original)
}

/// The common element kind of two lists; lists of lists are rejected.
fn element_kind(a: &[Value], b: &[Value]) -> Result<ElemKind, PatchError> {
    let mut kind: Option<(ElemKind, std::mem::Discriminant<Value>)> = None;
    for v in a.iter().chain(b.iter()) {
        if v.is_array() {
            return Err(PatchError::Invalid {
                message: "lists of lists are not supported".into(),
                causes: Vec::new(),
            });
        }
        let this = if v.is_object() {
            ElemKind::Map
        } else {
            ElemKind::Scalar
        };
        match kind {
            None => kind = Some((this, std::mem::discriminant(v))),
            Some((_, d)) if d != std::mem::discriminant(v) => {
                return Err(PatchError::Internal(format!(
                    "list element types are not identical: {} and {}",
                    Value::Array(a.to_vec()),
                    Value::Array(b.to_vec())
                )));
            }
            Some(_) => {}
        }
    }
    Ok(kind.map(|(k, _)| k).unwrap_or(ElemKind::Scalar))
}

/// Split `merged` into the items present in `by` and the server-only rest.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    merge_key: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let found = if merge_key.is_empty() {
            by.iter().any(|b| scalar_eq(b, &v))
        } else {
            let Some(value) = v.get(merge_key) else {
                return Err(no_merge_key(&v, merge_key));
            };
            by.iter()
                .any(|b| b.get(merge_key).is_some_and(|bv| scalar_eq(bv, value)))
        };
        if found {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// Order patch items by `patch_order`, server-only items by `server_order`,
/// then interleave them keeping the live list's relative order where known.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(
        server_only,
        patch_items,
        server_order,
        merge_key,
        kind,
    ))
}

fn normalize_slice_order(
    to_sort: Vec<Value>,
    order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Result<Vec<Value>, PatchError> {
    let mut to_sort = to_sort;
    let mut to_delete = Vec::new();
    if kind == ElemKind::Map {
        for v in to_sort.iter().chain(order.iter()) {
            if v.get(merge_key).is_none() {
                return Err(no_merge_key(v, merge_key));
            }
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = to_sort
            .into_iter()
            .partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        to_sort = keep;
        to_delete = delete;
    }
    // Items missing from `order` go first, keeping their relative order.
    to_sort.sort_by_key(|v| index_of(order, v, merge_key, kind).map_or(-1, |i| i as i64));
    to_sort.extend(to_delete);
    Ok(to_sort)
}

fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: ElemKind,
) -> Vec<Value> {
    let less = |l: &Value, r: &Value| -> bool {
        match (
            index_of(server_order, l, merge_key, kind),
            index_of(server_order, r, merge_key, kind),
        ) {
            (Some(li), Some(ri)) => li < ri,
            _ => false,
        }
    };
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (Some(l), Some(r)) => {
                if less(l, r) {
                    out.extend(left.next());
                } else {
                    out.extend(right.next());
                }
            }
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (None, None) => break,
        }
    }
    out
}

fn index_of(list: &[Value], value: &Value, merge_key: &str, kind: ElemKind) -> Option<usize> {
    match kind {
        ElemKind::Map => {
            let wanted = value.get(merge_key);
            list.iter().position(|v| match (v.get(merge_key), wanted) {
                (Some(a), Some(b)) => scalar_eq(a, b),
                (None, None) => true,
                _ => false,
            })
        }
        ElemKind::Scalar => list.iter().position(|v| scalar_eq(v, value)),
    }
}

/// `$retainKeys`: drop original keys missing from the list, after checking
/// that the patch only sets listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest("invalid patch format of retainKeys".into());
    let Value::Array(retain) = retain else {
        return Err(bad());
    };
    let listed = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_PRIMITIVE_PREFIX) || k.starts_with(SET_ORDER_PREFIX)
        {
            continue;
        }
        if !listed(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| listed(k));
    Ok(())
}

/// Process every `$setElementOrder/<list>` directive together with its list.
fn merge_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    node: TypeNode,
) -> Result<(), PatchError> {
    let keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ORDER_PREFIX))
        .cloned()
        .collect();
    let bad = || PatchError::BadRequest("invalid patch format of setElementOrder list".into());
    for key in keys {
        let Some(Value::Array(order)) = patch.remove(&key) else {
            return Err(bad());
        };
        let list_key = &key[SET_ORDER_PREFIX.len()..];
        let original_list = match original.get(list_key) {
            None => None,
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad()),
        };
        let patch_list = match patch.get(list_key) {
            None => None,
            Some(Value::Array(l)) => Some(l.clone()),
            Some(_) => return Err(bad()),
        };
        let child = node.child(list_key);
        let merge_key = child.smp().merge_key.unwrap_or("");
        validate_set_order(patch_list.as_deref().unwrap_or(&[]), &order, merge_key)?;
        let merged = match (&original_list, patch_list) {
            (Some(o), None) => o.clone(),
            (None, Some(p)) => clean_list(p),
            (Some(o), Some(p)) => merge_slice_handler(o.clone(), p, child, false)?,
            (None, None) => continue,
        };
        let server_order = original_list.unwrap_or_default();
        let ordered = if merged.is_empty() && server_order.is_empty() {
            merged
        } else {
            let kind = element_kind(&server_order, &merged)?;
            let key = if kind == ElemKind::Map { merge_key } else { "" };
            let (patch_items, server_only) = partition(merged, &order, key)?;
            normalize_element_order(patch_items, server_only, &order, &server_order, key, kind)?
        };
        original.insert(list_key.to_string(), Value::Array(ordered));
        patch.remove(list_key);
    }
    Ok(())
}

/// The relative order of the patch list's items must match the
/// `$setElementOrder` list, and the patch items must all appear in it.
fn validate_set_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: &str,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        patch_list
            .iter()
            .filter(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
            .collect()
    };
    let (mut p, mut o) = (0, 0);
    while p < non_delete.len() && o < order.len() {
        if non_delete[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        let equal = if merge_key.is_empty() {
            scalar_eq(non_delete[p], &order[o])
        } else {
            match (non_delete[p].get(merge_key), order[o].get(merge_key)) {
                (Some(a), Some(b)) => scalar_eq(a, b),
                (None, _) => return Err(no_merge_key(non_delete[p], merge_key)),
                (_, None) => return Err(no_merge_key(&order[o], merge_key)),
            }
        };
        if equal {
            p += 1;
        }
        o += 1;
    }
    if p < non_delete.len() {
        return Err(PatchError::Internal(format!(
            "The order in patch list:\n{}\n doesn't match $setElementOrder list:\n{}\n",
            Value::Array(patch_list.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// JSON equality with numbers compared by value (`80` == `80.0`).
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Drop `null` members and directive-carrying members from a value that is
/// copied from the patch (nothing to merge with).
fn clean(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(clean_map(map)))
        }
        Value::Array(list) => Some(Value::Array(clean_list(list))),
        other => Some(other),
    }
}

fn clean_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, v)| !v.is_null() && !is_directive_key(k))
        .filter_map(|(k, v)| clean(v).map(|v| (k, v)))
        .collect()
}

fn clean_list(list: Vec<Value>) -> Vec<Value> {
    list.into_iter().filter_map(clean).collect()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE
        || key == RETAIN_KEYS
        || key.starts_with(SET_ORDER_PREFIX)
        || key.starts_with(DELETE_PRIMITIVE_PREFIX)
}

fn no_merge_key(value: &Value, key: &str) -> PatchError {
    PatchError::Internal(format!(
        "map: {value} does not contain declared merge key: {key}"
    ))
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let shown = directive
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| directive.to_string());
    PatchError::Internal(format!(
        "unknown patch type: {shown} in map: {}",
        Value::Object(map.clone())
    ))
}
