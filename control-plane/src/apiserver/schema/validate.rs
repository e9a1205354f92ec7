//! Validation of custom resources against their structural OpenAPI v3
//! schema, with Kubernetes' field paths, reasons and messages
//! (`spec.replicas: Invalid value: "string": spec.replicas in body must be of
//! type integer: "string"`).

use serde_json::Value;

use super::builtin::resolve;

/// One validation failure, as a Kubernetes `field.Error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path, e.g. `spec.containers[0].name`.
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`,
    /// `FieldValueTypeInvalid` or `FieldValueDuplicate`.
    pub reason: &'static str,
    /// The error body as in a Status cause, e.g. `Required value`.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validate `obj` against a structural schema. Covers `type`, `nullable`,
/// `required`, `enum`, `minimum`/`maximum` (and exclusive forms),
/// `multipleOf`, `minLength`/`maxLength`, `pattern`, `minItems`/`maxItems`,
/// `minProperties`/`maxProperties`, `items`, `properties`,
/// `additionalProperties`, `allOf`/`anyOf`/`oneOf`/`not`,
/// `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource`,
/// `x-kubernetes-preserve-unknown-fields` and list-type uniqueness.
/// The root's `metadata` is left to ObjectMeta validation.
pub fn validate_structural(schema: &Value, obj: &Value) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(props) = obj.as_object() else {
        validate(schema, obj, "", &mut out);
        return out;
    };
    let schema = resolve(schema);
    let mut root = schema.clone();
    if let Some(p) = root.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("metadata");
    }
    let mut without_meta = props.clone();
    without_meta.remove("metadata");
    validate(&root, &Value::Object(without_meta), "", &mut out);
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn invalid(out: &mut Vec<FieldError>, path: &str, value: &Value, detail: String) {
    out.push(FieldError {
        field: path.to_string(),
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {}: {detail}", shown(value)),
    });
}

/// How Kubernetes prints a value in an error: strings quoted, the rest as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::Array(_) | Value::Object(_) => format!("{value}"),
        other => other.to_string(),
    }
}

fn in_body(path: &str) -> String {
    if path.is_empty() {
        "body".to_string()
    } else {
        format!("{path} in body")
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "integer" => v.as_number().is_some_and(|n| n.is_i64() || n.is_u64()),
        "number" => v.is_number(),
        _ => true,
    }
}

fn validate(schema: &Value, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    let s = resolve(schema);
    let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    if v.is_null() {
        // Kubernetes drops nulls of non-nullable fields before validating.
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(v.is_string() || type_matches("integer", v)) {
            let actual = type_name(v);
            out.push(FieldError {
                field: path.to_string(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"{actual}\": {} must be of type integer or string: \"{actual}\"",
                    in_body(path)
                ),
            });
            return;
        }
    } else if let Some(expected) = s.get("type").and_then(Value::as_str)
        && !type_matches(expected, v)
    {
        let actual = type_name(v);
        out.push(FieldError {
            field: path.to_string(),
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: \"{actual}\": {} must be of type {expected}: \"{actual}\"",
                in_body(path)
            ),
        });
        return;
    }

    if let Some(options) = s.get("enum").and_then(Value::as_array)
        && !options.iter().any(|o| o == v)
    {
        let supported: Vec<String> = options.iter().map(shown).collect();
        out.push(FieldError {
            field: path.to_string(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                shown(v),
                supported.join(", ")
            ),
        });
    }

    match v {
        Value::String(text) => validate_string(s, v, text, path, out),
        Value::Number(_) => validate_number(s, v, path, out),
        Value::Array(items) => validate_array(s, v, items, path, out),
        Value::Object(map) => validate_object(s, map, path, out),
        _ => {}
    }

    validate_combinators(s, v, path, out);
}

fn validate_string(s: &Value, v: &Value, text: &str, path: &str, out: &mut Vec<FieldError>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && len > max
    {
        invalid(
            out,
            path,
            v,
            format!("{} should be at most {max} chars long", in_body(path)),
        );
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && len < min
    {
        invalid(
            out,
            path,
            v,
            format!("{} should be at least {min} chars long", in_body(path)),
        );
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(pattern) {
            Ok(re) if !re.is_match(text) => {
                invalid(
                    out,
                    path,
                    v,
                    format!("{} should match '{pattern}'", in_body(path)),
                );
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%pattern, error = %e, "unusable pattern in schema"),
        }
    }
}

fn validate_number(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(x) = v.as_f64() else { return };
    let exclusive = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if exclusive("exclusiveMinimum") && x <= min {
            invalid(
                out,
                path,
                v,
                format!("{} should be greater than {}", in_body(path), num(min)),
            );
        } else if x < min {
            invalid(
                out,
                path,
                v,
                format!(
                    "{} should be greater than or equal to {}",
                    in_body(path),
                    num(min)
                ),
            );
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if exclusive("exclusiveMaximum") && x >= max {
            invalid(
                out,
                path,
                v,
                format!("{} should be less than {}", in_body(path), num(max)),
            );
        } else if x > max {
            invalid(
                out,
                path,
                v,
                format!(
                    "{} should be less than or equal to {}",
                    in_body(path),
                    num(max)
                ),
            );
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && ((x / m) - (x / m).round()).abs() > 1e-9
    {
        invalid(
            out,
            path,
            v,
            format!("{} should be a multiple of {}", in_body(path), num(m)),
        );
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn validate_array(s: &Value, v: &Value, items: &[Value], path: &str, out: &mut Vec<FieldError>) {
    let n = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        out.push(FieldError {
            field: path.to_string(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {n}: must have at most {max} items"),
        });
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        invalid(
            out,
            path,
            v,
            format!("{} should have at least {min} items", in_body(path)),
        );
    }
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.push(duplicate(&format!("{path}[{i}]"), item));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|prev| key_of(prev) == key) {
                    let shown_key: serde_json::Map<String, Value> = keys
                        .iter()
                        .zip(key)
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                    out.push(duplicate(
                        &format!("{path}[{i}]"),
                        &Value::Object(shown_key),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), out);
        }
    }
}

fn duplicate(path: &str, value: &Value) -> FieldError {
    FieldError {
        field: path.to_string(),
        reason: "FieldValueDuplicate",
        message: format!("Duplicate value: {}", shown(value)),
    }
}

fn validate_object(
    s: &Value,
    map: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<FieldError>,
) {
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if map.get(name).is_none_or(Value::is_null) {
                out.push(FieldError {
                    field: join(path, name),
                    reason: "FieldValueRequired",
                    message: "Required value".into(),
                });
            }
        }
    }
    if s.get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
    {
        for name in ["apiVersion", "kind"] {
            if map
                .get(name)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                out.push(FieldError {
                    field: join(path, name),
                    reason: "FieldValueRequired",
                    message: "Required value: must not be empty".into(),
                });
            }
        }
    }
    let count = map.len() as u64;
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
        && count > max
    {
        out.push(FieldError {
            field: path.to_string(),
            reason: "FieldValueTooMany",
            message: format!("Too many: {count}: must have at most {max} items"),
        });
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
        && count < min
    {
        invalid(
            out,
            path,
            &Value::Object(map.clone()),
            format!("{} should have at least {min} properties", in_body(path)),
        );
    }
    for (k, child) in map {
        if let Some(p) = props.and_then(|p| p.get(k)) {
            validate(p, child, &join(path, k), out);
        } else if let Some(add @ Value::Object(_)) = s.get("additionalProperties") {
            validate(add, child, &join(path, k), out);
        }
    }
}

fn validate_combinators(s: &Value, v: &Value, path: &str, out: &mut Vec<FieldError>) {
    let passes = |sub: &Value| {
        let mut errs = Vec::new();
        validate(sub, v, path, &mut errs);
        errs.is_empty()
    };
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            validate(sub, v, path, out);
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        invalid(
            out,
            path,
            v,
            format!(
                "{} must validate at least one schema (anyOf)",
                in_body(path)
            ),
        );
    }
    if let Some(one) = s.get("oneOf").and_then(Value::as_array)
        && one.iter().filter(|sub| passes(sub)).count() != 1
    {
        invalid(
            out,
            path,
            v,
            format!(
                "{} must validate one and only one schema (oneOf)",
                in_body(path)
            ),
        );
    }
    if let Some(not) = s.get("not")
        && passes(not)
    {
        invalid(
            out,
            path,
            v,
            format!("{} must not validate the schema (not)", in_body(path)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type":"object","properties":{
            "apiVersion":{"type":"string"},"kind":{"type":"string"},"metadata":{"type":"object"},
            "spec":{"type":"object","required":["size"],"properties":{
                "size":{"type":"integer","minimum":1,"maximum":10},
                "color":{"type":"string","enum":["red","blue"]},
                "name":{"type":"string","pattern":"^[a-z]+$","maxLength":5},
                "port":{"x-kubernetes-int-or-string":true},
                "ratio":{"type":"number","exclusiveMinimum":true,"minimum":0,"nullable":true},
                "tags":{"type":"array","x-kubernetes-list-type":"set","maxItems":3,"items":{"type":"string"}},
                "items":{"type":"array","x-kubernetes-list-type":"map","x-kubernetes-list-map-keys":["id"],
                         "items":{"type":"object","required":["id"],"properties":{"id":{"type":"string"}}}},
                "labels":{"type":"object","additionalProperties":{"type":"string"}},
                "template":{"type":"object","x-kubernetes-embedded-resource":true,"x-kubernetes-preserve-unknown-fields":true},
                "choice":{"type":"object","oneOf":[{"required":["a"]},{"required":["b"]}]}}}}})
    }

    fn errors(spec: Value) -> Vec<String> {
        let obj = json!({"apiVersion":"example.com/v1","kind":"W","metadata":{"name":"w","anything":1},"spec":spec});
        validate_structural(&schema(), &obj)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_object_passes() {
        let spec = json!({"size":3,"color":"red","name":"abc","port":"http","ratio":0.5,"tags":["a","b"],
            "items":[{"id":"x"},{"id":"y"}],"labels":{"a":"b"},
            "template":{"apiVersion":"v1","kind":"Pod","anything":{}},"choice":{"a":1}});
        assert_eq!(errors(spec), Vec::<String>::new());
        assert!(errors(json!({"size":2,"port":8080,"ratio":null})).is_empty());
    }

    #[test]
    fn reports_kubernetes_style_errors() {
        let errs = errors(json!({"size":"big"}));
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
            ]
        );
        let errs = errors(json!({"size":0}));
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
            ]
        );
        let errs = errors(json!({"size":11}));
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
            ]
        );
        let errs = errors(json!({}));
        assert_eq!(errs, vec!["spec.size: Required value"]);
        let errs = errors(json!({"size":1,"color":"pink"}));
        assert_eq!(
            errs,
            vec!["spec.color: Unsupported value: \"pink\": supported values: \"red\", \"blue\""]
        );
        let errs = errors(json!({"size":1,"name":"ABCDEFG"}));
        assert_eq!(
            errs,
            vec![
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should be at most 5 chars long",
                "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'"
            ]
        );
        let errs = errors(json!({"size":1,"port":true,"ratio":0}));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("must be of type integer or string"));
        assert!(errs[1].contains("should be greater than 0"));
        let errs = errors(json!({"size":1,"tags":["a","a","b","c"]}));
        assert!(
            errs.iter().any(|e| e.starts_with("spec.tags: Too many: 4")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e == "spec.tags[1]: Duplicate value: \"a\""),
            "{errs:?}"
        );
        let errs = errors(json!({"size":1,"items":[{"id":"x"},{"id":"x"},{}]}));
        assert!(
            errs.contains(&"spec.items[1]: Duplicate value: {\"id\":\"x\"}".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.items[2].id: Required value".to_string()),
            "{errs:?}"
        );
        let errs = errors(json!({"size":1,"labels":{"a":1}}));
        assert_eq!(
            errs,
            vec![
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\""
            ]
        );
        let errs = errors(json!({"size":1,"template":{"kind":"Pod"}}));
        assert_eq!(
            errs,
            vec!["spec.template.apiVersion: Required value: must not be empty"]
        );
        let errs = errors(json!({"size":1,"choice":{"a":1,"b":2}}));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("one and only one schema (oneOf)"));
    }

    #[test]
    fn reasons_are_kubernetes_reasons() {
        let obj = json!({"spec":{"size":"x","color":"pink"}});
        let errs = validate_structural(&schema(), &obj);
        let reasons: Vec<&str> = errs.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            vec!["FieldValueNotSupported", "FieldValueTypeInvalid"]
        );
        assert_eq!(errs[1].field, "spec.size");
    }
}
