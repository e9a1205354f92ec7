//! How `skiff image pull|push` shows progress on stderr: one updating bar (indicatif) when
//! stderr is a terminal, plain lines otherwise — one per layer status change, never one per
//! transferred chunk, so logs stay short.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use skiff_runtimes::images::{ProgressEvent, TransferProgress};

/// Decides which progress messages become plain lines: a layer's line when its status word
/// changes (`Downloading` once, not per chunk), a whole-image line when it differs from the
/// previous one.
#[derive(Debug, Default)]
pub struct PlainLines {
    layer_status: HashMap<String, String>,
    last_image_line: Option<String>,
}

/// A status without a drawn progress bar: `Downloading [==> ] 1MB/3MB` → `Downloading`
/// (but `The push refers to repository [host/app]` stays whole).
fn status_word(status: &str) -> &str {
    let status = status.split('\r').next().unwrap_or(status);
    let bar = status
        .match_indices(" [")
        .find(|(at, _)| matches!(status.as_bytes().get(at + 2), Some(b'=' | b'>' | b' ')));
    match bar {
        Some((at, _)) => status[..at].trim(),
        None => status.trim(),
    }
}

impl PlainLines {
    /// The line to print for `event`, if any.
    pub fn line(&mut self, event: &ProgressEvent) -> Option<String> {
        let status = status_word(&event.status);
        if status.is_empty() {
            return None;
        }
        match &event.layer {
            Some(layer) => {
                let previous = self.layer_status.insert(layer.clone(), status.to_owned());
                if previous.as_deref() == Some(status) {
                    return None;
                }
                Some(
                    match event.total.filter(|_| status.starts_with("Downloading")) {
                        Some(total) => format!("{layer}: {status} ({} bytes)", total),
                        None => format!("{layer}: {status}"),
                    },
                )
            }
            None => {
                if self.last_image_line.as_deref() == Some(status) {
                    return None;
                }
                self.last_image_line = Some(status.to_owned());
                Some(status.to_owned())
            }
        }
    }
}

/// The progress display of one pull or push.
pub struct ProgressView {
    mode: Mode,
}

enum Mode {
    Bar {
        bar: ProgressBar,
        transfer: TransferProgress,
    },
    Lines(PlainLines),
}

impl ProgressView {
    /// A bar on a terminal, plain lines otherwise; `action` is `pulling` or `pushing`.
    pub fn new(action: &str, reference: &str) -> Self {
        if !std::io::stderr().is_terminal() {
            eprintln!("{action} {reference}");
            return ProgressView {
                mode: Mode::Lines(PlainLines::default()),
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{action} {reference}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        ProgressView {
            mode: Mode::Bar {
                bar,
                transfer: TransferProgress::default(),
            },
        }
    }

    /// Show one progress message.
    pub fn event(&mut self, event: &ProgressEvent) {
        match &mut self.mode {
            Mode::Lines(lines) => {
                if let Some(line) = lines.line(event) {
                    eprintln!("{line}");
                }
            }
            Mode::Bar { bar, transfer } => {
                transfer.update(event);
                bar.set_length(transfer.bytes_known());
                bar.set_position(transfer.bytes_done());
                let (layers, done) = transfer.layers();
                let status = status_word(&event.status);
                if layers > 0 {
                    bar.set_message(format!("{done}/{layers} layers · {status}"));
                } else {
                    bar.set_message(status.to_owned());
                }
                if event.layer.is_none() && !status.is_empty() {
                    bar.println(status);
                }
            }
        }
    }

    /// Clear the bar (plain lines need nothing).
    pub fn finish(self) {
        if let Mode::Bar { bar, .. } = self.mode {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_show_status_changes_not_chunks() {
        let mut lines = PlainLines::default();
        let events = [
            ProgressEvent::image("v1: Pulling from app"),
            ProgressEvent::layer("abc", "Pulling fs layer", None, None),
            ProgressEvent::layer("abc", "Downloading", Some(10), Some(300)),
            ProgressEvent::layer("abc", "Downloading", Some(200), Some(300)),
            ProgressEvent::layer("def", "Downloading [=>   ] 1MB/3MB", Some(1), Some(3)),
            ProgressEvent::layer("abc", "Download complete", None, None),
            ProgressEvent::layer("abc", "Pull complete", None, None),
            // Docker's push messages have no layer: repeated ones collapse.
            ProgressEvent::image("The push refers to repository [127.0.0.1:5000/app]"),
            ProgressEvent::image("Pushing"),
            ProgressEvent::image("Pushing"),
            ProgressEvent::image("Digest: sha256:00"),
        ];
        let printed: Vec<String> = events.iter().filter_map(|e| lines.line(e)).collect();
        assert_eq!(
            printed,
            [
                "v1: Pulling from app",
                "abc: Pulling fs layer",
                "abc: Downloading (300 bytes)",
                "def: Downloading (3 bytes)",
                "abc: Download complete",
                "abc: Pull complete",
                "The push refers to repository [127.0.0.1:5000/app]",
                "Pushing",
                "Digest: sha256:00",
            ]
        );
    }
}
