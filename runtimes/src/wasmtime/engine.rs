//! The shared Engine, its epoch ticker, and compiled artifacts cached by content digest.
//!
//! One `Engine` serves every guest of the node: a pooling instance allocator (linear memories,
//! tables and fiber stacks come from pre-reserved slots), copy-on-write memory images (a
//! module's data segments are mapped, not copied, at instantiation), and epoch interruption
//! driven by a ticker thread. A wasm image is compiled once per digest: the native code goes
//! to `<data dir>/compiled/<engine hash>/<digest>.cwasm` (so a restart does not recompile),
//! is memory-mapped back, and linked into an `InstancePre` kept in memory, which makes
//! creating a container a hash lookup and instantiating it a few microseconds.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Module, PoolingAllocationConfig,
    Precompiled,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;

use super::WasmtimeConfig;
use super::guest::{Guest, P1, P2};
use super::precompiled;
use crate::Error;

/// A linked, ready-to-instantiate guest.
pub(crate) enum Artifact {
    /// A WASI preview 1 core module exporting `_start`.
    Module(InstancePre<P1>),
    /// A `wasi:cli/command` component.
    Component(CommandPre<P2>),
}

/// What kind of wasm a binary is, from its 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WasmKind {
    Module,
    Component,
}

/// Classify `bytes` by header; `None` if it is not a WebAssembly binary.
pub(crate) fn wasm_kind(bytes: &[u8]) -> Option<WasmKind> {
    match bytes.get(..8)? {
        [0, b'a', b's', b'm', 1, 0, 0, 0] => Some(WasmKind::Module),
        [0, b'a', b's', b'm', 0x0d, 0, 1, 0] => Some(WasmKind::Component),
        _ => None,
    }
}

/// Build the node's engine. Falls back to on-demand allocation (with a warning) if the pool's
/// address space cannot be reserved.
pub(crate) fn build_engine(config: &WasmtimeConfig) -> Result<Engine, Error> {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .memory_init_cow(true)
        .parallel_compilation(true)
        .wasm_component_model(true)
        .max_wasm_stack(config.max_wasm_stack)
        .async_stack_size(config.max_wasm_stack + 512 * 1024);
    let slots = config.max_containers.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .total_core_instances(slots.saturating_mul(4))
        .total_component_instances(slots)
        .max_memory_size(config.max_memory_bytes as usize)
        // Keep a little of each freed slot resident: cheap re-instantiation, bounded RSS.
        .linear_memory_keep_resident(64 * 1024)
        .table_keep_resident(16 * 1024)
        .max_unused_warm_slots(slots.min(100));
    let mut pooled = wasm.clone();
    pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&pooled) {
        Ok(engine) => Ok(engine),
        Err(error) => {
            tracing::warn!(%error, "pooling allocator unavailable; using on-demand allocation");
            Engine::new(&wasm).map_err(|e| Error::Internal {
                context: "create wasmtime engine".to_owned(),
                source: e.to_string().into(),
            })
        }
    }
}

/// Increments the engine's epoch every `tick` until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Result<EpochTicker, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("wasm-epoch".to_owned())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::internal("start epoch ticker", e))?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One image's artifact, loaded or compiled once however many pods start it at the same time.
type Slot = Arc<tokio::sync::OnceCell<Arc<Artifact>>>;

/// Compiles, caches and links artifacts by image digest.
pub(crate) struct ArtifactCache {
    engine: Engine,
    dir: PathBuf,
    p1: wasmtime::Linker<P1>,
    p2: wasmtime::component::Linker<P2>,
    loaded: Mutex<HashMap<String, Slot>>,
}

impl ArtifactCache {
    pub(crate) fn new(engine: &Engine, data_dir: &Path) -> Result<ArtifactCache, Error> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let dir = data_dir
            .join("compiled")
            .join(format!("{:016x}", hasher.finish()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("create compile cache", &dir, e))?;
        let mut p1 = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut p1, p1_ctx)
            .map_err(|e| Error::internal("link WASI preview 1", e.to_string()))?;
        let mut p2 = wasmtime::component::Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut p2)
            .map_err(|e| Error::internal("link WASI preview 2", e.to_string()))?;
        Ok(ArtifactCache {
            engine: engine.clone(),
            dir,
            p1,
            p2,
            loaded: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled-artifact file for `digest`.
    pub(crate) fn path_for(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}.cwasm"))
    }

    /// The linked artifact for the image with `digest`, whose wasm `read_wasm` returns.
    /// Compiles (on a blocking thread) only if neither memory nor disk has it. Concurrent
    /// callers for one digest share a single load or compile: a burst of pods of a new image
    /// compiled it once per pod before (156 compiles for 240 pods of one component).
    pub(crate) async fn get(
        &self,
        image: &str,
        digest: &str,
        read_wasm: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<Arc<Artifact>, Error> {
        let slot = Arc::clone(self.loaded.lock().entry(digest.to_owned()).or_default());
        let artifact = slot
            .get_or_try_init(|| async { self.load_or_compile(image, digest, read_wasm).await })
            .await?;
        Ok(Arc::clone(artifact))
    }

    async fn load_or_compile(
        &self,
        image: &str,
        digest: &str,
        read_wasm: impl FnOnce() -> Result<Vec<u8>, Error>,
    ) -> Result<Arc<Artifact>, Error> {
        let invalid = |reason: String| Error::InvalidImage {
            image: image.to_owned(),
            reason,
        };
        let path = self.path_for(digest);
        let cached = match Engine::detect_precompiled_file(&path) {
            Ok(Some(kind)) => self.load(&path, kind).ok(),
            _ => None,
        };
        if let Some(artifact) = cached {
            return Ok(Arc::new(artifact));
        }
        let wasm = read_wasm()?;
        let kind = wasm_kind(&wasm).ok_or_else(|| {
            invalid("not a WebAssembly module or component (bad header)".to_owned())
        })?;
        let engine = self.engine.clone();
        let started = std::time::Instant::now();
        let compiled = tokio::task::spawn_blocking(move || match kind {
            WasmKind::Module => engine.precompile_module(&wasm),
            WasmKind::Component => engine.precompile_component(&wasm),
        })
        .await
        .map_err(|e| Error::internal("compile task", e))?
        .map_err(|e| invalid(format!("compile: {e:#}")))?;
        tracing::info!(image, digest, ?kind, took = ?started.elapsed(), "compiled wasm");
        crate::images::write_atomically(&path, &compiled)
            .map_err(|e| Error::internal("write compile cache", e))?;
        let kind = match kind {
            WasmKind::Module => Precompiled::Module,
            WasmKind::Component => Precompiled::Component,
        };
        let artifact = self
            .load(&path, kind)
            .map_err(|e| invalid(format!("load compiled artifact: {e}")))?;
        Ok(Arc::new(artifact))
    }

    /// Deserialize and link; a link failure (missing imports, no `_start`, not a command)
    /// means the image cannot run here.
    fn load(&self, path: &Path, kind: Precompiled) -> Result<Artifact, String> {
        match kind {
            Precompiled::Module => {
                let module = precompiled::load_module(&self.engine, path)
                    .map_err(|e| format!("load {}: {e:#}", path.display()))?;
                check_command_module(&module)?;
                let pre = self
                    .p1
                    .instantiate_pre(&module)
                    .map_err(|e| format!("link: {e:#}"))?;
                Ok(Artifact::Module(pre))
            }
            Precompiled::Component => {
                let component: Component = precompiled::load_component(&self.engine, path)
                    .map_err(|e| format!("load {}: {e:#}", path.display()))?;
                let pre = self
                    .p2
                    .instantiate_pre(&component)
                    .map_err(|e| format!("link: {e:#}"))?;
                let command = CommandPre::new(pre)
                    .map_err(|e| format!("not a wasi:cli/command component: {e:#}"))?;
                Ok(Artifact::Component(command))
            }
        }
    }

    /// Forget the in-memory artifact (the disk cache stays; it is keyed by content).
    pub(crate) fn evict(&self, digest: &str) {
        self.loaded.lock().remove(digest);
    }
}

fn p1_ctx(guest: &mut Guest<WasiP1Ctx>) -> &mut WasiP1Ctx {
    &mut guest.wasi
}

fn check_command_module(module: &Module) -> Result<(), String> {
    if module.get_export("_start").is_some() {
        Ok(())
    } else {
        Err("module exports no `_start`: not a WASI command".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_headers() {
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0rest"), Some(WasmKind::Module));
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0"), Some(WasmKind::Component));
        assert_eq!(wasm_kind(b"\0asm\x01\0"), None);
        assert_eq!(wasm_kind(b"#!/bin/sh\necho"), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_starts_of_a_new_image_compile_it_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = crate::wasmtime::WasmtimeConfig {
            max_containers: 4,
            ..crate::wasmtime::WasmtimeConfig::new(dir.path())
        };
        let engine = build_engine(&config).expect("engine");
        let cache = Arc::new(ArtifactCache::new(&engine, dir.path()).expect("cache"));
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).expect("wat");
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (cache, wasm, reads) = (Arc::clone(&cache), wasm.clone(), Arc::clone(&reads));
            tasks.spawn(async move {
                cache
                    .get("idle:v1", "sha256:idle", || {
                        reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(wasm)
                    })
                    .await
                    .map(|_| ())
            });
        }
        while let Some(result) = tasks.join_next().await {
            result.expect("task").expect("artifact");
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);

        // A failed compile is not remembered: the next start tries again.
        let bad = cache.get("bad:v1", "sha256:bad", || {
            Ok(b"\0asm\x01\0\0\0junk".to_vec())
        });
        assert!(matches!(bad.await, Err(Error::InvalidImage { .. })));
        let retried = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&retried);
        let _ = cache
            .get("bad:v1", "sha256:bad", move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(b"\0asm\x01\0\0\0junk".to_vec())
            })
            .await;
        assert!(retried.load(std::sync::atomic::Ordering::SeqCst));
    }
}
