//! The scheduler: binds every pending pod whose `schedulerName` is ours to
//! a node that fits, talking to the API server only through `kube::Client`.
//!
//! Start reading at [`run`]. The pure core — [`plugins`] (filters and
//! scores), [`algorithm`] (one attempt), [`preemption`], [`queue`] — has no
//! I/O and is unit-tested exhaustively; [`cache`] keeps node infos up to
//! date incrementally from watch events (the scheduling loop owns it, so a
//! cycle reads it directly as its snapshot, without copying); [`runner`]
//! is the loop that wires watchers, queue, cache and the API effects
//! (bindings, events, status).
pub mod algorithm;
pub mod cache;
pub mod effects;
pub mod leader;
pub mod node_info;
pub mod plugins;
pub mod pod_info;
pub mod preemption;
pub mod quantity;
pub mod queue;
pub mod resources;
pub mod selectors;
