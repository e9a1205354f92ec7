//! Subresources: `status` (GET/PUT/PATCH), `scale` (autoscaling/v1 Scale
//! for Deployments, ReplicaSets, StatefulSets and CRDs with a scale
//! subresource), `pods/binding`, `namespaces/finalize`, and the kubelet
//! proxies (`log`, `exec`, `attach`, `portforward`; see
//! [`crate::apiserver::kubelet_proxy`]).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::objects::{patch_sub, replace_sub};
use super::{Ctx, output, read_body};
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::KindId;
use crate::apiserver::kinds::Resource;
use crate::apiserver::kubelet_proxy::{self, ProxyError};
use crate::apiserver::negotiate::{self, Output};
use crate::apiserver::ops::{self, Precondition, update::Target};
use crate::apiserver::params::Query;
use crate::apiserver::path::ResourcePath;
use crate::apiserver::selectors::LabelSelector;
use crate::apiserver::{ApiState, body, objects};

/// Dispatches a subresource request.
pub async fn serve(ctx: &Ctx, method: &Method, sub: &str, body: Body) -> ApiResult<Response> {
    if ctx.path.name.is_none() || !ctx.res.has_subresource(sub) {
        return Err(ApiError::path_not_found());
    }
    match (sub, method) {
        ("status", &Method::GET) => super::objects::get(ctx).await,
        ("status", &Method::PUT) => replace_sub(ctx, body, Some("status")).await,
        ("status", &Method::PATCH) => patch_sub(ctx, body, Some("status")).await,
        ("scale", &Method::GET) => get_scale(ctx).await,
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) => write_scale(ctx, method, body).await,
        ("binding", &Method::POST) => bind(ctx, body).await,
        ("finalize", &Method::PUT) => replace_sub(ctx, body, Some("finalize")).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn proxy_error(e: ProxyError) -> ApiError {
    match e {
        ProxyError::NotScheduled { .. } | ProxyError::BadContainer(_) => {
            ApiError::bad_request(e.to_string())
        }
        ProxyError::NoAddress { .. } | ProxyError::Dial(_) => ApiError::unavailable(e.to_string()),
    }
}

/// `pods/{log,exec,attach,portforward}`: forwarded to the pod's kubelet
/// (upgrades spliced through), or 503 without a kubelet client config.
pub async fn proxy_to_kubelet(
    state: &ApiState,
    res: &Resource,
    rp: &ResourcePath,
    req: Request,
) -> ApiResult<Response> {
    let sub = rp.subresource.as_deref().unwrap_or("");
    let Some(tls) = state.config().kubelet_client_tls.clone() else {
        return Err(ApiError::unavailable(format!(
            "pods/{sub} is not available: the API server has no kubelet client configuration"
        )));
    };
    let ns = rp.namespace.as_deref().unwrap_or("");
    let name = rp.name.as_deref().unwrap_or("");
    let pod = ops::get(state, res, Some(ns), name).await?;
    let node_name = objects::path_str(&pod, "spec.nodeName");
    if node_name.is_empty() {
        return Err(proxy_error(ProxyError::NotScheduled {
            pod: name.to_string(),
        }));
    }
    let nodes = state
        .registry()
        .builtin("", "nodes")
        .ok_or_else(|| ApiError::internal("kubelet proxy", &"nodes not registered"))?;
    let node = ops::get(state, &nodes, None, node_name).await?;
    let addr = kubelet_proxy::kubelet_address(&node).map_err(proxy_error)?;
    let query = Query::parse(req.uri().query())?;
    let container = if sub == "portforward" {
        None
    } else {
        Some(kubelet_proxy::pick_container(&pod, query.get("container")).map_err(proxy_error)?)
    };
    let path = kubelet_proxy::kubelet_path(sub, ns, name, container.as_deref(), req.uri().query())
        .ok_or_else(ApiError::path_not_found)?;
    kubelet_proxy::forward(tls, &addr, &path, req)
        .await
        .map_err(proxy_error)
}

/// Where replicas and the selector live for this resource.
fn scale_paths(ctx: &Ctx) -> (String, String, Option<String>) {
    if let Some(s) = ctx.res.custom.as_ref().and_then(|c| c.scale.clone()) {
        return (s.spec_replicas, s.status_replicas, s.label_selector);
    }
    (".spec.replicas".into(), ".status.replicas".into(), None)
}

fn dotted(p: &str) -> String {
    p.trim_start_matches('.').to_string()
}

/// Builds the Scale of an object.
fn scale_of(ctx: &Ctx, obj: &Value) -> Value {
    let (spec_p, status_p, sel_p) = scale_paths(ctx);
    let spec_replicas = objects::path_i64(obj, &dotted(&spec_p));
    let status_replicas = objects::path_i64(obj, &dotted(&status_p));
    let selector = match sel_p {
        Some(p) => objects::path_str(obj, &dotted(&p)).to_string(),
        None => obj
            .pointer("/spec/selector")
            .and_then(|s| LabelSelector::from_label_selector(s).ok())
            .map(|s| s.to_selector_string())
            .unwrap_or_default(),
    };
    let mut meta = json!({
        "name": objects::name(obj),
        "uid": objects::uid(obj),
        "resourceVersion": objects::resource_version(obj),
        "creationTimestamp": objects::meta_str(obj, "creationTimestamp"),
    });
    if ctx.res.info.namespaced() {
        meta["namespace"] = json!(objects::namespace(obj));
    }
    let mut status = json!({"replicas": status_replicas});
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
           "spec": {"replicas": spec_replicas}, "status": status})
}

async fn get_scale(ctx: &Ctx) -> ApiResult<Response> {
    let name = ctx.path.name.as_deref().unwrap_or("");
    let obj = ops::get(&ctx.state, &ctx.res, ctx.ns(), name).await?;
    Ok(negotiate::respond(
        StatusCode::OK,
        output_json(ctx)?,
        &scale_of(ctx, &obj),
    ))
}

fn output_json(ctx: &Ctx) -> ApiResult<Output> {
    match output(ctx)? {
        Output::Yaml => Ok(Output::Yaml),
        _ => Ok(Output::Json),
    }
}

fn set_path(obj: &mut Value, dotted_path: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = dotted_path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i == parts.len() - 1 {
            m.insert((*p).to_string(), v);
            return;
        }
        cur = m.entry((*p).to_string()).or_insert_with(|| json!({}));
    }
}

async fn write_scale(ctx: &Ctx, method: &Method, body: Body) -> ApiResult<Response> {
    let out = output_json(ctx)?;
    let bytes = read_body(ctx, body).await?;
    let is_patch = method == Method::PATCH;
    let ct = body::media_type(&ctx.headers);
    if is_patch
        && !matches!(
            ct.as_str(),
            "application/merge-patch+json"
                | "application/strategic-merge-patch+json"
                | "application/json-patch+json"
                | "application/apply-patch+yaml"
        )
    {
        return Err(ApiError::unsupported_media_type(
            &ct,
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
                "application/apply-patch+yaml",
            ],
        ));
    }
    let put_body = if is_patch {
        None
    } else {
        Some(body::decode_object(&ctx.headers, &bytes, "Scale")?.value)
    };
    let patch_body: Option<Value> = if is_patch && ct != "application/apply-patch+yaml" {
        Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?,
        )
    } else if is_patch {
        Some(
            serde_yaml::from_slice(&bytes)
                .map_err(|e| ApiError::bad_request(format!("invalid patch: {e}")))?,
        )
    } else {
        None
    };
    let name = ctx.path.name.as_deref().unwrap_or("");
    let (spec_p, _, _) = scale_paths(ctx);
    let target = Target {
        namespace: ctx.ns(),
        name,
        subresource: Some("scale"),
    };
    let opts = ctx.write_opts()?;
    let w = ops::update(
        &ctx.state,
        &ctx.res,
        target,
        Precondition::MustExist,
        &opts,
        |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&ctx.res.group_resource(), name))?;
            let mut scale = scale_of(ctx, cur);
            let new_scale = match (&put_body, &patch_body) {
                (Some(b), _) => b.clone(),
                (None, Some(p)) if ct == "application/json-patch+json" => {
                    let patch: json_patch::Patch = serde_json::from_value(p.clone())
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut scale, &patch).map_err(|e| {
                        let mut err = ApiError::bad_request(e.to_string());
                        err.code = 422;
                        err.reason = "Invalid";
                        err
                    })?;
                    scale
                }
                (None, Some(p)) => {
                    json_patch::merge(&mut scale, p);
                    scale
                }
                (None, None) => scale,
            };
            let replicas = new_scale
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    "autoscaling",
                    "Scale",
                    name,
                    vec![crate::apiserver::errors::Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!(
                            "Invalid value: {replicas}: must be greater than or equal to 0"
                        ),
                        field: "spec.replicas".into(),
                    }],
                ));
            }
            let mut next = cur.clone();
            set_path(&mut next, &dotted(&spec_p), json!(replicas));
            let rv = new_scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let meta = objects::meta_mut(&mut next);
            if rv.is_empty() {
                meta.remove("resourceVersion");
            } else {
                meta.insert("resourceVersion".into(), json!(rv));
            }
            Ok(next)
        },
    )
    .await?;
    Ok(negotiate::respond(
        StatusCode::OK,
        out,
        &scale_of(ctx, &w.object),
    ))
}

async fn bind(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    if ctx.res.id != KindId::Pod {
        return Err(ApiError::method_not_allowed());
    }
    let bytes = read_body(ctx, body).await?;
    let binding = body::decode_object(&ctx.headers, &bytes, "Binding")?.value;
    let name = ctx.path.name.as_deref().unwrap_or("");
    let target_node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if target_node.is_empty() {
        return Err(ApiError::invalid(
            "",
            "Binding",
            name,
            vec![crate::apiserver::errors::Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value".into(),
                field: "target.name".into(),
            }],
        ));
    }
    let bname = objects::name(&binding);
    if !bname.is_empty() && bname != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({bname}) does not match the name on the URL ({name})"
        )));
    }
    let gr = ctx.res.group_resource();
    let opts = ctx.write_opts()?;
    let target = Target {
        namespace: ctx.ns(),
        name,
        subresource: Some("binding"),
    };
    let annotations = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned();
    ops::update(
        &ctx.state,
        &ctx.res,
        target,
        Precondition::MustExist,
        &opts,
        |cur| {
            let cur = cur.ok_or_else(|| ApiError::not_found(&gr, name))?;
            if objects::is_deleting(cur) {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let existing = objects::path_str(cur, "spec.nodeName");
            if !existing.is_empty() {
                return Err(ApiError::conflict(
                    &gr,
                    name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            let mut next = cur.clone();
            next["spec"]["nodeName"] = json!(target_node);
            if let Some(a) = &annotations {
                let meta = objects::meta_mut(&mut next);
                let ann = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(m) = ann.as_object_mut() {
                    m.extend(a.clone());
                }
            }
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                          "lastTransitionTime": objects::now_rfc3339()});
            let status = next
                .as_object_mut()
                .map(|m| m.entry("status").or_insert_with(|| json!({})));
            if let Some(s) = status.and_then(Value::as_object_mut) {
                let conds = s.entry("conditions").or_insert_with(|| json!([]));
                if let Some(list) = conds.as_array_mut() {
                    list.retain(|c| c["type"] != "PodScheduled");
                    list.push(cond);
                }
            }
            objects::meta_mut(&mut next).remove("resourceVersion");
            Ok(next)
        },
    )
    .await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(negotiate::respond(
        StatusCode::CREATED,
        Output::Json,
        &status,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_nested_path() {
        let mut o = json!({"spec": {"a": 1}});
        set_path(&mut o, "spec.size", json!(3));
        set_path(&mut o, "x.y.z", json!(true));
        assert_eq!(
            o,
            json!({"spec": {"a": 1, "size": 3}, "x": {"y": {"z": true}}})
        );
    }
}
