//! Link-time size saving for optimised builds of the `skiff` binary: LLD (Rust's default linker
//! on x86_64 Linux) folds functions with identical machine code, which generic code has many
//! of. `safe` keeps every function whose address is taken distinct.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let optimised = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_x86_64 = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if optimised && linux_x86_64 {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=safe");
    }
}
