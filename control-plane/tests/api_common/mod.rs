//! Shared helpers for the API server integration tests: an in-process
//! server over a MemoryStore and a small request helper on the router.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use skiff_control_plane::apiserver::{ApiConfig, ApiServer, BackgroundTasks};
use skiff_control_plane::store::Store;
use skiff_control_plane::store::memory::MemoryStore;
use tower::ServiceExt;

/// A running in-process API server.
pub struct TestApi {
    pub router: Router,
    pub server: ApiServer,
    pub store: Arc<dyn Store>,
    _bg: BackgroundTasks,
}

/// The test configuration: fast resyncs and bookmarks.
pub fn config() -> ApiConfig {
    ApiConfig {
        namespace_resync: Duration::from_millis(100),
        bookmark_interval: Duration::from_millis(300),
        ..ApiConfig::default()
    }
}

/// Starts a bootstrapped server with background tasks.
pub async fn start() -> TestApi {
    start_with(MemoryStore::new().shared(), config()).await
}

/// Starts a server over a given store and config.
pub async fn start_with(store: Arc<dyn Store>, config: ApiConfig) -> TestApi {
    let (server, bg) = ApiServer::start(store.clone(), config)
        .await
        .expect("start");
    TestApi {
        router: server.router(),
        server,
        store,
        _bg: bg,
    }
}

/// A response: status, headers, body (JSON if it parses, else a string).
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl TestApi {
    /// Sends a request; `body` is JSON unless `content_type` says otherwise.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        self.raw(method, uri, bytes, headers).await
    }

    /// Sends raw bytes.
    pub async fn raw(
        &self,
        method: Method,
        uri: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Body::from(body)).expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let raw = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        let body = serde_json::from_slice(&raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&raw).into_owned()));
        Resp {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.call(Method::GET, uri, None, &[]).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::POST, uri, Some(body), &[]).await
    }

    pub async fn put(&self, uri: &str, body: Value) -> Resp {
        self.call(Method::PUT, uri, Some(body), &[]).await
    }

    pub async fn patch(&self, uri: &str, ct: &str, body: Value) -> Resp {
        self.call(Method::PATCH, uri, Some(body), &[("content-type", ct)])
            .await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.call(Method::DELETE, uri, None, &[]).await
    }
}

/// A minimal valid pod.
pub fn pod(name: &str) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
                       "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}})
}

/// A minimal valid deployment.
pub fn deployment(name: &str, replicas: i64) -> Value {
    serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}})
}

/// Polls `f` until it returns true or 10 s pass.
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
