//! How a count of tasks splits across a capacity provider strategy (`base`, `weight`), as the
//! ECS developer guide documents it:
//!
//! * The one provider with a `base` gets the first `min(base, count)` tasks ("the minimum
//!   number of tasks to run on the specified capacity provider"; only one provider in a
//!   strategy may have one).
//! * The rest go to the providers with a weight above zero in proportion to their weights
//!   ("for every one task that's run using capacityProviderA, there are four tasks that use
//!   capacityProviderB"). Tasks are handed out one at a time to the provider furthest below
//!   its share (`weight x k / total - assigned` after `k` tasks, ties to the earlier
//!   provider), so every prefix of the split is as close to the weights as whole tasks allow
//!   and the exact ratio is met at every multiple of the total weight.
//! * A strategy of one provider gives it every task, whatever its weight. With several
//!   providers at least one weight must be above zero, and zero-weight providers get only
//!   their base.
//!
//! The seed's example: Fargate base 2 weight 1, Spot weight 3, 10 tasks: Fargate 2 + 2 = 4,
//! Spot 6.
//!
//! A service keeps that split as its task count changes: [`launches`] sends each new task to
//! the provider furthest below its share of the new total, and [`scale_in_from`] stops from
//! the provider furthest above its share of what remains, so a service always runs the split
//! of its current count (repairing a drifted one first).

use serde::{Deserialize, Serialize};

/// Most capacity providers in one strategy (ECS's limit).
pub const MAX_PROVIDERS: usize = 20;
/// Largest `base` (the model's bound).
pub const MAX_BASE: u32 = 100_000;
/// Largest `weight` (the model's bound).
pub const MAX_WEIGHT: u32 = 1_000;

/// One entry of a capacity provider strategy, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderShare {
    pub capacity_provider: String,
    pub base: u32,
    pub weight: u32,
}

/// Why a strategy is invalid; the server maps every variant to `InvalidParameterException`
/// with the field it names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    #[error("{field}: a capacity provider strategy needs at least one capacity provider")]
    Empty { field: String },
    #[error(
        "{field}: a capacity provider strategy can contain at most {MAX_PROVIDERS} capacity providers; got {count}"
    )]
    TooMany { field: String, count: usize },
    #[error("{field}: capacityProvider is required")]
    MissingName { field: String },
    #[error("{field}: capacity provider '{name}' appears more than once in the strategy")]
    Duplicate { field: String, name: String },
    #[error("{field}: base must be between 0 and {MAX_BASE}; got {value}")]
    Base { field: String, value: i64 },
    #[error("{field}: weight must be between 0 and {MAX_WEIGHT}; got {value}")]
    Weight { field: String, value: i64 },
    #[error(
        "{field}: only one capacity provider in a strategy can have a base; '{first}' already has one"
    )]
    TwoBases { field: String, first: String },
    #[error(
        "{field}: at least one capacity provider in a strategy with several must have a weight greater than zero"
    )]
    AllWeightsZero { field: String },
}

/// An unvalidated entry, as the wire carries it.
#[derive(Clone, Debug, Default)]
pub struct RawShare<'a> {
    pub capacity_provider: Option<&'a str>,
    pub base: Option<i64>,
    pub weight: Option<i64>,
}

/// Checks a strategy (`field` names it in errors, e.g. `capacityProviderStrategy`).
pub fn validate(items: &[RawShare<'_>], field: &str) -> Result<Vec<ProviderShare>, StrategyError> {
    if items.is_empty() {
        return Err(StrategyError::Empty { field: field.into() });
    }
    if items.len() > MAX_PROVIDERS {
        return Err(StrategyError::TooMany { field: field.into(), count: items.len() });
    }
    let mut out: Vec<ProviderShare> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |m: &str| format!("{field}[{i}].{m}");
        let name = item
            .capacity_provider
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| StrategyError::MissingName { field: at("capacityProvider") })?;
        if out.iter().any(|s| s.capacity_provider == name) {
            return Err(StrategyError::Duplicate {
                field: at("capacityProvider"),
                name: name.into(),
            });
        }
        let base = item.base.unwrap_or(0);
        if !(0..=i64::from(MAX_BASE)).contains(&base) {
            return Err(StrategyError::Base { field: at("base"), value: base });
        }
        let weight = item.weight.unwrap_or(0);
        if !(0..=i64::from(MAX_WEIGHT)).contains(&weight) {
            return Err(StrategyError::Weight { field: at("weight"), value: weight });
        }
        if base > 0
            && let Some(first) = out.iter().find(|s| s.base > 0)
        {
            return Err(StrategyError::TwoBases {
                field: at("base"),
                first: first.capacity_provider.clone(),
            });
        }
        out.push(ProviderShare {
            capacity_provider: name.into(),
            base: base as u32,
            weight: weight as u32,
        });
    }
    if out.len() > 1 && out.iter().all(|s| s.weight == 0) {
        return Err(StrategyError::AllWeightsZero { field: field.into() });
    }
    Ok(out)
}

/// How many of `count` tasks each provider of a validated strategy gets, in strategy order.
/// The counts always sum to `count`.
pub fn split(shares: &[ProviderShare], count: u32) -> Vec<u32> {
    let mut out = vec![0u32; shares.len()];
    if shares.is_empty() {
        return out;
    }
    if shares.len() == 1 {
        out[0] = count;
        return out;
    }
    let mut left = count;
    if let Some(b) = shares.iter().position(|s| s.base > 0) {
        let n = shares[b].base.min(left);
        out[b] = n;
        left -= n;
    }
    let total: i64 = shares.iter().map(|s| i64::from(s.weight)).sum();
    if total == 0 {
        // Only reachable with an unvalidated strategy: keep the sum right.
        out[0] += left;
        return out;
    }
    let mut given = vec![0i64; shares.len()];
    for k in 1..=i64::from(left) {
        // The provider furthest below weight x k / total (scaled by total to stay integral).
        let j = (0..shares.len())
            .filter(|&j| shares[j].weight > 0)
            .max_by_key(|&j| (i64::from(shares[j].weight) * k - given[j] * total, -(j as i64)))
            .expect("a positive weight exists");
        given[j] += 1;
        out[j] += 1;
    }
    out
}

/// The container instance attribute that puts an instance in a capacity provider: an
/// instance whose `ecs.capacity-provider` is `NAME` is capacity of the provider `NAME` (set
/// by `berth agent --capacity-provider NAME`, or with PutAttributes).
pub const PROVIDER_ATTRIBUTE: &str = "ecs.capacity-provider";

/// The capacity providers every account has, which run tasks on AWS Fargate.
pub const FARGATE_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// Whether `name` is one of [`FARGATE_PROVIDERS`].
pub fn is_fargate(name: &str) -> bool {
    FARGATE_PROVIDERS.contains(&name)
}

/// How many tasks of a request go to one provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderPart {
    pub capacity_provider: String,
    pub count: u32,
}

/// The providers of a validated strategy that get tasks, with their counts, in strategy
/// order (see [`split`]); providers that get none are left out.
pub fn parts(shares: &[ProviderShare], count: u32) -> Vec<ProviderPart> {
    shares
        .iter()
        .zip(split(shares, count))
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| ProviderPart { capacity_provider: s.capacity_provider.clone(), count: n })
        .collect()
}

/// Which providers the next `n` launches of a service go to, given how many of its tasks each
/// provider of a validated strategy runs now (`current`, in strategy order): one launch at a
/// time, to the provider furthest below its [`split`] of the running total after that launch
/// (ties to the earlier provider). So `base` is filled first, then the weights are followed,
/// and a split that drifted (tasks stopped on one provider) is repaired before the rest.
/// Returns the launches per provider, in strategy order; they sum to `n`.
pub fn launches(shares: &[ProviderShare], current: &[u32], n: u32) -> Vec<u32> {
    let mut have: Vec<u32> =
        (0..shares.len()).map(|i| current.get(i).copied().unwrap_or(0)).collect();
    let mut out = vec![0u32; shares.len()];
    if shares.is_empty() {
        return out;
    }
    let mut total: u32 = have.iter().sum();
    for _ in 0..n {
        total += 1;
        let target = split(shares, total);
        let j = (0..shares.len())
            .max_by_key(|&j| (i64::from(target[j]) - i64::from(have[j]), -(j as i64)))
            .expect("a strategy has a provider");
        have[j] += 1;
        out[j] += 1;
    }
    out
}

/// Which provider a service's scale-in stops a task from: of the providers of a validated
/// strategy with a task that may be stopped (`stoppable`), the one furthest above its
/// [`split`] of the total left after the stop (ties to the later provider, which the split
/// fills last). `current` counts each provider's tasks, in strategy order. `None` when no
/// provider has a stoppable task.
pub fn scale_in_from(
    shares: &[ProviderShare],
    current: &[u32],
    stoppable: &[bool],
) -> Option<usize> {
    let total: u32 = current.iter().take(shares.len()).sum();
    let target = split(shares, total.saturating_sub(1));
    (0..shares.len()).filter(|&j| stoppable.get(j).copied().unwrap_or(false)).max_by_key(|&j| {
        (i64::from(current.get(j).copied().unwrap_or(0)) - i64::from(target[j]), j)
    })
}

/// The `memberOf` constraint that keeps a provider's share on the instances it owns.
pub fn provider_constraint(name: &str) -> Result<crate::Constraint, crate::QueryError> {
    // Provider names are letters, digits, `-` and `_`: a bare word in the query language.
    let expression = crate::Expr::parse(&format!("attribute:{PROVIDER_ATTRIBUTE} == {name}"))?;
    Ok(crate::Constraint::MemberOf { expression })
}

/// Why a strategy cannot be used on a cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterStrategyError {
    /// ECS's wording.
    #[error(
        "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ({name})"
    )]
    NotAssociated { name: String },
    #[error(
        "The specified capacity provider strategy cannot contain a mix of capacity providers using Auto Scaling groups and Fargate providers. Specify one or the other and try again."
    )]
    Mixed,
}

/// Checks a validated strategy against the providers associated with a cluster: every
/// provider must be associated, and Fargate and Auto Scaling group providers don't mix.
pub fn check_on_cluster(
    shares: &[ProviderShare],
    associated: &[String],
) -> Result<(), ClusterStrategyError> {
    for s in shares {
        if !associated.iter().any(|a| a == &s.capacity_provider) {
            return Err(ClusterStrategyError::NotAssociated { name: s.capacity_provider.clone() });
        }
    }
    check_mix(shares)
}

/// Fargate and Auto Scaling group providers can't be in one strategy.
pub fn check_mix(shares: &[ProviderShare]) -> Result<(), ClusterStrategyError> {
    let fargate = shares.iter().filter(|s| is_fargate(&s.capacity_provider)).count();
    if fargate > 0 && fargate < shares.len() {
        return Err(ClusterStrategyError::Mixed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn share(name: &str, base: u32, weight: u32) -> ProviderShare {
        ProviderShare { capacity_provider: name.into(), base, weight }
    }

    #[test]
    fn service_launches_follow_base_then_weights_from_the_current_counts() {
        let ab = vec![share("a", 2, 1), share("b", 0, 1)];
        // (name, strategy, current per provider, launches, want per provider)
        type Case = (&'static str, Vec<ProviderShare>, Vec<u32>, u32, Vec<u32>);
        let cases: &[Case] = &[
            ("6 from nothing: base 2 on a, then 1:1", ab.clone(), vec![0, 0], 6, vec![4, 2]),
            ("the base comes first", ab.clone(), vec![0, 0], 2, vec![2, 0]),
            ("one more after the base", ab.clone(), vec![2, 0], 1, vec![1, 0]),
            ("then b", ab.clone(), vec![3, 0], 1, vec![0, 1]),
            ("a replacement goes where one is missing", ab.clone(), vec![3, 2], 1, vec![1, 0]),
            ("a drifted split is repaired first", ab.clone(), vec![0, 5], 1, vec![1, 0]),
            ("repair, then the weights", ab.clone(), vec![0, 5], 4, vec![4, 0]),
            ("nothing to launch", ab.clone(), vec![1, 1], 0, vec![0, 0]),
            (
                "1:3 without a base",
                vec![share("a", 0, 1), share("b", 0, 3)],
                vec![0, 0],
                8,
                vec![2, 6],
            ),
            (
                "a zero weight provider gets only its base",
                vec![share("a", 1, 0), share("b", 0, 1)],
                vec![1, 3],
                2,
                vec![0, 2],
            ),
            ("one provider takes all", vec![share("a", 0, 0)], vec![3], 4, vec![4]),
            ("a missing count is zero", ab.clone(), vec![], 3, vec![3, 0]),
        ];
        for (name, shares, current, n, want) in cases {
            let got = launches(shares, current, *n);
            assert_eq!(&got, want, "{name}");
            assert_eq!(got.iter().sum::<u32>(), *n, "{name}");
        }
    }

    #[test]
    fn service_scale_in_stops_from_the_provider_most_above_its_share() {
        let ab = vec![share("a", 2, 1), share("b", 0, 1)];
        let both = [true, true];
        // (name, strategy, current per provider, stoppable per provider, want)
        type Case = (&'static str, Vec<ProviderShare>, Vec<u32>, Vec<bool>, Option<usize>);
        let cases: &[Case] = &[
            (
                "4+2 to 5: b (4+1: the tie at 5 went to a)",
                ab.clone(),
                vec![4, 2],
                both.to_vec(),
                Some(1),
            ),
            ("3+2 to 4: b (3+1)", ab.clone(), vec![3, 2], both.to_vec(), Some(1)),
            ("4+1 to 4: a (3+1)", ab.clone(), vec![4, 1], both.to_vec(), Some(0)),
            ("3+1 to 3: b (3+0)", ab.clone(), vec![3, 1], both.to_vec(), Some(1)),
            ("2+1 to 2: b, the base stays", ab.clone(), vec![2, 1], both.to_vec(), Some(1)),
            ("2+0 to 1: a", ab.clone(), vec![2, 0], both.to_vec(), Some(0)),
            ("a drifted split: b", ab.clone(), vec![0, 5], both.to_vec(), Some(1)),
            ("only b may stop", ab.clone(), vec![4, 2], vec![false, true], Some(1)),
            ("nothing may stop", ab.clone(), vec![4, 2], vec![false, false], None),
            (
                "even weights: b, which the split fills second",
                vec![share("a", 0, 1), share("b", 0, 1)],
                vec![2, 2],
                both.to_vec(),
                Some(1),
            ),
        ];
        for (name, shares, current, stoppable, want) in cases {
            assert_eq!(scale_in_from(shares, current, stoppable), *want, "{name}");
        }
        // Scaling 6 (4+2) in to 2 one task at a time keeps the split of every count.
        let mut have = vec![4u32, 2];
        for left in (2..6u32).rev() {
            let j = scale_in_from(&ab, &have, &both).expect("a provider");
            have[j] -= 1;
            assert_eq!(have, split(&ab, left), "at {left}");
        }
    }

    #[test]
    fn the_seed_example() {
        // "Capacity provider A (Fargate) - Base: 2, Weight: 1; B (Spot) - Base: 0, Weight: 3".
        let s = [share("FARGATE", 2, 1), share("FARGATE_SPOT", 0, 3)];
        assert_eq!(split(&s, 1), [1, 0], "the base comes first");
        assert_eq!(split(&s, 2), [2, 0]);
        assert_eq!(split(&s, 6), [3, 3], "2 base, then 1:3 of 4");
        assert_eq!(split(&s, 10), [4, 6], "2 base, then 1:3 of 8");
        assert_eq!(split(&s, 102), [27, 75]);
    }

    #[test]
    fn splits() {
        let cases: &[(&str, Vec<ProviderShare>, u32, Vec<u32>)] = &[
            ("one provider takes all", vec![share("a", 0, 0)], 7, vec![7]),
            ("even weights alternate", vec![share("a", 0, 1), share("b", 0, 1)], 5, vec![3, 2]),
            ("1:4", vec![share("a", 0, 1), share("b", 0, 4)], 10, vec![2, 8]),
            (
                "base 1 then 1:4 (ECS's guide)",
                vec![share("a", 1, 1), share("b", 0, 4)],
                6,
                vec![2, 4],
            ),
            (
                "zero weight gets only its base",
                vec![share("a", 3, 0), share("b", 0, 1)],
                5,
                vec![3, 2],
            ),
            ("zero weight gets nothing", vec![share("a", 0, 0), share("b", 0, 2)], 4, vec![0, 4]),
            ("base larger than count", vec![share("a", 0, 1), share("b", 50, 1)], 3, vec![0, 3]),
            ("zero tasks", vec![share("a", 2, 1), share("b", 0, 1)], 0, vec![0, 0]),
            (
                "three ways 1:2:3",
                vec![share("a", 0, 1), share("b", 0, 2), share("c", 0, 3)],
                12,
                vec![2, 4, 6],
            ),
        ];
        for (name, shares, count, want) in cases {
            let got = split(shares, *count);
            assert_eq!(&got, want, "{name}");
            assert_eq!(got.iter().sum::<u32>(), *count, "{name}");
        }
    }

    #[test]
    fn every_prefix_is_within_one_task_of_the_weights() {
        let s = [share("a", 0, 2), share("b", 0, 3), share("c", 0, 5)];
        for n in 0..200u32 {
            let got = split(&s, n);
            assert_eq!(got.iter().sum::<u32>(), n);
            for (g, sh) in got.iter().zip(&s) {
                let exact = f64::from(n) * f64::from(sh.weight) / 10.0;
                assert!((f64::from(*g) - exact).abs() < 1.0, "n={n} {got:?}");
            }
        }
    }

    #[test]
    fn validation_names_the_field() {
        let raw = |n: &'static str, b: i64, w: i64| RawShare {
            capacity_provider: Some(n),
            base: Some(b),
            weight: Some(w),
        };
        let f = "capacityProviderStrategy";
        let err = |items: &[RawShare<'_>]| validate(items, f).unwrap_err().to_string();
        assert!(err(&[]).contains("at least one"));
        assert!(err(&[raw("a", 1, 1), raw("b", 1, 1)]).starts_with(
            "capacityProviderStrategy[1].base: only one capacity provider in a strategy can have a base; 'a'"
        ));
        assert!(err(&[raw("a", 0, 0), raw("b", 0, 0)]).contains("weight greater than zero"));
        assert!(err(&[raw("a", 0, 1001)]).starts_with("capacityProviderStrategy[0].weight"));
        assert!(err(&[raw("a", -1, 1)]).starts_with("capacityProviderStrategy[0].base"));
        assert!(err(&[raw("a", 0, 1), raw("a", 0, 1)]).contains("more than once"));
        assert!(
            err(&[RawShare { capacity_provider: None, ..Default::default() }])
                .starts_with("capacityProviderStrategy[0].capacityProvider")
        );
        let many: Vec<RawShare<'_>> = (0..21).map(|_| raw("x", 0, 1)).collect();
        assert!(err(&many).contains("at most 20"));
        assert_eq!(
            validate(&[raw("a", 2, 1), raw("b", 0, 3)], f).unwrap(),
            vec![share("a", 2, 1), share("b", 0, 3)]
        );
        assert_eq!(validate(&[raw("a", 0, 0)], f).unwrap(), vec![share("a", 0, 0)]);
    }

    #[test]
    fn parts_leave_out_providers_without_tasks() {
        let s = [share("a", 2, 0), share("b", 0, 1), share("c", 0, 3)];
        let cases: &[(u32, &[(&str, u32)])] = &[
            (1, &[("a", 1)]),
            (2, &[("a", 2)]),
            (3, &[("a", 2), ("c", 1)]),
            (6, &[("a", 2), ("b", 1), ("c", 3)]),
            (0, &[]),
        ];
        for (count, want) in cases {
            let got: Vec<(String, u32)> =
                parts(&s, *count).into_iter().map(|p| (p.capacity_provider, p.count)).collect();
            let want: Vec<(String, u32)> = want.iter().map(|(n, c)| (n.to_string(), *c)).collect();
            assert_eq!(got, want, "count {count}");
        }
    }

    #[test]
    fn strategies_on_a_cluster() {
        let assoc: Vec<String> = ["a", "b", "FARGATE", "FARGATE_SPOT"].map(String::from).to_vec();
        let cases: &[(&str, Vec<ProviderShare>, Result<(), ClusterStrategyError>)] = &[
            ("associated", vec![share("a", 1, 1), share("b", 0, 1)], Ok(())),
            ("both fargate", vec![share("FARGATE", 1, 1), share("FARGATE_SPOT", 0, 3)], Ok(())),
            (
                "not associated",
                vec![share("a", 0, 1), share("x", 0, 1)],
                Err(ClusterStrategyError::NotAssociated { name: "x".into() }),
            ),
            (
                "mixed",
                vec![share("a", 0, 1), share("FARGATE", 0, 1)],
                Err(ClusterStrategyError::Mixed),
            ),
        ];
        for (name, shares, want) in cases {
            assert_eq!(&check_on_cluster(shares, &assoc), want, "{name}");
        }
        assert!(
            check_on_cluster(&[share("x", 0, 1)], &[])
                .unwrap_err()
                .to_string()
                .starts_with("The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster.")
        );
    }

    /// Each provider's share lands only on the instances that carry its attribute, whatever
    /// else has room.
    #[test]
    fn each_share_is_placed_on_its_providers_instances() {
        use crate::{
            ClusterState, InstanceSnapshot, PlacementRequest, Resources, TaskRequirements,
        };
        let big = Resources { cpu: 4096, memory_mib: 4096 };
        let inst = |arn: &str, provider: Option<&str>| {
            let i = InstanceSnapshot::new(arn, big);
            match provider {
                Some(p) => i.with_attribute(PROVIDER_ATTRIBUTE, Some(p)),
                None => i,
            }
        };
        // (instances with their provider, strategy, count, tasks per instance wanted,
        //  unplaced per provider wanted)
        type Case<'a> = (
            &'a str,
            Vec<(&'a str, Option<&'a str>)>,
            Vec<ProviderShare>,
            u32,
            Vec<(&'a str, u32)>,
            Vec<(&'a str, u32)>,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "base 1 on a, then 1:1",
                vec![("i-a", Some("a")), ("i-b", Some("b")), ("i-none", None)],
                vec![share("a", 1, 1), share("b", 0, 1)],
                5,
                vec![("i-a", 3), ("i-b", 2)],
                vec![],
            ),
            (
                "weights 1:3 across two instances each",
                vec![("a1", Some("a")), ("a2", Some("a")), ("b1", Some("b")), ("b2", Some("b"))],
                vec![share("a", 0, 1), share("b", 0, 3)],
                8,
                vec![("a1", 2), ("b1", 6)],
                vec![],
            ),
            (
                "a provider with no instance places nothing",
                vec![("i-a", Some("a")), ("i-none", None)],
                vec![share("a", 0, 1), share("b", 0, 1)],
                4,
                vec![("i-a", 2)],
                vec![("b", 2)],
            ),
        ];
        for (name, instances, shares, count, want_on, want_unplaced) in cases {
            let mut state = ClusterState::new(instances.iter().map(|(a, p)| inst(a, *p)).collect());
            let mut on: BTreeMap<String, u32> = BTreeMap::new();
            let mut unplaced: Vec<(&str, u32)> = Vec::new();
            for part in parts(&shares, count) {
                let req = PlacementRequest {
                    count: part.count,
                    requirements: TaskRequirements {
                        cpu: 10,
                        memory_mib: 10,
                        ..Default::default()
                    },
                    group: "g".into(),
                    constraints: vec![provider_constraint(&part.capacity_provider).unwrap()],
                    ..Default::default()
                };
                let plan = state.place(&req).unwrap();
                for p in &plan.placements {
                    *on.entry(p.instance_arn.clone()).or_default() += 1;
                }
                if plan.unplaced > 0 {
                    let n = shares
                        .iter()
                        .find(|s| s.capacity_provider == part.capacity_provider)
                        .unwrap();
                    unplaced.push((n.capacity_provider.as_str(), plan.unplaced));
                }
            }
            let want_on: BTreeMap<String, u32> =
                want_on.iter().map(|(a, n)| (a.to_string(), *n)).collect();
            assert_eq!(on, want_on, "{name}");
            let unplaced: Vec<(String, u32)> =
                unplaced.into_iter().map(|(a, n)| (a.to_string(), n)).collect();
            let want_unplaced: Vec<(String, u32)> =
                want_unplaced.iter().map(|(a, n)| (a.to_string(), *n)).collect();
            assert_eq!(unplaced, want_unplaced, "{name}");
        }
    }
}
