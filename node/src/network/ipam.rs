//! Host-local IPAM: pod IPs from the node's pod CIDR, allocations persisted in the data dir
//! (like the CNI `host-local` plugin), so a restarted node does not hand out an address a
//! surviving pod still holds.
//!
//! The first address of the range is the network, the second (`.1`) the bridge's gateway,
//! the last the broadcast; the rest go to pods, round-robin after the last allocation so a
//! freed IP is not reused at once. [`Allocations`] is the pure core; [`Ipam`] persists it as
//! a journal, one appended line per change (`+<ip> <owner>`, `-<ip>`, and `@<ip>` for the
//! last allocation), rewritten compactly when it opens and when it has grown to several times
//! the live table. Rewriting the whole table after every change (as JSON, the former format,
//! still read) made each allocation cost more the more pods the node had.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use parking_lot::Mutex;
use serde::Deserialize;

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
    /// The state file cannot be read back.
    #[error("IPAM state {}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
}

/// The gateway (bridge) address of a pod CIDR: its first host address.
pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1))
}

/// Allocated addresses of one range: IP → owner (pod UID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocations {
    /// The range.
    pub cidr: Ipv4Net,
    /// Address → owner.
    allocated: BTreeMap<Ipv4Addr, String>,
    /// Owner → address.
    owners: HashMap<String, Ipv4Addr>,
    /// The last address handed out (allocation continues after it).
    last: Option<Ipv4Addr>,
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
            owners: HashMap::new(),
            last: None,
        })
    }

    /// Give `owner` an address; the same owner asking again gets the same one. The flag
    /// says whether the address is new.
    pub fn allocate(&mut self, owner: &str) -> Result<(Ipv4Addr, bool), IpamError> {
        if let Some(ip) = self.owners.get(owner) {
            return Ok((*ip, false));
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
            if !self.allocated.contains_key(&ip) {
                self.insert(ip, owner.to_owned());
                return Ok((ip, true));
            }
        }
        Err(IpamError::Exhausted {
            cidr: self.cidr,
            used: self.allocated.len(),
        })
    }

    /// Record `ip` as `owner`'s (and as the last allocation).
    fn insert(&mut self, ip: Ipv4Addr, owner: String) {
        if let Some(previous) = self.allocated.insert(ip, owner.clone()) {
            self.owners.remove(&previous);
        }
        if let Some(stale) = self.owners.insert(owner, ip)
            && stale != ip
        {
            self.allocated.remove(&stale);
        }
        self.last = Some(ip);
    }

    /// Free whatever `owner` holds. Returns the freed address.
    pub fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        let ip = self.owners.remove(owner)?;
        self.allocated.remove(&ip);
        Some(ip)
    }

    /// Free `ip`, whoever holds it.
    fn release_ip(&mut self, ip: Ipv4Addr) {
        if let Some(owner) = self.allocated.remove(&ip) {
            self.owners.remove(&owner);
        }
    }

    /// The address `owner` holds.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.owners.get(owner).copied()
    }

    /// Addresses in use.
    pub fn len(&self) -> usize {
        self.allocated.len()
    }

    /// Whether no address is in use.
    pub fn is_empty(&self) -> bool {
        self.allocated.is_empty()
    }
}

/// The former state file: the whole table as JSON.
#[derive(Deserialize)]
struct LegacyTable {
    allocated: BTreeMap<Ipv4Addr, String>,
    last: Option<Ipv4Addr>,
}

/// Allocations persisted in `<dir>/ipam-<network>-<prefix>.log`.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    state: Mutex<Journal>,
}

#[derive(Debug)]
struct Journal {
    table: Allocations,
    file: std::fs::File,
    /// Records in the file.
    records: usize,
    /// A reused buffer for the next record.
    line: String,
}

/// Records beyond this many per live allocation (plus a margin) trigger a rewrite.
const COMPACT_FACTOR: usize = 4;
const COMPACT_MARGIN: usize = 1024;

impl Ipam {
    /// Load (or start) the allocations for `cidr` under `dir`.
    pub fn open(dir: &Path, cidr: Ipv4Net) -> Result<Self, IpamError> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let stem = format!("ipam-{}-{}", cidr.network(), cidr.prefix_len());
        let path = dir.join(format!("{stem}.log"));
        let legacy = dir.join(format!("{stem}.json"));
        let mut table = Allocations::new(cidr)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => replay(&mut table, &text).map_err(|message| IpamError::Corrupt {
                path: path.clone(),
                message,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                load_legacy(&mut table, &legacy)?;
            }
            Err(e) => return Err(io_error(&path)(e)),
        }
        let (file, records) = rewrite(&path, &table)?;
        if legacy.exists() {
            std::fs::remove_file(&legacy).map_err(io_error(&legacy))?;
        }
        Ok(Ipam {
            path,
            state: Mutex::new(Journal {
                table,
                file,
                records,
                line: String::new(),
            }),
        })
    }

    /// The range.
    pub fn cidr(&self) -> Ipv4Net {
        self.state.lock().table.cidr
    }

    /// Allocate for `owner` and persist.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        let mut journal = self.state.lock();
        let (ip, new) = journal.table.allocate(owner)?;
        if new {
            self.record(&mut journal, format_args!("+{ip} {owner}"))
                .inspect_err(|_| {
                    journal.table.release(owner);
                })?;
        }
        Ok(ip)
    }

    /// Release `owner`'s address and persist.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let mut journal = self.state.lock();
        let ip = journal.table.release(owner);
        if let Some(ip) = ip {
            self.record(&mut journal, format_args!("-{ip}"))?;
        }
        Ok(ip)
    }

    /// Owners holding addresses now.
    pub fn owners(&self) -> Vec<String> {
        self.state
            .lock()
            .table
            .allocated
            .values()
            .cloned()
            .collect()
    }

    /// Append one record; rewrite the file compactly when it has grown long.
    fn record(
        &self,
        journal: &mut Journal,
        record: std::fmt::Arguments<'_>,
    ) -> Result<(), IpamError> {
        use std::fmt::Write as _;
        let Journal {
            table,
            file,
            records,
            line,
        } = journal;
        line.clear();
        let _ = writeln!(line, "{record}");
        file.write_all(line.as_bytes())
            .map_err(io_error(&self.path))?;
        *records += 1;
        if *records > COMPACT_FACTOR * table.len() + COMPACT_MARGIN {
            (*file, *records) = rewrite(&self.path, table)?;
        }
        Ok(())
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
    let path = path.to_owned();
    move |source| IpamError::Io { path, source }
}

/// Apply a journal's records to `table`. A last line without its newline was cut short by a
/// crash mid-write: the change it recorded never finished, so it is ignored.
fn replay(table: &mut Allocations, text: &str) -> Result<(), String> {
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    for (number, line) in complete.lines().enumerate() {
        let bad = || format!("line {}: cannot read {line:?}", number + 1);
        let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
        match kind {
            "+" => {
                let (ip, owner) = rest.split_once(' ').ok_or_else(bad)?;
                let ip = ip.parse().map_err(|_| bad())?;
                table.insert(ip, owner.to_owned());
            }
            "-" => table.release_ip(rest.parse().map_err(|_| bad())?),
            "@" => table.last = Some(rest.parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        }
    }
    Ok(())
}

/// Read the former JSON state file into `table`, if there is one.
fn load_legacy(table: &mut Allocations, path: &Path) -> Result<(), IpamError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(path)(e)),
    };
    let legacy: LegacyTable = serde_json::from_slice(&bytes).map_err(|e| IpamError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    for (ip, owner) in legacy.allocated {
        table.insert(ip, owner);
    }
    table.last = legacy.last;
    Ok(())
}

/// Write `table` as a fresh journal (atomically: a temporary file renamed over the old one)
/// and open it for appending. Returns the file and its record count.
fn rewrite(path: &Path, table: &Allocations) -> Result<(std::fs::File, usize), IpamError> {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(table.len() * 56 + 20);
    for (ip, owner) in &table.allocated {
        let _ = writeln!(text, "+{ip} {owner}");
    }
    if let Some(last) = table.last {
        let _ = writeln!(text, "@{last}");
    }
    let temp = path.with_extension("log.tmp");
    std::fs::write(&temp, &text).map_err(io_error(&temp))?;
    std::fs::rename(&temp, path).map_err(io_error(path))?;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_error(path))?;
    let records = table.len() + usize::from(table.last.is_some());
    Ok((file, records))
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
        assert_eq!(
            a.allocate("p1").expect("p1").0,
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(
            a.allocate("p2").expect("p2").0,
            Ipv4Addr::new(10, 244, 1, 3)
        );
        assert_eq!(
            a.allocate("p1").expect("again").0,
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert_eq!(a.release("p1"), Some(Ipv4Addr::new(10, 244, 1, 2)));
        assert_eq!(a.release("p1"), None);
        // A freed address is not reused at once.
        assert_eq!(
            a.allocate("p3").expect("p3").0,
            Ipv4Addr::new(10, 244, 1, 4)
        );
        assert_eq!(a.get("p2"), Some(Ipv4Addr::new(10, 244, 1, 3)));
    }

    #[test]
    fn exhausts_and_wraps() {
        // /29: network .0, gateway .1, pods .2-.6, broadcast .7.
        let mut a = Allocations::new(net("10.0.0.0/29")).expect("new");
        let ips: Vec<_> = (0..5)
            .map(|i| a.allocate(&format!("p{i}")).expect("alloc").0)
            .collect();
        assert_eq!(ips.first(), Some(&Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(ips.last(), Some(&Ipv4Addr::new(10, 0, 0, 6)));
        assert!(matches!(a.allocate("p5"), Err(IpamError::Exhausted { .. })));
        a.release("p1");
        assert_eq!(
            a.allocate("p6").expect("wraps").0,
            Ipv4Addr::new(10, 0, 0, 3)
        );
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
        std::fs::write(dir.path().join("ipam-10.244.4.0-24.log"), b"+10.244.4.2\n").expect("write");
        assert!(matches!(
            Ipam::open(dir.path(), net("10.244.4.0/24")),
            Err(IpamError::Corrupt { .. })
        ));
    }

    #[test]
    fn journal_survives_torn_writes_compaction_and_the_former_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cidr = net("10.244.5.0/24");
        let log = dir.path().join("ipam-10.244.5.0-24.log");
        // The former JSON table is read once and replaced by the journal.
        let legacy = dir.path().join("ipam-10.244.5.0-24.json");
        std::fs::write(
            &legacy,
            br#"{"cidr":"10.244.5.0/24","allocated":{"10.244.5.7":"old-pod"},"last":"10.244.5.9"}"#,
        )
        .expect("write");
        let ipam = Ipam::open(dir.path(), cidr).expect("open");
        assert!(!legacy.exists(), "the JSON file is migrated");
        assert_eq!(ipam.owners(), vec!["old-pod".to_owned()]);
        assert_eq!(
            ipam.allocate("a").expect("a"),
            Ipv4Addr::new(10, 244, 5, 10)
        );
        drop(ipam);

        // A crash cut the last record short: that change never happened.
        let mut text = std::fs::read_to_string(&log).expect("read");
        text.push_str("+10.244.5.11 b");
        std::fs::write(&log, text).expect("write");
        let ipam = Ipam::open(dir.path(), cidr).expect("reopen");
        let mut owners = ipam.owners();
        owners.sort();
        assert_eq!(owners, ["a", "old-pod"]);
        assert_eq!(
            ipam.allocate("b").expect("b"),
            Ipv4Addr::new(10, 244, 5, 11)
        );

        // Many changes: the journal is rewritten compactly and keeps the table, including
        // where allocation continues (a pure table given the same changes agrees).
        let mut model = Allocations::new(cidr).expect("model");
        for (ip, owner) in [(7, "old-pod"), (10, "a"), (11, "b")] {
            model.insert(Ipv4Addr::new(10, 244, 5, ip), owner.to_owned());
        }
        for round in 0..600 {
            let owner = format!("churn-{round}");
            let ip = ipam.allocate(&owner).expect("allocate");
            assert_eq!(model.allocate(&owner).expect("model").0, ip);
            ipam.release(&owner).expect("release");
            model.release(&owner);
        }
        let lines = std::fs::read_to_string(&log).expect("read").lines().count();
        assert!(
            lines <= COMPACT_MARGIN + 4 * COMPACT_FACTOR,
            "{lines} records"
        );
        assert_eq!(
            ipam.allocate("c").expect("c"),
            model.allocate("c").expect("c").0
        );
        drop(ipam);
        let again = Ipam::open(dir.path(), cidr).expect("reopen");
        let mut owners = again.owners();
        owners.sort();
        assert_eq!(owners, ["a", "b", "c", "old-pod"]);
        assert_eq!(
            again.allocate("c").expect("same"),
            model.get("c").expect("c")
        );
        assert_eq!(
            again.allocate("d").expect("d"),
            model.allocate("d").expect("d").0,
            "continues after the last allocation"
        );
    }
}
