//! Start-up: the namespaces every cluster has (`default`, `kube-system`,
//! `kube-public`, `kube-node-lease`), the `kubernetes` Service in `default`
//! (first address of the service range, port 443 → the advertised port) and
//! its Endpoints, and stored CRDs loaded into the registry.

use serde_json::json;

use super::errors::{ApiError, ApiResult};
use super::ops::{self, WriteOpts};
use super::{ApiState, crd, ipalloc};

/// Namespaces created at start-up.
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_if_missing(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    obj: serde_json::Value,
) -> ApiResult<()> {
    let res = state
        .registry()
        .builtin(group, plural)
        .ok_or_else(|| ApiError::internal("bootstrap", &format!("{plural} not registered")))?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    if ops::load(state, &res, ns, name).await?.is_some() {
        return Ok(());
    }
    let opts = WriteOpts {
        field_manager: Some("kube-apiserver".into()),
        ..Default::default()
    };
    match ops::create(state, &res, ns, obj, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs the bootstrap; safe to repeat.
pub async fn run(state: &ApiState) -> ApiResult<()> {
    for ns in DEFAULT_NAMESPACES {
        create_if_missing(
            state,
            "",
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    let (host, port) = match state.config().advertise_address.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse::<u16>().unwrap_or(6443),
        ),
        None => (state.config().advertise_address.clone(), 6443),
    };
    let cidr = ipalloc::Cidr::parse(&state.config().service_cidr)
        .ok_or_else(|| ApiError::internal("bootstrap", &"invalid service CIDR"))?;
    let svc = json!({
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": cidr.host(0).to_string(),
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    });
    create_if_missing(state, "", "services", Some("default"), svc).await?;
    if host.parse::<std::net::IpAddr>().is_ok() {
        let ep = json!({
            "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
            "subsets": [{"addresses": [{"ip": host}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        });
        create_if_missing(state, "", "endpoints", Some("default"), ep).await?;
    }
    crd::load_all(state).await?;
    Ok(())
}
