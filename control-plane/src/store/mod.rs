//! The revisioned key-value store behind the API server, with etcd semantics.
//!
//! Every write bumps one global revision; an object's `resourceVersion` is the
//! revision of its last write (`mod_revision`). Writes are compare-and-swap
//! (create-if-absent, update-if-revision, delete-if-revision). Reads can be
//! made at a past revision inside the history window, and a watch replays the
//! history after a revision before streaming live events. A revision older than
//! the window answers [`StoreError::Expired`] (HTTP 410 at the API).
//!
//! Keys follow `/registry/<group>/<resource>/<namespace>/<name>` (core group
//! spelled `core`, cluster-scoped objects without the namespace segment).
//!
//! Backends: [`memory::MemoryStore`] for tests and [`redb_store::RedbStore`]
//! (the durable default, group commit). An etcd backend can implement the same
//! trait directly on etcd's own revisions, watch and compaction.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub mod memory;
mod ops;
mod redb_codec;
pub mod redb_store;
mod redb_writer;
pub mod watch_hub;

/// A store revision. Revisions start at 1 and grow by one per write.
pub type Revision = i64;

/// One key with its value and revisions, as etcd reports a `KeyValue`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/core/pods/default/web`.
    pub key: String,
    /// The stored bytes (the API server stores JSON).
    pub value: Bytes,
    /// Revision at which this key was created (last created, if re-created).
    pub create_revision: Revision,
    /// Revision of the last write to this key; the object's `resourceVersion`.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change, as delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The revision of this change.
    pub revision: Revision,
    /// For a put, the new key-value. For a delete, the last value the key had,
    /// with `mod_revision` set to the deletion revision.
    pub kv: KeyValue,
    /// The value before this change, if the key existed.
    pub prev: Option<KeyValue>,
}

/// The answer to a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: Revision,
    /// True when `limit` cut the list short; continue after the last key.
    pub more: bool,
}

/// Options for [`Store::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Read at this revision (must be inside the history window); `None` = latest.
    pub revision: Option<Revision>,
    /// Only keys strictly greater than this one (for `continue` tokens).
    pub start_after: Option<String>,
    /// At most this many items; `None` or 0 = no limit.
    pub limit: Option<usize>,
}

/// A stream of changes; it ends with an error if the watcher falls too far
/// behind (`Expired`) or the store shuts down.
pub type EventStream = BoxStream<'static, Result<Event, StoreError>>;

/// Store failures. The API server maps these to Kubernetes `Status` codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Create of a key that exists (HTTP 409 AlreadyExists).
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// Update or delete of a missing key (HTTP 404).
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The expected revision did not match (HTTP 409 Conflict).
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision the key has.
        actual: Revision,
    },
    /// The requested revision was compacted away (HTTP 410 Gone / Expired).
    #[error("revision {requested} is older than the oldest kept revision {oldest}")]
    Expired {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still answerable.
        oldest: Revision,
    },
    /// The requested revision is in the future.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// Too many writes queued (HTTP 429).
    #[error("the store is overloaded, retry later")]
    Overloaded,
    /// The store has been closed.
    #[error("the store is closed")]
    Closed,
    /// Storage I/O or corruption.
    #[error("storage error: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// A backend error with context.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// The store contract. All methods are safe to call concurrently.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest value of `key`.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, in key order, at the given or latest revision.
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError>;

    /// Create `key`; fails with `AlreadyExists` if present.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Replace `key`'s value. With `expected = Some(rev)`, fail with `Conflict`
    /// unless the key's `mod_revision` is `rev`. Fails with `NotFound` if absent.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Delete `key`, returning its last value (with `mod_revision` = the
    /// deletion revision). Same precondition rules as `update`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError>;

    /// Changes under `prefix` with revision > `after`: history first, then live.
    /// `after` older than the window fails at once with `Expired`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError>;

    /// The latest revision (0 for an empty store).
    fn current_revision(&self) -> Revision;

    /// The oldest revision reads and watches can still start from.
    fn compacted_revision(&self) -> Revision;

    /// Drop history at and below `revision`. Never blocks writers for long.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;
}

/// Builds a storage key: `/registry/<group>/<resource>/<namespace>/<name>`.
/// The core group is spelled `core`; `namespace` is `None` for cluster-scoped
/// objects. With `name = None` the result is the prefix for a list, ending in `/`.
pub fn key_for(group: &str, resource: &str, namespace: Option<&str>, name: Option<&str>) -> String {
    let group = if group.is_empty() { "core" } else { group };
    let mut key = format!("/registry/{group}/{resource}/");
    if let Some(ns) = namespace {
        key.push_str(ns);
        key.push('/');
    }
    if let Some(name) = name {
        key.push_str(name);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_registry_layout() {
        assert_eq!(
            key_for("", "pods", Some("default"), Some("web")),
            "/registry/core/pods/default/web"
        );
        assert_eq!(
            key_for("apps", "deployments", Some("ns"), None),
            "/registry/apps/deployments/ns/"
        );
        assert_eq!(
            key_for("", "nodes", None, Some("n1")),
            "/registry/core/nodes/n1"
        );
        assert_eq!(key_for("", "pods", None, None), "/registry/core/pods/");
    }
}
