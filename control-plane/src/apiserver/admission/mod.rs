//! Admission: what the API server does to a new object after decoding and
//! before storing it, beyond defaulting and validation, in Kubernetes'
//! order. Mutating plugins run first ([`mutate`]: LimitRanger's defaults),
//! validating ones after schema validation ([`Mutated::validate`]:
//! LimitRanger's ranges, then ResourceQuota, which charges the namespace's
//! quotas and hands back a [`quota::Charge`] to refund if the store write
//! fails). Updates go through [`validate_update`] (ResourceQuota only).
//!
//! DefaultTolerationSeconds, ServiceAccount and Priority defaults are
//! applied in `defaults::pods::admit_pod`, which needs no store access.

pub mod limitranger;
pub mod quantity;
pub mod quota;

use k8s_openapi::api::core::v1::{LimitRange, Pod};
use serde_json::Value;

use super::ApiState;
use super::errors::{ApiError, ApiResult};
use super::kinds::{KindId, Resource};
use super::objects;
use crate::store::ListOptions;

/// The state carried from the mutating to the validating phase of one create.
#[derive(Debug, Default)]
pub struct Mutated {
    limit_ranges: Vec<LimitRange>,
}

async fn limit_ranges(state: &ApiState, namespace: &str) -> ApiResult<Vec<LimitRange>> {
    let Some(lr_res) = state.registry().builtin("", "limitranges") else {
        return Ok(Vec::new());
    };
    let prefix = objects::key(&lr_res, Some(namespace), None);
    // Most namespaces have none: a one-item probe answers that cheaply.
    let probe = ListOptions {
        limit: Some(1),
        ..ListOptions::default()
    };
    if state.store().list(&prefix, probe).await?.items.is_empty() {
        return Ok(Vec::new());
    }
    let list = state.store().list(&prefix, ListOptions::default()).await?;
    list.items
        .iter()
        .map(|kv| {
            let v = objects::decode(&lr_res, kv)?;
            serde_json::from_value(v)
                .map_err(|e| ApiError::internal("decoding a stored LimitRange", &e))
        })
        .collect()
}

/// Mutating admission of a create in `namespace`: for pods, requests
/// default to limits and LimitRange defaults fill what is still missing.
pub async fn mutate(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    obj: &mut Value,
) -> ApiResult<Mutated> {
    let mut out = Mutated::default();
    let Some(ns) = namespace.filter(|n| !n.is_empty()) else {
        return Ok(out);
    };
    if res.id == KindId::Pod {
        limitranger::default_requests_from_limits(obj);
        out.limit_ranges = limit_ranges(state, ns).await?;
        for lr in &out.limit_ranges {
            limitranger::apply_defaults(lr, obj);
        }
    }
    Ok(out)
}

impl Mutated {
    /// Validating admission of the (defaulted, valid) object: LimitRange
    /// min/max/ratio for pods, then ResourceQuota for every namespaced kind.
    pub async fn validate(
        &self,
        state: &ApiState,
        res: &Resource,
        namespace: Option<&str>,
        obj: &Value,
        dry_run: bool,
    ) -> ApiResult<quota::Charge> {
        let Some(ns) = namespace.filter(|n| !n.is_empty() && res.info.namespaced()) else {
            return Ok(quota::Charge::default());
        };
        let name = objects::name(obj);
        if res.id == KindId::Pod && !self.limit_ranges.is_empty() {
            let pod: Pod = serde_json::from_value(obj.clone())
                .map_err(|e| ApiError::bad_request(format!("checking limit ranges: {e}")))?;
            for lr in &self.limit_ranges {
                limitranger::validate(lr, &pod)
                    .map_err(|why| ApiError::forbidden(&res.group_resource(), name, &why))?;
            }
        }
        quota::admit_create(state, res, ns, obj, dry_run).await
    }
}

/// Validating admission of an update of the main resource (subresource
/// writes such as `status` are not admitted, as in Kubernetes): the
/// ResourceQuota charge for what `new` adds over `old`. Objects being
/// deleted are not charged.
pub async fn validate_update(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    subresource: Option<&str>,
    old: &Value,
    new: &Value,
    dry_run: bool,
) -> ApiResult<quota::Charge> {
    let Some(ns) = namespace.filter(|n| !n.is_empty() && res.info.namespaced()) else {
        return Ok(quota::Charge::default());
    };
    if subresource.is_some() || objects::is_deleting(new) {
        return Ok(quota::Charge::default());
    }
    quota::admit_update(state, res, ns, old, new, dry_run).await
}
