//! Cost of one authorization against 20 attached policies.

use berth_iam_policy::evaluate_identity;
use criterion::{Criterion, criterion_group, criterion_main};

mod fixture;

fn bench(c: &mut Criterion) {
    let policies = fixture::policies();
    let refs: Vec<_> = policies.iter().collect();
    for allowed in [true, false] {
        let ctx = fixture::request(allowed);
        assert_eq!(evaluate_identity(&refs, &ctx).is_allowed(), allowed);
        let name = if allowed { "allowed_by_last" } else { "implicit_deny" };
        c.bench_function(&format!("evaluate_20_policies/{name}"), |b| {
            b.iter(|| evaluate_identity(std::hint::black_box(&refs), std::hint::black_box(&ctx)))
        });
        c.bench_function(&format!("context_and_evaluate_20_policies/{name}"), |b| {
            b.iter(|| {
                let ctx = fixture::request(allowed);
                evaluate_identity(std::hint::black_box(&refs), &ctx)
            })
        });
    }
    c.bench_function("parse_policy", |b| b.iter(fixture::policies));
}

criterion_group!(benches, bench);
criterion_main!(benches);
