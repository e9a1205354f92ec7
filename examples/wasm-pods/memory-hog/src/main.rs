//! Allocates (and touches) 4 MiB at a time, forever. With `resources.limits.memory` in its
//! pod it ends with reason `OOMKilled` once it crosses the limit.

fn main() {
    let step = 4 << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![0xa5; step]);
        let total = held.len() * step;
        println!("holding {} MiB", total >> 20);
    }
}
