//! Linux network namespaces for pod sandboxes, and threads that live inside them.
//!
//! A network namespace is per *thread* in Linux, and a socket belongs to the namespace of the
//! thread that created it. So a sandbox here is:
//!
//! 1. a namespace, created by a short-lived thread that `unshare(CLONE_NEWNET)`s, bind-mounts
//!    its `/proc/thread-self/ns/net` onto a file (by default `/run/netns/skiff-<data dir hash>-<id>`, so
//!    `ip netns exec` works on it too) and brings `lo` up over rtnetlink — or an existing
//!    namespace joined by path (a Docker pause container's `/proc/<pid>/ns/net`);
//!    The Wasmtime backend's default skips the file: [`Netns::create_held_with_executor`]
//!    keeps the namespace alive by open descriptors only and names it by its thread's
//!    `/proc/<pid>/task/<tid>/ns/net`;
//! 2. an [`executor`](Netns::executor): threads that run the pod's tasks — by default one
//!    thread with a current-thread runtime, which enters the namespace (or, with
//!    [`Netns::create_with_executor`] and [`Netns::create_held_with_executor`], creates it)
//!    before it runs any task; its blocking-pool threads `setns` into the namespace in
//!    `on_thread_start`.
//!
//! Backends run all of a pod's guests on that runtime, so every socket a guest opens (and
//! every process the fake backend forks) is inside the pod's namespace: containers of one pod
//! reach each other over `127.0.0.1`, and nothing in the host namespace or in another pod can
//! reach them except through the pod's own interfaces.
//!
//! Everything here uses `nix`'s safe wrappers; no `unsafe`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Where sandboxes' namespaces are bind-mounted by default (`ip netns` looks there too).
pub const DEFAULT_NETNS_DIR: &str = "/run/netns";

/// Errors of network namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// A syscall failed.
    #[error("{operation} for network namespace {}: {source}", path.display())]
    Sys {
        /// What was being done (`unshare`, `bind mount`, `setns`, ...).
        operation: &'static str,
        /// The namespace file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{operation} {}: {source}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Bringing up the loopback interface failed.
    #[error("bring up lo in {}: {message}", path.display())]
    Loopback {
        /// The namespace file.
        path: PathBuf,
        /// What the kernel said.
        message: String,
    },
    /// The helper thread died.
    #[error("network namespace helper thread panicked")]
    ThreadPanicked,
}

/// A network namespace, held open by file descriptor. One this value created (not joined) is
/// unmounted and removed when the value is dropped.
#[derive(Debug)]
pub struct Netns {
    path: PathBuf,
    file: Arc<File>,
    owned: bool,
}

impl Netns {
    /// Create a new namespace bind-mounted at `dir/name`, with `lo` up. Needs root
    /// (`CAP_SYS_ADMIN`).
    pub fn create(dir: &Path, name: &str) -> Result<Netns, NetnsError> {
        let path = mount_point(dir, name)?;
        let thread_path = path.clone();
        let created = std::thread::Builder::new()
            .name("skiff-netns-new".to_owned())
            .spawn(move || new_namespace_on_this_thread(&thread_path))
            .map_err(|source| NetnsError::Io {
                operation: "spawn helper thread for",
                path: path.clone(),
                source,
            })?
            .join()
            .map_err(|_| NetnsError::ThreadPanicked)
            .and_then(|r| r);
        if let Err(error) = created {
            discard(&path);
            return Err(error);
        }
        Self::created(path)
    }

    /// [`Netns::create`] and a one-thread [`NetnsExecutor`] in it, in one go: the executor's
    /// thread creates the namespace itself, so no helper thread is spawned and joined.
    pub fn create_with_executor(
        dir: &Path,
        name: &str,
        thread_name: &str,
    ) -> Result<(Netns, NetnsExecutor), NetnsError> {
        let path = mount_point(dir, name)?;
        let thread_path = path.clone();
        let executor = NetnsExecutor::spawn(thread_name, path.clone(), move || {
            new_namespace_on_this_thread(&thread_path)?;
            open(Path::new("/proc/thread-self/ns/net"))
        })
        .inspect_err(|_| discard(&path))?;
        Ok((Self::created(path)?, executor))
    }

    /// A new namespace held only by open descriptors (this value's and the executor
    /// thread's), with a one-thread [`NetnsExecutor`] in it: the executor's thread creates the
    /// namespace, and the namespace's path is that thread's `/proc/<pid>/task/<tid>/ns/net`,
    /// valid while the executor runs. No file is created or mounted, so a namespace costs no
    /// inode and no mount, and nothing is left behind when the process dies. For namespaces
    /// that live and die with this process (`ip netns` does not list them).
    pub fn create_held_with_executor(
        thread_name: &str,
    ) -> Result<(Netns, NetnsExecutor), NetnsError> {
        let (file_tx, file_rx) = std::sync::mpsc::sync_channel(1);
        let label = PathBuf::from(format!("(new namespace of thread {thread_name})"));
        let executor = NetnsExecutor::spawn(thread_name, label.clone(), move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
                operation: "unshare",
                path: label,
                source,
            })?;
            let path = PathBuf::from(format!(
                "/proc/{}/task/{}/ns/net",
                std::process::id(),
                nix::unistd::gettid()
            ));
            loopback_up(&path)?;
            let file = open(&path)?;
            let ours = file.try_clone().map_err(|source| NetnsError::Io {
                operation: "duplicate descriptor of",
                path: path.clone(),
                source,
            })?;
            let _ = file_tx.send((path, ours));
            Ok(file)
        })?;
        let (path, file) = file_rx.recv().map_err(|_| NetnsError::ThreadPanicked)?;
        tracing::debug!(path = %path.display(), "created network namespace");
        Ok((
            Netns {
                path,
                file: Arc::new(file),
                owned: false,
            },
            executor,
        ))
    }

    /// The namespace just mounted at `path`; unmounted and removed if it cannot be opened.
    fn created(path: PathBuf) -> Result<Netns, NetnsError> {
        let file = open(&path).inspect_err(|_| discard(&path))?;
        tracing::debug!(path = %path.display(), "created network namespace");
        Ok(Netns {
            path,
            file: Arc::new(file),
            owned: true,
        })
    }

    /// Join an existing namespace by path (never deleted by [`Netns::remove`]).
    pub fn open(path: &Path) -> Result<Netns, NetnsError> {
        let file = open(path)?;
        Ok(Netns {
            path: path.to_owned(),
            file: Arc::new(file),
            owned: false,
        })
    }

    /// The namespace's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if this sandbox created it (and [`Netns::remove`] deletes it).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// The namespace's inode, which identifies it (compare with [`current_thread_netns`]).
    pub fn inode(&self) -> Result<u64, NetnsError> {
        self.file
            .metadata()
            .map(|m| m.ino())
            .map_err(|source| NetnsError::Io {
                operation: "stat",
                path: self.path.clone(),
                source,
            })
    }

    /// Move the calling thread into this namespace. Only call this on threads you own.
    pub fn enter(&self) -> Result<(), NetnsError> {
        enter(&self.file, &self.path)
    }

    /// A tokio runtime whose threads all live in this namespace.
    ///
    /// Every thread `setns`es in `on_thread_start` before running any task. If that fails
    /// (it cannot once [`Netns::enter`] worked on another thread), the process aborts: running
    /// a guest in the host namespace instead would silently break pod isolation.
    ///
    /// One thread (`worker_threads` = 1) is a thread of its own running a current-thread
    /// runtime; more are a multi-thread runtime.
    pub fn executor(&self, name: &str, worker_threads: usize) -> Result<NetnsExecutor, NetnsError> {
        if worker_threads <= 1 {
            let file = Arc::clone(&self.file);
            let path = self.path.clone();
            return NetnsExecutor::spawn(&format!("pod-{name}"), self.path.clone(), move || {
                enter(&file, &path)?;
                open(Path::new("/proc/thread-self/ns/net"))
            });
        }
        // Prove the namespace can be entered before handing it to threads that abort.
        let probe_file = Arc::clone(&self.file);
        let probe_path = self.path.clone();
        std::thread::spawn(move || {
            nix::sched::setns(&*probe_file, CloneFlags::CLONE_NEWNET).map_err(|source| {
                NetnsError::Sys {
                    operation: "setns",
                    path: probe_path,
                    source,
                }
            })
        })
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)??;

        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name(format!("pod-{name}"))
            .enable_all()
            .on_thread_start(move || {
                if let Err(error) = nix::sched::setns(&*file, CloneFlags::CLONE_NEWNET) {
                    tracing::error!(
                        path = %path.display(), %error,
                        "cannot enter pod network namespace; aborting to keep pods isolated"
                    );
                    std::process::abort();
                }
            })
            .build()
            .map(|runtime| NetnsExecutor {
                handle: runtime.handle().clone(),
                owner: ExecutorOwner::Runtime(Some(runtime)),
            })
            .map_err(|source| NetnsError::Io {
                operation: "start executor threads for",
                path: self.path.clone(),
                source,
            })
    }

    /// Run `f` on the calling thread inside this namespace, then move the thread back to the
    /// namespace it was in. Cheaper than [`Netns::run`] (no thread is spawned); only for
    /// threads whose whole time during `f` is yours (a blocking-pool task, not an async
    /// worker). If the thread cannot go back, the process aborts: a thread left in a pod's
    /// namespace would run unrelated work there.
    pub fn run_on_this_thread<R>(&self, f: impl FnOnce() -> R) -> Result<R, NetnsError> {
        let home = open(Path::new("/proc/thread-self/ns/net"))?;
        self.enter()?;
        let result = f();
        if let Err(error) = nix::sched::setns(&home, CloneFlags::CLONE_NEWNET) {
            tracing::error!(
                path = %self.path.display(), %error,
                "cannot leave a pod network namespace; aborting to keep pods isolated"
            );
            std::process::abort();
        }
        Ok(result)
    }

    /// Run `f` on a fresh thread inside this namespace and return its result. Useful for
    /// probes: connect to a pod's `127.0.0.1` as the kubelet would.
    pub fn run<R, F>(&self, f: F) -> Result<R, NetnsError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        std::thread::spawn(move || {
            enter(&file, &path)?;
            Ok(f())
        })
        .join()
        .map_err(|_| NetnsError::ThreadPanicked)?
    }

    /// Delete the namespace if this sandbox created it: unmount and remove the file. The
    /// kernel frees it once no thread or socket uses it any more. Idempotent.
    pub fn remove(&self) -> Result<(), NetnsError> {
        if !self.owned {
            return Ok(());
        }
        remove_path(&self.path)
    }
}

impl std::os::fd::AsFd for Netns {
    /// The open namespace (for `setns`, or a netlink request that names a namespace by fd).
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Drop for Netns {
    /// A namespace this value created goes with it (a sandbox start that was cancelled midway
    /// must not leave it mounted); [`Netns::remove`] reports errors, this cannot.
    fn drop(&mut self) {
        if self.owned {
            let _ = remove_path(&self.path);
        }
    }
}

/// Threads inside a namespace that run a pod's tasks: spawn on [`NetnsExecutor::handle`].
/// Dropping it stops them; tasks still running are dropped, nothing waits for them.
pub struct NetnsExecutor {
    handle: tokio::runtime::Handle,
    owner: ExecutorOwner,
}

enum ExecutorOwner {
    /// A thread of its own blocks on this channel; closing it ends the thread.
    Thread(
        #[allow(dead_code)] tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    ),
    /// A multi-thread runtime.
    Runtime(Option<tokio::runtime::Runtime>),
}

impl std::fmt::Debug for NetnsExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsExecutor").finish_non_exhaustive()
    }
}

impl NetnsExecutor {
    /// Where to spawn the pod's tasks.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Stop the threads and wait until they have exited (tasks still running are dropped):
    /// afterwards nothing of the executor is in the namespace, and a thread's
    /// `/proc/.../task/<tid>` path is gone.
    pub async fn shutdown(mut self) {
        // What is left behind (`Runtime(None)`) has nothing to stop when `self` drops.
        let owner = std::mem::replace(&mut self.owner, ExecutorOwner::Runtime(None));
        match owner {
            ExecutorOwner::Thread(stop, thread) => {
                drop(stop);
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            ExecutorOwner::Runtime(Some(runtime)) => {
                let _ = tokio::task::spawn_blocking(move || drop(runtime)).await;
            }
            ExecutorOwner::Runtime(None) => {}
        }
    }

    /// A thread named `name` that runs `enter` (which puts the thread into the namespace and
    /// returns that namespace's file) and then a current-thread runtime until the executor
    /// is dropped. The runtime's blocking-pool threads `setns` into the same namespace.
    fn spawn(
        name: &str,
        path: PathBuf,
        enter: impl FnOnce() -> Result<File, NetnsError> + Send + 'static,
    ) -> Result<NetnsExecutor, NetnsError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let started = enter().and_then(|file| {
                    let file = Arc::new(file);
                    let blocking_path = thread_path.clone();
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .on_thread_start(move || {
                            if let Err(error) = nix::sched::setns(&*file, CloneFlags::CLONE_NEWNET)
                            {
                                tracing::error!(
                                    path = %blocking_path.display(), %error,
                                    "cannot enter pod network namespace; aborting to keep pods isolated"
                                );
                                std::process::abort();
                            }
                        })
                        .build()
                        .map_err(|source| NetnsError::Io {
                            operation: "start executor thread for",
                            path: thread_path,
                            source,
                        })
                });
                let runtime = match started {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                if ready_tx.send(Ok((runtime.handle().clone(), stop_tx))).is_err() {
                    return;
                }
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
                // Tasks still running are dropped with the runtime, on this thread.
            });
        let thread = spawned.map_err(|source| NetnsError::Io {
            operation: "spawn executor thread for",
            path,
            source,
        })?;
        let (handle, stop) = ready_rx.recv().map_err(|_| NetnsError::ThreadPanicked)??;
        Ok(NetnsExecutor {
            handle,
            owner: ExecutorOwner::Thread(stop, thread),
        })
    }
}

impl Drop for NetnsExecutor {
    fn drop(&mut self) {
        if let ExecutorOwner::Runtime(runtime) = &mut self.owner
            && let Some(runtime) = runtime.take()
        {
            // Dropping a runtime blocks; this may run in async context.
            runtime.shutdown_background();
        }
    }
}

/// Undo a namespace's bind mount and its file, best effort (a failed creation).
fn discard(path: &Path) {
    let _ = nix::mount::umount2(path, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(path);
}

/// Create `dir` and the empty file `dir/name` a namespace is bind-mounted on.
fn mount_point(dir: &Path, name: &str) -> Result<PathBuf, NetnsError> {
    std::fs::create_dir_all(dir).map_err(|source| NetnsError::Io {
        operation: "create directory",
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(name);
    File::create(&path).map_err(|source| NetnsError::Io {
        operation: "create mount point",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Unmount and delete a namespace file left by [`Netns::create`] (e.g. after a crash).
pub fn remove_path(path: &Path) -> Result<(), NetnsError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(NetnsError::Sys {
                operation: "unmount",
                path: path.to_owned(),
                source,
            });
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetnsError::Io {
            operation: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The inode of the calling thread's network namespace.
pub fn current_thread_netns() -> std::io::Result<u64> {
    std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino())
}

/// Whether this process may create network namespaces (root / `CAP_SYS_ADMIN`). Probes
/// once with a throwaway thread, so it is accurate in containers that drop capabilities.
pub fn supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        std::thread::spawn(|| nix::sched::unshare(CloneFlags::CLONE_NEWNET).is_ok())
            .join()
            .unwrap_or(false)
    })
}

/// Move the calling thread into the namespace open as `file` (found at `path`).
fn enter(file: &File, path: &Path) -> Result<(), NetnsError> {
    nix::sched::setns(file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Sys {
        operation: "setns",
        path: path.to_owned(),
        source,
    })
}

fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Io {
        operation: "open network namespace",
        path: path.to_owned(),
        source,
    })
}

/// Runs on a dedicated, short-lived thread: after `unshare` this thread is in the new
/// namespace, which the bind mount keeps alive after the thread ends.
fn new_namespace_on_this_thread(path: &Path) -> Result<(), NetnsError> {
    let sys = |operation: &'static str| {
        let path = path.to_owned();
        move |source| NetnsError::Sys {
            operation,
            path,
            source,
        }
    };
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare"))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys("bind mount"))?;
    loopback_up(path)
}

fn loopback_up(path: &Path) -> Result<(), NetnsError> {
    let loopback_error = |error: crate::netlink::NetlinkError| NetnsError::Loopback {
        path: path.to_owned(),
        message: error.to_string(),
    };
    // The socket is opened on this thread, hence inside the new namespace, where `lo` is
    // always interface 1.
    let mut netlink = crate::netlink::Netlink::open().map_err(loopback_error)?;
    netlink
        .set_link(rtnetlink::LinkUnspec::new_with_index(1).up().build())
        .map_err(loopback_error)
}
