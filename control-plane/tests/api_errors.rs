//! Store failures through the router: Overloaded → 429 with Retry-After,
//! backend errors → 500 without internal details.

mod api_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use api_common::{config, pod, start_with};
use async_trait::async_trait;
use axum::http::StatusCode;
use bytes::Bytes;
use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::{
    EventStream, KeyValue, ListOptions, ListResult, Revision, Store, StoreError,
};

const OK: u8 = 0;
const OVERLOADED: u8 = 1;
const BROKEN: u8 = 2;

/// A MemoryStore whose writes can be made to fail.
struct Faulty {
    inner: MemoryStore,
    mode: Arc<AtomicU8>,
}

impl Faulty {
    fn fail(&self) -> Result<(), StoreError> {
        match self.mode.load(Ordering::Relaxed) {
            OVERLOADED => Err(StoreError::Overloaded),
            BROKEN => Err(StoreError::Backend {
                message: "/var/lib/skiff/secret-path.redb: checksum mismatch".into(),
                source: None,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListResult, StoreError> {
        self.inner.list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        self.fail()?;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.fail()?;
        self.inner.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue, StoreError> {
        self.fail()?;
        self.inner.delete(key, expected).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream, StoreError> {
        self.inner.watch(prefix, after).await
    }
    fn current_revision(&self) -> Revision {
        self.inner.current_revision()
    }
    fn compacted_revision(&self) -> Revision {
        self.inner.compacted_revision()
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision).await
    }
}

#[tokio::test]
async fn store_failures_map_to_statuses() {
    let mode = Arc::new(AtomicU8::new(OK));
    let store = Arc::new(Faulty {
        inner: MemoryStore::new(),
        mode: mode.clone(),
    });
    let api = start_with(store, config()).await;
    let pods = "/api/v1/namespaces/default/pods";

    mode.store(OVERLOADED, Ordering::Relaxed);
    let r = api.post(pods, pod("a")).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.body["reason"], "TooManyRequests");
    assert_eq!(r.body["details"]["retryAfterSeconds"], 1);

    mode.store(BROKEN, Ordering::Relaxed);
    let r = api.post(pods, pod("a")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.body["reason"], "InternalError");
    assert!(
        !String::from_utf8_lossy(&r.raw).contains("secret-path"),
        "no internals leak: {}",
        r.body
    );

    mode.store(OK, Ordering::Relaxed);
    assert_eq!(api.post(pods, pod("a")).await.status, StatusCode::CREATED);
}
