//! A simple built-in namespace finalizer, standing in for the namespace
//! controller until the controller manager has one: for each namespace in
//! `Terminating`, delete every namespaced object in it (pods on nodes get
//! their graceful deletion and are waited for), then drop the `kubernetes`
//! finalizer and remove the namespace.
//!
//! It only uses [`ops`](super::ops), so it can move into the controller
//! manager as a client of the API unchanged in spirit.

use serde_json::{Value, json};

use super::kinds::{KindId, Resource};
use super::ops::{self, DeleteOpts, ListOpts, Precondition, WriteOpts, update::Target};
use super::{ApiResult, ApiState, objects};

const FINALIZER: &str = "kubernetes";

/// Runs until the state is closed.
pub async fn run(state: ApiState) {
    loop {
        if state.is_closed() {
            return;
        }
        if let Err(e) = sweep(&state).await {
            tracing::warn!(error = %e, "namespace finalization failed");
        }
        let resync = state.config().namespace_resync;
        tokio::select! {
            _ = state.namespace_wakeup().notified() => {}
            _ = tokio::time::sleep(resync) => {}
        }
    }
}

/// Finalizes every terminating namespace once; returns how many are gone.
pub async fn sweep(state: &ApiState) -> ApiResult<usize> {
    let Some(ns_res) = state.registry().builtin("", "namespaces") else {
        return Ok(0);
    };
    let list = ops::list(state, &ns_res, None, &ListOpts::default()).await?;
    let mut removed = 0;
    for ns in list.items.iter().filter(|n| objects::is_deleting(n)) {
        if finalize_one(state, &ns_res, ns).await? {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Deletes the content of one namespace; removes the namespace when empty.
async fn finalize_one(state: &ApiState, ns_res: &Resource, ns: &Value) -> ApiResult<bool> {
    let name = objects::name(ns).to_string();
    let opts = WriteOpts {
        field_manager: Some("namespace-controller".into()),
        ..Default::default()
    };
    let mut remaining = 0usize;
    for res in state.registry().all() {
        if !res.info.namespaced()
            || res.id == KindId::ComponentStatus
            || !res.info.verbs.contains(&"delete")
        {
            continue;
        }
        // Custom resources are stored once per CRD, not per served version.
        if let Some(c) = &res.custom
            && c.storage_version != res.info.version
        {
            continue;
        }
        let items = ops::list(state, &res, Some(&name), &ListOpts::default())
            .await?
            .items;
        for item in items {
            remaining += 1;
            if objects::is_deleting(&item) {
                continue;
            }
            match ops::delete(
                state,
                &res,
                Some(&name),
                objects::name(&item),
                &DeleteOpts::default(),
                &opts,
            )
            .await
            {
                Ok(d) if d.gone => remaining -= 1,
                Ok(_) => {}
                Err(e) if e.code == 404 => remaining -= 1,
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(namespace = %name, remaining, "namespace still has content");
        return Ok(false);
    }
    let target = Target {
        namespace: None,
        name: &name,
        subresource: Some("finalize"),
    };
    let finalized = ops::update(
        state,
        ns_res,
        target,
        Precondition::MustExist,
        &opts,
        |cur| {
            let mut next = cur.cloned().unwrap_or(Value::Null);
            let fins: Vec<Value> = next
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|f| f.as_str() != Some(FINALIZER))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            next["spec"]["finalizers"] = json!(fins);
            objects::meta_mut(&mut next).remove("resourceVersion");
            Ok(next)
        },
    )
    .await;
    let finalized = match finalized {
        Ok(w) => w.object,
        Err(e) if e.code == 404 => return Ok(true),
        Err(e) => return Err(e),
    };
    let spec_empty = finalized
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|a| a.is_empty());
    if !spec_empty || !objects::finalizers(&finalized).is_empty() {
        return Ok(false);
    }
    let key = objects::key(ns_res, None, Some(&name));
    let rev: i64 = objects::resource_version(&finalized).parse().unwrap_or(0);
    match state.store().delete(&key, Some(rev)).await {
        Ok(_) => Ok(true),
        Err(crate::store::StoreError::NotFound { .. }) => Ok(true),
        Err(crate::store::StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
