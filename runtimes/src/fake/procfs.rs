//! Reading a process group's CPU time and memory from `/proc`. The fake backend has no
//! cgroups, so it enforces limits from user space with these numbers: it kills a group over
//! its memory limit (recording an OOM kill) and pauses one over its CPU share with
//! `SIGSTOP`/`SIGCONT` as [`CpuThrottle`](crate::throttle::CpuThrottle) decides.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::{Pid, SysconfVar, sysconf};

/// CPU time and resident memory of a process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupUsage {
    /// User + system CPU time of the live members.
    pub cpu: Duration,
    /// Sum of resident set sizes, bytes.
    pub rss_bytes: u64,
    /// Number of live members.
    pub processes: usize,
}

/// Sum usage over every process whose process group is `pgid`.
pub fn group_usage(pgid: Pid) -> GroupUsage {
    let ticks_per_second = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as u64;
    let page_size = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|p| *p > 0)
        .unwrap_or(4096) as u64;
    let mut usage = GroupUsage::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usage;
    };
    let mut ticks = 0u64;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // Processes come and go while we scan; a vanished one simply does not count.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(fields) = parse_stat(&stat)
            && fields.pgrp == pgid.as_raw()
        {
            ticks += fields.utime + fields.stime;
            usage.rss_bytes += fields.rss_pages * page_size;
            usage.processes += 1;
        }
    }
    usage.cpu = Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / ticks_per_second);
    usage
}

#[derive(Debug, PartialEq, Eq)]
struct StatFields {
    pgrp: i32,
    utime: u64,
    stime: u64,
    rss_pages: u64,
}

/// Parse `/proc/<pid>/stat`. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field n is at index n - 3.
    let field = |n: usize| fields.get(n - 3).copied();
    Some(StatFields {
        pgrp: field(5)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// Send `signal` to the whole group; a group that is already gone is not an error.
pub fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(nix::Error::ESRCH) => {}
        Err(error) => tracing::warn!(pgid = pgid.as_raw(), %signal, %error, "killpg failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "123 (a (b) c) R 1 456 456 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 \
                    100 1000 250 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(StatFields {
                pgrp: 456,
                utime: 7,
                stime: 3,
                rss_pages: 250
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_group_is_visible() {
        let me = nix::unistd::getpgrp();
        let usage = group_usage(me);
        assert!(usage.processes >= 1);
        assert!(usage.rss_bytes > 0);
    }
}
