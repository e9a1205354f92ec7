//! Prometheus metrics of the kubelet, served as OpenMetrics text at `/metrics` on the kubelet's
//! HTTPS server, under the names Kubernetes' kubelet uses:
//!
//! - `kubelet_running_pods`: pods that have a pod sandbox;
//! - `kubelet_running_containers{container_state="running|exited"}`: containers of those
//!   pods by state;
//! - `kubelet_pod_start_duration_seconds`: histogram of the time from the kubelet first seeing
//!   a pod to the pod running (phase Pending → Running). The buckets are the kubelet's, with
//!   finer ones below 0.5 s added: wasm pods start in milliseconds.
//!
//! The two gauges are read from the [`PodIndex`] when scraped, so they cannot drift from what
//! the pod workers published; the histogram is fed by the workers.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::PodIndex;

/// Buckets of `kubelet_pod_start_duration_seconds` (seconds).
pub const POD_START_BUCKETS: [f64; 30] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0,
    60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// The `container_state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerStateLabels {
    /// `running` or `exited`.
    pub container_state: String,
}

/// The kubelet's metric set and its registry; share it as `Arc<KubeletMetrics>`.
#[derive(Debug)]
pub struct KubeletMetrics {
    registry: Registry,
    running_pods: Gauge,
    running_containers: Family<ContainerStateLabels, Gauge>,
    pod_start_duration: Histogram,
}

impl Default for KubeletMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeletMetrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let running_pods = Gauge::default();
        let running_containers = Family::<ContainerStateLabels, Gauge>::default();
        let pod_start_duration = Histogram::new(POD_START_BUCKETS);
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
            pod_start_duration.clone(),
        );
        KubeletMetrics {
            registry,
            running_pods,
            running_containers,
            pod_start_duration,
        }
    }

    /// A pod went from Pending to Running `seconds` after its worker first saw it.
    pub fn observe_pod_start(&self, seconds: f64) {
        self.pod_start_duration.observe(seconds);
    }

    /// The text exposition, with the gauges read from `index` now.
    pub fn encode(&self, index: &PodIndex) -> String {
        let census = index.census();
        self.running_pods.set(census.pods as i64);
        for (state, count) in [
            ("running", census.running_containers),
            ("exited", census.exited_containers),
        ] {
            self.running_containers
                .get_or_create(&ContainerStateLabels {
                    container_state: state.to_owned(),
                })
                .set(count as i64);
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "encoding kubelet metrics failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kubelet::PodEntry;

    fn entry(uid: &str, sandbox: bool, containers: &[(&str, bool)]) -> PodEntry {
        PodEntry {
            uid: uid.to_owned(),
            ip: sandbox.then(|| "10.244.0.5".parse().expect("ip")),
            netns: None,
            containers: containers
                .iter()
                .map(|(name, running)| {
                    (
                        (*name).to_owned(),
                        ("fake".to_owned(), format!("{uid}-{name}"), 0, *running),
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn gauges_follow_the_index_and_starts_fill_the_histogram() {
        let index = PodIndex::default();
        let metrics = KubeletMetrics::new();
        let text = metrics.encode(&index);
        assert!(text.contains("kubelet_running_pods 0\n"), "{text}");

        index.set(
            "default",
            "web",
            entry("u1", true, &[("a", true), ("b", false)]),
        );
        index.set("default", "mixed", entry("u2", true, &[("a", true)]));
        // A finished pod released its sandbox: not running.
        index.set("default", "done", entry("u3", false, &[("a", false)]));
        metrics.observe_pod_start(0.04);
        metrics.observe_pod_start(1.5);
        let text = metrics.encode(&index);
        assert!(text.contains("# TYPE kubelet_running_pods gauge"), "{text}");
        assert!(text.contains("kubelet_running_pods 2\n"), "{text}");
        assert!(
            text.contains("kubelet_running_containers{container_state=\"running\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_running_containers{container_state=\"exited\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE kubelet_pod_start_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_pod_start_duration_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("kubelet_pod_start_duration_seconds_bucket{le=\"2.0\"} 2\n"),
            "{text}"
        );

        index.remove("default", "web", "u1");
        let text = metrics.encode(&index);
        assert!(text.contains("kubelet_running_pods 1\n"), "{text}");
        assert!(
            text.contains("kubelet_running_containers{container_state=\"exited\"} 0\n"),
            "{text}"
        );
    }
}
