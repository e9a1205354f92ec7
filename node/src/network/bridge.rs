//! The real pod network: a Linux bridge on the node, one veth pair per pod, over rtnetlink.
//!
//! On [`BridgeNetwork::configure`] (once the node knows its pod CIDR) the bridge (`skiff0`)
//! is created with the gateway address (`.1`), IP forwarding is switched on, and iptables
//! gets a MASQUERADE rule for pod traffic leaving the cluster range plus FORWARD accepts for
//! the bridge (Docker sets the FORWARD policy to DROP). [`PodNetwork::attach`] creates a veth
//! pair whose pod end (`eth0`) is created directly in the pod's namespace, plugs the host end
//! into the bridge, from a thread visiting the pod's namespace gives `eth0` the pod IP and
//! a default route via the gateway, and last brings the host end up. The network is IPv4
//! only: neither veth end generates IPv6 addresses. Netlink sockets belong to the namespace
//! of the thread that opens them, which is why the pod side runs inside the pod's namespace
//! ([`Netns::run_on_this_thread`](skiff_runtimes::netns::Netns::run_on_this_thread)). The
//! requests are blocking ([`skiff_runtimes::netlink`]), made from blocking threads.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use ipnet::Ipv4Net;
use parking_lot::Mutex;
use rtnetlink::packet_route::link::{
    InfoBridge, InfoData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use skiff_runtimes::netlink::{Netlink, NetlinkError, no_ipv6_addresses};
use skiff_runtimes::netns::Netns;

use super::ipam::{self, Ipam};
use super::{NetworkError, PodNetwork};

/// Settings of a [`BridgeNetwork`].
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// Bridge name (`skiff0`).
    pub bridge: String,
    /// Where IPAM state lives.
    pub state_dir: PathBuf,
    /// Add the MASQUERADE rule (FORWARD accepts for the bridge are always added).
    pub masquerade: bool,
    /// Traffic to this range is not masqueraded (the cluster's pod range).
    pub cluster_cidr: Ipv4Net,
}

/// The bridge-and-veth pod network. Cheap to clone.
#[derive(Clone)]
pub struct BridgeNetwork {
    config: BridgeConfig,
    ipam: Arc<Mutex<Option<Arc<Ipam>>>>,
    /// (Re)configuring the bridge excludes attach/detach; attaches and detaches share it.
    lock: Arc<tokio::sync::RwLock<()>>,
}

impl std::fmt::Debug for BridgeNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BridgeNetwork")
            .field("config", &self.config)
            .field("cidr", &self.cidr())
            .finish()
    }
}

fn netlink_error(operation: impl Into<String>) -> impl FnOnce(NetlinkError) -> NetworkError {
    let operation = operation.into();
    move |e| NetworkError::Netlink {
        operation,
        message: e.to_string(),
    }
}

/// A netlink socket in the calling thread's namespace.
fn open_netlink() -> Result<Netlink, NetworkError> {
    Netlink::open().map_err(netlink_error("open netlink socket"))
}

/// Run `work` with a netlink socket in the node's namespace, on a blocking thread of the
/// node's runtime (the requests block).
async fn on_host_netlink<T, F>(work: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce(&mut Netlink) -> Result<T, NetworkError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || work(&mut open_netlink()?))
        .await
        .map_err(|e| NetworkError::Host {
            operation: "run netlink requests".to_owned(),
            message: e.to_string(),
        })?
}

/// The index of interface `name` in the calling thread's namespace (where every netlink
/// socket here is opened), if it exists. An `SIOCGIFINDEX` ioctl rather than a netlink
/// `RTM_GETLINK`: the kernel answers the ioctl under RCU, while `RTM_GETLINK` waits its turn
/// for the rtnl lock that every pod start takes several times (in a 1,000-pod burst, these
/// lookups spent 2 % of the node's CPU spinning on that lock).
fn link_index(name: &str) -> Result<Option<u32>, NetworkError> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(index) => Ok(Some(index)),
        Err(nix::errno::Errno::ENODEV) => Ok(None),
        Err(e) => Err(NetworkError::Host {
            operation: format!("look up interface {name}"),
            message: e.to_string(),
        }),
    }
}

/// The pod's end of its veth pair, as Kubernetes' CNI plugins name it.
const POD_INTERFACE: &str = "eth0";

/// The host-side veth name for a pod: `veth` + 11 hex chars of a hash of its UID (15 max).
pub fn host_veth_name(uid: &str) -> String {
    format!("veth{:011x}", fnv(uid) & 0xfff_ffff_ffff)
}

/// A veth pair `host` ↔ `peer` whose `peer` end is created directly in the namespace open
/// at `netns_fd`.
///
/// Renaming an interface, or trimming a new veth's queues to one (what the kernel does when
/// the request names no queue counts and the machine has several CPUs), each waits for an
/// expedited RCU grace period under the kernel's rtnl lock, which serializes every pod start
/// on the node. So the peer gets its final name (`eth0`) at creation, and both ends ask for
/// one queue each way.
fn veth_into_namespace(host: &str, peer: &str, netns_fd: std::os::fd::RawFd) -> LinkMessage {
    let single_queues = [LinkAttribute::NumTxQueues(1), LinkAttribute::NumRxQueues(1)];
    let mut message = LinkVeth::new(host, peer).build();
    for attribute in &mut message.attributes {
        if let LinkAttribute::LinkInfo(infos) = attribute {
            for info in infos.iter_mut() {
                if let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))) = info {
                    peer_message
                        .attributes
                        .push(LinkAttribute::NetNsFd(netns_fd));
                    peer_message.attributes.extend(single_queues.clone());
                }
            }
        }
    }
    message.attributes.extend(single_queues);
    message
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

impl BridgeNetwork {
    /// A bridge network not yet configured with a pod CIDR.
    pub fn new(config: BridgeConfig) -> Self {
        BridgeNetwork {
            config,
            ipam: Arc::new(Mutex::new(None)),
            lock: Arc::new(tokio::sync::RwLock::new(())),
        }
    }

    /// The pod CIDR, once configured.
    pub fn cidr(&self) -> Option<Ipv4Net> {
        self.ipam.lock().as_ref().map(|i| i.cidr())
    }

    /// Set up the bridge, forwarding and NAT for `cidr`. Idempotent; a different CIDR
    /// replaces the previous one (new pods get addresses from it).
    pub async fn configure(&self, cidr: Ipv4Net) -> Result<(), NetworkError> {
        let _guard = self.lock.write().await;
        if self.cidr() == Some(cidr) {
            return Ok(());
        }
        let ipam = Ipam::open(&self.config.state_dir, cidr)?;
        let bridge = self.config.bridge.clone();
        on_host_netlink(move |netlink| setup_bridge(netlink, &bridge, cidr)).await?;
        enable_forwarding()?;
        iptables_rules(
            &self.config.bridge,
            cidr,
            self.config.cluster_cidr,
            self.config.masquerade,
        )?;
        *self.ipam.lock() = Some(Arc::new(ipam));
        tracing::info!(bridge = %self.config.bridge, %cidr, "pod network configured");
        Ok(())
    }

    fn ipam(&self) -> Result<Arc<Ipam>, NetworkError> {
        self.ipam.lock().clone().ok_or(NetworkError::NoPodCidr)
    }
}

/// Give interface `index` (named `name`, for errors) `ip` with `cidr`'s prefix; an address
/// it already has is fine.
fn add_address(
    netlink: &mut Netlink,
    index: u32,
    ip: Ipv4Addr,
    cidr: Ipv4Net,
    name: &str,
) -> Result<(), NetworkError> {
    netlink
        .add_address(index, ip, cidr.prefix_len())
        .map_err(netlink_error(format!(
            "add {ip}/{} to {name}",
            cidr.prefix_len()
        )))
}

/// Create (or update) the bridge, up, with the gateway address.
///
/// Multicast snooping is off: with it on, every port change makes the kernel re-enable
/// multicast querying on every port of the bridge (`br_port_state_selection` →
/// `br_multicast_enable_port`), under the rtnl lock that every pod start needs, so each new
/// pod cost more than the one before. In a 1,000-pod burst that was 3 % of the node's CPU and
/// the largest share of the bridge's. Pods still receive multicast: the bridge floods it.
fn setup_bridge(netlink: &mut Netlink, name: &str, cidr: Ipv4Net) -> Result<(), NetworkError> {
    let bridge = LinkBridge::new(name)
        .append_info_data(InfoBridge::MulticastSnooping(false))
        .build();
    netlink
        .create_or_change_link(bridge)
        .map_err(netlink_error(format!("create bridge {name}")))?;
    let index = link_index(name)?.ok_or_else(|| NetworkError::Netlink {
        operation: format!("create bridge {name}"),
        message: "bridge missing after creation".to_owned(),
    })?;
    add_address(netlink, index, ipam::gateway(cidr), cidr, name)
}

fn enable_forwarding() -> Result<(), NetworkError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    match std::fs::read_to_string(path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        _ => std::fs::write(path, b"1").map_err(|e| NetworkError::Host {
            operation: "enable IP forwarding".to_owned(),
            message: e.to_string(),
        }),
    }
}

/// Ensure an iptables rule exists (`-C` then `-A`/`-I`).
fn ensure_rule(table: &str, chain: &str, insert: bool, rule: &[&str]) -> Result<(), NetworkError> {
    let run = |action: &str| {
        std::process::Command::new("iptables")
            .args(["-w", "-t", table, action, chain])
            .args(rule)
            .output()
    };
    let host_error = |message: String| NetworkError::Host {
        operation: format!("iptables -t {table} {chain} {}", rule.join(" ")),
        message,
    };
    let check = run("-C").map_err(|e| host_error(format!("cannot run iptables: {e}")))?;
    if check.status.success() {
        return Ok(());
    }
    let added = run(if insert { "-I" } else { "-A" })
        .map_err(|e| host_error(format!("cannot run iptables: {e}")))?;
    if added.status.success() {
        Ok(())
    } else {
        Err(host_error(
            String::from_utf8_lossy(&added.stderr).trim().to_owned(),
        ))
    }
}

/// FORWARD accepts for the bridge (Docker's FORWARD policy is DROP, and with
/// `br_netfilter` even traffic between two ports of one bridge passes FORWARD) and, if asked,
/// MASQUERADE for pod traffic leaving the cluster range.
fn iptables_rules(
    bridge: &str,
    cidr: Ipv4Net,
    cluster: Ipv4Net,
    masquerade: bool,
) -> Result<(), NetworkError> {
    let cidr = cidr.to_string();
    let cluster = cluster.to_string();
    let comment = ["-m", "comment", "--comment", "skiff pod network"];
    if masquerade {
        let mut rule = vec!["-s", &cidr, "!", "-d", &cluster];
        rule.extend(comment);
        rule.extend(["-j", "MASQUERADE"]);
        ensure_rule("nat", "POSTROUTING", false, &rule)?;
    }
    for direction in ["-i", "-o"] {
        let mut accept = vec![direction, bridge];
        accept.extend(comment);
        accept.extend(["-j", "ACCEPT"]);
        ensure_rule("filter", "FORWARD", true, &accept)?;
    }
    Ok(())
}

/// The host side of a pod's attachment, before the pod's side: a veth pair whose pod end is
/// `eth0` in the pod's namespace and whose host end is plugged into `bridge`, still down.
///
/// The pod network is IPv4 only, and an interface that generates IPv6 addresses sends
/// duplicate address detection, router solicitations and MLD reports when it comes up, which
/// the bridge floods to every other pod: with 600 pods on the node, handling that flood took
/// about a quarter of the machine's CPU during a burst of pod starts, and grew with the square
/// of the pod count. So neither end generates IPv6 addresses ([`no_ipv6_addresses`]), and
/// each end is told so before the pair gets its carrier: the kernel applies a link request's
/// flags before its address-family settings, and an end that comes up to a carrier before
/// the kernel has noted its operational state gets its link-local address within that very
/// request. Hence the order: host end configured but down, pod end configured and up, then the
/// host end up ([`bring_up`]). Not the `disable_ipv6` sysctl: every namespace's `eth0` shares
/// one dentry chain under `/proc/sys/net/ipv6/conf`, so opening it inside a pod's namespace
/// took longer with every pod on the node.
fn create_veth(
    netlink: &mut Netlink,
    bridge: &str,
    host: &str,
    netns: &Netns,
) -> Result<(), NetworkError> {
    let bridge_index = link_index(bridge)?.ok_or_else(|| NetworkError::Netlink {
        operation: "find bridge".to_owned(),
        message: format!("bridge {bridge} does not exist"),
    })?;
    // The peer is created inside the pod's namespace: moving an interface between
    // namespaces waits for an RCU grace period under the kernel's rtnl lock (~25 ms
    // each), which serialized every pod start on the node.
    let veth = || veth_into_namespace(host, POD_INTERFACE, netns.as_fd().as_raw_fd());
    match netlink.add_link(veth()) {
        Ok(()) => {}
        Err(e) if e.is_exists() => {
            // A previous attempt (or a previous sandbox of this pod) left it: start over.
            // Deleting the host end deletes the pod end with it.
            netlink
                .delete_link(host)
                .map_err(netlink_error(format!("delete stale veth {host}")))?;
            netlink
                .add_link(veth())
                .map_err(netlink_error(format!("create veth {host}")))?;
        }
        Err(e) => return Err(netlink_error(format!("create veth {host}"))(e)),
    }
    netlink
        .set_link(
            LinkUnspec::new_with_name(host)
                .append_extra_attribute(no_ipv6_addresses())
                .controller(bridge_index)
                .build(),
        )
        .map_err(netlink_error(format!("attach {host} to {bridge}")))
}

/// The last step of an attachment: the host end up, which gives both ends their carrier.
fn bring_up(netlink: &mut Netlink, host: &str) -> Result<(), NetworkError> {
    netlink
        .set_link(LinkUnspec::new_with_name(host).up().build())
        .map_err(netlink_error(format!("bring up {host}")))
}

/// Inside the pod's namespace, while the host end is still down: `eth0` without IPv6
/// addresses and up, its address, the default route. `lo` is the runtime's: a sandbox's
/// namespace comes with it up.
fn configure_inside(
    netlink: &mut Netlink,
    ip: Ipv4Addr,
    cidr: Ipv4Net,
) -> Result<(), NetworkError> {
    let index = link_index(POD_INTERFACE)?.ok_or_else(|| NetworkError::Netlink {
        operation: "find pod interface".to_owned(),
        message: format!("no {POD_INTERFACE} in the namespace"),
    })?;
    netlink
        .set_link(
            LinkUnspec::new_with_index(index)
                .append_extra_attribute(no_ipv6_addresses())
                .up()
                .build(),
        )
        .map_err(netlink_error("bring up eth0"))?;
    add_address(netlink, index, ip, cidr, POD_INTERFACE)?;
    // The gateway's check ignores the missing carrier.
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .output_interface(index)
        .gateway(ipam::gateway(cidr))
        .build();
    netlink
        .add_route(route)
        .map_err(netlink_error("add default route"))
}

/// All of [`PodNetwork::attach`] after the lock; blocks (the IPAM state, netlink requests).
fn attach_blocking(
    ipam: &Ipam,
    bridge: &str,
    uid: &str,
    netns_path: &Path,
) -> Result<Ipv4Addr, NetworkError> {
    let cidr = ipam.cidr();
    let ip = ipam.allocate(uid)?;
    let host = host_veth_name(uid);
    let netns_error = |e: skiff_runtimes::netns::NetnsError| NetworkError::Netns {
        path: netns_path.to_owned(),
        message: e.to_string(),
    };
    let plugged = Netns::open(netns_path)
        .map_err(netns_error)
        .and_then(|netns| {
            let mut netlink = open_netlink()?;
            create_veth(&mut netlink, bridge, &host, &netns)?;
            // A blocking-pool thread of our own: it visits the pod's namespace for the netlink
            // socket instead of spawning a thread per pod.
            netns
                .run_on_this_thread(|| configure_inside(&mut open_netlink()?, ip, cidr))
                .map_err(netns_error)??;
            bring_up(&mut netlink, &host)
        });
    match plugged {
        Ok(()) => Ok(ip),
        Err(error) => {
            let _ = ipam.release(uid);
            Err(error)
        }
    }
}

#[async_trait]
impl PodNetwork for BridgeNetwork {
    fn is_pod_network(&self) -> bool {
        true
    }

    async fn attach(&self, uid: &str, netns_path: &Path) -> Result<IpAddr, NetworkError> {
        let ipam = self.ipam()?;
        // Shared: pods attach in parallel (each has its own veth names and address; the
        // kernel's rtnl lock orders the netlink calls). An exclusive lock here serialized
        // every pod's netlink round trips in a burst.
        let _guard = self.lock.read().await;
        let bridge = self.config.bridge.clone();
        let (owner, path) = (uid.to_owned(), netns_path.to_owned());
        let ip =
            tokio::task::spawn_blocking(move || attach_blocking(&ipam, &bridge, &owner, &path))
                .await
                .map_err(|e| NetworkError::Host {
                    operation: "attach pod to the bridge".to_owned(),
                    message: e.to_string(),
                })??;
        tracing::debug!(uid, %ip, veth = %host_veth_name(uid), "pod attached to the bridge");
        Ok(IpAddr::V4(ip))
    }

    async fn detach(&self, uid: &str, _netns: Option<&Path>) -> Result<(), NetworkError> {
        let _guard = self.lock.read().await;
        let ipam = self.ipam().ok();
        let owner = uid.to_owned();
        on_host_netlink(move |netlink| {
            let host = host_veth_name(&owner);
            netlink
                .delete_link(&host)
                .map_err(netlink_error(format!("delete veth {host}")))?;
            if let Some(ipam) = ipam {
                ipam.release(&owner)?;
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_the_kernel_limit_and_differ() {
        let a = host_veth_name("0d4f3c1e-aaaa-bbbb-cccc-000000000001");
        let b = host_veth_name("0d4f3c1e-aaaa-bbbb-cccc-000000000002");
        assert!(a.len() <= 15 && a.starts_with("veth"), "{a}");
        assert_ne!(a, b);
        assert_eq!(host_veth_name("x"), host_veth_name("x"));
    }
}
