//! Loading compiled artifacts from the on-disk cache: the one place this crate uses `unsafe`.
//!
//! Wasmtime marks deserialization `unsafe` because a crafted file could contain arbitrary
//! machine code. The files loaded here are ones this runtime wrote itself with
//! `Engine::precompile_module` / `precompile_component` into `<data dir>/compiled/`, named by
//! the wasm's content digest under a directory named by the engine's compatibility hash, and
//! written atomically (temporary file + rename). The data dir is as trusted as the binary.
#![allow(unsafe_code)]

use std::path::Path;

use wasmtime::component::Component;
use wasmtime::{Engine, Module};

/// Map a compiled module from the cache (memory-mapped, so copy-on-write memory images can
/// use the file directly).
pub(crate) fn load_module(engine: &Engine, path: &Path) -> wasmtime::Result<Module> {
    // SAFETY: `path` is a cache file this runtime produced with `Engine::precompile_module`
    // (see the module docs); wasmtime still verifies its header, version and engine
    // compatibility before use.
    unsafe { Module::deserialize_file(engine, path) }
}

/// Map a compiled component from the cache.
pub(crate) fn load_component(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: as for `load_module`: a file this runtime wrote with
    // `Engine::precompile_component`, checked by wasmtime for compatibility.
    unsafe { Component::deserialize_file(engine, path) }
}
