//! Prometheus metrics of the API server: request counts and latencies per
//! verb, group, resource, subresource and code, and the number of open
//! watches. A middleware labels every request from its method and path and
//! runs it inside a `request` tracing span.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Instrument;

use super::ApiState;
use super::path::{self, ApiPath};

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, …) or the HTTP method.
    pub verb: String,
    /// API group.
    pub group: String,
    /// Plural resource, or "" for non-resource paths.
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// HTTP status code.
    pub code: String,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Verb.
    pub verb: String,
    /// Group.
    pub group: String,
    /// Resource.
    pub resource: String,
}

/// Labels of the watcher gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// Group.
    pub group: String,
    /// Resource.
    pub resource: String,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The metric set and its registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    watchers: Family<WatchLabels, Gauge>,
    open_watches: Arc<AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let watchers = Family::<WatchLabels, Gauge>::default();
        registry.register(
            "apiserver_request",
            "Counter of API server requests",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds",
            latency.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently open watches",
            watchers.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            watchers,
            open_watches: Arc::new(AtomicI64::new(0)),
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }

    /// Counts one watch as open until the guard is dropped.
    pub fn watch_started(&self, group: &str, resource: &str) -> WatchGuard {
        let labels = WatchLabels {
            group: group.into(),
            resource: resource.into(),
        };
        let gauge = self.watchers.get_or_create(&labels).clone();
        gauge.inc();
        self.open_watches.fetch_add(1, Ordering::Relaxed);
        WatchGuard {
            gauge,
            total: self.open_watches.clone(),
        }
    }

    /// Open watches right now (all resources).
    pub fn open_watches(&self) -> i64 {
        self.open_watches.load(Ordering::Relaxed)
    }
}

/// Keeps a watch counted as open; decrements the gauges when dropped.
pub struct WatchGuard {
    gauge: Gauge,
    total: Arc<AtomicI64>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The Kubernetes verb of a request.
pub fn verb(method: &Method, has_name: bool, watching: bool) -> &'static str {
    match *method {
        Method::GET if watching => "watch",
        Method::GET if has_name => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if has_name => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// Middleware: counts and times every request.
pub async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let watch_param = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
    let (verb, group, resource, sub) = match path::parse(req.uri().path()) {
        Some(ApiPath::Resource(r)) => (
            verb(&method, r.name.is_some(), r.watch_prefix || watch_param).to_string(),
            r.group,
            r.plural,
            r.subresource.unwrap_or_default(),
        ),
        _ => (
            method.as_str().to_ascii_lowercase(),
            String::new(),
            String::new(),
            String::new(),
        ),
    };
    let span = tracing::debug_span!("request", %method, path = %req.uri().path(), verb = %verb, resource = %resource);
    let resp = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "request done"
        );
    });
    let m = state.metrics();
    m.requests
        .get_or_create(&RequestLabels {
            verb: verb.clone(),
            group: group.clone(),
            resource: resource.clone(),
            subresource: sub,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    m.latency
        .get_or_create(&LatencyLabels {
            verb,
            group,
            resource,
        })
        .observe(start.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs() {
        assert_eq!(verb(&Method::GET, true, false), "get");
        assert_eq!(verb(&Method::GET, false, false), "list");
        assert_eq!(verb(&Method::GET, false, true), "watch");
        assert_eq!(verb(&Method::DELETE, false, false), "deletecollection");
        assert_eq!(verb(&Method::PATCH, true, false), "patch");
    }

    #[test]
    fn watch_gauge_goes_up_and_down() {
        let m = Metrics::new();
        let g = m.watch_started("", "pods");
        assert!(
            m.encode()
                .contains("apiserver_registered_watchers{group=\"\",resource=\"pods\"} 1")
        );
        assert_eq!(m.open_watches(), 1);
        drop(g);
        assert!(
            m.encode()
                .contains("apiserver_registered_watchers{group=\"\",resource=\"pods\"} 0")
        );
        assert_eq!(m.open_watches(), 0);
    }
}
