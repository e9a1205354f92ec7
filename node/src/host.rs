//! Facts about the host the node reports: CPUs, memory, disk, kernel, OS, addresses.
//!
//! [`HostInfo::detect`] reads `/proc`, `/etc` and `statvfs`; the parsers it uses are pure
//! functions tested on sample text. Anything unreadable falls back to a harmless value (an
//! empty id, zero bytes) rather than failing node registration.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;

/// What the node knows about its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Host name (lower-cased).
    pub hostname: String,
    /// Logical CPUs usable by this process.
    pub cpus: u32,
    /// `MemTotal` in bytes.
    pub memory_bytes: u64,
    /// Size of the file system holding the data dir, in bytes.
    pub ephemeral_storage_bytes: u64,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
    /// Kubernetes architecture name (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/sys/class/dmi/id/product_uuid` (empty when unreadable).
    pub system_uuid: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The node's IP.
    pub internal_ip: IpAddr,
}

/// Current resource usage, for the pressure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostUsage {
    /// `MemAvailable` in bytes.
    pub memory_available_bytes: u64,
    /// Free bytes on the data dir's file system (for unprivileged users).
    pub disk_available_bytes: u64,
    /// Size of that file system.
    pub disk_total_bytes: u64,
}

/// The host name lower-cased, as the kubelet names its Node; `localhost` if unknown.
pub fn default_node_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl HostInfo {
    /// Read the host's facts; `data_dir` decides which file system is "ephemeral storage".
    pub fn detect(data_dir: &Path, node_ip: Option<IpAddr>) -> HostInfo {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let uname = nix::sys::utsname::uname().ok();
        HostInfo {
            hostname: default_node_name(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
            memory_bytes: meminfo_field(&read("/proc/meminfo"), "MemTotal").unwrap_or(0),
            ephemeral_storage_bytes: disk_usage(data_dir).map(|(total, _)| total).unwrap_or(0),
            kernel_version: uname
                .as_ref()
                .and_then(|u| u.release().to_str().map(str::to_owned))
                .unwrap_or_default(),
            os_image: os_pretty_name(&read("/etc/os-release")),
            architecture: kube_arch(std::env::consts::ARCH).to_owned(),
            machine_id: read("/etc/machine-id").trim().to_owned(),
            system_uuid: read("/sys/class/dmi/id/product_uuid").trim().to_owned(),
            boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_owned(),
            internal_ip: node_ip.unwrap_or_else(default_node_ip),
        }
    }
}

impl HostUsage {
    /// Read current memory and disk availability.
    pub fn detect(data_dir: &Path) -> HostUsage {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let (disk_total_bytes, disk_available_bytes) = disk_usage(data_dir).unwrap_or((0, 0));
        HostUsage {
            memory_available_bytes: meminfo_field(&meminfo, "MemAvailable").unwrap_or(u64::MAX),
            disk_available_bytes,
            disk_total_bytes,
        }
    }
}

/// A `/proc/meminfo` field in bytes (`MemTotal:  16314004 kB`).
pub fn meminfo_field(meminfo: &str, field: &str) -> Option<u64> {
    meminfo.lines().find_map(|line| {
        let (name, rest) = line.split_once(':')?;
        if name.trim() != field {
            return None;
        }
        let mut parts = rest.split_whitespace();
        let value: u64 = parts.next()?.parse().ok()?;
        Some(match parts.next() {
            Some("kB") => value * 1024,
            _ => value,
        })
    })
}

/// `PRETTY_NAME` from an os-release file, unquoted; `Linux` if absent.
pub fn os_pretty_name(os_release: &str) -> String {
    os_release
        .lines()
        .find_map(|line| line.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "Linux".to_owned())
}

/// Rust's architecture name mapped to Go's (`GOARCH`), which Kubernetes labels use.
pub fn kube_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    }
}

/// (total, available) bytes of the file system holding `path` (or its nearest existing
/// ancestor).
fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stat = nix::sys::statvfs::statvfs(existing).ok()?;
    let fragment = stat.fragment_size() as u64;
    Some((
        stat.blocks() as u64 * fragment,
        stat.blocks_available() as u64 * fragment,
    ))
}

/// The node IP used when [`NodeConfig::node_ip`](crate::NodeConfig::node_ip) is `None`: the
/// source address the host would use for outbound traffic (a UDP "connect" sends nothing);
/// loopback when there is no route. Issue the kubelet's serving certificate for it.
pub fn default_node_ip() -> IpAddr {
    let probe = || -> std::io::Result<IpAddr> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("10.255.255.255:9")?;
        Ok(socket.local_addr()?.ip())
    };
    probe()
        .ok()
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       16314004 kB\nMemFree:         1000 kB\nMemAvailable:    8000000 kB\nHugePages_Total:       0\n";
        assert_eq!(meminfo_field(text, "MemTotal"), Some(16314004 * 1024));
        assert_eq!(meminfo_field(text, "MemAvailable"), Some(8000000 * 1024));
        assert_eq!(meminfo_field(text, "HugePages_Total"), Some(0));
        assert_eq!(meminfo_field(text, "Mem"), None);
        assert_eq!(meminfo_field("", "MemTotal"), None);
    }

    #[test]
    fn parses_os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_pretty_name(text), "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(os_pretty_name("PRETTY_NAME=Alpine\n"), "Alpine");
        assert_eq!(os_pretty_name(""), "Linux");
    }

    #[test]
    fn maps_architectures_like_go() {
        assert_eq!(kube_arch("x86_64"), "amd64");
        assert_eq!(kube_arch("aarch64"), "arm64");
        assert_eq!(kube_arch("mips"), "mips");
    }

    #[test]
    fn detects_this_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = HostInfo::detect(dir.path(), None);
        assert!(info.cpus >= 1);
        assert!(info.memory_bytes > 64 << 20, "{info:?}");
        assert!(info.ephemeral_storage_bytes > 0, "{info:?}");
        assert!(!info.kernel_version.is_empty());
        assert!(!info.hostname.is_empty());
        let usage = HostUsage::detect(dir.path());
        assert!(usage.disk_available_bytes <= usage.disk_total_bytes);
        let fixed = HostInfo::detect(dir.path(), Some("192.0.2.7".parse().expect("ip")));
        assert_eq!(fixed.internal_ip.to_string(), "192.0.2.7");
    }
}
