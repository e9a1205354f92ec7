//! Service cluster IP and NodePort allocation.
//!
//! Each allocated address or port is a store key
//! (`/registry/ranges/serviceips/<ip>`, `/registry/ranges/servicenodeports/<port>`)
//! created with create-if-absent, so allocations are durable and never
//! duplicated, even with several API servers on one store.

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};

use super::ApiState;
use super::errors::{ApiError, ApiResult};
use super::objects;
use super::validation::FieldErr;
use crate::store::StoreError;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";

/// Keys reserved for one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Reservation keys.
    pub keys: Vec<String>,
}

impl Allocation {
    /// The reservations a stored service holds.
    pub fn of_service(svc: &Value) -> Self {
        let mut keys = Vec::new();
        let ip = objects::path_str(svc, "spec.clusterIP");
        if !ip.is_empty() && ip != "None" {
            keys.push(format!("{IP_PREFIX}{ip}"));
        }
        if let Some(ports) = objects::path(svc, "spec.ports").and_then(Value::as_array) {
            for p in ports {
                if let Some(np) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                    keys.push(format!("{PORT_PREFIX}{np}"));
                }
            }
        }
        Allocation { keys }
    }
}

/// A parsed IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    bits: u8,
}

impl Cidr {
    /// Parses `10.96.0.0/12`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let bits: u8 = bits.parse().ok().filter(|b| *b <= 30)?;
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        Some(Cidr {
            base: u32::from(ip) & mask,
            bits,
        })
    }

    /// Number of usable host addresses (network and broadcast excluded).
    pub fn hosts(&self) -> u32 {
        (1u32 << (32 - self.bits)) - 2
    }

    /// The n-th host address (0-based; 0 = first usable).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1 + n)
    }

    /// True if `ip` is a usable host of the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + (1u32 << (32 - self.bits)) - 1
    }
}

async fn reserve(
    state: &ApiState,
    key: &str,
    owner: &str,
    dry_run: bool,
) -> Result<bool, StoreError> {
    if dry_run {
        return Ok(state.store().get(key).await?.is_none());
    }
    match state
        .store()
        .create(key, Bytes::from(owner.to_string()))
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

fn invalid(svc: &Value, field: &str, value: &str, detail: &str) -> ApiError {
    let errs = [FieldErr::invalid(field, value, detail)];
    ApiError::invalid(
        "",
        "Service",
        objects::name(svc),
        errs.iter().map(FieldErr::cause).collect(),
    )
}

/// Allocates the cluster IP (and node ports) of a new service, writing them
/// into `svc`. `old` is the stored service on updates (its reservations are kept).
pub async fn allocate(
    state: &ApiState,
    svc: &mut Value,
    old: Option<&Value>,
    dry_run: bool,
) -> ApiResult<Allocation> {
    let mut alloc = Allocation::default();
    let ty = objects::path_str(svc, "spec.type").to_string();
    if ty == "ExternalName" || old.is_some() {
        return Ok(alloc);
    }
    let owner = format!("{}/{}", objects::namespace(svc), objects::name(svc));
    let cidr = Cidr::parse(&state.config().service_cidr)
        .ok_or_else(|| ApiError::internal("service CIDR", &state.config().service_cidr))?;
    let requested = objects::path_str(svc, "spec.clusterIP").to_string();
    let ip = if requested == "None" {
        None
    } else if !requested.is_empty() {
        let parsed: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                svc,
                "spec.clusterIPs[0]",
                &requested,
                "must be a valid IP address",
            )
        })?;
        if !cidr.contains(parsed) {
            return Err(invalid(
                svc,
                "spec.clusterIPs",
                &requested,
                &format!(
                    "failed to allocate IP {requested}: provided IP is not in the valid range. The range of valid IPs is {}",
                    state.config().service_cidr
                ),
            ));
        }
        if !reserve(state, &format!("{IP_PREFIX}{requested}"), &owner, dry_run).await? {
            return Err(invalid(
                svc,
                "spec.clusterIPs",
                &requested,
                &format!("failed to allocate IP {requested}: provided IP is already allocated"),
            ));
        }
        Some(requested.clone())
    } else {
        let hosts = cidr.hosts();
        // Skip the first address: it belongs to the `kubernetes` Service.
        let start = rand::rng().random_range(1..hosts.max(2));
        let mut found = None;
        for i in 0..hosts.min(4096) {
            let n = 1 + (start - 1 + i) % (hosts - 1).max(1);
            let candidate = cidr.host(n).to_string();
            if reserve(state, &format!("{IP_PREFIX}{candidate}"), &owner, dry_run).await? {
                found = Some(candidate);
                break;
            }
        }
        Some(found.ok_or_else(|| ApiError::internal("allocating a cluster IP", &"range is full"))?)
    };
    if let Some(ip) = &ip
        && !dry_run
    {
        alloc.keys.push(format!("{IP_PREFIX}{ip}"));
    }
    let spec = svc.get_mut("spec").and_then(Value::as_object_mut);
    if let Some(spec) = spec {
        let v = ip.clone().unwrap_or_else(|| "None".to_string());
        spec.insert("clusterIP".into(), json!(v));
        spec.insert("clusterIPs".into(), json!([v]));
        spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        let (lo, hi) = state.config().node_port_range;
        let ports = svc
            .pointer_mut("/spec/ports")
            .and_then(Value::as_array_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let mut out = Vec::new();
        for mut p in ports {
            let want = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
            let port = if want > 0 {
                if !reserve(state, &format!("{PORT_PREFIX}{want}"), &owner, dry_run).await? {
                    release(state, &alloc).await;
                    return Err(invalid(
                        svc,
                        "spec.ports[0].nodePort",
                        &want.to_string(),
                        "provided port is already allocated",
                    ));
                }
                want
            } else {
                let span = i64::from(hi - lo) + 1;
                let start = rand::rng().random_range(0..span);
                let mut got = None;
                for i in 0..span {
                    let candidate = i64::from(lo) + (start + i) % span;
                    if reserve(state, &format!("{PORT_PREFIX}{candidate}"), &owner, dry_run).await?
                    {
                        got = Some(candidate);
                        break;
                    }
                }
                match got {
                    Some(p) => p,
                    None => {
                        release(state, &alloc).await;
                        return Err(ApiError::internal(
                            "allocating a node port",
                            &"range is full",
                        ));
                    }
                }
            };
            if !dry_run {
                alloc.keys.push(format!("{PORT_PREFIX}{port}"));
            }
            p["nodePort"] = json!(port);
            out.push(p);
        }
        if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("ports".into(), Value::Array(out));
        }
    }
    Ok(alloc)
}

/// Frees reservations (best effort; failures are logged).
pub async fn release(state: &ApiState, alloc: &Allocation) {
    for key in &alloc.keys {
        match state.store().delete(key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(key, error = %e, "releasing a service allocation failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c = Cidr::parse("10.96.0.0/12").expect("cidr");
        assert_eq!(c.host(0), Ipv4Addr::new(10, 96, 0, 1));
        assert_eq!(c.hosts(), (1 << 20) - 2);
        assert!(c.contains(Ipv4Addr::new(10, 100, 1, 1)));
        assert!(!c.contains(Ipv4Addr::new(10, 96, 0, 0)));
        assert!(!c.contains(Ipv4Addr::new(10, 112, 0, 1)));
        assert!(Cidr::parse("bogus").is_none());
    }

    #[test]
    fn allocation_of_a_stored_service() {
        let svc = json!({"spec": {"clusterIP": "10.96.0.7", "ports": [{"port": 80, "nodePort": 30001}, {"port": 81}]}});
        assert_eq!(
            Allocation::of_service(&svc).keys,
            vec![
                "/registry/ranges/serviceips/10.96.0.7",
                "/registry/ranges/servicenodeports/30001"
            ]
        );
        assert!(
            Allocation::of_service(&json!({"spec": {"clusterIP": "None"}}))
                .keys
                .is_empty()
        );
    }
}
