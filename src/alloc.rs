//! The global allocator: mimalloc instead of glibc malloc. The API server, scheduler and
//! kubelet allocate many small, short-lived objects (JSON values, watch events), where glibc
//! malloc spent a third of the CPU of the scheduler benchmark.
//!
//! mimalloc's defaults trade memory for speed: it commits its first 1 GiB arena eagerly and
//! returns freed pages to the OS only after a delay. Measured with `skiff bench up`
//! (profiling build), the idle `skiff up` held 120-136 MiB with the defaults against 78 MiB
//! with glibc malloc. Two settings bring it back (BENCHMARKS.md, "Allocator"): purging at
//! once, set here, and no eager arena commit, set at build time in `.cargo/config.toml`
//! because mimalloc reads its options before `main`. A `MIMALLOC_*` environment variable
//! still overrides either.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the Rust bindings name only the
/// v2 numbering).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Purge freed pages at once unless `MIMALLOC_PURGE_DELAY` says otherwise. Call first thing
/// in `main`. mimalloc has read its options by then, so this sets the option outright.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        set(PURGE_DELAY, 0);
    }
}

#[allow(unsafe_code)]
fn set(option: libmimalloc_sys::mi_option_t, value: std::ffi::c_long) {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it takes no
    // pointers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(option, value) }
}
