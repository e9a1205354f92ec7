//! `metadata.managedFields`: who owns which fields, as the Kubernetes field
//! manager tracks it. [`record_update`] maintains it for ordinary writes
//! (create, update, non-apply patches: operation `Update`); server-side apply
//! uses the same [`Managers`] model.
//!
//! Like Kubernetes: entries are keyed by (manager, operation, subresource,
//! and apiVersion for updates); the metadata fields every object has
//! (`metadata.name`, `resourceVersion`, …) are never owned; an existing
//! object without managedFields is not tracked by updates (only creates and
//! applies start tracking); at most ten update entries are kept, older ones
//! fold into `ancient-changes`. Approximations: all versions of a kind share
//! one field layout (no conversion between versions), and a request that
//! sends managedFields replaces the tracked set only when it decodes cleanly.

use serde_json::{Map, Value, json};

use super::fieldpath::FieldSet;
use super::typed::compare;
use crate::apiserver::schema::node::TypeNode;

/// Keep at most this many `Update` entries (Kubernetes' default).
const MAX_UPDATE_MANAGERS: usize = 10;
/// The entry older update entries are folded into.
const ANCIENT_CHANGES: &str = "ancient-changes";

/// `Apply` or `Update`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One managedFields entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// `manager`.
    pub manager: String,
    /// `operation`.
    pub operation: Operation,
    /// `apiVersion` the fields were written with.
    pub api_version: String,
    /// `time` (RFC 3339), if known.
    pub time: Option<String>,
    /// `subresource`, if the write went through one.
    pub subresource: Option<String>,
    /// The owned fields.
    pub fields: FieldSet,
}

impl Entry {
    /// Kubernetes' manager identity: apply entries ignore the apiVersion.
    pub(crate) fn same_identity(&self, other: &Entry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// How conflict messages name this manager: `"kubectl"`,
    /// `"kubectl-client-side-apply" using apps/v1`, `"x" with subresource "status" …`.
    pub fn display(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("manager".into(), json!(self.manager));
        map.insert("operation".into(), json!(self.operation.as_str()));
        map.insert("apiVersion".into(), json!(self.api_version));
        if let Some(time) = &self.time {
            map.insert("time".into(), json!(time));
        }
        map.insert("fieldsType".into(), json!("FieldsV1"));
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if let Some(sub) = &self.subresource {
            map.insert("subresource".into(), json!(sub));
        }
        Value::Object(map)
    }

    fn from_json(value: &Value) -> Result<Entry, String> {
        let s = |k: &str| value.get(k).and_then(Value::as_str);
        let operation = match s("operation") {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            _ => return Err("operation must be `Apply` or `Update`".into()),
        };
        let api_version = s("apiVersion")
            .filter(|v| !v.is_empty())
            .ok_or("apiVersion must not be empty")?;
        match s("fieldsType") {
            Some("FieldsV1") => {}
            Some(other) => return Err(format!("invalid fieldsType {other:?}")),
            None => return Err("missing fieldsType".into()),
        }
        let fields = match value.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(v) => FieldSet::from_fields_v1(v).map_err(|e| e.to_string())?,
        };
        Ok(Entry {
            manager: s("manager").unwrap_or_default().to_string(),
            operation,
            api_version: api_version.to_string(),
            time: s("time").map(str::to_string),
            subresource: s("subresource")
                .filter(|v| !v.is_empty())
                .map(str::to_string),
            fields,
        })
    }
}

/// All managedFields entries of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Managers {
    /// Entries, one per identity.
    pub entries: Vec<Entry>,
}

impl Managers {
    /// Decode `metadata.managedFields` of `obj` (absent → empty).
    pub fn decode(obj: &Value) -> Result<Managers, String> {
        let mut out = Managers::default();
        let Some(list) = obj.pointer("/metadata/managedFields") else {
            return Ok(out);
        };
        let Value::Array(list) = list else {
            return if list.is_null() {
                Ok(out)
            } else {
                Err("managedFields must be a list".into())
            };
        };
        for (i, item) in list.iter().enumerate() {
            let entry =
                Entry::from_json(item).map_err(|e| format!("managed fields entry {i}: {e}"))?;
            out.put(entry);
        }
        Ok(out)
    }

    /// The entry with the identity of `probe`, if any.
    pub fn get(&self, probe: &Entry) -> Option<&Entry> {
        self.entries.iter().find(|e| e.same_identity(probe))
    }

    /// Insert or replace the entry with `entry`'s identity.
    pub fn put(&mut self, entry: Entry) {
        match self.entries.iter_mut().find(|e| e.same_identity(&entry)) {
            Some(slot) => *slot = entry,
            None => self.entries.push(entry),
        }
    }

    /// Union of every entry's fields.
    pub fn all_fields(&self) -> FieldSet {
        self.entries
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.fields))
    }

    /// Drop entries that own nothing.
    pub fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Fold the oldest update entries into `ancient-changes` so at most
    /// [`MAX_UPDATE_MANAGERS`] remain.
    pub fn cap_updates(&mut self) {
        loop {
            let mut updates: Vec<usize> = (0..self.entries.len())
                .filter(|&i| self.entries[i].operation == Operation::Update)
                .collect();
            if updates.len() <= MAX_UPDATE_MANAGERS {
                return;
            }
            updates.sort_by(|&a, &b| self.entries[a].time.cmp(&self.entries[b].time));
            let Some(oldest) = updates
                .iter()
                .copied()
                .find(|&i| self.entries[i].manager != ANCIENT_CHANGES)
            else {
                return;
            };
            let old = self.entries.remove(oldest);
            let bucket = Entry {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: old.api_version.clone(),
                time: old.time.clone(),
                subresource: None,
                fields: FieldSet::new(),
            };
            let merged = match self.get(&bucket) {
                Some(existing) => Entry {
                    fields: existing.fields.union(&old.fields),
                    ..existing.clone()
                },
                None => Entry {
                    fields: old.fields,
                    ..bucket
                },
            };
            self.put(merged);
        }
    }

    /// Encode, sorted as Kubernetes does (operation, time, manager, apiVersion, subresource).
    pub fn encode(&self) -> Option<Value> {
        if self.entries.is_empty() {
            return None;
        }
        let mut entries = self.entries.clone();
        entries.sort_by(|a, b| {
            (
                a.operation,
                &a.time,
                &a.manager,
                &a.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &b.time,
                    &b.manager,
                    &b.api_version,
                    &b.subresource,
                ))
        });
        Some(Value::Array(entries.iter().map(Entry::to_json).collect()))
    }

    /// Store the entries in `obj.metadata.managedFields` (removing it when empty).
    pub fn store(&self, obj: &mut Value) {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            if let (Some(encoded), Some(map)) = (self.encode(), obj.as_object_mut()) {
                map.insert("metadata".into(), json!({"managedFields": encoded}));
            }
            return;
        };
        match self.encode() {
            Some(encoded) => {
                meta.insert("managedFields".into(), encoded);
            }
            None => {
                meta.remove("managedFields");
            }
        }
    }
}

/// Remove the fields nobody may own (`apiVersion`, `kind`, `metadata.name`,
/// `metadata.resourceVersion`, …) from a set.
pub fn strip_meta(set: &FieldSet) -> FieldSet {
    let mut out = set.clone();
    strip_meta_in_place(&mut out);
    out
}

/// [`strip_meta`] without a copy.
pub fn strip_meta_in_place(set: &mut FieldSet) {
    for p in [
        &["f:apiVersion"][..],
        &["f:kind"],
        &["f:metadata", "f:name"],
        &["f:metadata", "f:namespace"],
        &["f:metadata", "f:creationTimestamp"],
        &["f:metadata", "f:selfLink"],
        &["f:metadata", "f:uid"],
        &["f:metadata", "f:clusterName"],
        &["f:metadata", "f:generation"],
        &["f:metadata", "f:managedFields"],
        &["f:metadata", "f:resourceVersion"],
        &["f:metadata"],
    ] {
        set.remove_member(p);
    }
}

/// `obj` without `metadata.managedFields`.
pub fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// The zero value of a built-in kind as Go would serialize it: nested
/// non-pointer structs are present as empty objects. Kubernetes compares a
/// created object against this, so its fields don't count as added.
pub fn zero_object(node: TypeNode, api_version: &str, kind: &str) -> Value {
    let mut obj = match zero_struct(node) {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Value::Object(obj)
}

fn zero_struct(node: TypeNode) -> Value {
    use crate::apiserver::schema::catalog::{Cardinality, FieldType, catalog};
    let TypeNode::Struct(def, _) = node else {
        return Value::Object(Map::new());
    };
    let mut map = Map::new();
    for f in &def.fields {
        // Go serializes nil slices, maps and pointers without `omitempty` as null.
        if f.required && (f.cardinality != Cardinality::Single || f.pointer) {
            if let Some(json) = f.json {
                map.insert(json.to_string(), Value::Null);
            }
            continue;
        }
        if f.cardinality != Cardinality::Single || f.pointer {
            continue;
        }
        let FieldType::Message(name) = f.ty else {
            continue;
        };
        let child = TypeNode::of_field(f);
        if !matches!(child, TypeNode::Struct(..)) || catalog().get(name).is_none() {
            continue;
        }
        match (f.json, zero_struct(child)) {
            (Some(json), value) => {
                map.insert(json.to_string(), value);
            }
            (None, Value::Object(inner)) => map.extend(inner),
            (None, _) => {}
        }
    }
    Value::Object(map)
}

/// The current time in Kubernetes' `metav1.Time` form (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Maintain `metadata.managedFields` for a non-apply write (operation
/// `Update`): the fields this write added or changed move to `manager`.
///
/// `old` is the stored object (`None` for a create); `new` is the object about
/// to be stored, whose own `managedFields` (if it sent valid, non-empty ones)
/// replace the stored ones, and `[]` resets tracking. `api_version` is the
/// version of the object being stored; `subresource` e.g. `status` or `scale`.
/// The type layout comes from the built-in catalog (by `api_version` and the
/// object's `kind`); other kinds are walked untyped (lists atomic) — use
/// [`record_update_for`] to use a custom resource's schema.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let node = node_for(new, old, api_version);
    record_update_typed(old, new, manager, api_version, subresource, node, &now());
}

/// [`record_update`] typed by `info` (the built-in catalog or the custom
/// resource's structural schema, so its list types and map keys count).
pub fn record_update_for(
    info: &crate::apiserver::resource::ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let node = crate::apiserver::schema::type_node(info, Some(new));
    let api_version = info.api_version();
    record_update_typed(old, new, manager, &api_version, subresource, node, &now());
}

/// The catalog node for an object of `api_version` whose kind is taken from
/// `new` (or `old`, if `new` carries none).
fn node_for(new: &Value, old: Option<&Value>, api_version: &str) -> TypeNode<'static> {
    let kind_of = |o: &Value| o.get("kind").and_then(Value::as_str).map(str::to_string);
    let kind = kind_of(new)
        .or_else(|| old.and_then(kind_of))
        .unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    crate::apiserver::schema::builtin_type_name(group, version, &kind)
        .map(|name| TypeNode::builtin(&name))
        .unwrap_or(TypeNode::Untyped)
}

/// [`record_update`] with explicit type information and clock.
pub fn record_update_typed(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    node: TypeNode,
    now: &str,
) {
    let manager = if manager.is_empty() {
        "unknown"
    } else {
        manager
    };
    let reset =
        matches!(new.pointer("/metadata/managedFields"), Some(Value::Array(l)) if l.is_empty());
    let stored = || {
        old.and_then(|o| Managers::decode(o).ok())
            .unwrap_or_default()
    };
    let mut managers = if subresource.is_some() {
        stored()
    } else if reset {
        Managers::default()
    } else {
        match new.get("metadata").map(Managers::decode) {
            Some(Ok(m)) if !m.entries.is_empty() => m,
            _ => stored(),
        }
    };
    // `new` without managedFields (they are stored afresh below).
    if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    // Only creates start tracking; an untracked existing object stays untracked.
    let existing_uid = old
        .and_then(|o| o.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .is_some_and(|u| !u.is_empty());
    if managers.entries.is_empty() && existing_uid {
        Managers::default().store(new);
        return;
    }
    let kind = new.get("kind").and_then(Value::as_str).unwrap_or_default();
    let old_plain = match old {
        Some(o) => without_managed_fields(o),
        None => zero_object(node, api_version, kind),
    };
    update_ownership(
        &mut managers,
        &old_plain,
        new,
        node,
        Entry {
            manager: manager.to_string(),
            operation: Operation::Update,
            api_version: api_version.to_string(),
            time: Some(now.to_string()),
            subresource: subresource.map(str::to_string),
            fields: FieldSet::new(),
        },
    );
    managers.cap_updates();
    managers.store(new);
}

/// Give `owner` the fields that changed from `old` to `new`, taking them
/// from every other manager (an update always wins); removed fields leave
/// every manager.
pub(super) fn update_ownership(
    managers: &mut Managers,
    old: &Value,
    new: &Value,
    node: TypeNode,
    owner: Entry,
) {
    let cmp = compare(old, new, node);
    let mut changed = cmp.modified;
    changed.union_with(&cmp.added);
    for entry in managers.entries.iter_mut() {
        if entry.same_identity(&owner) {
            continue;
        }
        entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
    }
    strip_meta_in_place(&mut changed);
    if !changed.is_empty() {
        let mut fields = match managers.get(&owner) {
            Some(e) => e.fields.difference(&cmp.removed),
            None => FieldSet::new(),
        };
        fields.union_with(&changed);
        strip_meta_in_place(&mut fields);
        managers.put(Entry { fields, ..owner });
    } else if let Some(existing) = managers.get(&owner).cloned() {
        let fields = strip_meta(&existing.fields.difference(&cmp.removed));
        managers.put(Entry { fields, ..existing });
    }
    managers.drop_empty();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy_node() -> TypeNode<'static> {
        TypeNode::builtin("io.k8s.api.apps.v1.Deployment")
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion":"apps/v1","kind":"Deployment",
            "metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
            "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":"web"}},
                "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%"}},
                "template":{"metadata":{"labels":{"app":"web"}},
                    "spec":{"containers":[{"name":"nginx","image":image}]}}}})
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
        obj["metadata"]["managedFields"]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["manager"] == manager))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn create_records_everything_like_kubernetes() {
        let mut new = deployment(2, "nginx");
        record_update_typed(
            None,
            &mut new,
            "kubectl-create",
            "apps/v1",
            None,
            deploy_node(),
            "2026-01-01T00:00:00Z",
        );
        let e = entry(&new, "kubectl-create");
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["time"], "2026-01-01T00:00:00Z");
        assert_eq!(e["fieldsType"], "FieldsV1");
        let expected = json!({
            "f:metadata":{"f:labels":{".":{},"f:app":{}}},
            "f:spec":{"f:replicas":{},"f:selector":{},
                "f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{}},"f:type":{}},
                "f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},
                    "f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}});
        assert_eq!(e["fieldsV1"], expected);
    }

    #[test]
    fn update_moves_changed_fields_to_new_manager() {
        let mut created = deployment(2, "nginx");
        record_update_typed(
            None,
            &mut created,
            "kubectl-create",
            "apps/v1",
            None,
            deploy_node(),
            "t1",
        );
        created["metadata"]["uid"] = json!("u1");
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update_typed(
            Some(&created),
            &mut scaled,
            "kubectl-scale",
            "apps/v1",
            Some("scale"),
            deploy_node(),
            "t2",
        );
        let scale = entry(&scaled, "kubectl-scale");
        assert_eq!(scale["fieldsV1"], json!({"f:spec":{"f:replicas":{}}}));
        assert_eq!(scale["subresource"], "scale");
        let create = entry(&scaled, "kubectl-create");
        assert!(create["fieldsV1"]["f:spec"].get("f:replicas").is_none());
        assert!(create["fieldsV1"]["f:spec"].get("f:selector").is_some());

        // A no-op write leaves managedFields alone.
        let mut same = scaled.clone();
        record_update_typed(
            Some(&scaled),
            &mut same,
            "other",
            "apps/v1",
            None,
            deploy_node(),
            "t3",
        );
        assert_eq!(
            same["metadata"]["managedFields"],
            scaled["metadata"]["managedFields"]
        );

        // Removing a field removes it from its owner.
        let mut removed = scaled.clone();
        removed["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("strategy");
        record_update_typed(
            Some(&scaled),
            &mut removed,
            "editor",
            "apps/v1",
            None,
            deploy_node(),
            "t4",
        );
        assert!(
            entry(&removed, "kubectl-create")["fieldsV1"]["f:spec"]
                .get("f:strategy")
                .is_none(),
            "{}",
            removed["metadata"]
        );
        assert_eq!(entry(&removed, "editor"), &Value::Null);
    }

    #[test]
    fn untracked_existing_objects_stay_untracked_and_reset_works() {
        let old = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","uid":"u"},"data":{"a":"1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        record_update(Some(&old), &mut new, "m", "v1", None);
        assert!(new["metadata"].get("managedFields").is_none());

        let mut tracked = old.clone();
        record_update_typed(
            None,
            &mut tracked,
            "creator",
            "v1",
            None,
            TypeNode::Untyped,
            "t",
        );
        assert!(tracked["metadata"]["managedFields"].is_array());
        let mut reset = tracked.clone();
        reset["metadata"]["managedFields"] = json!([]);
        record_update_typed(
            Some(&tracked),
            &mut reset,
            "m",
            "v1",
            None,
            TypeNode::Untyped,
            "t",
        );
        assert!(reset["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn custom_resources_use_their_schema() {
        let mut info = crate::apiserver::patch::tests::info("example.com", "v1", "Widget");
        info.crd_schema = Some(std::sync::Arc::new(json!({"type":"object","properties":{
            "spec":{"type":"object","properties":{"ports":{"type":"array","x-kubernetes-list-type":"map",
                "x-kubernetes-list-map-keys":["name"],"items":{"type":"object"}}}}}})));
        let mut obj = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
            "spec":{"ports":[{"name":"a","port":1}]}});
        record_update_for(&info, None, &mut obj, "m", None);
        assert_eq!(
            entry(&obj, "m")["fieldsV1"]["f:spec"],
            // `.`: unlike a built-in's zero value, an empty custom resource has no spec.
            json!({".":{},"f:ports":{".":{},"k:{\"name\":\"a\"}":{".":{},"f:name":{},"f:port":{}}}})
        );
        // Untyped, the same list is one atomic value.
        let mut untyped = obj.clone();
        untyped["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("managedFields");
        record_update(None, &mut untyped, "m", "example.com/v1", None);
        assert_eq!(
            entry(&untyped, "m")["fieldsV1"]["f:spec"],
            json!({".":{},"f:ports":{}})
        );
    }

    #[test]
    fn caps_update_managers() {
        let mut obj =
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{}});
        record_update_typed(None, &mut obj, "m0", "v1", None, TypeNode::Untyped, "t00");
        obj["metadata"]["uid"] = json!("u");
        for i in 1..=12 {
            let mut next = obj.clone();
            next["data"][format!("k{i}")] = json!("v");
            record_update_typed(
                Some(&obj),
                &mut next,
                &format!("m{i}"),
                "v1",
                None,
                TypeNode::Untyped,
                &format!("t{i:02}"),
            );
            obj = next;
        }
        let list = obj["metadata"]["managedFields"].as_array().expect("list");
        assert_eq!(list.len(), MAX_UPDATE_MANAGERS);
        assert!(list.iter().any(|e| e["manager"] == ANCIENT_CHANGES));
        assert!(!list.iter().any(|e| e["manager"] == "m1"));
    }

    #[test]
    fn decode_rejects_bad_entries() {
        let bad = json!({"metadata":{"managedFields":[{"manager":"x","operation":"Patch","apiVersion":"v1","fieldsType":"FieldsV1"}]}});
        assert!(Managers::decode(&bad).is_err());
        let bad = json!({"metadata":{"managedFields":[{"manager":"x","operation":"Update","apiVersion":"v1"}]}});
        assert!(Managers::decode(&bad).is_err());
        let good = json!({"metadata":{"managedFields":[{"manager":"x","operation":"Update","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":{"f:data":{}}}]}});
        assert_eq!(Managers::decode(&good).expect("good").entries.len(), 1);
    }

    #[test]
    fn display_names_managers_like_kubernetes() {
        let e = Entry {
            manager: "kubectl-client-side-apply".into(),
            operation: Operation::Update,
            api_version: "apps/v1".into(),
            time: None,
            subresource: None,
            fields: FieldSet::new(),
        };
        assert_eq!(e.display(), "\"kubectl-client-side-apply\" using apps/v1");
        let e = Entry {
            operation: Operation::Apply,
            subresource: Some("status".into()),
            ..e
        };
        assert_eq!(
            e.display(),
            "\"kubectl-client-side-apply\" with subresource \"status\""
        );
        assert!(now().ends_with('Z'));
    }
}
