//! Link-time size savings for optimised builds of the `skiff` binary with LLD (Rust's default
//! linker on x86_64 Linux):
//! - identical-code folding: generic code has many functions with identical machine code;
//!   `safe` keeps every function whose address is taken distinct;
//! - packed relative relocations (`DT_RELR`, glibc ≥ 2.36): the position-independent binary's
//!   relocation table shrinks from about a megabyte to a few kilobytes.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let optimised = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_x86_64 = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if !(optimised && linux_x86_64) {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--icf=safe");
    if glibc_version().is_some_and(|v| v >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The build machine's glibc (`getconf GNU_LIBC_VERSION` prints `glibc 2.36`).
fn glibc_version() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}
