//! Path items and operations of the v3 group-version documents, named and
//! shaped like Kubernetes' own (`patchCoreV1NamespacedPod`,
//! `x-kubernetes-action`, `x-kubernetes-group-version-kind`, the write
//! query parameters including `fieldValidation`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{DELETE_OPTIONS, PATCH, STATUS, add_definition, gv_prefix};
use crate::apiserver::resource::{ResourceInfo, Scope, Subresource};
use crate::apiserver::schema::builtin::{self, REF_PREFIX};
use crate::apiserver::schema::builtin_type_name;

/// `CoreV1`, `AppsV1`, `RbacAuthorizationV1`, `ExampleComV1`.
fn operation_prefix(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    let mut out = String::new();
    for part in group.split(['.', '-']) {
        out.push_str(&capitalize(part));
    }
    out.push_str(&capitalize(version));
    out
}

pub(super) fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn tag(group: &str, version: &str) -> String {
    let group = if group.is_empty() {
        "core"
    } else {
        group.trim_end_matches(".k8s.io")
    };
    format!("{}_{version}", group.replace('.', "_"))
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "description": description, "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut out = vec![
        query(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
            "string",
        ),
        query(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
            "string",
        ),
        query(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
            "string",
        ),
    ];
    if patch {
        out.push(query("force", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.", "boolean"));
    }
    out
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
            "boolean",
        ),
        query(
            "continue",
            "The continue option should be set when retrieving more results from the server.",
            "string",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
            "string",
        ),
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
            "string",
        ),
        query(
            "limit",
            "limit is a maximum number of responses to return for a list call.",
            "integer",
        ),
        query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be served from.",
            "string",
        ),
        query(
            "resourceVersionMatch",
            "resourceVersionMatch determines how resourceVersion is applied to list calls.",
            "string",
        ),
        query(
            "sendInitialEvents",
            "`sendInitialEvents=true` may be set together with `watch=true`.",
            "boolean",
        ),
        query(
            "timeoutSeconds",
            "Timeout for the list/watch call.",
            "integer",
        ),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
            "boolean",
        ),
    ]
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("{REF_PREFIX}{name}")})
}

fn content(schema: &Value, types: &[&str]) -> Value {
    let mut map = Map::new();
    for t in types {
        map.insert((*t).to_string(), json!({"schema": schema}));
    }
    Value::Object(map)
}

const OUT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fn response(code: &str, description: &str, schema: &Value) -> (String, Value) {
    (
        code.to_string(),
        json!({"description": description, "content": content(schema, OUT_TYPES)}),
    )
}

fn responses(entries: Vec<(String, Value)>) -> Value {
    let mut map: Map<String, Value> = entries.into_iter().collect();
    map.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(map)
}

/// What one operation is about.
struct OpKind<'a> {
    action: &'static str,
    id: String,
    description: String,
    group: &'a str,
    version: &'a str,
    kind: &'a str,
}

fn operation(
    op: OpKind,
    tag: &str,
    params: Vec<Value>,
    body: Option<Value>,
    responses: Value,
) -> Value {
    let mut out = json!({
        "tags": [tag],
        "description": op.description,
        "operationId": op.id,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": {"group": op.group, "version": op.version, "kind": op.kind},
    });
    if let Some(map) = out.as_object_mut() {
        if !params.is_empty() {
            map.insert("parameters".into(), Value::Array(params));
        }
        if let Some(body) = body {
            map.insert("requestBody".into(), body);
        }
    }
    out
}

fn patch_body(custom: bool) -> Value {
    let mut types = vec![
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
    ];
    if !custom {
        types.push("application/strategic-merge-patch+json");
    }
    json!({"content": content(&schema_ref(PATCH), &types), "required": true})
}

fn object_body(schema: &str) -> Value {
    json!({"content": content(&schema_ref(schema), &["*/*"]), "required": true})
}

/// Add the collection, object and subresource paths of one resource.
pub(super) fn add_resource_paths(
    info: &ResourceInfo,
    kind_schema: &str,
    list_schema_name: &str,
    paths: &mut Map<String, Value>,
    schemas: &mut BTreeMap<String, Value>,
) {
    let (group, version) = (info.group.as_str(), info.version.as_str());
    let prefix = gv_prefix(group, version);
    let ns = info.scope == Scope::Namespaced;
    let scope_word = if ns { "Namespaced" } else { "" };
    let op_prefix = operation_prefix(group, version);
    let tag = tag(group, version);
    let custom = info.crd_schema.is_some();
    let has = |verb: &str| info.verbs.contains(&verb);
    let collection = if ns {
        format!("{prefix}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{prefix}/{}", info.plural)
    };
    let object = format!("{collection}/{{name}}");
    let common = |with_name: bool| {
        let mut params = Vec::new();
        if with_name {
            params.push(path_param("name", &format!("name of the {}", info.kind)));
        }
        if ns {
            params.push(path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ));
        }
        params.push(query(
            "pretty",
            "If 'true', then the output is pretty printed.",
            "string",
        ));
        Value::Array(params)
    };
    let op = |action: &'static str, id: String, description: String| OpKind {
        action,
        id,
        description,
        group,
        version,
        kind: &info.kind,
    };
    let id = |verb: &str| format!("{verb}{op_prefix}{scope_word}{}", info.kind);
    let kind_ref = schema_ref(kind_schema);

    let mut coll = Map::new();
    coll.insert("parameters".into(), common(false));
    if has("list") {
        coll.insert(
            "get".into(),
            operation(
                op(
                    "list",
                    id("list"),
                    format!("list or watch objects of kind {}", info.kind),
                ),
                &tag,
                list_params(),
                None,
                responses(vec![response("200", "OK", &schema_ref(list_schema_name))]),
            ),
        );
    }
    if has("create") {
        coll.insert(
            "post".into(),
            operation(
                op("post", id("create"), format!("create a {}", info.kind)),
                &tag,
                write_params(false),
                Some(object_body(kind_schema)),
                responses(vec![
                    response("200", "OK", &kind_ref),
                    response("201", "Created", &kind_ref),
                    response("202", "Accepted", &kind_ref),
                ]),
            ),
        );
    }
    if has("deletecollection") {
        coll.insert(
            "delete".into(),
            operation(
                op(
                    "deletecollection",
                    format!("delete{op_prefix}Collection{scope_word}{}", info.kind),
                    format!("delete collection of {}", info.kind),
                ),
                &tag,
                list_params(),
                Some(object_body(DELETE_OPTIONS)),
                responses(vec![response("200", "OK", &schema_ref(STATUS))]),
            ),
        );
    }
    if coll.len() > 1 {
        paths.insert(collection.clone(), Value::Object(coll));
    }

    let mut obj = Map::new();
    obj.insert("parameters".into(), common(true));
    if has("get") {
        obj.insert(
            "get".into(),
            operation(
                op(
                    "get",
                    id("read"),
                    format!("read the specified {}", info.kind),
                ),
                &tag,
                Vec::new(),
                None,
                responses(vec![response("200", "OK", &kind_ref)]),
            ),
        );
    }
    if has("update") {
        obj.insert(
            "put".into(),
            operation(
                op(
                    "put",
                    id("replace"),
                    format!("replace the specified {}", info.kind),
                ),
                &tag,
                write_params(false),
                Some(object_body(kind_schema)),
                responses(vec![
                    response("200", "OK", &kind_ref),
                    response("201", "Created", &kind_ref),
                ]),
            ),
        );
    }
    if has("patch") {
        obj.insert(
            "patch".into(),
            operation(
                op(
                    "patch",
                    id("patch"),
                    format!("partially update the specified {}", info.kind),
                ),
                &tag,
                write_params(true),
                Some(patch_body(custom)),
                responses(vec![
                    response("200", "OK", &kind_ref),
                    response("201", "Created", &kind_ref),
                ]),
            ),
        );
    }
    if has("delete") {
        obj.insert(
            "delete".into(),
            operation(
                op("delete", id("delete"), format!("delete a {}", info.kind)),
                &tag,
                vec![
                    query(
                        "dryRun",
                        "When present, indicates that modifications should not be persisted.",
                        "string",
                    ),
                    query(
                        "gracePeriodSeconds",
                        "The duration in seconds before the object should be deleted.",
                        "integer",
                    ),
                    query(
                        "propagationPolicy",
                        "Whether and how garbage collection will be performed.",
                        "string",
                    ),
                ],
                Some(object_body(DELETE_OPTIONS)),
                responses(vec![
                    response("200", "OK", &schema_ref(STATUS)),
                    response("202", "Accepted", &schema_ref(STATUS)),
                ]),
            ),
        );
    }
    if obj.len() > 1 {
        paths.insert(object.clone(), Value::Object(obj));
    }

    if ns && has("list") {
        let all = format!("{prefix}/{}", info.plural);
        let mut item = Map::new();
        item.insert(
            "parameters".into(),
            json!([query(
                "pretty",
                "If 'true', then the output is pretty printed.",
                "string"
            )]),
        );
        item.insert(
            "get".into(),
            operation(
                OpKind {
                    action: "list",
                    id: format!("list{op_prefix}{}ForAllNamespaces", info.kind),
                    description: format!("list or watch objects of kind {}", info.kind),
                    group,
                    version,
                    kind: &info.kind,
                },
                &tag,
                list_params(),
                None,
                responses(vec![response("200", "OK", &schema_ref(list_schema_name))]),
            ),
        );
        paths.insert(all, Value::Object(item));
    }

    for sub in &info.subresources {
        add_subresource_path(
            info,
            sub,
            &object,
            kind_schema,
            paths,
            schemas,
            &common,
            &op_prefix,
            scope_word,
            &tag,
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn add_subresource_path(
    info: &ResourceInfo,
    sub: &Subresource,
    object: &str,
    kind_schema: &str,
    paths: &mut Map<String, Value>,
    schemas: &mut BTreeMap<String, Value>,
    common: &dyn Fn(bool) -> Value,
    op_prefix: &str,
    scope_word: &str,
    tag: &str,
) {
    let connect = matches!(
        sub.name,
        "log" | "exec" | "attach" | "portforward" | "proxy"
    );
    let sub_kind_schema = if connect {
        None
    } else if sub.kind == info.kind && sub.group == info.group {
        Some(kind_schema.to_string())
    } else {
        builtin_type_name(sub.group, sub.version, sub.kind)
            .filter(|n| builtin::definition(n).is_some())
    };
    if let Some(name) = &sub_kind_schema {
        add_definition(name, schemas);
    }
    let suffix = capitalize(sub.name);
    let id = |verb: &str| format!("{verb}{op_prefix}{scope_word}{}{suffix}", info.kind);
    let has = |verb: &str| sub.verbs.contains(&verb);
    let mut item = Map::new();
    item.insert("parameters".into(), common(true));
    let make = |action: &'static str, verb: &str, description: &str| OpKind {
        action,
        id: id(verb),
        description: format!("{description} {} of the specified {}", sub.name, info.kind),
        group: sub.group,
        version: sub.version,
        kind: sub.kind,
    };
    match &sub_kind_schema {
        Some(schema_name) => {
            let r = schema_ref(schema_name);
            if has("get") {
                item.insert(
                    "get".into(),
                    operation(
                        make("get", "read", "read"),
                        tag,
                        Vec::new(),
                        None,
                        responses(vec![response("200", "OK", &r)]),
                    ),
                );
            }
            if has("update") {
                item.insert(
                    "put".into(),
                    operation(
                        make("put", "replace", "replace"),
                        tag,
                        write_params(false),
                        Some(object_body(schema_name)),
                        responses(vec![
                            response("200", "OK", &r),
                            response("201", "Created", &r),
                        ]),
                    ),
                );
            }
            if has("patch") {
                item.insert(
                    "patch".into(),
                    operation(
                        make("patch", "patch", "partially update"),
                        tag,
                        write_params(true),
                        Some(patch_body(info.crd_schema.is_some())),
                        responses(vec![
                            response("200", "OK", &r),
                            response("201", "Created", &r),
                        ]),
                    ),
                );
            }
            if has("create") {
                item.insert(
                    "post".into(),
                    operation(
                        make("post", "create", "create"),
                        tag,
                        write_params(false),
                        Some(object_body(schema_name)),
                        responses(vec![
                            response("200", "OK", &r),
                            response("201", "Created", &r),
                            response("202", "Accepted", &r),
                        ]),
                    ),
                );
            }
        }
        None => {
            // Connect-style subresources (log, exec, attach, portforward, proxy).
            let text = json!({"type": "string"});
            if has("get") {
                item.insert("get".into(), operation(make("connect", "connectGet", "connect GET requests to"), tag, Vec::new(), None, json!({"200": {"description": "OK", "content": {"*/*": {"schema": text}}}, "401": {"description": "Unauthorized"}})));
            }
            if has("create") {
                item.insert("post".into(), operation(make("connect", "connectPost", "connect POST requests to"), tag, Vec::new(), None, json!({"200": {"description": "OK", "content": {"*/*": {"schema": text}}}, "401": {"description": "Unauthorized"}})));
            }
        }
    }
    if item.len() > 1 {
        paths.insert(format!("{object}/{}", sub.name), Value::Object(item));
    }
}
