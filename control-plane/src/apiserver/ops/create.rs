//! Create: namespace checks, generated names, server-set metadata,
//! defaulting, validation, admission (LimitRanger and ResourceQuota in
//! `admission`, service IPs, CRD status) and the store's create-if-absent.

use serde_json::{Value, json};

use super::{WriteOpts, Written, check_namespace, finish, record_manager};
use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::{KindId, Resource};
use crate::apiserver::{ApiState, admission, crd, defaults, ipalloc, objects};
use crate::store::StoreError;

const GENERATE_NAME_ATTEMPTS: usize = 8;

/// Creates `obj` (type meta already checked) in `namespace`.
pub async fn create(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    let meta = objects::meta_mut(&mut obj);
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(ApiError::bad_request(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    if res.info.namespaced() {
        let url_ns = namespace.unwrap_or("");
        match meta.get("namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns != url_ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => {
                meta.insert("namespace".into(), json!(url_ns));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let generate = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let explicit_name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let generated = explicit_name.is_empty() && !generate.is_empty();

    if res.info.namespaced() {
        let display = if generated {
            generate.as_str()
        } else {
            explicit_name.as_str()
        };
        check_namespace(state, res, namespace.unwrap_or(""), display).await?;
    }

    let attempts = if generated { GENERATE_NAME_ATTEMPTS } else { 1 };
    let mut last_err = None;
    for _ in 0..attempts {
        let mut candidate = obj.clone();
        if generated {
            let name = format!("{generate}{}", objects::random_suffix(5));
            objects::meta_mut(&mut candidate).insert("name".into(), json!(name));
        }
        match create_once(state, res, namespace, candidate, opts).await {
            Err(e) if generated && e.reason == "AlreadyExists" => last_err = Some(e),
            other => return other,
        }
    }
    Err(last_err.unwrap_or_else(|| ApiError::timeout("could not generate a unique name")))
}

async fn create_once(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    mut obj: Value,
    opts: &WriteOpts,
) -> ApiResult<Written> {
    let meta = objects::meta_mut(&mut obj);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(objects::now_rfc3339()));
    meta.insert("generation".into(), json!(1));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    meta.remove("resourceVersion");
    meta.remove("selfLink");

    let mutated = admission::mutate(state, res, namespace, &mut obj).await?;
    defaults::prepare_for_create(res, &mut obj);
    finish(res, &mut obj, None)?;
    if res.id == KindId::CustomResourceDefinition {
        let status = crd::compute_status(&obj, None, state.registry());
        obj["status"] = status;
    }
    record_manager(res, None, &mut obj, opts, None);

    let name = objects::name(&obj).to_string();
    let gr = res.group_resource();
    let mut charge = mutated
        .validate(state, res, namespace, &obj, opts.dry_run)
        .await?;
    let allocation = if res.id == KindId::Service {
        match ipalloc::allocate(state, &mut obj, None, opts.dry_run).await {
            Ok(a) => a,
            Err(e) => {
                charge.refund(state).await;
                return Err(e);
            }
        }
    } else {
        ipalloc::Allocation::default()
    };
    if opts.dry_run {
        return Ok(Written {
            object: obj,
            created: true,
            warnings: Vec::new(),
        });
    }
    let key = objects::key(res, namespace, Some(&name));
    let kv = match state
        .store()
        .create(&key, objects::encode_for(res, &obj)?)
        .await
    {
        Ok(kv) => kv,
        Err(e) => {
            ipalloc::release(state, &allocation).await;
            charge.refund(state).await;
            return Err(match e {
                StoreError::AlreadyExists { .. } => ApiError::already_exists(&gr, &name),
                other => ApiError::from_store(other, &gr, &name),
            });
        }
    };
    objects::set_resource_version(&mut obj, kv.mod_revision);
    if res.id == KindId::CustomResourceDefinition {
        crd::sync_one(state.registry(), &name, Some(&obj));
    }
    Ok(Written {
        object: obj,
        created: true,
        warnings: Vec::new(),
    })
}
