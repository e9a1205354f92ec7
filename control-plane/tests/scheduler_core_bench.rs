//! The scheduler's own cost per pod, without the API server: 5,000 nodes
//! in the cache, 10,000 SchedulingBasic pods through the algorithm, each
//! assumed at once. Run in release:
//! `cargo test --release -p skiff-control-plane --test scheduler_core_bench -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use skiff_control_plane::scheduler::algorithm::Algorithm;
use skiff_control_plane::scheduler::bench::{bench_node, bench_pod};
use skiff_control_plane::scheduler::cache::Cache;
use skiff_control_plane::scheduler::pod_info::{PodContext, PodInfo};

fn place(nodes: usize, pods: usize) -> (f64, usize) {
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
    let start = Instant::now();
    let mut placed = 0;
    for info in infos {
        let r = alg.schedule(&info, &cache.snapshot(), &mut rng);
        if let Ok(r) = r {
            let node = cache.snapshot().nodes[r.node].name.clone();
            cache.assume(info, &node);
            placed += 1;
        }
    }
    (pods as f64 / start.elapsed().as_secs_f64(), placed)
}

#[test]
fn places_every_pod_that_fits() {
    // 20 nodes × 40 pods (cpu-bound: 4 cpu / 100m) = 800 slots.
    let (_, placed) = place(20, 850);
    assert_eq!(placed, 800);
}

#[test]
#[ignore = "benchmark: run in release"]
fn core_throughput_5000_nodes() {
    let (rate, placed) = place(5000, 10000);
    println!("scheduler core: {rate:.0} pods/s over 5000 nodes ({placed} placed)");
    assert_eq!(placed, 10000);
}
