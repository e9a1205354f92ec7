//! Pod-template identity for Deployments: the `pod-template-hash` label and
//! "is this ReplicaSet's template the Deployment's template?".
//!
//! Kubernetes hashes the Go struct (FNV-32a over a `spew` dump) and compares
//! with semantic equality, where an absent field equals its empty value.
//! Skiff does the same over a normalised JSON form: nulls, empty objects and
//! empty arrays are dropped and keys are sorted, so the template kubectl's
//! `rollout undo` writes back (with `"creationTimestamp":null` and
//! `"resources":{}`) is equal to, and hashes like, the ReplicaSet's template
//! it came from. The hash is FNV-32a of that form plus the collision count,
//! encoded with Kubernetes' `SafeEncodeString` alphabet.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

/// The label that ties pods and ReplicaSets to one template of a Deployment.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Kubernetes' `rand.SafeEncodeString`: maps each byte onto consonants and
/// digits so the result never spells words.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// Drops nulls, empty objects and empty arrays, recursively.
fn prune(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(map) => {
            let pruned: serde_json::Map<String, Value> = map
                .iter()
                .filter_map(|(k, v)| prune(v).map(|v| (k.clone(), v)))
                .collect();
            (!pruned.is_empty()).then_some(Value::Object(pruned))
        }
        Value::Array(items) => {
            let pruned: Vec<Value> = items
                .iter()
                .map(|i| prune(i).unwrap_or(Value::Null))
                .collect();
            (!pruned.is_empty()).then_some(Value::Array(pruned))
        }
        other => Some(other.clone()),
    }
}

/// The template in normalised JSON form, without the `pod-template-hash` label.
pub fn normalized(template: &PodTemplateSpec) -> Value {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        meta.creation_timestamp = None;
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(POD_TEMPLATE_HASH);
        }
    }
    let json = serde_json::to_value(&t).unwrap_or(Value::Null);
    prune(&json).unwrap_or(Value::Null)
}

/// Kubernetes' `EqualIgnoreHash`: semantically equal templates, ignoring
/// the `pod-template-hash` label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    normalized(a) == normalized(b)
}

/// Writes `v` as JSON with object keys sorted, whatever the map type.
fn canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                if let Some(child) = map.get(k) {
                    canonical(child, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

fn fnv32a(data: &[u8], mut hash: u32) -> u32 {
    for b in data {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(16_777_619);
    }
    hash
}

/// Kubernetes' `controller.ComputeHash`: the `pod-template-hash` of a
/// template, salted by `collisionCount` when set.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = Vec::new();
    canonical(&normalized(template), &mut bytes);
    let mut hash = fnv32a(&bytes, 2_166_136_261);
    if let Some(count) = collision_count {
        let mut salt = [0u8; 8];
        salt[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(&salt, hash);
    }
    safe_encode(&hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn safe_encoding_matches_kubernetes() {
        // Digits '0'..'9' are bytes 48..57: 48 % 27 = 21 -> '4', 57 % 27 = 3 -> 'f'.
        assert_eq!(safe_encode("0"), "4");
        assert_eq!(safe_encode("9"), "f");
        assert_eq!(safe_encode("1234"), "5678");
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv32a(b"", 2_166_136_261), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a", 2_166_136_261), 0xe40c_292c);
        assert_eq!(fnv32a(b"foobar", 2_166_136_261), 0xbf9c_f968);
    }

    #[test]
    fn undo_round_trip_reuses_the_hash() {
        let original = template("nginx:1.25");
        // What `kubectl rollout undo` sends back: the RS template with the
        // hash label, `creationTimestamp: null` and `resources: {}`.
        let mut from_rs = original.clone();
        if let Some(meta) = from_rs.metadata.as_mut() {
            meta.labels
                .get_or_insert_with(Default::default)
                .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        }
        if let Some(spec) = from_rs.spec.as_mut() {
            spec.containers[0].resources = Some(ResourceRequirements::default());
            spec.volumes = Some(Vec::new());
        }
        let json = serde_json::to_value(&from_rs).unwrap_or_default();
        let with_null: PodTemplateSpec = serde_json::from_value({
            let mut j = json.clone();
            j["metadata"]["creationTimestamp"] = Value::Null;
            j
        })
        .unwrap_or_default();
        assert!(equal_ignore_hash(&original, &with_null));
        assert_eq!(
            compute_hash(&original, None),
            compute_hash(&with_null, None)
        );
    }

    #[test]
    fn different_templates_differ_and_collisions_salt_the_hash() {
        let a = template("nginx:1.25");
        let b = template("nginx:1.26");
        assert!(!equal_ignore_hash(&a, &b));
        assert_ne!(compute_hash(&a, None), compute_hash(&b, None));
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(1)));
        assert_ne!(compute_hash(&a, Some(1)), compute_hash(&a, Some(2)));
        assert_eq!(compute_hash(&a, Some(1)), compute_hash(&a, Some(1)));
        let h = compute_hash(&a, None);
        assert!(!h.is_empty() && h.len() <= 10);
        assert!(h.bytes().all(|c| ALPHANUMS.contains(&c)));
    }

    #[test]
    fn restarted_at_annotation_changes_the_template() {
        let a = template("nginx");
        let mut b = a.clone();
        if let Some(meta) = b.metadata.as_mut() {
            meta.annotations = Some(
                [(
                    "kubectl.kubernetes.io/restartedAt".to_string(),
                    "2024-01-01T00:00:00Z".to_string(),
                )]
                .into(),
            );
        }
        assert!(!equal_ignore_hash(&a, &b));
        assert_ne!(compute_hash(&a, None), compute_hash(&b, None));
    }
}
