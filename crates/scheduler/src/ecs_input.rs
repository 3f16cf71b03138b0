//! ECS's wire members (`placementConstraints`, `placementStrategy`, a task definition's
//! `placementConstraints`, `capacityProviderStrategy`) turned into the scheduler's types.
//! Every error names the member it concerns (`placementStrategy[1].field`) and says what
//! would be accepted; the server answers them as `InvalidParameterException`.
//!
//! Rules (from the API reference): at most 5 strategies; `binpack` takes `cpu` or `memory`,
//! `spread` takes `instanceId`, `host` or `attribute:NAME`, `random` takes no field (one
//! given is ignored, as ECS does). At most 10 constraints counting the task definition's;
//! `distinctInstance` takes no expression, `memberOf` requires one of at most 2,000
//! characters in the cluster query language.

use berth_wire::ecs::{
    CapacityProviderStrategyItem, PlacementConstraint, PlacementConstraintType, PlacementStrategy,
    PlacementStrategyType, TaskDefinitionPlacementConstraint,
};

use crate::capacity::{self, ProviderShare, RawShare};
use crate::{
    BinpackField, Constraint, Expr, MAX_CONSTRAINTS, MAX_STRATEGIES, SpreadField, Strategy,
};

/// A member that is not acceptable, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The member, as a dotted path (`placementConstraints[0].expression`).
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// Parses a `memberOf` expression, pointing at the error within it.
pub fn expression(src: &str, field: &str) -> Result<Expr, FieldError> {
    Expr::parse(src).map_err(|e| err(field, format!("invalid expression \"{src}\": {e}")))
}

/// The request's `placementStrategy`.
pub fn strategies(items: &[PlacementStrategy]) -> Result<Vec<Strategy>, FieldError> {
    if items.len() > MAX_STRATEGIES {
        return Err(err(
            "placementStrategy",
            format!(
                "at most {MAX_STRATEGIES} placement strategies are allowed; got {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let field = s.field.as_deref().map(str::trim).filter(|f| !f.is_empty());
            let at = |m: &str| format!("placementStrategy[{i}].{m}");
            match s.r#type {
                None => Err(err(at("type"), "type is required: one of random, spread, binpack")),
                Some(PlacementStrategyType::Random) => Ok(Strategy::Random),
                Some(PlacementStrategyType::Binpack) => match field.map(str::to_ascii_lowercase) {
                    Some(f) if f == "cpu" => Ok(Strategy::Binpack(BinpackField::Cpu)),
                    Some(f) if f == "memory" => Ok(Strategy::Binpack(BinpackField::Memory)),
                    Some(_) => Err(err(
                        at("field"),
                        format!(
                            "binpack field must be cpu or memory; got '{}'",
                            field.unwrap_or_default()
                        ),
                    )),
                    None => Err(err(at("field"), "binpack requires a field: cpu or memory")),
                },
                Some(PlacementStrategyType::Spread) => match field {
                    Some(f) if f.eq_ignore_ascii_case("instanceId") || f.eq_ignore_ascii_case("host") => {
                        Ok(Strategy::Spread(SpreadField::InstanceId))
                    }
                    Some(f) => match f.strip_prefix("attribute:").map(str::trim) {
                        Some(name) if !name.is_empty() => {
                            Ok(Strategy::Spread(SpreadField::Attribute(name.to_string())))
                        }
                        _ => Err(err(
                            at("field"),
                            format!(
                                "spread field must be instanceId, host or attribute:NAME (for example attribute:ecs.availability-zone); got '{f}'"
                            ),
                        )),
                    },
                    None => Err(err(
                        at("field"),
                        "spread requires a field: instanceId, host or attribute:NAME",
                    )),
                },
            }
        })
        .collect()
}

/// The request's `placementConstraints` followed by the task definition's (`td`), at most 10
/// in all.
pub fn constraints(
    request: &[PlacementConstraint],
    td: &[TaskDefinitionPlacementConstraint],
) -> Result<Vec<Constraint>, FieldError> {
    if request.len() + td.len() > MAX_CONSTRAINTS {
        return Err(err(
            "placementConstraints",
            format!(
                "at most {MAX_CONSTRAINTS} placement constraints are allowed, the task definition's included; got {} here and {} in the task definition",
                request.len(),
                td.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(request.len() + td.len());
    for (i, c) in request.iter().enumerate() {
        let at = |m: &str| format!("placementConstraints[{i}].{m}");
        let expr = c.expression.as_deref().filter(|e| !e.trim().is_empty());
        out.push(match c.r#type {
            None => return Err(err(at("type"), "type is required: distinctInstance or memberOf")),
            Some(PlacementConstraintType::DistinctInstance) => {
                if expr.is_some() {
                    return Err(err(
                        at("expression"),
                        "an expression can't be specified for a distinctInstance constraint",
                    ));
                }
                Constraint::DistinctInstance
            }
            Some(PlacementConstraintType::MemberOf) => {
                let Some(src) = expr else {
                    return Err(err(at("expression"), "memberOf requires an expression"));
                };
                Constraint::MemberOf { expression: expression(src, &at("expression"))? }
            }
        });
    }
    out.extend(task_definition_constraints(td)?);
    Ok(out)
}

/// A task definition's `placementConstraints` (all `memberOf`), checked at registration and
/// applied at every placement.
pub fn task_definition_constraints(
    td: &[TaskDefinitionPlacementConstraint],
) -> Result<Vec<Constraint>, FieldError> {
    td.iter()
        .enumerate()
        .map(|(i, c)| {
            let field = format!("placementConstraints[{i}].expression");
            let src = c
                .expression
                .as_deref()
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| err(&field, "memberOf requires an expression"))?;
            Ok(Constraint::MemberOf { expression: expression(src, &field)? })
        })
        .collect()
}

/// A request's `capacityProviderStrategy`.
pub fn capacity_provider_strategy(
    items: &[CapacityProviderStrategyItem],
) -> Result<Vec<ProviderShare>, FieldError> {
    let raw: Vec<RawShare<'_>> = items
        .iter()
        .map(|i| RawShare {
            capacity_provider: i.capacity_provider.as_deref(),
            base: i.base.map(i64::from),
            weight: i.weight.map(i64::from),
        })
        .collect();
    capacity::validate(&raw, "capacityProviderStrategy").map_err(|e| {
        let full = e.to_string();
        match full.split_once(": ") {
            Some((field, message)) => err(field, message),
            None => err("capacityProviderStrategy", full),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strat(t: Option<PlacementStrategyType>, f: Option<&str>) -> PlacementStrategy {
        PlacementStrategy { r#type: t, field: f.map(str::to_string) }
    }

    #[test]
    fn strategies_parse_and_name_the_field() {
        use PlacementStrategyType::*;
        let ok = strategies(&[
            strat(Some(Spread), Some("attribute:ecs.availability-zone")),
            strat(Some(Spread), Some("host")),
            strat(Some(Binpack), Some("MEMORY")),
            strat(Some(Binpack), Some("cpu")),
            strat(Some(Random), Some("ignored")),
        ])
        .unwrap();
        assert_eq!(
            ok,
            vec![
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Spread(SpreadField::InstanceId),
                Strategy::Binpack(BinpackField::Memory),
                Strategy::Binpack(BinpackField::Cpu),
                Strategy::Random,
            ]
        );
        let e = |items: &[PlacementStrategy]| strategies(items).unwrap_err();
        assert_eq!(e(&[strat(Some(Binpack), Some("disk"))]).field, "placementStrategy[0].field");
        assert_eq!(
            e(&[strat(Some(Random), None), strat(Some(Binpack), None)]).field,
            "placementStrategy[1].field"
        );
        assert_eq!(
            e(&[strat(Some(Spread), Some("attribute:"))]).field,
            "placementStrategy[0].field"
        );
        assert_eq!(e(&[strat(Some(Spread), Some("az"))]).field, "placementStrategy[0].field");
        assert_eq!(e(&[strat(None, Some("cpu"))]).field, "placementStrategy[0].type");
        assert!(e(&vec![strat(Some(Random), None); 6]).message.contains("at most 5"));
    }

    #[test]
    fn constraints_parse_and_name_the_field() {
        use PlacementConstraintType::*;
        let c = |t, e: Option<&str>| PlacementConstraint {
            r#type: t,
            expression: e.map(str::to_string),
        };
        let td = |e: &str| TaskDefinitionPlacementConstraint {
            r#type: Some(berth_wire::ecs::TaskDefinitionPlacementConstraintType::MemberOf),
            expression: Some(e.into()),
        };
        let ok = constraints(
            &[c(Some(DistinctInstance), None), c(Some(MemberOf), Some("attribute:a == b"))],
            &[td("attribute:c exists")],
        )
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert_eq!(ok[0], Constraint::DistinctInstance);
        let e = |r: &[PlacementConstraint], t: &[TaskDefinitionPlacementConstraint]| {
            constraints(r, t).unwrap_err()
        };
        let bad = e(&[c(Some(MemberOf), Some("attribute:a =="))], &[]);
        assert_eq!(bad.field, "placementConstraints[0].expression");
        assert!(bad.message.contains("attribute:a =="), "{bad}");
        assert_eq!(e(&[c(Some(MemberOf), None)], &[]).field, "placementConstraints[0].expression");
        assert_eq!(
            e(&[c(Some(DistinctInstance), Some("x == y"))], &[]).field,
            "placementConstraints[0].expression"
        );
        assert_eq!(e(&[c(None, None)], &[]).field, "placementConstraints[0].type");
        let many = vec![c(Some(DistinctInstance), None); 6];
        let tds = vec![td("attribute:a exists"); 5];
        assert!(e(&many, &tds).message.contains("at most 10"));
        assert_eq!(e(&[], &[td("bogus")]).field, "placementConstraints[0].expression");
    }

    #[test]
    fn capacity_strategy_errors_keep_their_field() {
        let item = |n: &str, b, w| CapacityProviderStrategyItem {
            capacity_provider: Some(n.into()),
            base: Some(b),
            weight: Some(w),
        };
        let e = capacity_provider_strategy(&[item("a", 1, 1), item("b", 2, 1)]).unwrap_err();
        assert_eq!(e.field, "capacityProviderStrategy[1].base");
        assert!(capacity_provider_strategy(&[item("a", 2, 1), item("b", 0, 3)]).is_ok());
    }
}
