//! The store behaviour suite against [`MemoryStore`], plus its window limit.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod store_suite;

use skiff_control_plane::store::memory::MemoryStore;
use skiff_control_plane::store::watch_hub::WatchHubConfig;
use skiff_control_plane::store::{ListOptions, Store, StoreError};
use store_suite::{Backend, Harness, Opts, b};

struct Memory;

impl Backend for Memory {
    fn open(&self, opts: Opts) -> Harness {
        let store = MemoryStore::with_config(WatchHubConfig {
            window: opts.window,
            watcher_buffer: opts.watcher_buffer,
        });
        Harness {
            store: store.shared(),
            guard: Box::new(()),
        }
    }
}

store_suite!(Memory);

#[tokio::test]
async fn history_beyond_the_window_expires() {
    let s = MemoryStore::with_history(10);
    for i in 0..25 {
        s.create(&format!("/registry/core/pods/a/p{i}"), b("v"))
            .await
            .unwrap();
    }
    assert_eq!(s.compacted_revision(), 15);
    assert!(matches!(
        s.watch("/registry/", 14).await,
        Err(StoreError::Expired {
            requested: 14,
            oldest: 15
        })
    ));
    assert!(s.watch("/registry/", 15).await.is_ok());
    let at = ListOptions {
        revision: Some(14),
        ..ListOptions::default()
    };
    assert!(matches!(
        s.list("/registry/", at).await,
        Err(StoreError::Expired { .. })
    ));
    let at = ListOptions {
        revision: Some(15),
        ..ListOptions::default()
    };
    assert_eq!(s.list("/registry/", at).await.unwrap().items.len(), 15);
}
