//! Lists (selectors, pagination, resourceVersion semantics) and watches
//! (initial state, changes after N, 410, selector transitions, bookmarks,
//! Table events, timeouts, disconnects).

mod api_common;

use std::time::Duration;

use api_common::{TestApi, eventually, pod, start, start_with};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use skiff_control_plane::store::memory::MemoryStore;
use tower::ServiceExt;

const PODS: &str = "/api/v1/namespaces/default/pods";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

struct Watch {
    body: Body,
    buf: Vec<u8>,
    status: StatusCode,
    content_type: String,
}

impl Watch {
    async fn open(api: &TestApi, uri: &str, accept: Option<&str>) -> Watch {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        let resp = api
            .router
            .clone()
            .oneshot(b.body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Watch {
            body: resp.into_body(),
            buf: Vec::new(),
            status,
            content_type,
        }
    }

    /// The next event, or None if the stream ended or nothing came in time.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).expect("event json"));
            }
            match tokio::time::timeout(wait, self.body.frame()).await {
                Ok(Some(Ok(f))) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
                _ => return None,
            }
        }
    }

    async fn next_of(&mut self) -> (String, Value) {
        let e = self.next(Duration::from_secs(5)).await.expect("an event");
        (
            e["type"].as_str().unwrap_or("").to_string(),
            e["object"].clone(),
        )
    }
}

fn labelled(name: &str, labels: Value) -> Value {
    let mut p = pod(name);
    p["metadata"]["labels"] = labels;
    p
}

#[tokio::test]
async fn list_with_label_and_field_selectors() {
    let api = start().await;
    api.post(PODS, labelled("a", json!({"app": "web", "tier": "fe"})))
        .await;
    api.post(PODS, labelled("b", json!({"app": "web", "tier": "be"})))
        .await;
    api.post(PODS, labelled("c", json!({"app": "db"}))).await;
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let all = api.get(PODS).await;
    assert_eq!(all.body["kind"], "PodList");
    assert_eq!(all.body["apiVersion"], "v1");
    assert_eq!(
        all.body["metadata"]["resourceVersion"],
        api.store.current_revision().to_string()
    );
    assert_eq!(names(&all.body), ["a", "b", "c"]);
    let cases = [
        ("labelSelector=app%3Dweb", vec!["a", "b"]),
        ("labelSelector=app!%3Dweb", vec!["c"]),
        ("labelSelector=tier%20in%20(fe)", vec!["a"]),
        ("labelSelector=tier%20notin%20(fe)", vec!["b", "c"]),
        ("labelSelector=tier", vec!["a", "b"]),
        ("labelSelector=!tier", vec!["c"]),
        ("fieldSelector=metadata.name%3Db", vec!["b"]),
        ("fieldSelector=metadata.name!%3Db", vec!["a", "c"]),
        (
            "fieldSelector=status.phase%3DPending,spec.nodeName%3D",
            vec!["a", "b", "c"],
        ),
    ];
    for (q, want) in cases {
        let r = api.get(&format!("{PODS}?{q}")).await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        assert_eq!(names(&r.body), want, "{q}");
    }
    let bad = api
        .get(&format!("{PODS}?fieldSelector=spec.bogus%3Dx"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["message"], "field label not supported: spec.bogus");
    let bad = api.get(&format!("{PODS}?labelSelector=a%20in%20b")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let across = api.get("/api/v1/pods").await;
    assert_eq!(names(&across.body).len(), 3);
}

#[tokio::test]
async fn pagination_with_continue_tokens() {
    let api = start().await;
    for i in 0..5 {
        api.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": format!("cm{i}")}}),
        )
        .await;
    }
    let base = "/api/v1/namespaces/default/configmaps";
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut rv = None;
    for _ in 0..10 {
        let uri = match &token {
            Some(t) => format!("{base}?limit=2&continue={t}"),
            None => format!("{base}?limit=2"),
        };
        let r = api.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page_rv = r.body["metadata"]["resourceVersion"].clone();
        assert_eq!(
            *rv.get_or_insert(page_rv.clone()),
            page_rv,
            "all pages read at the first page's revision"
        );
        for i in r.body["items"].as_array().expect("items") {
            seen.push(i["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        // A write between pages must not show up in later pages.
        api.post(
            base,
            json!({"metadata": {"name": format!("late{}", seen.len())}}),
        )
        .await;
        token = r.body["metadata"]["continue"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, ["cm0", "cm1", "cm2", "cm3", "cm4"]);
    let bad = api.get(&format!("{base}?limit=1&continue=garbage")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn expired_continue_and_resource_versions() {
    let api = start_with(MemoryStore::with_history(5).shared(), api_common::config()).await;
    let base = "/api/v1/namespaces/default/configmaps";
    for i in 0..3 {
        api.post(base, json!({"metadata": {"name": format!("cm{i}")}}))
            .await;
    }
    let first = api.get(&format!("{base}?limit=1")).await;
    let token = first.body["metadata"]["continue"]
        .as_str()
        .expect("token")
        .to_string();
    for i in 0..10 {
        api.post(base, json!({"metadata": {"name": format!("x{i}")}}))
            .await;
    }
    let r = api.get(&format!("{base}?limit=1&continue={token}")).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert_eq!(r.body["reason"], "Expired");
    let r = api
        .get(&format!(
            "{base}?resourceVersion=1&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    let now = api.store.current_revision();
    let r = api
        .get(&format!(
            "{base}?resourceVersion={now}&resourceVersionMatch=Exact"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = api.get(&format!("{base}?resourceVersion=0")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["items"].as_array().map(Vec::len), Some(13));
    let r = api.get(&format!("{base}?resourceVersionMatch=Exact")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn watch_from_zero_sends_current_state_then_changes() {
    let api = start().await;
    api.post(PODS, pod("a")).await;
    let mut w = Watch::open(&api, &format!("{PODS}?watch=true&resourceVersion=0"), None).await;
    assert_eq!(w.status, StatusCode::OK);
    assert_eq!(w.content_type, "application/json");
    let (ty, obj) = w.next_of().await;
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("a"))
    );
    api.post(PODS, pod("b")).await;
    let (ty, obj) = w.next_of().await;
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("b"))
    );
    api.patch(
        &format!("{PODS}/b"),
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"x": "1"}}}),
    )
    .await;
    let (ty, obj) = w.next_of().await;
    assert_eq!(ty, "MODIFIED");
    assert_eq!(obj["metadata"]["labels"]["x"], "1");
    api.delete(&format!("{PODS}/b")).await;
    let (ty, obj) = w.next_of().await;
    assert_eq!(ty, "DELETED");
    assert_eq!(obj["metadata"]["name"], "b");
}

#[tokio::test]
async fn watch_after_a_resource_version_and_too_old() {
    let api = start_with(MemoryStore::with_history(5).shared(), api_common::config()).await;
    let a = api.post(PODS, pod("a")).await;
    let rv = a.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    api.post(PODS, pod("b")).await;
    let mut w = Watch::open(&api, &format!("{PODS}?watch=1&resourceVersion={rv}"), None).await;
    let (ty, obj) = w.next_of().await;
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("b")),
        "only changes after RV"
    );
    for i in 0..10 {
        api.post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": format!("c{i}")}}),
        )
        .await;
    }
    let mut old = Watch::open(
        &api,
        &format!("{PODS}?watch=true&resourceVersion={rv}"),
        None,
    )
    .await;
    assert_eq!(old.status, StatusCode::OK);
    let (ty, obj) = old.next_of().await;
    assert_eq!(ty, "ERROR");
    assert_eq!(
        (obj["code"].clone(), obj["reason"].clone()),
        (json!(410), json!("Expired"))
    );
    assert!(
        old.next(Duration::from_secs(2)).await.is_none(),
        "stream ends after the error"
    );
}

#[tokio::test]
async fn watch_selectors_emit_added_and_deleted_on_transitions() {
    let api = start().await;
    api.post(PODS, labelled("p", json!({"app": "db"}))).await;
    let mut w = Watch::open(
        &api,
        &format!("{PODS}?watch=true&labelSelector=app%3Dweb"),
        None,
    )
    .await;
    let uri = format!("{PODS}/p");
    api.patch(
        &uri,
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    assert_eq!(w.next_of().await.0, "ADDED");
    api.patch(
        &uri,
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"v": "2"}}}),
    )
    .await;
    assert_eq!(w.next_of().await.0, "MODIFIED");
    api.patch(
        &uri,
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    assert_eq!(w.next_of().await.0, "DELETED");
    api.patch(
        &uri,
        "application/merge-patch+json",
        json!({"metadata": {"labels": {"v": "3"}}}),
    )
    .await;
    assert!(
        w.next(Duration::from_millis(500)).await.is_none(),
        "non-matching changes are filtered"
    );
}

#[tokio::test]
async fn watch_by_name_bookmarks_and_timeout() {
    let api = start().await;
    api.post(PODS, pod("x")).await;
    let mut w = Watch::open(
        &api,
        &format!("{PODS}?fieldSelector=metadata.name%3Dx&resourceVersion=0&watch=true&allowWatchBookmarks=true&timeoutSeconds=2"),
        None,
    )
    .await;
    assert_eq!(w.next_of().await.0, "ADDED");
    let (ty, obj) = w.next_of().await;
    assert_eq!(ty, "BOOKMARK");
    assert_eq!(obj["kind"], "Pod");
    assert!(obj["metadata"]["resourceVersion"].as_str().is_some());
    let started = std::time::Instant::now();
    while w.next(Duration::from_secs(5)).await.is_some() {}
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the server ends the stream at timeoutSeconds"
    );
    // Legacy /watch/ path with a name.
    let mut legacy = Watch::open(&api, "/api/v1/watch/namespaces/default/pods/x", None).await;
    assert_eq!(legacy.next_of().await.0, "ADDED");
}

#[tokio::test]
async fn table_watch_events_are_one_row_tables() {
    let api = start().await;
    let list = api
        .call(axum::http::Method::GET, PODS, None, &[("accept", TABLE)])
        .await;
    let rv = list.body["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut w = Watch::open(
        &api,
        &format!("{PODS}?resourceVersion={rv}&watch=true"),
        Some(TABLE),
    )
    .await;
    assert_eq!(
        w.content_type,
        "application/json;as=Table;v=v1;g=meta.k8s.io"
    );
    api.post(PODS, pod("t")).await;
    let (ty, obj) = w.next_of().await;
    assert_eq!(ty, "ADDED");
    assert_eq!(obj["kind"], "Table");
    assert_eq!(obj["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(obj["rows"][0]["cells"][0], "t");
    assert_eq!(obj["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}

#[tokio::test]
async fn watchers_are_freed_when_clients_disconnect() {
    let api = start().await;
    let metrics = || async {
        api.get("/metrics")
            .await
            .body
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let w = Watch::open(&api, &format!("{PODS}?watch=true"), None).await;
    let open = api.server.state().metrics().open_watches();
    assert_eq!(open, 1);
    assert!(
        metrics()
            .await
            .contains("apiserver_registered_watchers{group=\"\",resource=\"pods\"} 1")
    );
    drop(w);
    let state = api.server.state();
    assert!(
        eventually(|| {
            let s = state.clone();
            async move { s.metrics().open_watches() == 0 }
        })
        .await
    );
}
