//! Skiff's control plane: the revisioned store, the Kubernetes API server,
//! the scheduler and the controller manager.

pub mod apiserver;
pub mod controllers;
pub mod pki;
pub mod scheduler;
pub mod serve;
pub mod store;
