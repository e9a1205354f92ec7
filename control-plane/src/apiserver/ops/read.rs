//! Get and list: resourceVersion semantics (unset = latest, "0" = any,
//! N = not older than N, `Exact` = at N), selectors, and `limit`/`continue`
//! pagination with opaque tokens carrying the list revision and last key.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::apiserver::errors::{ApiError, ApiResult};
use crate::apiserver::kinds::Resource;
use crate::apiserver::params::RvMatch;
use crate::apiserver::selectors::Filter;
use crate::apiserver::{ApiState, objects};
use crate::store::{ListOptions, Revision, StoreError};

/// Reads one object or answers 404.
pub async fn get(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> ApiResult<Value> {
    match super::load(state, res, namespace, name).await? {
        Some((obj, _)) => Ok(obj),
        None => Err(ApiError::not_found(&res.group_resource(), name)),
    }
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOpts {
    /// Selectors.
    pub filter: Filter,
    /// `resourceVersion`.
    pub resource_version: Option<Revision>,
    /// `resourceVersionMatch`.
    pub rv_match: Option<RvMatch>,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ListResult {
    /// Matching objects.
    pub items: Vec<Value>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// Token for the next page.
    pub continue_token: Option<String>,
}

/// Encodes a continue token.
pub fn encode_continue(revision: Revision, last_key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes a continue token into (revision, last key); must lie under `prefix`.
pub fn decode_continue(token: &str, prefix: &str) -> ApiResult<(Revision, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let key = v["start"].as_str().ok_or_else(bad)?.to_string();
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok((rev, key))
}

/// Waits briefly for the store to reach `rev`, then fails with 504 like
/// Kubernetes' "Too large resource version".
pub async fn wait_for_revision(state: &ApiState, rev: Revision) -> ApiResult<()> {
    for _ in 0..30 {
        if state.store().current_revision() >= rev {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(StoreError::FutureRevision {
        requested: rev,
        current: state.store().current_revision(),
    }
    .into())
}

/// Lists objects under `namespace` (or all namespaces).
pub async fn list(
    state: &ApiState,
    res: &Resource,
    namespace: Option<&str>,
    opts: &ListOpts,
) -> ApiResult<ListResult> {
    let prefix = objects::key(res, namespace, None);
    let mut start_after = None;
    let mut read_at = None;
    if let Some(token) = opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
        if opts.resource_version.is_some_and(|r| r != 0) {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (rev, key) = decode_continue(token, &prefix)?;
        read_at = Some(rev);
        start_after = Some(key);
    } else {
        match (opts.resource_version, opts.rv_match) {
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                ));
            }
            (Some(0), Some(RvMatch::Exact)) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
            (Some(rev), Some(RvMatch::Exact)) => read_at = Some(rev),
            (Some(rev), _) if rev > 0 => wait_for_revision(state, rev).await?,
            _ => {}
        }
    }
    let mut items = Vec::new();
    let mut revision = None;
    let mut continue_token = None;
    let page = opts.limit.map(|l| l.max(1));
    loop {
        let chunk = page.map(|l| l.saturating_sub(items.len()).max(l.min(256)));
        let result = state
            .store()
            .list(&prefix, ListOptions { revision: read_at, start_after: start_after.clone(), limit: chunk })
            .await
            .map_err(|e| match e {
                StoreError::Expired { .. } if opts.continue_token.is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                other => other.into(),
            })?;
        let rev = *revision.get_or_insert(result.revision);
        read_at = Some(rev);
        let n = result.items.len();
        let mut last_key = None;
        let mut full = false;
        for kv in &result.items {
            last_key = Some(kv.key.clone());
            let obj = objects::decode(res, kv)?;
            if opts.filter.matches(res, &obj) {
                items.push(obj);
            }
            if page.is_some_and(|l| items.len() >= l) {
                full = true;
                break;
            }
        }
        let consumed_all = last_key.as_ref() == result.items.last().map(|k| &k.key);
        let more = result.more || !consumed_all;
        if full {
            if more {
                continue_token = last_key.map(|k| encode_continue(rev, &k));
            }
            break;
        }
        if !result.more || n == 0 {
            break;
        }
        start_after = last_key;
    }
    Ok(ListResult {
        items,
        revision: revision.unwrap_or(0),
        continue_token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "/registry/core/pods/default/web");
        assert_eq!(
            decode_continue(&t, "/registry/core/pods/").ok(),
            Some((42, "/registry/core/pods/default/web".into()))
        );
        assert_eq!(
            decode_continue(&t, "/registry/core/services/")
                .err()
                .map(|e| e.code),
            Some(400)
        );
        assert_eq!(decode_continue("!!!", "/").err().map(|e| e.code), Some(400));
    }
}
