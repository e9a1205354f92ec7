//! The pod network: every pod sandbox's network namespace gets `lo` and an `eth0` veth on the
//! node bridge, with an IP from the node's pod CIDR, like the CNI bridge plugin.
//!
//! The kubelet sees only [`PodNetwork`]: [`attach`](PodNetwork::attach) a namespace (by path:
//! a Wasmtime-held `/run/netns/...` file or a Docker pause container's `/proc/<pid>/ns/net`)
//! and get the pod IP; [`detach`](PodNetwork::detach) it. [`BridgeNetwork`] is the real one
//! ([`bridge`] does the netlink work, [`ipam`] hands out addresses); [`HostNetwork`] is the
//! fallback without root, where every pod uses the node's IP.

pub mod bridge;
pub mod ipam;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use bridge::BridgeNetwork;

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The node has no pod CIDR yet (waiting for the control plane to assign one).
    #[error("the node has no pod CIDR yet (node.spec.podCIDR is empty)")]
    NoPodCidr,
    /// IP allocation failed.
    #[error(transparent)]
    Ipam(#[from] ipam::IpamError),
    /// A netlink operation failed.
    #[error("{operation}: {message}")]
    Netlink {
        /// What was being done (`create bridge skiff0`, ...).
        operation: String,
        /// What the kernel said.
        message: String,
    },
    /// Entering or opening the namespace failed.
    #[error("network namespace {}: {message}", path.display())]
    Netns {
        /// Its path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Configuring iptables or sysctls failed.
    #[error("{operation}: {message}")]
    Host {
        /// What was being done.
        operation: String,
        /// What went wrong.
        message: String,
    },
}

/// Wires pod network namespaces to the node.
#[async_trait]
pub trait PodNetwork: Send + Sync + 'static {
    /// True if pods get their own namespace and IP; false for host networking.
    fn is_pod_network(&self) -> bool;

    /// Connect the namespace at `netns` (owned by pod `uid`) and return the pod's IP.
    /// Idempotent: attaching an attached pod returns its IP.
    async fn attach(&self, uid: &str, netns: &Path) -> Result<IpAddr, NetworkError>;

    /// Disconnect pod `uid` and free its IP. `netns` may already be gone. Idempotent.
    async fn detach(&self, uid: &str, netns: Option<&Path>) -> Result<(), NetworkError>;
}

/// Host networking: no namespaces, every pod has the node's IP.
#[derive(Debug, Clone)]
pub struct HostNetwork {
    /// The node's IP.
    pub node_ip: IpAddr,
}

#[async_trait]
impl PodNetwork for HostNetwork {
    fn is_pod_network(&self) -> bool {
        false
    }

    async fn attach(&self, _uid: &str, _netns: &Path) -> Result<IpAddr, NetworkError> {
        Ok(self.node_ip)
    }

    async fn detach(&self, _uid: &str, _netns: Option<&Path>) -> Result<(), NetworkError> {
        Ok(())
    }
}
