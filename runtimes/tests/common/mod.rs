//! Helpers shared by the integration tests: fixtures, example guests, environment checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// True under `CI=true`, where nothing may be skipped.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Compile a WAT fixture from `tests/fixtures`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// `examples/wasm-pods` in the repository.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm-pods")
}

/// The example guests, built once per test process (cargo caches across processes).
pub struct Examples {
    dir: PathBuf,
}

impl Examples {
    /// Path of a built example, e.g. `path("http-server")`.
    pub fn path(&self, name: &str) -> PathBuf {
        let target = if name.starts_with("http-") {
            "wasm32-wasip2"
        } else {
            "wasm32-wasip1"
        };
        self.dir
            .join(format!("target/{target}/release/{name}.wasm"))
    }

    /// Bytes of a built example.
    pub fn bytes(&self, name: &str) -> Vec<u8> {
        let path = self.path(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("example {}: {e}", path.display()))
    }
}

/// Build the example guests for wasm32-wasip1 and wasm32-wasip2 (needs
/// `rustup target add wasm32-wasip1 wasm32-wasip2`).
pub fn examples() -> &'static Examples {
    static BUILT: OnceLock<Examples> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = examples_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        for (target, packages) in [
            (
                "wasm32-wasip1",
                &["hello", "crasher", "cpu-burner", "memory-hog"][..],
            ),
            ("wasm32-wasip2", &["http-server", "http-get"][..]),
        ] {
            let mut command = Command::new(&cargo);
            command
                .current_dir(&dir)
                .args(["build", "--release", "--quiet", "--target", target])
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS");
            for package in packages {
                command.args(["-p", package]);
            }
            let status = command.status().expect("run cargo for the wasm examples");
            assert!(
                status.success(),
                "building examples/wasm-pods for {target} failed; is the target installed? \
                 (rustup target add wasm32-wasip1 wasm32-wasip2)"
            );
        }
        Examples { dir }
    })
}

/// Log at debug level to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
