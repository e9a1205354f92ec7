//! HTTP handlers for object verbs: get, list, create, update (PUT), patch,
//! delete and deletecollection, plus the read-only componentstatuses.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Ctx, output, read_body};
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::{KindId, Resource, allows_create_on_update, returns_deleted_object};
use crate::apiserver::negotiate::{self, Output};
use crate::apiserver::ops::{
    self, DeleteOpts, ListOpts, Precondition, WriteOpts, Written, update::Target,
};
use crate::apiserver::params::parse_propagation;
use crate::apiserver::patch::{self, PatchRequest, PatchType};
use crate::apiserver::selectors::{FieldSelector, Filter, LabelSelector};
use crate::apiserver::table::{self, IncludeObject};
use crate::apiserver::{body, componentstatus, objects};

/// Renders one object in the negotiated output.
pub fn render_object(
    ctx: &Ctx,
    status: StatusCode,
    out: Output,
    obj: &Value,
) -> ApiResult<Response> {
    let include = match out {
        Output::Table(_) => IncludeObject::parse(ctx.query.get("includeObject"))?,
        _ => IncludeObject::default(),
    };
    let converted = table::convert_one(&ctx.res, out, include, obj);
    Ok(negotiate::respond(
        status,
        out,
        converted.as_ref().unwrap_or(obj),
    ))
}

fn render_written(ctx: &Ctx, w: Written) -> ApiResult<Response> {
    let out = output(ctx)?;
    let status = if w.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = render_object(ctx, status, out, &w.object)?;
    negotiate::add_warnings(&mut resp, &w.warnings);
    Ok(resp)
}

/// Parses `labelSelector` and `fieldSelector` for this resource.
pub fn filter(ctx: &Ctx) -> ApiResult<Filter> {
    let labels = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    fields
        .check_supported(&ctx.res)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Filter { labels, fields })
}

/// List options from the query.
pub fn list_opts(ctx: &Ctx) -> ApiResult<ListOpts> {
    Ok(ListOpts {
        filter: filter(ctx)?,
        resource_version: ctx.query.resource_version()?,
        rv_match: ctx.query.rv_match()?,
        limit: ctx.query.limit()?,
        continue_token: ctx.query.non_empty("continue").map(str::to_string),
    })
}

/// A list body in the negotiated output.
pub fn render_list(
    ctx: &Ctx,
    res: &Resource,
    items: Vec<Value>,
    revision: i64,
    cont: Option<String>,
) -> ApiResult<Response> {
    let out = output(ctx)?;
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let body = match out {
        Output::Table(v) => {
            let include = IncludeObject::parse(ctx.query.get("includeObject"))?;
            table::table(res, &items, meta, include, v)
        }
        Output::PartialMetadata(v) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": format!("meta.k8s.io/{}", v.as_str()),
            "metadata": meta,
            "items": items.iter().map(objects::partial_metadata).collect::<Vec<_>>(),
        }),
        _ => {
            json!({"kind": res.info.list_kind, "apiVersion": res.info.api_version(), "metadata": meta, "items": items})
        }
    };
    Ok(negotiate::respond(StatusCode::OK, out, &body))
}

/// GET one object.
pub async fn get(ctx: &Ctx) -> ApiResult<Response> {
    let out = output(ctx)?;
    ctx.query.resource_version()?;
    let name = ctx.path.name.as_deref().unwrap_or("");
    let obj = ops::get(&ctx.state, &ctx.res, ctx.ns(), name).await?;
    render_object(ctx, StatusCode::OK, out, &obj)
}

/// GET a collection.
pub async fn list(ctx: &Ctx) -> ApiResult<Response> {
    output(ctx)?;
    let opts = list_opts(ctx)?;
    let r = ops::list(&ctx.state, &ctx.res, ctx.ns(), &opts).await?;
    render_list(ctx, &ctx.res, r.items, r.revision, r.continue_token)
}

/// Decodes an object body and applies `fieldValidation`.
async fn object_body(ctx: &Ctx, body: Body, kind: &str) -> ApiResult<(Value, Vec<String>)> {
    let bytes = read_body(ctx, body).await?;
    let decoded = body::decode_object(&ctx.headers, &bytes, kind)?;
    let mut value = decoded.value;
    ops::check_type_meta(&ctx.res, &mut value, kind)?;
    let warnings = ops::check_fields(
        &ctx.res,
        &value,
        ctx.query.field_validation()?,
        &decoded.duplicates,
    )?;
    Ok((value, warnings))
}

/// POST a new object.
pub async fn create(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    output(ctx)?;
    let (obj, warnings) = object_body(ctx, body, &ctx.res.info.kind).await?;
    let mut w = ops::create(&ctx.state, &ctx.res, ctx.ns(), obj, &ctx.write_opts()?).await?;
    w.warnings.extend(warnings);
    render_written(ctx, w)
}

/// PUT an object (optionally with a subresource).
pub async fn replace_sub(ctx: &Ctx, body: Body, sub: Option<&str>) -> ApiResult<Response> {
    output(ctx)?;
    let (obj, warnings) = object_body(ctx, body, &ctx.res.info.kind).await?;
    let name = ctx.path.name.as_deref().unwrap_or("");
    let pre = if sub.is_none() && allows_create_on_update(ctx.res.id) {
        Precondition::CreateIfMissing
    } else {
        Precondition::MustExist
    };
    let target = Target {
        namespace: ctx.ns(),
        name,
        subresource: sub,
    };
    let mut w = ops::update(
        &ctx.state,
        &ctx.res,
        target,
        pre,
        &ctx.write_opts()?,
        |_| Ok(obj.clone()),
    )
    .await?;
    w.warnings.extend(warnings);
    render_written(ctx, w)
}

/// PUT an object.
pub async fn replace(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    replace_sub(ctx, body, None).await
}

/// Maps a patch error to a Status.
pub fn patch_error(e: patch::PatchError) -> ApiError {
    let mut err = ApiError::bad_request(e.to_string());
    err.code = e.code();
    err.reason = e.reason();
    if !e.causes().is_empty() {
        let causes: Vec<Value> = e
            .causes()
            .iter()
            .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
            .collect();
        err.details = Some(json!({"causes": causes}));
    }
    err
}

/// The patch type of a request, or 415.
pub fn patch_type(ctx: &Ctx) -> ApiResult<(PatchType, String)> {
    let ct = body::media_type(&ctx.headers);
    let accepted: &[&str] = if ctx.res.custom.is_some() {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ]
    } else {
        &[
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        ]
    };
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media_type(&ct, accepted));
    }
    let pt = PatchType::from_content_type(&ct)
        .ok_or_else(|| ApiError::unsupported_media_type(&ct, accepted))?;
    Ok((pt, ct))
}

/// PATCH an object (optionally a subresource).
pub async fn patch_sub(ctx: &Ctx, body: Body, sub: Option<&str>) -> ApiResult<Response> {
    output(ctx)?;
    let (pt, ct) = patch_type(ctx)?;
    let bytes = read_body(ctx, body).await?;
    let is_apply = matches!(pt, PatchType::Apply);
    let mut opts = ctx.write_opts()?;
    if is_apply {
        opts.managed_fields_done = true;
        opts.field_manager = ctx.query.field_manager()?;
        if opts.field_manager.is_none() {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                vec![crate::apiserver::errors::Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: is required for apply patch".into(),
                    field: "fieldManager".into(),
                }],
            ));
        }
    } else if ctx.query.get("force").is_some() {
        return Err(ApiError::bad_request(
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    let force = ctx.query.bool("force")?;
    let name = ctx.path.name.as_deref().unwrap_or("");
    let pre = if is_apply && sub.is_none() {
        Precondition::CreateIfMissing
    } else {
        Precondition::MustExist
    };
    let target = Target {
        namespace: ctx.ns(),
        name,
        subresource: sub,
    };
    let fv = opts.field_validation;
    let manager = opts.field_manager.clone();
    let res = ctx.res.clone();
    let mut warnings = Vec::new();
    let mut w = ops::update(&ctx.state, &ctx.res, target, pre, &opts, |cur| {
        let patch_type = PatchType::from_content_type(&ct)
            .ok_or_else(|| ApiError::unsupported_media_type(&ct, &[]))?;
        let req = PatchRequest {
            info: &res.info,
            patch_type,
            body: &bytes,
            field_manager: manager.as_deref(),
            force,
        };
        let mut out = patch::apply_patch(&req, cur).map_err(patch_error)?;
        if cur.is_none() {
            objects::meta_mut(&mut out).remove("resourceVersion");
        }
        warnings = ops::check_fields(&res, &out, fv, &[])?;
        Ok(out)
    })
    .await?;
    w.warnings.extend(warnings);
    render_written(ctx, w)
}

/// PATCH an object.
pub async fn patch(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    patch_sub(ctx, body, None).await
}

/// `DeleteOptions` from the query and an optional JSON body.
async fn delete_opts(ctx: &Ctx, body: Body) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts {
        grace_period: ctx.query.int("gracePeriodSeconds")?,
        propagation: ctx.query.propagation()?,
        orphan_dependents: if ctx.query.get("orphanDependents").is_some() {
            Some(ctx.query.bool("orphanDependents")?)
        } else {
            None
        },
        dry_run: ctx.query.dry_run()?,
        ..Default::default()
    };
    let bytes = read_body(ctx, body).await?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let v = body::decode_object(&ctx.headers, &bytes, "DeleteOptions")?.value;
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            o.grace_period = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            o.propagation = parse_propagation(Some(p))?;
        }
        if let Some(b) = v.get("orphanDependents").and_then(Value::as_bool) {
            o.orphan_dependents = Some(b);
        }
        o.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        o.precondition_rv = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(dr) = v.get("dryRun").and_then(Value::as_array) {
            for d in dr {
                if d.as_str() != Some("All") {
                    return Err(ApiError::bad_request(format!(
                        "dryRun: Unsupported value: {d}: supported values: \"All\""
                    )));
                }
                o.dry_run = true;
            }
        }
    }
    if o.propagation.is_some() && o.orphan_dependents.is_some() {
        return Err(ApiError::bad_request(
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Orphan\": orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    Ok(o)
}

/// The Success Status of a delete.
fn success_status(res: &Resource, obj: &Value) -> Value {
    let mut details =
        json!({"name": objects::name(obj), "kind": res.info.plural, "uid": objects::uid(obj)});
    if !res.info.group.is_empty() {
        details["group"] = json!(res.info.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// DELETE one object.
pub async fn delete(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    let out = output(ctx)?;
    let opts = delete_opts(ctx, body).await?;
    let name = ctx.path.name.as_deref().unwrap_or("");
    let write = WriteOpts {
        dry_run: opts.dry_run,
        ..ctx.write_opts()?
    };
    let d = ops::delete(&ctx.state, &ctx.res, ctx.ns(), name, &opts, &write).await?;
    let status = if !d.gone && opts.orphan_dependents == Some(false) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if d.gone && !returns_deleted_object(ctx.res.id) {
        return Ok(negotiate::respond(
            status,
            Output::Json,
            &success_status(&ctx.res, &d.object),
        ));
    }
    render_object(ctx, status, out, &d.object)
}

/// DELETE a collection (selectors apply); answers the list of deleted objects.
pub async fn delete_collection(ctx: &Ctx, body: Body) -> ApiResult<Response> {
    output(ctx)?;
    if ctx.res.id == KindId::Namespace {
        return Err(ApiError::method_not_allowed());
    }
    let opts = delete_opts(ctx, body).await?;
    let list = ops::list(&ctx.state, &ctx.res, ctx.ns(), &list_opts(ctx)?).await?;
    let write = WriteOpts {
        dry_run: opts.dry_run,
        ..ctx.write_opts()?
    };
    let mut deleted = Vec::new();
    for item in list.items {
        let ns = Some(objects::namespace(&item)).filter(|s| !s.is_empty());
        match ops::delete(
            &ctx.state,
            &ctx.res,
            ns,
            objects::name(&item),
            &opts,
            &write,
        )
        .await
        {
            Ok(d) => deleted.push(d.object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rev = ctx.state.store().current_revision();
    render_list(ctx, &ctx.res, deleted, rev, None)
}

/// componentstatuses: computed, read-only.
pub async fn component_statuses(ctx: &Ctx, method: &Method) -> ApiResult<Response> {
    if method != Method::GET || ctx.path.subresource.is_some() {
        return Err(ApiError::method_not_allowed());
    }
    let items = componentstatus::compute(&ctx.state).await;
    let rev = ctx.state.store().current_revision();
    match ctx.path.name.as_deref() {
        Some(name) => {
            let obj = items
                .into_iter()
                .find(|i| objects::name(i) == name)
                .ok_or_else(|| ApiError::not_found(&ctx.res.group_resource(), name))?;
            render_object(ctx, StatusCode::OK, output(ctx)?, &obj)
        }
        None => {
            let f = filter(ctx)?;
            let items = items
                .into_iter()
                .filter(|i| f.matches(&ctx.res, i))
                .collect();
            render_list(ctx, &ctx.res, items, rev, None)
        }
    }
}
