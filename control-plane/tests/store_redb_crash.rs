//! Crash safety of [`RedbStore`]: a child process (this test binary re-run
//! with [`CHILD_ENV`] set) writes concurrently and prints every acknowledged
//! write; the parent SIGKILLs it mid-load, reopens the file and checks that
//! every acknowledged write survived intact and that the store still works.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use sha2::{Digest, Sha256};
use skiff_control_plane::store::redb_store::{RedbConfig, RedbStore};
use skiff_control_plane::store::{EventKind, ListOptions, Revision, Store};

/// Set (to the store path) in the child process.
const CHILD_ENV: &str = "SKIFF_STORE_CRASH_CHILD";
/// Set to the round number, so each round writes fresh keys.
const ROUND_ENV: &str = "SKIFF_STORE_CRASH_ROUND";

/// `key|version|padding|sha256(key|version|padding)`: a torn or misplaced
/// value fails [`check_value`].
fn make_value(key: &str, version: u32) -> Bytes {
    let body = format!(
        "{key}|{version}|{}",
        "x".repeat(200 + (version as usize * 37) % 300)
    );
    let sum = Sha256::digest(body.as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    Bytes::from(format!("{body}|{hex}"))
}

/// The version a stored value claims, if it is whole and belongs to `key`.
fn check_value(key: &str, value: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(value).ok()?;
    let (body, hex) = text.rsplit_once('|')?;
    let sum = Sha256::digest(body.as_bytes());
    let want: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    let mut parts = body.split('|');
    (hex == want && parts.next()? == key).then_some(())?;
    parts.next()?.parse().ok()
}

/// The child: 16 writers create then update their keys until killed,
/// printing `ACK <key> <revision> <version>` after each acknowledged write.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // Only meaningful when started by the parent below.
    };
    let round = std::env::var(ROUND_ENV).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(RedbStore::open(&path, RedbConfig::default()).unwrap());
        let writers = (0..16).map(|w| {
            let store = Arc::clone(&store);
            let round = round.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/registry/crash/r{round}/w{w}/k{}", i / 3);
                    let version = i % 3;
                    let value = make_value(&key, version);
                    let kv = if version == 0 {
                        store.create(&key, value).await
                    } else {
                        store.update(&key, value, None).await
                    }
                    .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {key} {} {version}", kv.mod_revision).unwrap();
                    out.flush().unwrap();
                }
            })
        });
        futures::future::join_all(writers).await;
    });
}

/// Runs one child round; returns the acknowledged (key → (revision, version))
/// of the last ack per key, after the child was killed.
fn run_child_round(path: &std::path::Path, round: u32) -> HashMap<String, (Revision, u32)> {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env(ROUND_ENV, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("ACK ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the load to start, then kill after a random delay.
    let first = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("child acknowledged nothing");
    let delay = rand::rng().random_range(100..600);
    std::thread::sleep(Duration::from_millis(delay));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let mut acked = HashMap::new();
    for line in std::iter::once(first).chain(rx.try_iter()) {
        let parts: Vec<&str> = line.split(' ').collect();
        // A line cut by the kill is not a complete acknowledgement.
        let [_, key, rev, version] = parts[..] else {
            continue;
        };
        let (Ok(rev), Ok(version)) = (rev.parse::<Revision>(), version.parse::<u32>()) else {
            continue;
        };
        let entry = acked.entry(key.to_owned()).or_insert((rev, version));
        if rev > entry.0 {
            *entry = (rev, version);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skiff.redb");
    let mut total_acked = 0;
    let started = Instant::now();
    for round in 0..3 {
        let acked = run_child_round(&path, round);
        assert!(!acked.is_empty());
        total_acked += acked.len();

        let store = RedbStore::open(&path, RedbConfig::default()).unwrap();
        let current = store.current_revision();
        let all = store
            .list("/registry/crash/", ListOptions::default())
            .await
            .unwrap();
        assert_eq!(all.revision, current);
        let stored: HashMap<&str, _> = all.items.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        for (key, (rev, version)) in &acked {
            let kv = stored
                .get(key.as_str())
                .unwrap_or_else(|| panic!("acknowledged {key}@{rev} lost"));
            // Writes to a key are sequential, so the stored one is the last
            // acknowledged one or a later (committed, unacknowledged) one.
            assert!(
                kv.mod_revision >= *rev,
                "{key}: stored {} < acked {rev}",
                kv.mod_revision
            );
            let stored_version =
                check_value(key, &kv.value).unwrap_or_else(|| panic!("{key}: value damaged"));
            if kv.mod_revision == *rev {
                assert_eq!(stored_version, *version, "{key}");
            }
        }
        let mut mod_revs = std::collections::HashSet::new();
        for kv in &all.items {
            assert!(
                check_value(&kv.key, &kv.value).is_some(),
                "{}: value damaged",
                kv.key
            );
            assert!(kv.create_revision <= kv.mod_revision && kv.mod_revision <= current);
            assert!(
                mod_revs.insert(kv.mod_revision),
                "revision {} used twice",
                kv.mod_revision
            );
        }
        // The log covers every revision after the compacted one, in order.
        let compacted = store.compacted_revision();
        let mut w = store.watch("/registry/", compacted).await.unwrap();
        for rev in compacted + 1..=current {
            let e = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(e.revision, rev);
            if e.kind == EventKind::Put && e.kv.key.starts_with("/registry/crash/") {
                assert!(check_value(&e.kv.key, &e.kv.value).is_some());
            }
        }
        // And it accepts new writes right after the last revision.
        let probe = format!("/registry/probe/{round}");
        let kv = store
            .create(&probe, Bytes::from_static(b"ok"))
            .await
            .unwrap();
        assert_eq!(kv.mod_revision, current + 1);
        println!(
            "round {round}: {} keys acknowledged, revision {current} recovered",
            acked.len()
        );
    }
    println!(
        "{total_acked} acknowledged keys checked in {:?}",
        started.elapsed()
    );
}
