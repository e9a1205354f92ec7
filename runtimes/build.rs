//! Builds `pause/pause.c` into a static executable, `$OUT_DIR/skiff-pause`, which the Docker
//! backend embeds and imports into Docker as its pod sandbox image (see `src/docker/pause.rs`).
//!
//! The C compiler comes from the `cc` crate's lookup (`$CC`, then `cc`/`gcc`), so the usual
//! cross-compilation variables apply. Static linking needs the C library's static archive
//! (`libc6-dev` on Debian).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = PathBuf::from("pause").join("pause.c");
    println!("cargo:rerun-if-changed={}", source.display());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let output = out_dir.join("skiff-pause");

    let compiler = cc::Build::new()
        .opt_level_str("s")
        .warnings(true)
        .extra_warnings(true)
        .get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .arg("-static")
        .arg("-s")
        .arg("-o")
        .arg(&output)
        .arg(&source);
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run the C compiler {command:?}: {error}"));
    assert!(
        status.success(),
        "building the pause program failed ({status}): {command:?}; static linking needs the C \
         library's static archive (Debian: apt-get install libc6-dev)"
    );
}
