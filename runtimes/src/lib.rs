//! Skiff runtimes: the CRI-shaped [`Runtime`] trait every node runs containers through, its
//! backends, and the conformance suite that proves a backend right.
//!
//! Start with [`Runtime`] (the contract), [`spec`] (what goes in) and [`status`] (what comes
//! out). Then read `fake` (feature `testing`) — a complete backend in one file that runs host
//! processes — and [`wasmtime`] — the in-process WebAssembly backend Skiff ships. Nothing
//! here knows about Kubernetes types: the kubelet converts a `Pod` into [`SandboxSpec`] and
//! [`ContainerSpec`]s. Images live in [`images`]; `skiff bench runtime` is [`bench`](mod@bench).
//!
//! # Writing a backend
//!
//! A backend is one type implementing [`Runtime`], registered by handler name in a
//! [`RuntimeRegistry`] (the name RuntimeClass objects refer to). The pieces you need are
//! already here:
//!
//! 1. **Bookkeeping.** Give sandboxes and containers ids from [`lifecycle::new_id`]; keep each
//!    container's state in a [`lifecycle::StateCell`], which applies the legal transitions of
//!    [`ContainerState`] and makes `wait_container` a one-liner. A backend whose pods live
//!    in this process can keep them in an [`inprocess::Pods`] table, as `fake` and
//!    [`wasmtime`] do: lookups, statuses, and a sandbox's namespace and threads released on
//!    removal.
//! 2. **Validation.** Call [`ContainerSpec::validate`] in `create_container`; return
//!    [`Error::Unsupported`] for anything your backend cannot honour (the fake rejects mounts)
//!    rather than silently ignoring it.
//! 3. **Networking.** A sandbox owns or joins a network namespace ([`netns::Netns`]). Run
//!    everything that opens sockets or forks processes on the namespace's
//!    [`executor`](netns::Netns::executor), whose threads live inside it, and report the
//!    path in [`SandboxStatus::netns_path`](status::SandboxStatus) so the kubelet can set up
//!    the pod's interfaces and probes.
//! 4. **Logs.** Write stdout/stderr through a [`logs::LogWriter`]: CRI format, rotation, and
//!    line order handled.
//! 5. **Errors.** Map failures to [`Error`] variants; the kubelet shows [`Error::reason`]
//!    (`ErrImagePull`, `CreateContainerError`, ...) to users.
//! 6. **Exec and attach (optional).** Override [`Runtime::exec`] and [`Runtime::attach`] if
//!    your guests are processes you can start commands beside or talk to; otherwise the
//!    defaults fail with [`Error::OperationNotSupported`] naming your handler, and
//!    `kubectl exec` shows that. A session ([`ExecSession`], in [`streaming`]) is plain tokio
//!    `AsyncRead`/`AsyncWrite` boxes plus an exit-code future: hand out your process's pipes
//!    through [`streaming::stdin_pipe`] (so dropping stdin means end-of-file) and
//!    [`streaming::output_pipe`], check the container is running first
//!    ([`Error::ContainerNotRunning`]), run the command with the container's environment and
//!    working directory, and merge stderr into stdout when there is a terminal. The `fake`
//!    backend's `exec.rs` is a complete example in a hundred lines.
//! 7. **Prove it.** Run the conformance suite against your backend (below).
//!
//! # The conformance suite
//!
//! With feature `conformance`, `conformance` holds one suite, written once, that every
//! backend runs against itself — like cri-tools' `critest`. A backend supplies a
//! `conformance::Harness`: the runtime, plus images with agreed behaviour ("prints hello
//! and exits 0", "exits with code 3", "listens on `$PORT`", ...) and what it supports. The
//! `conformance_suite!` macro expands to one `#[tokio::test]` per case:
//!
//! ```ignore
//! // tests/my_backend.rs, with skiff-runtimes' `conformance` feature enabled
//! async fn my_harness() -> skiff_runtimes::conformance::Harness { /* runtime + images */ }
//! skiff_runtimes::conformance_suite!(my_harness);
//! ```
//!
//! Cases: sandbox lifecycle, create/start/wait, exit codes, log content and order, stop with
//! grace then kill, memory and CPU limits, namespace sharing within a pod and isolation
//! between pods and from the host, idempotent removal, removal of orphaned sandboxes,
//! errors for unknown ids and unsupported specs, and exec/attach (stdout and stderr kept
//! apart, stdin round trip, exit codes, refusal for stopped containers) — or, for a backend
//! without them, a clear not-supported error.
//!
//! # How wasm guests end up in the pod's network namespace
//!
//! Linux network namespaces belong to threads, and a socket belongs to the namespace of the
//! thread that created it. [`WasmtimeRuntime`](wasmtime::WasmtimeRuntime) gives each pod
//! sandbox a tokio runtime whose threads `setns` into the pod's namespace as they start, and
//! runs every guest of the pod only there (guests are async, so a guest blocked in `accept`
//! costs no thread). A wasip2 guest's `TcpListener::bind("127.0.0.1:8080")` therefore binds
//! the pod's loopback: its sibling containers can connect, the host and other pods cannot.

pub mod bench;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod docker;
mod error;
#[cfg(feature = "testing")]
pub mod fake;
pub mod images;
pub mod inprocess;
pub mod lifecycle;
pub mod logs;
pub mod netlink;
pub mod netns;
mod runtime;
pub mod spec;
pub mod status;
pub mod streaming;
pub mod throttle;
pub mod wasmtime;

pub use error::{BoxError, Error, Result};
pub use runtime::{RegistryAuth, RemovedOrphans, Runtime, RuntimeRegistry};
pub use spec::{ContainerSpec, Mount, NetworkMode, Resources, SandboxSpec};
pub use status::{
    ContainerState, ContainerStats, ContainerStatus, ExitInfo, ExitReason, ImageInfo, SandboxState,
    SandboxStatus,
};
pub use streaming::{AttachSpec, ExecSession, ExecSpec, TerminalSize};
