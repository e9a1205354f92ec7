//! The stock kubectl against the wire pieces (patch, protobuf, OpenAPI,
//! schemas), behind a minimal in-test API server: client-side and
//! server-side apply, `set image`, `label`, `explain`, generator commands
//! that send protobuf (kubectl ≥ 1.32), and client-side validation of
//! kubectl 1.27 against the protobuf OpenAPI v2.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_control_plane::apiserver::patch::{PatchRequest, PatchType, apply_patch, managed_fields};
use skiff_control_plane::apiserver::resource::{ResourceInfo, Scope, Subresource};
use skiff_control_plane::apiserver::{openapi, protobuf, schema};

fn resource(group: &str, kind: &str, plural: &str, scope: Scope) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: "v1".into(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        scope,
        short_names: vec![],
        categories: vec![],
        verbs: vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ],
        subresources: vec![Subresource {
            name: "status",
            group: if group.is_empty() { "" } else { "apps" },
            version: "v1",
            kind: if plural == "pods" {
                "Pod"
            } else {
                "Deployment"
            },
            verbs: &["get", "patch", "update"],
        }],
        has_status_subresource: true,
        crd_schema: None,
    }
}

#[derive(Default)]
struct Server {
    resources: Vec<ResourceInfo>,
    objects: Mutex<HashMap<String, Value>>,
    log: Mutex<Vec<String>>,
    next_rv: Mutex<u64>,
    /// Answer 404 on `/openapi/v3*` (to exercise the v2 fallback).
    no_v3: bool,
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn discovery(server: &Server, path: &str) -> Option<Value> {
    let list = |gv: &str, group: &str| {
        let resources: Vec<Value> = server
            .resources
            .iter()
            .filter(|r| r.group == group)
            .map(|r| {
                json!({"name": r.plural, "singularName": r.singular, "namespaced": r.scope == Scope::Namespaced,
                       "kind": r.kind, "verbs": r.verbs})
            })
            .collect();
        json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion": gv,"resources": resources})
    };
    match path {
        "/api" => Some(json!({"kind":"APIVersions","versions":["v1"],
            "serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]})),
        "/apis" => Some(
            json!({"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"apps",
            "versions":[{"groupVersion":"apps/v1","version":"v1"}],"preferredVersion":{"groupVersion":"apps/v1","version":"v1"}}]}),
        ),
        "/api/v1" => Some(list("v1", "")),
        "/apis/apps/v1" => Some(list("apps/v1", "apps")),
        _ => None,
    }
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

async fn handle(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    server
        .log
        .lock()
        .expect("log")
        .push(format!("{method} {path}?{query} [{content_type}]"));

    if method == Method::GET {
        if let Some(doc) = discovery(&server, &path) {
            return json_response(StatusCode::OK, &doc);
        }
        if server.no_v3 && path.starts_with("/openapi/v3") {
            return status(StatusCode::NOT_FOUND, "NotFound", "no v3 here");
        }
        if path == "/openapi/v3" {
            return json_response(StatusCode::OK, &openapi::v3_root(&server.resources));
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            let parts: Vec<&str> = gv.split('/').collect();
            let (group, version) = match parts.as_slice() {
                ["api", v] => ("", *v),
                ["apis", g, v] => (*g, *v),
                _ => return status(StatusCode::NOT_FOUND, "NotFound", "no such document"),
            };
            return match openapi::v3_group_version(group, version, &server.resources) {
                Some(doc) => json_response(StatusCode::OK, &doc),
                None => status(StatusCode::NOT_FOUND, "NotFound", "no such document"),
            };
        }
        if path == "/openapi/v2" {
            if accept.contains("protobuf") {
                let bytes = openapi::v2_protobuf(&server.resources).unwrap_or_default();
                return (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, openapi::V2_PROTOBUF_CONTENT_TYPE)],
                    bytes,
                )
                    .into_response();
            }
            return json_response(StatusCode::OK, &openapi::v2(&server.resources));
        }
    }

    // /api/v1/namespaces/{ns}/{plural}[/{name}] or /apis/apps/v1/namespaces/{ns}/{plural}[/{name}]
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", g, "v1", rest @ ..] => (*g, rest),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", "not found"),
    };
    let (ns, plural, name) = match rest {
        ["namespaces", ns, plural] => (*ns, *plural, None),
        ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
        _ => return status(StatusCode::NOT_FOUND, "NotFound", "not found"),
    };
    let Some(info) = server
        .resources
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .cloned()
    else {
        return status(StatusCode::NOT_FOUND, "NotFound", "no such resource");
    };
    let key = |n: &str| format!("{group}/{plural}/{ns}/{n}");
    let strict = query_param(&query, "fieldValidation") == Some("Strict");
    let manager = query_param(&query, "fieldManager").map(str::to_string);

    let store = |server: &Server, mut obj: Value, old: Option<&Value>| -> Value {
        let mut rv = server.next_rv.lock().expect("rv");
        *rv += 1;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"]["namespace"] = json!(ns);
        if old.is_none() {
            obj["metadata"]["uid"] = json!(format!("uid-{rv}"));
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        server
            .objects
            .lock()
            .expect("objects")
            .insert(key(&name), obj.clone());
        obj
    };

    match (method.clone(), name) {
        (Method::GET, Some(name)) => {
            match server.objects.lock().expect("objects").get(&key(name)) {
                Some(obj) => json_response(StatusCode::OK, obj),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                ),
            }
        }
        (Method::POST, None) => {
            let obj = if protobuf::is_protobuf(&content_type) {
                match protobuf::decode(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return status(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            e.reason(),
                            &e.to_string(),
                        );
                    }
                }
            } else {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => v,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                }
            };
            if strict && let Some(s) = schema::schema_for(&info) {
                let unknown = schema::unknown_fields(&s, &obj);
                if !unknown.is_empty() {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!("strict decoding error: unknown field \"{}\"", unknown[0]),
                    );
                }
            }
            let mut obj = obj;
            managed_fields::record_update(
                None,
                &mut obj,
                manager.as_deref().unwrap_or("kubectl"),
                &info.api_version(),
                None,
            );
            json_response(StatusCode::CREATED, &store(&server, obj, None))
        }
        (Method::PATCH, Some(name)) => {
            let Some(patch_type) = PatchType::from_content_type(&content_type) else {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    "unsupported patch type",
                );
            };
            let current = server
                .objects
                .lock()
                .expect("objects")
                .get(&key(name))
                .cloned();
            if current.is_none() && patch_type != PatchType::Apply {
                return status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                );
            }
            let req = PatchRequest {
                info: &info,
                patch_type,
                body: &body,
                field_manager: manager.as_deref(),
                force: query_param(&query, "force") == Some("true"),
            };
            let mut new = match apply_patch(&req, current.as_ref()) {
                Ok(v) => v,
                Err(e) => {
                    let code =
                        StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return status(code, e.reason(), &e.to_string());
                }
            };
            if patch_type != PatchType::Apply {
                managed_fields::record_update(
                    current.as_ref(),
                    &mut new,
                    manager.as_deref().unwrap_or("kubectl"),
                    &info.api_version(),
                    None,
                );
            }
            let created = current.is_none();
            let stored = store(&server, new, current.as_ref());
            json_response(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &stored,
            )
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported here",
        ),
    }
}

struct Harness {
    server: Arc<Server>,
    dir: tempfile::TempDir,
    kubectl_dir: PathBuf,
}

impl Harness {
    async fn start() -> Harness {
        Self::start_with(false).await
    }

    async fn start_with(no_v3: bool) -> Harness {
        let server = Arc::new(Server {
            no_v3,
            resources: vec![
                resource("", "Pod", "pods", Scope::Namespaced),
                resource("apps", "Deployment", "deployments", Scope::Namespaced),
            ],
            ..Server::default()
        });
        let app = Router::new().fallback(handle).with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"http://{addr}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u, namespace: default}}}}]\n\
             current-context: x\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("kubeconfig");
        let kubectl = which_kubectl();
        let kubectl_dir = kubectl.parent().map(Path::to_path_buf).unwrap_or_default();
        Harness {
            server,
            dir,
            kubectl_dir,
        }
    }

    /// Run `kubectl[.<version>] args…` with a fresh cache; returns (success, stdout, stderr).
    fn kubectl(
        &self,
        version: Option<&str>,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let binary = match version {
            Some(v) => self.kubectl_dir.join(format!("kubectl.{v}")),
            None => self.kubectl_dir.join("kubectl"),
        };
        let mut cmd = Command::new(binary);
        cmd.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(
                self.dir
                    .path()
                    .join(format!("cache-{}", version.unwrap_or("default"))),
            )
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn object(&self, key: &str) -> Value {
        self.server
            .objects
            .lock()
            .expect("objects")
            .get(key)
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn requests(&self) -> Vec<String> {
        self.server.log.lock().expect("log").clone()
    }
}

fn which_kubectl() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    let found = found.expect("kubectl on PATH (it is installed on every machine of this project)");
    std::fs::canonicalize(&found).unwrap_or(found)
}

fn manager_names(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["manager"].as_str().map(str::to_string))
        .collect()
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: demo\n  labels:\n    app: demo\nspec:\n  containers:\n  - name: app\n    image: nginx:1.25\n    ports:\n    - containerPort: 80\n  - name: sidecar\n    image: busybox\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_apply_uses_server_validation_and_strategic_merge() {
    let h = Harness::start().await;
    let (ok, _, err) = h.kubectl(None, &["apply", "-f", "-"], Some(POD));
    assert!(ok, "first apply: {err}");
    let changed = POD
        .replace("nginx:1.25", "nginx:1.26")
        .replace("    app: demo\n", "    app: demo\n    tier: web\n");
    let (ok, out, err) = h.kubectl(None, &["apply", "-f", "-"], Some(&changed));
    assert!(ok, "second apply: {err}");
    assert!(out.contains("pod/demo configured"), "{out}");
    assert!(!err.contains("warning"), "kubectl warned: {err}");
    let requests = h.requests();
    let patch = requests
        .iter()
        .find(|r| r.starts_with("PATCH"))
        .expect("a PATCH");
    assert!(patch.contains("fieldValidation=Strict"), "{patch}");
    assert!(
        patch.contains("application/strategic-merge-patch+json"),
        "{patch}"
    );
    let pod = h.object("/pods/default/demo");
    assert_eq!(pod["spec"]["containers"][0]["image"], "nginx:1.26");
    assert_eq!(pod["spec"]["containers"][1]["name"], "sidecar");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app":"demo","tier":"web"})
    );
    assert!(
        manager_names(&pod).contains(&"kubectl-client-side-apply".to_string()),
        "{pod}"
    );

    // label / unlabel use JSON merge patch.
    let (ok, _, err) = h.kubectl(None, &["label", "pod", "demo", "env=prod"], None);
    assert!(ok, "{err}");
    let (ok, _, err) = h.kubectl(None, &["label", "pod", "demo", "tier-"], None);
    assert!(ok, "{err}");
    let pod = h.object("/pods/default/demo");
    assert_eq!(
        pod["metadata"]["labels"],
        json!({"app":"demo","env":"prod"})
    );
    assert!(
        manager_names(&pod).contains(&"kubectl-label".to_string()),
        "{pod}"
    );

    // An unknown field is rejected by the server under strict validation.
    let bad = POD
        .replace("name: demo", "name: bad")
        .replace("image: busybox", "image: busybox\n    bogus: 1");
    let (ok, _, err) = h.kubectl(None, &["create", "-f", "-"], Some(&bad));
    assert!(!ok);
    assert!(
        err.contains("unknown field \"spec.containers[1].bogus\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    let h = Harness::start().await;
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:1.25\n";
    let (ok, out, err) = h.kubectl(None, &["apply", "--server-side", "-f", "-"], Some(deploy));
    assert!(ok, "{err}");
    assert!(out.contains("serverside-applied"), "{out}");
    let (ok, _, err) = h.kubectl(
        None,
        &["apply", "--server-side", "-f", "-"],
        Some(&deploy.replace("replicas: 2", "replicas: 3")),
    );
    assert!(ok, "{err}");
    let d = h.object("apps/deployments/default/web");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(manager_names(&d), vec!["kubectl"]);

    let other = deploy.replace("replicas: 2", "replicas: 5");
    let (ok, _, err) = h.kubectl(
        None,
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&other),
    );
    assert!(!ok);
    assert!(
        err.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{err}"
    );
    let (ok, _, err) = h.kubectl(
        None,
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&other),
    );
    assert!(ok, "{err}");
    assert_eq!(
        h.object("apps/deployments/default/web")["spec"]["replicas"],
        5
    );

    // set image sends a strategic merge patch with $setElementOrder.
    let (ok, _, err) = h.kubectl(
        None,
        &["set", "image", "deployment/web", "nginx=nginx:1.26"],
        None,
    );
    assert!(ok, "{err}");
    let d = h.object("apps/deployments/default/web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert!(
        manager_names(&d).contains(&"kubectl-set".to_string()),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generator_commands_send_protobuf_and_explain_reads_openapi() {
    let h = Harness::start().await;
    let (ok, _, err) = h.kubectl(
        None,
        &[
            "create",
            "deployment",
            "gen",
            "--image=nginx:1.25",
            "--port=80",
            "--replicas=0",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        h.requests()
            .iter()
            .any(|r| r.starts_with("POST") && r.contains("application/vnd.kubernetes.protobuf"))
    );
    let d = h.object("apps/deployments/default/gen");
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
    assert_eq!(manager_names(&d), vec!["kubectl-create"]);

    let (ok, out, err) = h.kubectl(None, &["explain", "pods.spec.containers.image"], None);
    assert!(ok, "{err}");
    assert!(out.contains("Container image name"), "{out}");
    let (ok, out, err) = h.kubectl(None, &["explain", "deployment.spec.strategy"], None);
    assert!(ok, "{err}");
    assert!(out.contains("rollingUpdate"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_reads_protobuf_openapi_v2() {
    // kubectl 1.27 downloads the protobuf OpenAPI v2 before creating (a
    // document it cannot parse fails the command), then leaves validation to
    // the server; `explain` reads the v2 definitions when v3 is missing.
    for no_v3 in [false, true] {
        let h = Harness::start_with(no_v3).await;
        let (ok, _, err) = h.kubectl(Some("1.27"), &["create", "-f", "-"], Some(POD));
        assert!(ok, "no_v3={no_v3}: {err}");
        assert!(
            h.requests()
                .iter()
                .any(|r| r.starts_with("GET /openapi/v2"))
        );
        let bad = POD
            .replace("name: demo", "name: bad")
            .replace("image: busybox", "image: busybox\n    bogus: 1");
        let (ok, _, err) = h.kubectl(Some("1.27"), &["create", "-f", "-"], Some(&bad));
        assert!(!ok, "the unknown field must be rejected");
        assert!(err.contains("bogus"), "{err}");
        let (ok, out, err) = h.kubectl(Some("1.27"), &["explain", "pods.spec.restartPolicy"], None);
        assert!(ok, "no_v3={no_v3}: {err}");
        assert!(out.contains("restartPolicy"), "{out}");
        let (ok, out, err) = h.kubectl(
            Some("1.27"),
            &["explain", "deployments.spec.template.spec.containers.ports"],
            None,
        );
        assert!(ok, "no_v3={no_v3}: {err}");
        assert!(out.contains("containerPort"), "{out}");
    }
}
