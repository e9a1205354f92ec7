//! ImageLocality: prefer nodes that already have the pod's images, scaled
//! by how widely each image is spread (so one node holding a popular image
//! does not attract everything).

use crate::scheduler::node_info::{NodeInfo, Snapshot};
use crate::scheduler::pod_info::PodInfo;

use super::MAX_NODE_SCORE;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

/// The ImageLocality score (already 0–100).
pub fn image_locality(pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot<'_>) -> i64 {
    if pod.images.is_empty() {
        return 0;
    }
    let total = snapshot.nodes.len().max(1) as f64;
    let mut sum: i64 = 0;
    for image in &pod.images {
        if let Some(size) = node.images.get(image) {
            let holders = snapshot.image_nodes.get(image).copied().unwrap_or(1) as f64;
            sum += (*size as f64 * (holders / total)) as i64;
        }
    }
    let max = MAX_CONTAINER_THRESHOLD * pod.images.len() as i64;
    let clamped = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (clamped - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::node_info::count_image_nodes;
    use crate::scheduler::node_info::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn bigger_and_more_widespread_images_score_higher() {
        let with = |name: &str, size: i64| {
            NodeInfo::new(node(
                name,
                json!({"status": {"images": [
                {"names": ["docker.io/app:1", "app:1"], "sizeBytes": size}]}}),
            ))
        };
        let nodes = vec![
            with("a", 600 * MB),
            with("b", 600 * MB),
            NodeInfo::new(node("c", json!({}))),
        ];
        let counts = count_image_nodes(&nodes);
        let snap = Snapshot::new(&nodes, &counts);
        let p = pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "image": "app:1"}]}}),
        );
        // 600MB × 2/3 = 400MB → 100 × (400-23)/(1000-23) = 38.
        assert_eq!(image_locality(&p, &nodes[0], &snap), 38);
        assert_eq!(image_locality(&p, &nodes[2], &snap), 0);
        let small = vec![with("a", 10 * MB)];
        let counts = count_image_nodes(&small);
        let snap = Snapshot::new(&small, &counts);
        assert_eq!(
            image_locality(&p, &small[0], &snap),
            0,
            "below the 23MB threshold"
        );
        let huge = vec![with("a", 5000 * MB)];
        let counts = count_image_nodes(&huge);
        let snap = Snapshot::new(&huge, &counts);
        assert_eq!(
            image_locality(&p, &huge[0], &snap),
            100,
            "capped per container"
        );
        let untagged = pod(
            "p",
            json!({"spec": {"containers": [{"name": "c", "image": "app"}]}}),
        );
        assert_eq!(
            image_locality(&untagged, &huge[0], &snap),
            0,
            "app means app:latest"
        );
    }
}
