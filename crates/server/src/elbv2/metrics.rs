//! The load balancers' CloudWatch metrics (issue #15): every [`PUBLISH_EVERY`] the region's
//! data plane's request counters ([`berth_lb::Lb::request_counts`]) become `AWS/ApplicationELB`
//! datapoints in the metric store, which Application Auto Scaling's `ALBRequestCountPerTarget`
//! target tracking reads.
//!
//! Contract ([`RequestMetrics::samples`], pure):
//! * only target groups some application load balancer's listener forwards to are published;
//!   each datapoint counts the requests routed to the group since the previous publication
//!   (a counter that went back, a data plane that made the group again, counts from 0);
//! * `RequestCount` per {TargetGroup, LoadBalancer} and per {LoadBalancer} (the sum of its
//!   groups': requests answered by a fixed response or a redirect are not counted);
//!   `RequestCountPerTarget` per {TargetGroup} and per {TargetGroup, LoadBalancer}: the
//!   group's requests divided by its healthy targets (by its registered targets when none is
//!   healthy; no datapoint when none is registered). A group that several load balancers
//!   forward to has only its {TargetGroup} datapoints (its requests are not split by load
//!   balancer). Dimension values are ELB's: `app/NAME/ID`, `targetgroup/NAME/ID`;
//! * a quiet in-use group gets datapoints of 0 (ELB publishes none for a minute without
//!   requests; Berth's zeros let target tracking scale in once traffic stops);
//! * every datapoint is stored at 1-second resolution with the publication's timestamp, so a
//!   `Sum` over a minute is the minute's requests. Each server publishes its own data plane's
//!   counts; sums over servers add up.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use berth_lb::GroupRequests;
use berth_metricstore::{Agg, MetricKey, Sample};
use berth_model::elbv2::{self as model, keys};
use tokio::sync::watch;

use super::{Elbv2, list};

/// How often the counters are published.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(10);

/// The namespace of the metrics.
pub const NAMESPACE: &str = "AWS/ApplicationELB";

/// The `LoadBalancer` dimension value of a load balancer ARN (`app/NAME/ID`).
pub(crate) fn lb_dimension(arn: &str) -> Option<&str> {
    arn.split_once(":loadbalancer/").map(|(_, rest)| rest)
}

/// The `TargetGroup` dimension value of a target group ARN (`targetgroup/NAME/ID`).
pub(crate) fn tg_dimension(arn: &str) -> Option<&str> {
    arn.find(":targetgroup/").map(|i| &arn[i + 1..])
}

/// What the publisher remembers between publications.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    last: HashMap<String, u64>,
}

impl RequestMetrics {
    /// The datapoints at `at_ms` for `counts`, where `owners` maps each target group ARN an
    /// application load balancer forwards to onto those load balancers' ARNs (see the module
    /// header).
    pub fn samples(
        &mut self,
        counts: &[GroupRequests],
        owners: &BTreeMap<String, Vec<String>>,
        at_ms: i64,
    ) -> Vec<Sample> {
        let mut out = Vec::new();
        let mut per_lb: BTreeMap<&str, f64> = BTreeMap::new();
        let mut last = HashMap::new();
        for c in counts {
            last.insert(c.target_group_arn.clone(), c.requests);
            let Some(lbs) = owners.get(&c.target_group_arn) else { continue };
            let Some(tg) = tg_dimension(&c.target_group_arn) else { continue };
            let before = self.last.get(&c.target_group_arn).copied().unwrap_or(0);
            let delta = if c.requests >= before { c.requests - before } else { c.requests };
            let delta = delta as f64;
            let targets = if c.healthy > 0 { c.healthy } else { c.registered };
            let per_target = (targets > 0).then(|| delta / targets as f64);
            let only_lb = match lbs.as_slice() {
                [one] => lb_dimension(one),
                _ => None,
            };
            if let Some(v) = per_target {
                out.push(sample("RequestCountPerTarget", &[("TargetGroup", tg)], at_ms, v));
            }
            for lb in lbs.iter().filter_map(|a| lb_dimension(a)) {
                *per_lb.entry(lb).or_default() += delta;
            }
            if let Some(lb) = only_lb {
                let dims = [("LoadBalancer", lb), ("TargetGroup", tg)];
                out.push(sample("RequestCount", &dims, at_ms, delta));
                if let Some(v) = per_target {
                    out.push(sample("RequestCountPerTarget", &dims, at_ms, v));
                }
            }
        }
        for (lb, n) in per_lb {
            out.push(sample("RequestCount", &[("LoadBalancer", lb)], at_ms, n));
        }
        self.last = last;
        out
    }
}

fn sample(name: &str, dims: &[(&str, &str)], at_ms: i64, v: f64) -> Sample {
    let dims: Vec<(String, String)> =
        dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut agg = Agg::value(v, 1.0);
    agg.unit = Some("Count".to_string());
    Sample { key: MetricKey::new(NAMESPACE, name, &dims), at_ms, resolution_secs: 1, agg }
}

/// Target group ARN -> the application load balancers whose listeners forward to it.
async fn owners(elb: &Elbv2) -> Result<BTreeMap<String, Vec<String>>, berth_wire::AwsError> {
    let listeners: Vec<model::ListenerRecord> =
        list(elb.store(), keys::LISTENERS).await?.into_iter().map(|(_, v)| v).collect();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &listeners {
        if !l.load_balancer_arn.contains(":loadbalancer/app/") {
            continue;
        }
        for tg in l.target_groups() {
            let lbs = out.entry(tg.to_string()).or_default();
            if !lbs.contains(&l.load_balancer_arn) {
                lbs.push(l.load_balancer_arn.clone());
            }
        }
    }
    Ok(out)
}

/// Publishes the region's request metrics into `cloudwatch` every [`PUBLISH_EVERY`] until
/// `stop` is set (nothing while CloudWatch is not linked).
pub(crate) async fn run(
    elb: Arc<Elbv2>,
    cloudwatch: Arc<crate::appautoscaling::CloudWatchLink>,
    mut stop: watch::Receiver<bool>,
) {
    let mut state = RequestMetrics::default();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
        }
        let counts = elb.lb.request_counts();
        if counts.is_empty() {
            continue;
        }
        let Some(cw) = cloudwatch.samples.get() else { continue };
        let owners = match owners(&elb).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(region = elb.region.name, error = %e.message, "load balancer metrics not published");
                continue;
            }
        };
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let samples = state.samples(&counts, &owners, now_ms);
        if !samples.is_empty() {
            cw.put_samples(elb.region.name, samples).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str =
        "arn:aws:elasticloadbalancing:us-east-1:0:loadbalancer/app/web/50dc6c495c0c9188";
    const LB2: &str = "arn:aws:elasticloadbalancing:us-east-1:0:loadbalancer/app/api/aa";
    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/blue/73e2d6bc24d8a067";
    const TG2: &str = "arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/green/bb";
    const UNUSED: &str = "arn:aws:elasticloadbalancing:us-east-1:0:targetgroup/idle/cc";

    fn counts(rows: &[(&str, u64, usize, usize)]) -> Vec<GroupRequests> {
        rows.iter()
            .map(|(arn, requests, healthy, registered)| GroupRequests {
                target_group_arn: arn.to_string(),
                requests: *requests,
                healthy: *healthy,
                registered: *registered,
            })
            .collect()
    }

    fn value(samples: &[Sample], name: &str, dims: &[(&str, &str)]) -> Option<f64> {
        let dims: Vec<(String, String)> =
            dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let key = MetricKey::new(NAMESPACE, name, &dims);
        let found: Vec<&Sample> = samples.iter().filter(|s| s.key == key).collect();
        assert!(found.len() <= 1, "{name} {dims:?} published twice");
        found.first().map(|s| s.agg.sum)
    }

    #[test]
    fn request_counts_become_elb_metrics_per_group_and_per_target() {
        assert_eq!(lb_dimension(LB), Some("app/web/50dc6c495c0c9188"));
        assert_eq!(tg_dimension(TG), Some("targetgroup/blue/73e2d6bc24d8a067"));
        let owners: BTreeMap<String, Vec<String>> = [
            (TG.to_string(), vec![LB.to_string()]),
            (TG2.to_string(), vec![LB.into(), LB2.into()]),
        ]
        .into();
        let (lb, tg, tg2) = (
            "app/web/50dc6c495c0c9188",
            "targetgroup/blue/73e2d6bc24d8a067",
            "targetgroup/green/bb",
        );
        let mut m = RequestMetrics::default();
        // First publication: everything since the groups were made.
        let s = m.samples(
            &counts(&[(TG, 120, 4, 4), (TG2, 30, 0, 3), (UNUSED, 9, 1, 1)]),
            &owners,
            1000,
        );
        assert_eq!(value(&s, "RequestCountPerTarget", &[("TargetGroup", tg)]), Some(30.0));
        assert_eq!(
            value(&s, "RequestCount", &[("LoadBalancer", lb), ("TargetGroup", tg)]),
            Some(120.0)
        );
        assert_eq!(
            value(&s, "RequestCountPerTarget", &[("LoadBalancer", lb), ("TargetGroup", tg)]),
            Some(30.0)
        );
        // No healthy target: divided by the registered ones; shared by two load balancers:
        // only the {TargetGroup} datapoints.
        assert_eq!(value(&s, "RequestCountPerTarget", &[("TargetGroup", tg2)]), Some(10.0));
        assert_eq!(value(&s, "RequestCount", &[("LoadBalancer", lb), ("TargetGroup", tg2)]), None);
        assert_eq!(value(&s, "RequestCount", &[("LoadBalancer", lb)]), Some(150.0));
        assert_eq!(value(&s, "RequestCount", &[("LoadBalancer", "app/api/aa")]), Some(30.0));
        assert!(
            s.iter().all(|x| !x.key.dimensions.iter().any(|(_, v)| v.contains("idle"))),
            "a group no load balancer forwards to is not published"
        );
        assert!(s.iter().all(|x| x.at_ms == 1000 && x.resolution_secs == 1));
        // Next: the requests since; a quiet group publishes 0; a counter that went back
        // (the group made again) counts from 0; no target at all: no per-target datapoint.
        let s = m.samples(&counts(&[(TG, 160, 2, 4), (TG2, 5, 0, 0)]), &owners, 2000);
        assert_eq!(
            value(&s, "RequestCount", &[("LoadBalancer", lb), ("TargetGroup", tg)]),
            Some(40.0)
        );
        assert_eq!(value(&s, "RequestCountPerTarget", &[("TargetGroup", tg)]), Some(20.0));
        assert_eq!(value(&s, "RequestCountPerTarget", &[("TargetGroup", tg2)]), None);
        assert_eq!(value(&s, "RequestCount", &[("LoadBalancer", lb)]), Some(45.0));
        let s = m.samples(&counts(&[(TG, 160, 2, 4)]), &owners, 3000);
        assert_eq!(value(&s, "RequestCountPerTarget", &[("TargetGroup", tg)]), Some(0.0));
    }
}
