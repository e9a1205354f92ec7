//! Burns CPU forever, printing progress. Set `resources.limits.cpu` in its pod and watch the
//! progress rate drop: the runtime throttles it to its share of a core.

use std::time::Instant;

fn main() {
    let started = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rounds: u64 = 0;
    loop {
        for _ in 0..50_000_000u32 {
            // xorshift: cheap work the optimizer cannot remove.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        rounds += 1;
        println!(
            "round {rounds} after {:.1}s (checksum {:x})",
            started.elapsed().as_secs_f64(),
            x & 0xffff
        );
    }
}
