//! Small building blocks every backend needs: ids and a watchable container state.
//!
//! [`StateCell`] wraps the pure transitions of [`ContainerState`] in a `tokio::sync::watch`
//! channel, so `wait_container` is just "wait until the cell says exited", and a stop racing
//! with a natural exit resolves to whichever exit was recorded first.

use jiff::Timestamp;
use tokio::sync::watch;

use crate::status::{ContainerState, ExitInfo};
use crate::{Error, Result};

/// A fresh random id (32 lowercase hex digits), for sandboxes and containers.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A container's state, observable by waiters.
#[derive(Debug)]
pub struct StateCell {
    tx: watch::Sender<ContainerState>,
}

impl Default for StateCell {
    fn default() -> Self {
        Self::new()
    }
}

impl StateCell {
    /// A cell in state `Created`.
    pub fn new() -> Self {
        StateCell {
            tx: watch::Sender::new(ContainerState::Created),
        }
    }

    /// The current state.
    pub fn get(&self) -> ContainerState {
        self.tx.borrow().clone()
    }

    /// `Created → Running`, or [`Error::InvalidState`].
    pub fn start(&self, id: &str) -> Result<()> {
        let mut result = Ok(());
        self.tx
            .send_if_modified(|state| match state.start(id, Timestamp::now()) {
                Ok(next) => {
                    *state = next;
                    true
                }
                Err(error) => {
                    result = Err(error);
                    false
                }
            });
        result
    }

    /// Record an exit; the first recorded exit wins. Returns true if this call recorded it.
    pub fn exit(&self, exit: ExitInfo) -> bool {
        self.tx.send_if_modified(|state| {
            if state.is_exited() {
                return false;
            }
            *state = state.exit(exit);
            true
        })
    }

    /// Resolves with the final state once the container has exited.
    pub async fn wait_exited(&self) -> ContainerState {
        let mut rx = self.tx.subscribe();
        match rx.wait_for(ContainerState::is_exited).await {
            Ok(state) => state.clone(),
            // The sender lives in `self`, so the channel cannot close while we borrow it.
            Err(_) => self.get(),
        }
    }

    /// Wait at most `timeout` for an exit; true if exited.
    pub async fn wait_exited_for(&self, timeout: std::time::Duration) -> bool {
        tokio::time::timeout(timeout, self.wait_exited())
            .await
            .is_ok()
    }
}

/// Shorthand: the error for an unknown container id.
pub fn container_not_found(id: &str) -> Error {
    Error::ContainerNotFound { id: id.to_owned() }
}

/// `Ok` if the container is running, else the [`Error::ContainerNotRunning`] refusing
/// `operation` (`exec`, `attach`).
pub fn require_running(id: &str, state: &ContainerState, operation: &'static str) -> Result<()> {
    if state.is_running() {
        Ok(())
    } else {
        Err(Error::ContainerNotRunning {
            id: id.to_owned(),
            state: state.name(),
            operation,
        })
    }
}

/// Shorthand: the error for an unknown sandbox id.
pub fn sandbox_not_found(id: &str) -> Error {
    Error::SandboxNotFound { id: id.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn waiters_see_the_first_exit() {
        let cell = Arc::new(StateCell::new());
        cell.start("c").expect("start");
        let waiter = tokio::spawn({
            let cell = Arc::clone(&cell);
            async move { cell.wait_exited().await }
        });
        assert!(!cell.wait_exited_for(Duration::from_millis(20)).await);
        assert!(cell.exit(ExitInfo::from_code(3)));
        assert!(!cell.exit(ExitInfo::killed()));
        let state = waiter.await.expect("join");
        assert_eq!(state.exit_info().map(|e| e.exit_code), Some(3));
        assert!(cell.start("c").is_err());
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }
}
