//! Metric alarm evaluation, as a pure function of the alarm's rule, the last periods'
//! values and the current state (no clock, no store: the caller reads both).
//!
//! Contract ([`evaluate`]):
//! * `periods` are the alarm's last `EvaluationPeriods` complete periods, oldest first, each
//!   with the statistic's value or `None` (missing);
//! * missing data is treated per `TreatMissingData`: `breaching` / `notBreaching` count it as
//!   such; `missing` (the default) and `ignore` evaluate the present datapoints only, and when
//!   every period is missing `missing` goes to INSUFFICIENT_DATA while `ignore` keeps the state;
//! * ALARM when at least `DatapointsToAlarm` periods breach; otherwise OK, unless nothing is
//!   known (above);
//! * the answer is `None` when the state does not change, else the new state with its
//!   `StateReason` worded as CloudWatch words it ("Threshold Crossed: 1 out of the last 1
//!   datapoints [75.0 (02/12/26 06:30:00)] was greater than the threshold (50.0) (minimum 1
//!   datapoint for OK -> ALARM transition).") and its `StateReasonData` JSON.

use serde_json::json;

/// An alarm's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ok,
    Alarm,
    InsufficientData,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "OK" => State::Ok,
            "ALARM" => State::Alarm,
            "INSUFFICIENT_DATA" => State::InsufficientData,
            _ => return None,
        })
    }
}

/// How a value is compared with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    GreaterOrEqual,
    Greater,
    Less,
    LessOrEqual,
}

impl Comparison {
    /// From CloudWatch's `ComparisonOperator` (the anomaly-band operators are not thresholds).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterOrEqual,
            "GreaterThanThreshold" => Comparison::Greater,
            "LessThanThreshold" => Comparison::Less,
            "LessThanOrEqualToThreshold" => Comparison::LessOrEqual,
            _ => return None,
        })
    }

    fn breaches(self, v: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterOrEqual => v >= threshold,
            Comparison::Greater => v > threshold,
            Comparison::Less => v < threshold,
            Comparison::LessOrEqual => v <= threshold,
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            Comparison::GreaterOrEqual => "greater than or equal to",
            Comparison::Greater => "greater than",
            Comparison::Less => "less than",
            Comparison::LessOrEqual => "less than or equal to",
        }
    }
}

/// `TreatMissingData`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreatMissing {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl TreatMissing {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "missing" => TreatMissing::Missing,
            "ignore" => TreatMissing::Ignore,
            "breaching" => TreatMissing::Breaching,
            "notBreaching" => TreatMissing::NotBreaching,
            _ => return None,
        })
    }
}

/// What an alarm compares.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub comparison: Comparison,
    pub threshold: f64,
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub missing: TreatMissing,
    /// For the reason data.
    pub statistic: String,
    pub period_secs: i64,
}

/// A state change.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub state: State,
    pub reason: String,
    pub reason_data: String,
}

/// A number as CloudWatch prints it in reasons (Java's `Double.toString`: `50.0`, `0.25`).
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.1}") } else { format!("{v}") }
}

fn stamp(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[day]/[month]/[year repr:last_two] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].000+0000"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("{n} {one}") } else { format!("{n} {many}") }
}

/// Evaluates an alarm (see the module contract). `periods` are (period start ms, value),
/// oldest first; `now_ms` only dates the reason data.
pub fn evaluate(
    rule: &Rule,
    periods: &[(i64, Option<f64>)],
    current: State,
    now_ms: i64,
) -> Option<Transition> {
    let n = periods.len();
    let present: Vec<(i64, f64)> = periods.iter().filter_map(|(t, v)| v.map(|v| (*t, v))).collect();
    let breaching_points: Vec<(i64, f64)> = present
        .iter()
        .copied()
        .filter(|(_, v)| rule.comparison.breaches(*v, rule.threshold))
        .collect();
    let missing = n - present.len();
    let breaches =
        breaching_points.len() + if rule.missing == TreatMissing::Breaching { missing } else { 0 };
    let new = if breaches >= rule.datapoints_to_alarm.max(1) {
        State::Alarm
    } else if present.is_empty() && matches!(rule.missing, TreatMissing::Missing) {
        State::InsufficientData
    } else if present.is_empty() && rule.missing == TreatMissing::Ignore {
        return None;
    } else {
        State::Ok
    };
    if new == current {
        return None;
    }
    let newest_first = |pts: &[(i64, f64)]| {
        pts.iter().rev().map(|(t, v)| format!("{} ({})", number(*v), stamp(*t))).collect::<Vec<_>>()
    };
    let reason = match new {
        State::InsufficientData => {
            format!("Insufficient Data: {} unknown.", plural(n, "datapoint was", "datapoints were"))
        }
        State::Alarm => format!(
            "Threshold Crossed: {breaches} out of the last {n} datapoints [{}] {} {} the threshold ({}) (minimum {} for {} -> ALARM transition).",
            newest_first(&breaching_points).join(", "),
            if breaches == 1 { "was" } else { "were" },
            rule.comparison.phrase(),
            number(rule.threshold),
            plural(rule.datapoints_to_alarm.max(1), "datapoint", "datapoints"),
            current.as_str(),
        ),
        State::Ok => {
            let ok: Vec<(i64, f64)> = present
                .iter()
                .copied()
                .filter(|(_, v)| !rule.comparison.breaches(*v, rule.threshold))
                .collect();
            let k = ok.len() + if rule.missing == TreatMissing::NotBreaching { missing } else { 0 };
            format!(
                "Threshold Crossed: {k} out of the last {n} datapoints [{}] {} not {} the threshold ({}) (minimum {} for {} -> OK transition).",
                newest_first(&ok).join(", "),
                if k == 1 { "was" } else { "were" },
                rule.comparison.phrase(),
                number(rule.threshold),
                plural(n - rule.datapoints_to_alarm.max(1) + 1, "datapoint", "datapoints"),
                current.as_str(),
            )
        }
    };
    let data = json!({
        "version": "1.0",
        "queryDate": iso(now_ms),
        "startDate": periods.first().map(|(t, _)| iso(*t)),
        "statistic": rule.statistic,
        "period": rule.period_secs,
        "recentDatapoints": present.iter().map(|(_, v)| v).collect::<Vec<_>>(),
        "threshold": rule.threshold,
        "evaluatedDatapoints": periods.iter().rev().map(|(t, v)| match v {
            Some(v) => json!({"timestamp": iso(*t), "value": v}),
            None => json!({"timestamp": iso(*t)}),
        }).collect::<Vec<_>>(),
    });
    Some(Transition { state: new, reason, reason_data: data.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(n: usize, m: usize, missing: TreatMissing) -> Rule {
        Rule {
            comparison: Comparison::Greater,
            threshold: 50.0,
            evaluation_periods: n,
            datapoints_to_alarm: m,
            missing,
            statistic: "Average".into(),
            period_secs: 60,
        }
    }

    /// 2026-12-02 06:30:00 UTC and the minutes after it.
    const T0: i64 = 1_796_193_000_000;

    fn periods(values: &[Option<f64>]) -> Vec<(i64, Option<f64>)> {
        values.iter().enumerate().map(|(i, v)| (T0 + i as i64 * 60_000, *v)).collect()
    }

    #[test]
    fn the_table() {
        use State::{Alarm, InsufficientData, Ok};
        use TreatMissing::{Breaching, Ignore, NotBreaching};
        const MISSING: TreatMissing = TreatMissing::Missing;
        // (rule, values oldest first, current state, expected new state or None)
        type Case = (Rule, &'static [Option<f64>], State, Option<State>);
        let cases: &[Case] = &[
            (rule(1, 1, MISSING), &[Some(75.0)], Ok, Some(Alarm)),
            (rule(1, 1, MISSING), &[Some(50.0)], Alarm, Some(Ok)), // not greater than 50
            (rule(1, 1, MISSING), &[Some(10.0)], Ok, None),
            (rule(1, 1, MISSING), &[None], Ok, Some(InsufficientData)),
            (rule(1, 1, Ignore), &[None], Alarm, None),
            (rule(1, 1, Breaching), &[None], Ok, Some(Alarm)),
            (rule(1, 1, NotBreaching), &[None], Alarm, Some(Ok)),
            // M out of N
            (rule(3, 2, MISSING), &[Some(60.0), Some(10.0), Some(70.0)], Ok, Some(Alarm)),
            (rule(3, 2, MISSING), &[Some(60.0), Some(10.0), Some(20.0)], Alarm, Some(Ok)),
            (rule(3, 3, MISSING), &[Some(60.0), Some(70.0), None], InsufficientData, Some(Ok)),
            (rule(3, 2, Breaching), &[Some(60.0), None, Some(10.0)], Ok, Some(Alarm)),
            (rule(3, 2, NotBreaching), &[Some(60.0), None, Some(10.0)], Alarm, Some(Ok)),
            (rule(3, 1, MISSING), &[None, None, None], Alarm, Some(InsufficientData)),
            (rule(3, 1, Ignore), &[None, None, Some(1.0)], Alarm, Some(Ok)),
        ];
        for (i, (r, values, current, want)) in cases.iter().enumerate() {
            let got = evaluate(r, &periods(values), *current, T0).map(|t| t.state);
            assert_eq!(got, *want, "case {i}: {values:?} from {current:?}");
        }
    }

    #[test]
    fn comparisons() {
        for (op, v, breaches) in [
            (Comparison::GreaterOrEqual, 50.0, true),
            (Comparison::Greater, 50.0, false),
            (Comparison::Less, 49.0, true),
            (Comparison::LessOrEqual, 51.0, false),
        ] {
            assert_eq!(op.breaches(v, 50.0), breaches, "{op:?} {v}");
        }
    }

    #[test]
    fn reasons_are_worded_as_cloudwatch_words_them() {
        let t =
            evaluate(&rule(1, 1, TreatMissing::Missing), &periods(&[Some(75.0)]), State::Ok, T0)
                .unwrap();
        assert_eq!(
            t.reason,
            "Threshold Crossed: 1 out of the last 1 datapoints [75.0 (02/12/26 06:30:00)] was greater than the threshold (50.0) (minimum 1 datapoint for OK -> ALARM transition)."
        );
        let data: serde_json::Value = serde_json::from_str(&t.reason_data).unwrap();
        assert_eq!(data["recentDatapoints"][0], 75.0);
        assert_eq!(data["threshold"], 50.0);
        let t = evaluate(
            &rule(2, 2, TreatMissing::Missing),
            &periods(&[Some(60.0), Some(70.5)]),
            State::InsufficientData,
            T0,
        )
        .unwrap();
        assert_eq!(
            t.reason,
            "Threshold Crossed: 2 out of the last 2 datapoints [70.5 (02/12/26 06:31:00), 60.0 (02/12/26 06:30:00)] were greater than the threshold (50.0) (minimum 2 datapoints for INSUFFICIENT_DATA -> ALARM transition)."
        );
        let t =
            evaluate(&rule(1, 1, TreatMissing::Missing), &periods(&[None]), State::Ok, T0).unwrap();
        assert_eq!(t.reason, "Insufficient Data: 1 datapoint was unknown.");
        let t =
            evaluate(&rule(1, 1, TreatMissing::Missing), &periods(&[Some(3.0)]), State::Alarm, T0)
                .unwrap();
        assert_eq!(
            t.reason,
            "Threshold Crossed: 1 out of the last 1 datapoints [3.0 (02/12/26 06:30:00)] was not greater than the threshold (50.0) (minimum 1 datapoint for ALARM -> OK transition)."
        );
    }
}
