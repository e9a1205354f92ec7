//! The axum router and request dispatch: non-resource endpoints
//! (`/version`, health, `/metrics`, OpenAPI), discovery, and resource
//! requests routed by method × path to [`objects`] and [`subresources`].

pub mod misc;
pub mod objects;
pub mod subresources;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::errors::{ApiError, ApiResult};
use super::kinds::{KindId, Resource};
use super::params::Query;
use super::path::{self, ApiPath, ResourcePath};
use super::{ApiState, discovery, metrics, negotiate};

/// Builds the API server's router (no TLS, no authentication).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/version", get(misc::version))
        .route("/version/", get(misc::version))
        .route("/healthz", get(misc::ok))
        .route("/livez", get(misc::ok))
        .route("/readyz", get(misc::readyz))
        .route("/healthz/{*check}", get(misc::ok))
        .route("/livez/{*check}", get(misc::ok))
        .route("/readyz/{*check}", get(misc::readyz))
        .route("/metrics", get(misc::metrics))
        .route("/openapi/v2", get(misc::openapi_v2))
        .route("/swagger-2.0.0.pb-v1", get(misc::openapi_v2))
        .route("/openapi/v3", get(misc::openapi_v3_root))
        .route("/openapi/v3/{*gv}", get(misc::openapi_v3_gv))
        .route("/api", any(api))
        .route("/api/", any(api))
        .route("/api/{*rest}", any(api))
        .route("/apis", any(api))
        .route("/apis/", any(api))
        .route("/apis/{*rest}", any(api))
        .fallback(misc::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Everything a resource handler needs about one request.
pub struct Ctx {
    /// Shared state.
    pub state: ApiState,
    /// The resource.
    pub res: Arc<Resource>,
    /// The parsed path.
    pub path: ResourcePath,
    /// The query.
    pub query: Query,
    /// Request headers.
    pub headers: HeaderMap,
}

impl Ctx {
    /// The namespace from the URL.
    pub fn ns(&self) -> Option<&str> {
        self.path.namespace.as_deref()
    }

    /// The field manager: `?fieldManager` or the User-Agent's first token.
    pub fn field_manager(&self) -> ApiResult<Option<String>> {
        if let Some(m) = self.query.field_manager()? {
            return Ok(Some(m));
        }
        let ua = self
            .headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let prefix: String = ua
            .split('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(128)
            .collect();
        Ok(Some(if prefix.is_empty() {
            "unknown".to_string()
        } else {
            prefix
        }))
    }

    /// Write options from the query.
    pub fn write_opts(&self) -> ApiResult<super::ops::WriteOpts> {
        Ok(super::ops::WriteOpts {
            dry_run: self.query.dry_run()?,
            field_manager: self.field_manager()?,
            field_validation: self.query.field_validation()?,
            managed_fields_done: false,
        })
    }
}

async fn api(State(state): State<ApiState>, req: Request) -> Response {
    match dispatch(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch(state: ApiState, req: Request) -> ApiResult<Response> {
    let Some(parsed) = path::parse(req.uri().path()) else {
        return Err(ApiError::path_not_found());
    };
    let method = req.method().clone();
    match parsed {
        ApiPath::Resource(rp) => resource(state, rp, req).await,
        other => {
            if method != Method::GET && method != Method::HEAD {
                return Err(ApiError::method_not_allowed());
            }
            discovery::serve(&state, &other, req.headers())
        }
    }
}

async fn resource(state: ApiState, rp: ResourcePath, req: Request) -> ApiResult<Response> {
    let res = state
        .registry()
        .lookup(&rp.group, &rp.version, &rp.plural)
        .ok_or_else(ApiError::path_not_found)?;
    if rp.namespace.is_some() && !res.info.namespaced() {
        return Err(ApiError::path_not_found());
    }
    if res.id == KindId::Pod
        && rp.name.is_some()
        && matches!(
            rp.subresource.as_deref(),
            Some("log" | "exec" | "attach" | "portforward")
        )
    {
        return subresources::proxy_to_kubelet(&state, &res, &rp, req).await;
    }
    if res.id == KindId::Node && rp.name.is_some() && rp.subresource.as_deref() == Some("proxy") {
        return super::kubelet_proxy::proxy_to_node(&state, &res, &rp, req).await;
    }
    let (parts, body) = req.into_parts();
    let ctx = Ctx {
        query: Query::parse(parts.uri.query())?,
        headers: parts.headers,
        res,
        path: rp,
        state,
    };
    let method = parts.method;
    if ctx.res.id == KindId::ComponentStatus {
        return objects::component_statuses(&ctx, &method).await;
    }
    let has_name = ctx.path.name.is_some();
    if let Some(sub) = ctx.path.subresource.clone() {
        return subresources::serve(&ctx, &method, &sub, body).await;
    }
    let namespaced_without_ns = ctx.res.info.namespaced() && ctx.path.namespace.is_none();
    let watching = ctx.path.watch_prefix || ctx.query.bool("watch")?;
    match (method, has_name) {
        (Method::GET, _) if watching => super::watch::serve(&ctx).await,
        (Method::GET, false) => objects::list(&ctx).await,
        (Method::GET, true) if !namespaced_without_ns => objects::get(&ctx).await,
        (Method::POST, false) if !namespaced_without_ns => objects::create(&ctx, body).await,
        (Method::PUT, true) if !namespaced_without_ns => objects::replace(&ctx, body).await,
        (Method::PATCH, true) if !namespaced_without_ns => objects::patch(&ctx, body).await,
        (Method::DELETE, true) if !namespaced_without_ns => objects::delete(&ctx, body).await,
        (Method::DELETE, false) if !namespaced_without_ns => {
            objects::delete_collection(&ctx, body).await
        }
        (_, true) if namespaced_without_ns => Err(ApiError::path_not_found()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Reads a request body with the configured limit.
pub async fn read_body(ctx: &Ctx, body: Body) -> ApiResult<bytes::Bytes> {
    super::body::read(body, ctx.state.config().max_body_bytes).await
}

/// Chooses the output for object endpoints.
pub fn output(ctx: &Ctx) -> ApiResult<negotiate::Output> {
    negotiate::choose(&ctx.headers, negotiate::Endpoint::Objects)
}
