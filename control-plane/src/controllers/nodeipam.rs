//! The node IPAM controller (Kubernetes' `node-ipam-controller` with the
//! range allocator): gives every node without one a pod CIDR, the lowest
//! free `/node_cidr_mask_size` (24) of the cluster CIDR (10.244.0.0/16), in
//! `spec.podCIDR` and `spec.podCIDRs`. CIDRs of deleted nodes become free.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use serde_json::json;

use super::error::{Error, KubeResultExt};
use super::informer::Informer;
use super::{Shared, run_controller};

/// Parses `a.b.c.d/n`.
pub fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
    Some((u32::from(ip), len))
}

/// The lowest `/mask` block of `cluster` not in `used`.
pub fn allocate(cluster: &str, mask: u8, used: &HashSet<String>) -> Option<String> {
    let (base, len) = parse_cidr(cluster)?;
    if mask < len || mask > 32 {
        return None;
    }
    let net_mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let base = base & net_mask;
    let count: u64 = 1u64 << (mask - len);
    let step: u64 = 1u64 << (32 - mask);
    (0..count)
        .map(|i| {
            format!(
                "{}/{mask}",
                Ipv4Addr::from((u64::from(base) + i * step) as u32)
            )
        })
        .find(|c| !used.contains(c))
}

/// State shared by reconciles: allocations not yet visible in the cache.
pub struct Ctx {
    client: Client,
    nodes: Store<Node>,
    cluster_cidr: String,
    mask: u8,
    pending: Mutex<Vec<(String, String)>>,
    lock: tokio::sync::Mutex<()>,
}

/// Runs the controller until the manager stops.
pub async fn run(shared: Arc<Shared>) -> Result<(), Error> {
    let informer: Informer<Node> = shared.informers.get();
    let stream = informer.stream();
    informer.ready().await;
    let ctx = Arc::new(Ctx {
        client: shared.client.clone(),
        nodes: informer.store(),
        cluster_cidr: shared.config.cluster_cidr.clone(),
        mask: shared.config.node_cidr_mask_size,
        pending: Mutex::new(Vec::new()),
        lock: tokio::sync::Mutex::new(()),
    });
    run_controller(
        "nodeipam",
        Controller::for_stream(stream, informer.store()),
        1,
        reconcile,
        ctx,
    )
    .await;
    Ok(())
}

/// Allocates a pod CIDR to a node that has none.
pub async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let _guard = ctx.lock.lock().await;
    let name = node.name_any();
    let mut used: HashSet<String> = ctx
        .nodes
        .state()
        .iter()
        .filter(|n| n.name_any() != name)
        .flat_map(|n| {
            let spec = n.spec.clone().unwrap_or_default();
            spec.pod_cidrs
                .unwrap_or_default()
                .into_iter()
                .chain(spec.pod_cidr)
        })
        .collect();
    {
        let live: HashSet<String> = ctx.nodes.state().iter().map(|n| n.name_any()).collect();
        let mut pending = ctx.pending.lock();
        pending.retain(|(n, _)| live.contains(n) && *n != name);
        used.extend(pending.iter().map(|(_, c)| c.clone()));
    }
    let Some(cidr) = allocate(&ctx.cluster_cidr, ctx.mask, &used) else {
        return Err(Error::InvalidSpec {
            object: format!("node {name}"),
            message: format!(
                "no free /{} left in cluster CIDR {}",
                ctx.mask, ctx.cluster_cidr
            ),
        });
    };
    let api: Api<Node> = Api::all(ctx.client.clone());
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
    )
    .await
    .ctx(|| format!("assigning pod CIDR {cidr} to node {name}"))?;
    tracing::info!(node = %name, %cidr, "allocated pod CIDR");
    ctx.pending.lock().push((name, cidr));
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_the_lowest_free_block() {
        let mut used = HashSet::new();
        assert_eq!(
            allocate("10.244.0.0/16", 24, &used).as_deref(),
            Some("10.244.0.0/24")
        );
        used.insert("10.244.0.0/24".to_string());
        used.insert("10.244.2.0/24".to_string());
        assert_eq!(
            allocate("10.244.0.0/16", 24, &used).as_deref(),
            Some("10.244.1.0/24")
        );
        used.insert("10.244.1.0/24".to_string());
        assert_eq!(
            allocate("10.244.0.0/16", 24, &used).as_deref(),
            Some("10.244.3.0/24")
        );
        let all: HashSet<String> = (0..4).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(allocate("10.0.0.0/22", 24, &all), None, "exhausted");
        assert_eq!(
            allocate("10.0.0.0/24", 16, &HashSet::new()),
            None,
            "mask larger than the cluster"
        );
        assert_eq!(allocate("bogus", 24, &HashSet::new()), None);
        assert_eq!(
            parse_cidr("10.244.0.0/16"),
            Some((u32::from(Ipv4Addr::new(10, 244, 0, 0)), 16))
        );
    }
}
