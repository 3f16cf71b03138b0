//! Placement decisions per second and the latency of one decision, on synthetic clusters of
//! 1,000 and 10,000 instances across three availability zones:
//!
//! * (a) `binpack` on memory, no constraints;
//! * (b) `spread` on `attribute:ecs.availability-zone`, then `binpack` on memory, with
//!   `memberOf(attribute:ecs.instance-type in [m5.large, m5.xlarge])` (two types of three).
//!
//! Each decision places one task (RunTask `--count 1`) on a long-lived [`ClusterState`], as
//! the service scheduler does, so the cluster fills as the benchmark runs; a full cluster is
//! rebuilt outside the timed region. The baseline, run side by side on the same clusters, is
//! the same engine deciding by scanning every instance (`without_indexes`, identical plans).
//!
//! Run: `cargo bench -p berth-scheduler --bench placement`. Criterion prints throughput;
//! the summary at the end prints placements/s, p50/p99 of single decisions and the ratio to
//! the scan.

use std::hint::black_box;
use std::time::{Duration, Instant};

use berth_scheduler::{
    BinpackField, ClusterState, Constraint, Expr, InstanceSnapshot, PlacementRequest, Resources,
    SpreadField, Strategy, TaskRequirements,
};
use criterion::{Criterion, Throughput, criterion_group};

const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const TYPES: [&str; 3] = ["m5.large", "m5.xlarge", "c5.large"];

/// `n` instances of 4 vCPU / 16 GiB with a deterministic spread of existing load.
fn cluster(n: usize) -> Vec<InstanceSnapshot> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let used = (x % 48) as i64;
            let mut s = InstanceSnapshot::new(
                format!("arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{i:08x}"),
                Resources { cpu: 4096 - used * 64, memory_mib: 16384 - used * 256 },
            )
            .with_attribute("ecs.availability-zone", Some(AZS[i % 3]))
            .with_attribute("ecs.instance-type", Some(TYPES[(i / 3) % 3]))
            .with_attribute("ecs.os-type", Some("linux"))
            .with_attribute("ecs.cpu-architecture", Some("x86_64"));
            s.ec2_instance_id = Some(format!("i-{i:017x}"));
            if used > 0 {
                s.task_groups.insert("other".into(), used as u32);
            }
            s
        })
        .collect()
}

fn request(case: char) -> PlacementRequest {
    let requirements = TaskRequirements { cpu: 64, memory_mib: 256, ..Default::default() };
    match case {
        'a' => PlacementRequest {
            count: 1,
            requirements,
            group: "family:web".into(),
            strategies: vec![Strategy::Binpack(BinpackField::Memory)],
            ..Default::default()
        },
        _ => PlacementRequest {
            count: 1,
            requirements,
            group: "service:web".into(),
            constraints: vec![Constraint::MemberOf {
                expression: Expr::parse("attribute:ecs.instance-type in [m5.large, m5.xlarge]")
                    .expect("valid expression"),
            }],
            strategies: vec![
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Binpack(BinpackField::Memory),
            ],
            ..Default::default()
        },
    }
}

/// A long-lived state that is rebuilt (untimed) when it fills.
struct Bench {
    n: usize,
    indexed: bool,
    state: ClusterState,
}

impl Bench {
    fn new(n: usize, indexed: bool) -> Self {
        Self { n, indexed, state: Self::fresh(n, indexed) }
    }
    fn fresh(n: usize, indexed: bool) -> ClusterState {
        let s = ClusterState::new(cluster(n));
        if indexed { s } else { s.without_indexes() }
    }
    /// Times `iters` decisions.
    fn run(&mut self, req: &PlacementRequest, iters: u64) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let t = Instant::now();
            let plan = self.state.place(req).expect("instances exist");
            total += t.elapsed();
            if plan.unplaced > 0 {
                self.state = Self::fresh(self.n, self.indexed);
            }
            black_box(plan);
        }
        total
    }
    /// Per-decision latencies of `k` decisions, sorted.
    fn latencies(&mut self, req: &PlacementRequest, k: usize) -> Vec<Duration> {
        // Warm the caches (views, partitions) first.
        self.run(req, 10);
        let mut v: Vec<Duration> = (0..k).map(|_| self.run(req, 1)).collect();
        v.sort_unstable();
        v
    }
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn benches(c: &mut Criterion) {
    for n in [1_000usize, 10_000] {
        for case in ['a', 'b'] {
            let req = request(case);
            let mut g = c.benchmark_group(format!("place/{n}/{case}"));
            g.throughput(Throughput::Elements(1));
            let mut indexed = Bench::new(n, true);
            g.bench_function("indexed", |b| b.iter_custom(|iters| indexed.run(&req, iters)));
            let mut scan = Bench::new(n, false);
            g.sample_size(10).measurement_time(Duration::from_secs(3));
            g.bench_function("scan", |b| b.iter_custom(|iters| scan.run(&req, iters)));
            g.finish();
        }
    }
}

/// The summary the README quotes: one line per cluster size and case.
fn summary() {
    println!();
    println!(
        "placement decisions, one task each, one core (baseline: the same engine scanning every instance)"
    );
    println!(
        "{:<9} {:<4} {:>14} {:>10} {:>10} {:>14} {:>8}",
        "instances", "case", "placements/s", "p50", "p99", "scan/s", "ratio"
    );
    for n in [1_000usize, 10_000] {
        for case in ['a', 'b'] {
            let req = request(case);
            let lat = Bench::new(n, true).latencies(&req, 100_000);
            let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
            let scan = Bench::new(n, false).latencies(&req, if n > 1_000 { 300 } else { 3_000 });
            let scan_mean = scan.iter().sum::<Duration>() / scan.len() as u32;
            let rate = 1.0 / mean.as_secs_f64();
            let scan_rate = 1.0 / scan_mean.as_secs_f64();
            println!(
                "{:<9} {:<4} {:>14.0} {:>10.2?} {:>10.2?} {:>14.0} {:>7.0}x",
                n,
                case,
                rate,
                pct(&lat, 0.50),
                pct(&lat, 0.99),
                scan_rate,
                rate / scan_rate
            );
        }
    }
    println!("targets at 10,000 instances: (a) >= 100,000/s, (b) >= 20,000/s, p99 < 1 ms");
    println!(
        "published anchors (not run here): Kubernetes scheduler ~100s of pods/s at 5,000 nodes; Nomad C2M ~1,500 placements/s"
    );
}

criterion_group!(placement, benches);

fn main() {
    let quick = std::env::args().any(|a| a == "--summary-only");
    if !quick {
        placement();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
