//! Query parameters of API requests, parsed and checked. Unknown parameter
//! names are ignored (as Kubernetes does); bad values are 400 BadRequest.

use std::collections::HashMap;

use super::errors::{ApiError, ApiResult};
use crate::store::Revision;

/// `fieldValidation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject unknown/duplicate fields.
    Strict,
    /// Accept, with `Warning` headers.
    Warn,
    /// Accept silently.
    Ignore,
}

/// `resourceVersionMatch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RvMatch {
    /// At least the given revision.
    NotOlderThan,
    /// Exactly the given revision.
    Exact,
}

/// `propagationPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    /// Orphan dependents (finalizer `orphan`).
    Orphan,
    /// Delete dependents in the background (default).
    Background,
    /// Delete dependents first (finalizer `foregroundDeletion`).
    Foreground,
}

/// The raw query, last value wins (except for repeated `dryRun`).
#[derive(Clone, Debug, Default)]
pub struct Query {
    values: HashMap<String, String>,
    dry_run: Vec<String>,
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
        let mut q = Query::default();
        for (k, v) in pairs {
            if k == "dryRun" {
                q.dry_run.push(v.clone());
            }
            q.values.insert(k, v);
        }
        Ok(q)
    }

    /// A raw value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.values.get(k).map(String::as_str)
    }

    /// A non-empty raw value.
    pub fn non_empty(&self, k: &str) -> Option<&str> {
        self.get(k).filter(|v| !v.is_empty())
    }

    /// A boolean (`true`/`false`/`1`/`0`/empty = true for flags like `?watch`).
    pub fn bool(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            None => Ok(false),
            Some("true" | "1" | "True" | "") => Ok(true),
            Some("false" | "0" | "False") => Ok(false),
            Some(v) => Err(ApiError::bad_request(format!(
                "invalid value for {k}: {v:?}, expected true or false"
            ))),
        }
    }

    /// An integer.
    pub fn int(&self, k: &str) -> ApiResult<Option<i64>> {
        match self.non_empty(k) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {k}: {v:?}, expected an integer"))
            }),
        }
    }

    /// `dryRun`: only `All` is valid.
    pub fn dry_run(&self) -> ApiResult<bool> {
        for v in &self.dry_run {
            if v != "All" {
                return Err(ApiError::bad_request(format!(
                    "dryRun: Unsupported value: \"{v}\": supported values: \"All\""
                )));
            }
        }
        Ok(!self.dry_run.is_empty())
    }

    /// `fieldValidation` (default `Warn`, as in Kubernetes).
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.non_empty("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(v) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{v}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }

    /// `fieldManager` (at most 128 characters).
    pub fn field_manager(&self) -> ApiResult<Option<String>> {
        match self.non_empty("fieldManager") {
            None => Ok(None),
            Some(v) if v.len() > 128 => Err(ApiError::bad_request(
                "fieldManager: Too long: must have at most 128 bytes",
            )),
            Some(v) => Ok(Some(v.to_string())),
        }
    }

    /// `resourceVersion` as a revision; `None` if unset or empty, `Some(0)` for "0".
    pub fn resource_version(&self) -> ApiResult<Option<Revision>> {
        match self.non_empty("resourceVersion") {
            None => Ok(None),
            Some(v) => v
                .parse::<Revision>()
                .ok()
                .filter(|r| *r >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid resource version: {v:?}"))),
        }
    }

    /// `resourceVersionMatch`.
    pub fn rv_match(&self) -> ApiResult<Option<RvMatch>> {
        match self.non_empty("resourceVersionMatch") {
            None => Ok(None),
            Some("NotOlderThan") => Ok(Some(RvMatch::NotOlderThan)),
            Some("Exact") => Ok(Some(RvMatch::Exact)),
            Some(v) => Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: \"{v}\": supported values: \"Exact\", \"NotOlderThan\""
            ))),
        }
    }

    /// `propagationPolicy`.
    pub fn propagation(&self) -> ApiResult<Option<Propagation>> {
        parse_propagation(self.non_empty("propagationPolicy"))
    }

    /// `limit` (0 or unset = no limit).
    pub fn limit(&self) -> ApiResult<Option<usize>> {
        match self.int("limit")? {
            None | Some(0) => Ok(None),
            Some(n) if n < 0 => Err(ApiError::bad_request(format!(
                "invalid value for limit: {n}"
            ))),
            Some(n) => Ok(Some(n as usize)),
        }
    }
}

/// Parses a propagation policy value.
pub fn parse_propagation(v: Option<&str>) -> ApiResult<Option<Propagation>> {
    match v {
        None => Ok(None),
        Some("Orphan") => Ok(Some(Propagation::Orphan)),
        Some("Background") => Ok(Some(Propagation::Background)),
        Some("Foreground") => Ok(Some(Propagation::Foreground)),
        Some(v) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{v}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s)).expect("query")
    }

    #[test]
    fn parses_common_parameters() {
        let p = q(
            "watch=true&resourceVersion=10&limit=500&labelSelector=app%3Dweb&dryRun=All&fieldValidation=Strict",
        );
        assert!(p.bool("watch").expect("watch"));
        assert_eq!(p.resource_version().expect("rv"), Some(10));
        assert_eq!(p.limit().expect("limit"), Some(500));
        assert_eq!(p.get("labelSelector"), Some("app=web"));
        assert!(p.dry_run().expect("dry run"));
        assert_eq!(p.field_validation().expect("fv"), FieldValidation::Strict);
    }

    #[test]
    fn defaults() {
        let p = q("");
        assert!(!p.bool("watch").expect("watch"));
        assert_eq!(p.resource_version().expect("rv"), None);
        assert!(!p.dry_run().expect("dry"));
        assert_eq!(p.field_validation().expect("fv"), FieldValidation::Warn);
        assert_eq!(p.limit().expect("limit"), None);
        assert_eq!(p.propagation().expect("pp"), None);
    }

    #[test]
    fn bad_values_are_400() {
        for (s, f) in [
            ("watch=maybe", "watch"),
            ("dryRun=Some", "dry"),
            ("fieldValidation=Loose", "fv"),
            ("resourceVersion=abc", "rv"),
            ("limit=-1", "limit"),
            ("propagationPolicy=Never", "pp"),
            ("resourceVersionMatch=Newest", "rvm"),
        ] {
            let p = q(s);
            let err = match f {
                "watch" => p.bool("watch").err(),
                "dry" => p.dry_run().err(),
                "fv" => p.field_validation().err(),
                "rv" => p.resource_version().err(),
                "limit" => p.limit().err(),
                "pp" => p.propagation().err(),
                _ => p.rv_match().err(),
            };
            assert_eq!(err.map(|e| e.code), Some(400), "{s}");
        }
    }
}
