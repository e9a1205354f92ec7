//! The scheduler's algorithm alone, without the API server: SchedulingBasic
//! nodes in the cache, pods through the algorithm, each assumed at once. This
//! checks the code path at a small size; its speed at 5,000 nodes / 10,000
//! pods is measured by `skiff bench scheduler --core` (see BENCHMARKS.md).

use std::sync::Arc;

use rand::SeedableRng;
use skiff_control_plane::scheduler::algorithm::Algorithm;
use skiff_control_plane::scheduler::bench::{bench_node, bench_pod};
use skiff_control_plane::scheduler::cache::Cache;
use skiff_control_plane::scheduler::pod_info::{PodContext, PodInfo};

/// Places `pods` pods on `nodes` nodes; returns how many found a node.
fn place(nodes: usize, pods: usize) -> usize {
    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.upsert_node(Arc::new(bench_node(&format!("node-{i}"))));
    }
    let ctx = PodContext::default();
    let infos: Vec<Arc<PodInfo>> = (0..pods)
        .map(|i| {
            let mut p = bench_pod(&format!("pod-{i}"));
            p.metadata.namespace = Some("default".into());
            p.metadata.uid = Some(format!("uid-{i}"));
            Arc::new(PodInfo::new(Arc::new(p), &ctx))
        })
        .collect();
    let mut alg = Algorithm::new(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut placed = 0;
    for info in infos {
        let r = alg.schedule(&info, &cache.snapshot(), &mut rng);
        if let Ok(r) = r {
            let node = cache.snapshot().nodes[r.node].name.clone();
            cache.assume(info, &node);
            placed += 1;
        }
    }
    placed
}

#[test]
fn places_every_pod_that_fits() {
    // 20 nodes × 40 pods (cpu-bound: 4 cpu / 100m) = 800 slots.
    assert_eq!(place(20, 850), 800);
}
