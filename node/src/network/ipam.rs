//! Host-local IPAM: pod IPs from the node's pod CIDR, allocations persisted in the data dir
//! (like the CNI `host-local` plugin), so a restarted node does not hand out an address a
//! surviving pod still holds.
//!
//! The first address of the range is the network, the second (`.1`) the bridge's gateway,
//! the last the broadcast; the rest go to pods, round-robin after the last allocation so a
//! freed IP is not reused at once. [`Allocations`] is the pure core; [`Ipam`] persists it as
//! JSON, written atomically after every change.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Errors of IP allocation.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address is taken.
    #[error("no free IP address left in {cidr} ({used} in use)")]
    Exhausted {
        /// The range.
        cidr: Ipv4Net,
        /// Allocations.
        used: usize,
    },
    /// The range is too small for pods (needs at least /30).
    #[error("pod CIDR {0} is too small")]
    TooSmall(Ipv4Net),
    /// Reading or writing the state file failed.
    #[error("IPAM state {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not valid JSON.
    #[error("IPAM state {}: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

/// The gateway (bridge) address of a pod CIDR: its first host address.
pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1))
}

/// Allocated addresses of one range: IP → owner (pod UID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    /// The range.
    pub cidr: Ipv4Net,
    /// Address → owner.
    pub allocated: BTreeMap<Ipv4Addr, String>,
    /// The last address handed out (allocation continues after it).
    pub last: Option<Ipv4Addr>,
}

impl Allocations {
    /// An empty allocation table for `cidr`.
    pub fn new(cidr: Ipv4Net) -> Result<Self, IpamError> {
        if cidr.prefix_len() > 30 {
            return Err(IpamError::TooSmall(cidr));
        }
        Ok(Allocations {
            cidr: cidr.trunc(),
            allocated: BTreeMap::new(),
            last: None,
        })
    }

    /// Give `owner` an address; the same owner asking again gets the same one.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        if let Some((ip, _)) = self.allocated.iter().find(|(_, o)| *o == owner) {
            return Ok(*ip);
        }
        let first = u32::from(self.cidr.network()) + 2;
        let last = u32::from(self.cidr.broadcast()) - 1;
        let size = last - first + 1;
        let start = match self.last {
            Some(ip) if (first..=last).contains(&u32::from(ip)) => u32::from(ip) + 1,
            _ => first,
        };
        for i in 0..size {
            let candidate = first + (start - first + i) % size;
            let ip = Ipv4Addr::from(candidate);
            if let std::collections::btree_map::Entry::Vacant(slot) = self.allocated.entry(ip) {
                slot.insert(owner.to_owned());
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted {
            cidr: self.cidr,
            used: self.allocated.len(),
        })
    }

    /// Free whatever `owner` holds. Returns the freed address.
    pub fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        let ip = self
            .allocated
            .iter()
            .find(|(_, o)| *o == owner)
            .map(|(ip, _)| *ip)?;
        self.allocated.remove(&ip);
        Some(ip)
    }

    /// The address `owner` holds.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.allocated
            .iter()
            .find(|(_, o)| *o == owner)
            .map(|(ip, _)| *ip)
    }
}

/// Allocations persisted in `<dir>/ipam-<cidr>.json`.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    state: Mutex<Allocations>,
}

impl Ipam {
    /// Load (or start) the allocations for `cidr` under `dir`.
    pub fn open(dir: &Path, cidr: Ipv4Net) -> Result<Self, IpamError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| IpamError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let name = format!("ipam-{}-{}.json", cidr.network(), cidr.prefix_len());
        let path = dir.join(name);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Allocations>(&bytes).map_err(|source| {
                IpamError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Allocations::new(cidr)?,
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(Ipam {
            path,
            state: Mutex::new(state),
        })
    }

    /// The range.
    pub fn cidr(&self) -> Ipv4Net {
        self.state.lock().cidr
    }

    /// Allocate for `owner` and persist.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let mut state = self.state.lock();
        let before = state.clone();
        let ip = state.allocate(owner)?;
        if *state != before {
            self.save(&state)?;
        }
        Ok(ip)
    }

    /// Release `owner`'s address and persist.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let mut state = self.state.lock();
        let ip = state.release(owner);
        if ip.is_some() {
            self.save(&state)?;
        }
        Ok(ip)
    }

    /// Owners holding addresses now.
    pub fn owners(&self) -> Vec<String> {
        self.state.lock().allocated.values().cloned().collect()
    }

    fn save(&self, state: &Allocations) -> Result<(), IpamError> {
        let io = |source| IpamError::Io {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(state).map_err(|source| IpamError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        let temp = self.path.with_extension("json.tmp");
        std::fs::write(&temp, json).map_err(io)?;
        std::fs::rename(&temp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    #[test]
    fn allocates_after_the_gateway_and_round_robin() {
        let mut a = Allocations::new(net("10.244.1.0/24")).expect("new");
        assert_eq!(gateway(a.cidr), Ipv4Addr::new(10, 244, 1, 1));
        assert_eq!(a.allocate("p1").expect("p1"), Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(a.allocate("p2").expect("p2"), Ipv4Addr::new(10, 244, 1, 3));
        assert_eq!(
            a.allocate("p1").expect("again"),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(a.release("p1"), Some(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(a.release("p1"), None);
        // A freed address is not reused at once.
        assert_eq!(a.allocate("p3").expect("p3"), Ipv4Addr::new(10, 244, 1, 4));
        assert_eq!(a.get("p2"), Some(Ipv4Addr::new(10, 244, 1, 3)));
    }

    #[test]
    fn exhausts_and_wraps() {
        // /29: network .0, gateway .1, pods .2-.6, broadcast .7.
        let mut a = Allocations::new(net("10.0.0.0/29")).expect("new");
        let ips: Vec<_> = (0..5)
            .map(|i| a.allocate(&format!("p{i}")).expect("alloc"))
            .collect();
        assert_eq!(ips.first(), Some(&Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(ips.last(), Some(&Ipv4Addr::new(10, 0, 0, 6)));
        assert!(matches!(a.allocate("p5"), Err(IpamError::Exhausted { .. })));
        a.release("p1");
        assert_eq!(a.allocate("p6").expect("wraps"), Ipv4Addr::new(10, 0, 0, 3));
        assert!(Allocations::new(net("10.0.0.0/31")).is_err());
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ipam = Ipam::open(dir.path(), net("10.244.3.0/24")).expect("open");
        let ip = ipam.allocate("uid-1").expect("alloc");
        ipam.allocate("uid-2").expect("alloc");
        ipam.release("uid-2").expect("release");
        drop(ipam);
        let again = Ipam::open(dir.path(), net("10.244.3.0/24")).expect("reopen");
        assert_eq!(again.owners(), vec!["uid-1".to_owned()]);
        assert_eq!(again.allocate("uid-1").expect("same"), ip);
        assert_eq!(
            again.allocate("uid-3").expect("next"),
            Ipv4Addr::new(10, 244, 3, 4),
            "continues after the last allocation"
        );
        std::fs::write(dir.path().join("ipam-10.244.4.0-24.json"), b"{").expect("write");
        assert!(matches!(
            Ipam::open(dir.path(), net("10.244.4.0/24")),
            Err(IpamError::Corrupt { .. })
        ));
    }
}
