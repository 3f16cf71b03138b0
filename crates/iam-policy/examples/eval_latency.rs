//! Prints p50/p99 of one authorization against 20 attached policies:
//! `cargo run --release -p berth-iam-policy --example eval_latency`.

use std::time::Instant;

use berth_iam_policy::evaluate_identity;

#[path = "../benches/fixture.rs"]
mod fixture;

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), ns[ns.len() - 1])
}

fn main() {
    let policies = fixture::policies();
    let refs: Vec<_> = policies.iter().collect();
    const N: usize = 200_000;
    for allowed in [true, false] {
        let label = if allowed { "allowed by the 20th policy" } else { "implicit deny (no allow)" };
        let ctx = fixture::request(allowed);
        assert_eq!(evaluate_identity(&refs, &ctx).is_allowed(), allowed);
        // Warm up.
        for _ in 0..10_000 {
            std::hint::black_box(evaluate_identity(&refs, &ctx));
        }
        let mut eval = Vec::with_capacity(N);
        let mut full = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            std::hint::black_box(evaluate_identity(std::hint::black_box(&refs), &ctx));
            eval.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            let c = fixture::request(allowed);
            std::hint::black_box(evaluate_identity(std::hint::black_box(&refs), &c));
            full.push(t.elapsed().as_nanos() as u64);
        }
        let (p50, p99, max) = percentiles(eval);
        println!("{label}: evaluate p50 {p50} ns, p99 {p99} ns, max {max} ns");
        let (p50, p99, max) = percentiles(full);
        println!("{label}: build context + evaluate p50 {p50} ns, p99 {p99} ns, max {max} ns");
    }
}
