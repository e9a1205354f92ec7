//! Progress of a pull or push, in Docker's vocabulary, for both stores.
//!
//! Docker reports per-layer messages (`Pulling fs layer`, `Downloading 1.2MB/3.4MB`,
//! `Pull complete`, ...); the wasm registry client ([`Puller`](super::Puller)) reports its
//! single blob in the same words, so one CLI renderer draws both. [`TransferProgress`] folds
//! the messages into "bytes done / bytes known" for one progress bar.

use std::collections::BTreeMap;

/// One progress message during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressEvent {
    /// The layer (short digest) the message is about; `None` for whole-image messages.
    pub layer: Option<String>,
    /// Status text in Docker's words: `Pulling fs layer`, `Downloading`, `Pull complete`,
    /// `Pushed`, ...
    pub status: String,
    /// Bytes done so far for this layer, when Docker says.
    pub current: Option<u64>,
    /// The layer's size, when Docker says.
    pub total: Option<u64>,
}

impl ProgressEvent {
    /// A message about one layer (or blob).
    pub fn layer(
        layer: impl Into<String>,
        status: impl Into<String>,
        current: Option<u64>,
        total: Option<u64>,
    ) -> Self {
        ProgressEvent {
            layer: Some(layer.into()),
            status: status.into(),
            current,
            total,
        }
    }

    /// A message about the whole image (`Pulling from app`, `Digest: sha256:...`).
    pub fn image(status: impl Into<String>) -> Self {
        ProgressEvent {
            layer: None,
            status: status.into(),
            current: None,
            total: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LayerProgress {
    current: u64,
    total: Option<u64>,
    done: bool,
}

/// Per-layer progress folded into totals, for one progress bar.
#[derive(Debug, Clone, Default)]
pub struct TransferProgress {
    layers: BTreeMap<String, LayerProgress>,
}

/// Layer statuses meaning the layer needs no more transfer.
const DONE_STATUSES: &[&str] = &[
    "Download complete",
    "Pull complete",
    "Already exists",
    "Pushed",
    "Layer already exists",
    "Mounted from",
];

/// Layer statuses whose `current`/`total` count transferred bytes (not extraction).
const TRANSFER_STATUSES: &[&str] = &["Downloading", "Pushing"];

impl TransferProgress {
    /// Fold in one event.
    pub fn update(&mut self, event: &ProgressEvent) {
        let Some(layer) = &event.layer else { return };
        // Whole-image messages carry the tag or digest as their id; layers have statuses.
        let is_layer_status = event.status.starts_with("Pulling fs layer")
            || event.status.starts_with("Waiting")
            || event.status.starts_with("Preparing")
            || TRANSFER_STATUSES
                .iter()
                .any(|s| event.status.starts_with(s))
            || DONE_STATUSES.iter().any(|s| event.status.starts_with(s))
            || event.status.starts_with("Verifying")
            || event.status.starts_with("Extracting");
        if !is_layer_status {
            return;
        }
        let entry = self.layers.entry(layer.clone()).or_default();
        if TRANSFER_STATUSES
            .iter()
            .any(|s| event.status.starts_with(s))
        {
            if let Some(total) = event.total {
                entry.total = Some(total);
            }
            if let Some(current) = event.current {
                entry.current = current.max(entry.current);
            }
        }
        if DONE_STATUSES.iter().any(|s| event.status.starts_with(s)) {
            entry.done = true;
            if let Some(total) = entry.total {
                entry.current = total;
            }
        }
    }

    /// Bytes transferred so far over all layers.
    pub fn bytes_done(&self) -> u64 {
        self.layers.values().map(|l| l.current).sum()
    }

    /// Bytes to transfer over all layers whose size is known yet.
    pub fn bytes_known(&self) -> u64 {
        self.layers.values().filter_map(|l| l.total).sum()
    }

    /// Layers seen and layers finished.
    pub fn layers(&self) -> (usize, usize) {
        let done = self.layers.values().filter(|l| l.done).count();
        (self.layers.len(), done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(layer: &str, status: &str, current: Option<u64>, total: Option<u64>) -> ProgressEvent {
        ProgressEvent::layer(layer, status, current, total)
    }

    #[test]
    fn progress_sums_layers_and_ignores_extraction() {
        let mut progress = TransferProgress::default();
        progress.update(&ProgressEvent {
            layer: Some("v1".into()),
            status: "Pulling from app".into(),
            current: None,
            total: None,
        });
        assert_eq!(
            progress.layers(),
            (0, 0),
            "image-level messages are not layers"
        );
        progress.update(&event("a", "Pulling fs layer", None, None));
        progress.update(&event("b", "Pulling fs layer", None, None));
        progress.update(&event("a", "Downloading", Some(100), Some(1000)));
        progress.update(&event("b", "Downloading", Some(50), Some(500)));
        assert_eq!((progress.bytes_done(), progress.bytes_known()), (150, 1500));
        progress.update(&event("a", "Download complete", None, None));
        assert_eq!(progress.bytes_done(), 1050);
        progress.update(&event("a", "Extracting", Some(10), Some(4000)));
        assert_eq!(
            (progress.bytes_done(), progress.bytes_known()),
            (1050, 1500),
            "extraction does not count as transfer"
        );
        progress.update(&event("b", "Already exists", None, None));
        assert_eq!(progress.bytes_done(), 1500);
        assert_eq!(progress.layers(), (2, 2));
    }
}
