//! Running one guest: its WASI context, memory limit, CPU clock and throttle, and exit.
//!
//! Limits are enforced inside the Store:
//! - **memory**: a `ResourceLimiter` sums the guest's linear memories; growing past the
//!   limit traps the guest (like the kernel's OOM killer ends a process) and records it, so
//!   the exit is reported as `OOMKilled`;
//! - **CPU**: a call hook times how long the guest spends in its own code; at every epoch
//!   tick (10 ms) the guest yields to the executor, and when it has used more than its share
//!   (`limits.cpu`, via [`CpuThrottle`]) the yield is a sleep long enough to pay it back;
//! - **stop**: the guest's future is dropped (see the module docs of `wasmtime`), which the
//!   per-tick yield makes possible even in a busy loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::engine::Artifact;
use super::stdio::LogStream;
use crate::logs::{LogWriter, Stream};
use crate::spec::Mount;
use crate::throttle::CpuThrottle;

/// Per-store state: the WASI context plus limits.
pub(crate) struct Guest<W> {
    pub(crate) wasi: W,
    table: ResourceTable,
    limits: MemoryLimiter,
}

/// Store state of a preview 1 module.
pub(crate) type P1 = Guest<WasiP1Ctx>;
/// Store state of a preview 2 component.
pub(crate) type P2 = Guest<WasiCtx>;

impl WasiView for Guest<WasiCtx> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Counts linear memory and refuses growth beyond the limit.
struct MemoryLimiter {
    limit: Option<u64>,
    usage: Arc<GuestUsage>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let after = self.usage.memory.load(Ordering::Relaxed) + growth;
        if let Some(limit) = self.limit
            && after > limit
        {
            self.usage.oom.store(true, Ordering::SeqCst);
            wasmtime::bail!("memory limit of {limit} bytes exceeded (wanted {after})");
        }
        self.usage.memory.store(after, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Usage counters a container's status and stats read while the guest runs.
#[derive(Debug, Default)]
pub(crate) struct GuestUsage {
    /// Bytes of linear memory.
    pub(crate) memory: AtomicU64,
    /// Set when growth past the memory limit was refused.
    pub(crate) oom: AtomicBool,
    /// Time spent in guest code.
    pub(crate) cpu: CpuClock,
}

/// CPU time spent executing the guest's own code (not host calls, not throttling).
///
/// A guest runs on one thread from the moment it enters wasm until it next calls the host
/// or yields at an epoch tick, so each such stretch is measured with the thread's CPU clock:
/// time the thread spends preempted on a loaded node is not charged to the guest.
#[derive(Debug, Default)]
pub(crate) struct CpuClock {
    inner: Mutex<ClockState>,
}

#[derive(Debug, Default)]
struct ClockState {
    /// Thread CPU time when the current stretch started.
    running_since: Option<Duration>,
    used: Duration,
    throttle: Option<CpuThrottle>,
    last_epoch: Option<Instant>,
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

impl CpuClock {
    fn resume(&self) {
        let mut state = self.inner.lock();
        if state.running_since.is_none() {
            state.running_since = Some(thread_cpu());
        }
    }

    fn pause(&self) {
        let mut state = self.inner.lock();
        if let Some(since) = state.running_since.take() {
            state.used += thread_cpu().saturating_sub(since);
        }
    }

    /// CPU time used up to the guest's last host call or tick (within 10 ms of now).
    pub(crate) fn used(&self) -> Duration {
        self.inner.lock().used
    }

    fn set_limit(&self, millicores: Option<u64>) {
        let mut state = self.inner.lock();
        state.throttle = millicores.map(|m| CpuThrottle::new(m, state.used));
    }

    /// At an epoch tick: stop the clock, and say how long to sleep to honour the CPU limit.
    fn at_epoch(&self) -> Option<Duration> {
        let mut state = self.inner.lock();
        let now = Instant::now();
        if let Some(since) = state.running_since.take() {
            state.used += thread_cpu().saturating_sub(since);
        }
        let wall = state.last_epoch.map(|t| now - t).unwrap_or_default();
        state.last_epoch = Some(now);
        let used = state.used;
        state.throttle.as_mut().and_then(|t| t.account(wall, used))
    }
}

/// Everything needed to start one guest.
pub(crate) struct GuestSetup {
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: Option<String>,
    pub(crate) mounts: Vec<Mount>,
    pub(crate) log: LogWriter,
    pub(crate) memory_limit: Option<u64>,
    pub(crate) cpu_millicores: Option<u64>,
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuestExit {
    /// It returned or called `exit(code)`.
    Code(i32),
    /// It trapped; the trap message.
    Trap(String),
    /// It tried to grow past its memory limit.
    OutOfMemory(String),
    /// It could not be instantiated.
    CannotRun(String),
}

fn build_wasi(setup: &GuestSetup) -> Result<WasiCtxBuilder, String> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&setup.argv)
        .envs(&setup.env)
        .stdout(LogStream::new(setup.log.clone(), Stream::Stdout))
        .stderr(LogStream::new(setup.log.clone(), Stream::Stderr))
        // The pod's network namespace is the boundary: inside it, anything goes.
        .inherit_network()
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true);
    if let Some(dir) = &setup.working_dir {
        builder.initial_cwd(dir);
        if !setup.env.iter().any(|(k, _)| k == "PWD") {
            builder.env("PWD", dir);
        }
    }
    for mount in &setup.mounts {
        let perms = if mount.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&mount.host_path, &mount.container_path, perms)
            .map_err(|e| format!("mount {}: {e:#}", mount.host_path.display()))?;
    }
    Ok(builder)
}

fn new_store<W: Send + 'static>(
    engine: &Engine,
    wasi: W,
    setup: &GuestSetup,
    usage: &Arc<GuestUsage>,
) -> Store<Guest<W>> {
    let mut store = Store::new(
        engine,
        Guest {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryLimiter {
                limit: setup.memory_limit,
                usage: Arc::clone(usage),
            },
        },
    );
    store.limiter(|guest| &mut guest.limits);
    usage.cpu.set_limit(setup.cpu_millicores);
    let hook_usage = Arc::clone(usage);
    store.call_hook(move |_, hook| {
        match hook {
            CallHook::CallingWasm | CallHook::ReturningFromHost => hook_usage.cpu.resume(),
            CallHook::ReturningFromWasm | CallHook::CallingHost => hook_usage.cpu.pause(),
        }
        Ok(())
    });
    let epoch_usage = Arc::clone(usage);
    store.epoch_deadline_callback(move |_| {
        let pause = epoch_usage.cpu.at_epoch();
        let usage = Arc::clone(&epoch_usage);
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => tokio::task::yield_now().await,
                }
                usage.cpu.resume();
            }),
        ))
    });
    store.set_epoch_deadline(1);
    store
}

/// Instantiate and run a guest to completion. `ready` fires once it is instantiated (or
/// failed to be). Cancelling the returned future kills the guest.
pub(crate) async fn run(
    engine: &Engine,
    artifact: &Artifact,
    setup: GuestSetup,
    usage: Arc<GuestUsage>,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> GuestExit {
    let mut builder = match build_wasi(&setup) {
        Ok(builder) => builder,
        Err(message) => {
            let _ = ready.send(Err(message.clone()));
            return GuestExit::CannotRun(message);
        }
    };
    let result = match artifact {
        Artifact::Module(pre) => {
            let mut store = new_store(engine, builder.build_p1(), &setup, &usage);
            let instance = match pre.instantiate_async(&mut store).await {
                Ok(instance) => instance,
                Err(error) => return not_instantiated(error, &usage, ready),
            };
            let start = match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(start) => start,
                Err(error) => return not_instantiated(error, &usage, ready),
            };
            let _ = ready.send(Ok(()));
            start.call_async(&mut store, ()).await.map(|()| 0)
        }
        Artifact::Component(pre) => {
            let mut store = new_store(engine, builder.build(), &setup, &usage);
            let command = match pre.instantiate_async(&mut store).await {
                Ok(command) => command,
                Err(error) => return not_instantiated(error, &usage, ready),
            };
            let _ = ready.send(Ok(()));
            command
                .wasi_cli_run()
                .call_run(&mut store)
                .await
                .map(|result| if result.is_ok() { 0 } else { 1 })
        }
    };
    match result {
        Ok(code) => GuestExit::Code(code),
        Err(error) => classify(error, &usage),
    }
}

fn not_instantiated(
    error: wasmtime::Error,
    usage: &GuestUsage,
    ready: tokio::sync::oneshot::Sender<Result<(), String>>,
) -> GuestExit {
    let exit = match classify(error, usage) {
        GuestExit::Trap(message) => GuestExit::CannotRun(message),
        other => other,
    };
    let _ = ready.send(match &exit {
        GuestExit::CannotRun(message) => Err(message.clone()),
        // A start function may legitimately exit or run out of memory; that is a run.
        _ => Ok(()),
    });
    exit
}

fn classify(error: wasmtime::Error, usage: &GuestUsage) -> GuestExit {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return GuestExit::Code(exit.0);
    }
    if usage.oom.load(Ordering::SeqCst) {
        return GuestExit::OutOfMemory(format!("{error}"));
    }
    tracing::debug!(error = format!("{error:?}"), "guest trapped");
    let message = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    GuestExit::Trap(message)
}
