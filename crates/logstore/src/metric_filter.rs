//! Metric filters: what a log group's filters make of ingested events, pure (no IO, no clock).
//!
//! Contract:
//! * [`Compiled::new`] accepts a filter as PutMetricFilter may store it and refuses anything
//!   else with a message naming the member: the pattern parses ([`Pattern::parse`]); the metric
//!   value is a number or a field the pattern can extract (`$.selector` for JSON patterns,
//!   `$name` for a named field of a space-delimited one); there are at most
//!   [`MAX_DIMENSIONS`] dimensions, each valued by such a field; a default value and
//!   dimensions exclude each other (a default has no event to take dimension values from);
//! * [`Compiled::data`] turns a batch of stored events into datapoints: one per matching event
//!   whose value (and every dimension value) it can extract as a finite number (dimension values
//!   as text), at the event's timestamp; events that match but lack a numeric value publish
//!   nothing. With a default value, every minute (of event time) in which the batch has events
//!   but none matched publishes the default once, at the start of that minute, so a period of
//!   ingestion without matches reads as the default rather than as missing data.

use std::collections::{BTreeMap, BTreeSet};

use crate::pattern::{FieldRef, Pattern};

/// The most dimensions one metric transformation may have.
pub const MAX_DIMENSIONS: usize = 3;
/// The most metric filters a log group may have.
pub const MAX_FILTERS_PER_GROUP: usize = 100;

/// A metric transformation as stored (the API's `MetricTransformation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transformation {
    pub metric_name: String,
    pub metric_namespace: String,
    /// A number, or `$.selector` / `$name`.
    pub metric_value: String,
    pub default_value: Option<f64>,
    /// Dimension name -> `$.selector` / `$name`.
    pub dimensions: BTreeMap<String, String>,
    /// A CloudWatch unit name (`Count`, `Milliseconds`...).
    pub unit: Option<String>,
}

/// A stored metric filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFilter {
    pub name: String,
    pub pattern: String,
    pub transformation: Transformation,
    pub created_ms: i64,
}

/// One datapoint a filter publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    /// In the transformation's (sorted) dimension-name order.
    pub dimensions: Vec<(String, String)>,
    pub unit: Option<String>,
    pub timestamp_ms: i64,
    pub value: f64,
}

/// What a metric value is taken from.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Field(FieldRef),
}

/// A filter ready to apply.
#[derive(Debug, Clone)]
pub struct Compiled {
    pattern: Pattern,
    value: Value,
    dimensions: Vec<(String, FieldRef)>,
    t: Transformation,
}

const MINUTE_MS: i64 = 60_000;

impl Compiled {
    /// Checks and compiles a filter (see the module header); `Err` names the member.
    pub fn new(pattern: &str, t: &Transformation) -> Result<Compiled, String> {
        let pattern = Pattern::parse(pattern).map_err(|e| format!("filterPattern: {e}"))?;
        let src = t.metric_value.trim();
        let value = match src.parse::<f64>() {
            Ok(n) if n.is_finite() => Value::Number(n),
            _ => match FieldRef::parse(src) {
                Some(r) if r.fits(&pattern) => Value::Field(r),
                Some(_) => {
                    return Err(format!(
                        "metricTransformations.metricValue: '{src}' is not a field the filter pattern extracts ($.selector for a JSON pattern, $name for a named field of a space-delimited pattern)."
                    ));
                }
                None => {
                    return Err(format!(
                        "metricTransformations.metricValue: '{src}' must be a number or a field reference ($.selector or $name)."
                    ));
                }
            },
        };
        if t.dimensions.len() > MAX_DIMENSIONS {
            return Err(format!(
                "metricTransformations.dimensions: {} dimensions exceed the {MAX_DIMENSIONS} a metric filter may have.",
                t.dimensions.len()
            ));
        }
        if !t.dimensions.is_empty() && t.default_value.is_some() {
            return Err("metricTransformations.defaultValue: a metric filter with dimensions cannot have a default value.".into());
        }
        let mut dimensions = vec![];
        for (k, v) in &t.dimensions {
            match FieldRef::parse(v) {
                Some(r) if r.fits(&pattern) => dimensions.push((k.clone(), r)),
                _ => {
                    return Err(format!(
                        "metricTransformations.dimensions: the value of '{k}' ('{v}') must be a field the filter pattern extracts ($.selector for a JSON pattern, $name for a named field of a space-delimited pattern)."
                    ));
                }
            }
        }
        Ok(Compiled { pattern, value, dimensions, t: t.clone() })
    }

    /// The datapoints for a batch of `(timestamp_ms, message)` (see the module header),
    /// appended to `out`.
    pub fn data(&self, events: &[(i64, &str)], out: &mut Vec<Datum>) {
        let mut quiet: BTreeSet<i64> = BTreeSet::new();
        let mut busy: BTreeSet<i64> = BTreeSet::new();
        for (ts, message) in events {
            let minute = ts.div_euclid(MINUTE_MS) * MINUTE_MS;
            let Some(x) = self.pattern.extract(message) else {
                quiet.insert(minute);
                continue;
            };
            busy.insert(minute);
            let value = match &self.value {
                Value::Number(n) => Some(*n),
                Value::Field(r) => {
                    x.get(r).and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite())
                }
            };
            let Some(value) = value else { continue };
            let dimensions: Option<Vec<(String, String)>> = self
                .dimensions
                .iter()
                .map(|(k, r)| x.get(r).filter(|v| !v.is_empty()).map(|v| (k.clone(), v)))
                .collect();
            let Some(dimensions) = dimensions else { continue };
            out.push(self.datum(dimensions, *ts, value));
        }
        if let Some(default) = self.t.default_value {
            for minute in quiet.difference(&busy) {
                out.push(self.datum(vec![], *minute, default));
            }
        }
    }

    fn datum(&self, dimensions: Vec<(String, String)>, timestamp_ms: i64, value: f64) -> Datum {
        Datum {
            namespace: self.t.metric_namespace.clone(),
            name: self.t.metric_name.clone(),
            dimensions,
            unit: self.t.unit.clone(),
            timestamp_ms,
            value,
        }
    }
}

/// TestMetricFilter: the 1-based numbers of the messages `pattern` matches, with the values it
/// extracts from each (`$.selector` or `$name` -> text).
pub fn test(
    pattern: &Pattern,
    messages: &[String],
) -> Vec<(usize, String, BTreeMap<String, String>)> {
    messages
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let x = pattern.extract(m)?;
            Some((i + 1, m.clone(), pattern.shown_values(&x)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(value: &str, default: Option<f64>, dims: &[(&str, &str)]) -> Transformation {
        Transformation {
            metric_name: "Errors".into(),
            metric_namespace: "App".into(),
            metric_value: value.into(),
            default_value: default,
            dimensions: dims.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            unit: Some("Count".into()),
        }
    }

    #[test]
    fn filters_are_checked_naming_the_member() {
        let table: &[(&str, Transformation, &str)] = &[
            ("{ $.a = ", t("1", None, &[]), "filterPattern"),
            ("ERROR", t("$.latency", None, &[]), "metricValue: '$.latency' is not a field"),
            ("{ $.a = 1 }", t("$latency", None, &[]), "metricValue: '$latency' is not a field"),
            ("[a, b]", t("$c", None, &[]), "metricValue: '$c' is not a field"),
            ("[a, b]", t("lots", None, &[]), "must be a number or a field"),
            (
                "{ $.a = 1 }",
                t("1", None, &[("A", "$.a"), ("B", "$.b"), ("C", "$.c"), ("D", "$.d")]),
                "4 dimensions",
            ),
            ("{ $.a = 1 }", t("1", Some(0.0), &[("A", "$.a")]), "cannot have a default value"),
            ("{ $.a = 1 }", t("1", None, &[("A", "fixed")]), "the value of 'A'"),
            ("ERROR", t("1", None, &[("A", "$.a")]), "the value of 'A'"),
        ];
        for (pattern, tr, why) in table {
            let e = Compiled::new(pattern, tr).expect_err(pattern);
            assert!(e.contains(why), "{pattern}: {e} should say {why}");
        }
        for (pattern, tr) in [
            ("ERROR", t("1", Some(0.0), &[])),
            ("", t("2.5", None, &[])),
            ("{ $.a = 1 }", t("$.b.c[0]", None, &[("A", "$.a")])),
            ("[ip, ..., bytes]", t("$bytes", None, &[("Ip", "$ip")])),
        ] {
            Compiled::new(pattern, &tr).unwrap_or_else(|e| panic!("{pattern}: {e}"));
        }
    }

    #[test]
    fn matched_events_publish_their_values() {
        let c = Compiled::new("{ $.status = 500 }", &t("1", None, &[])).unwrap();
        let mut out = vec![];
        c.data(
            &[
                (60_000, r#"{"status":500}"#),
                (60_001, r#"{"status":200}"#),
                (120_000, r#"{"status":500}"#),
                (120_001, "not json"),
            ],
            &mut out,
        );
        let got: Vec<(i64, f64)> = out.iter().map(|d| (d.timestamp_ms, d.value)).collect();
        assert_eq!(got, [(60_000, 1.0), (120_000, 1.0)]);
        assert_eq!(out[0].namespace, "App");
        assert_eq!(out[0].name, "Errors");
        assert_eq!(out[0].unit.as_deref(), Some("Count"));
        assert!(out[0].dimensions.is_empty());

        // Values and dimensions from fields; an event without a numeric value publishes nothing.
        let c = Compiled::new(
            "{ $.latency = * }",
            &t("$.latency", None, &[("Path", "$.path"), ("Code", "$.code")]),
        )
        .unwrap();
        let mut out = vec![];
        c.data(
            &[
                (1, r#"{"latency":12.5,"path":"/a","code":200}"#),
                (2, r#"{"latency":"7","path":"/b","code":404}"#),
                (3, r#"{"latency":"slow","path":"/c","code":200}"#),
                (4, r#"{"latency":3,"code":200}"#),
            ],
            &mut out,
        );
        let got: Vec<(f64, Vec<(String, String)>)> =
            out.into_iter().map(|d| (d.value, d.dimensions)).collect();
        let dims =
            |c: &str, p: &str| vec![("Code".to_string(), c.to_string()), ("Path".into(), p.into())];
        assert_eq!(got, [(12.5, dims("200", "/a")), (7.0, dims("404", "/b"))]);

        // Space-delimited fields.
        let c = Compiled::new(
            "[ip, ..., status = 5*, bytes]",
            &t("$bytes", None, &[("Status", "$status")]),
        )
        .unwrap();
        let mut out = vec![];
        c.data(
            &[(5, "1.2.3.4 GET / 503 120"), (6, "1.2.3.4 GET / 200 80"), (7, "x 500 -")],
            &mut out,
        );
        let got: Vec<(f64, Vec<(String, String)>)> =
            out.into_iter().map(|d| (d.value, d.dimensions)).collect();
        assert_eq!(got, [(120.0, vec![("Status".to_string(), "503".to_string())])]);
    }

    #[test]
    fn the_default_fills_minutes_without_a_match() {
        let c = Compiled::new("ERROR", &t("1", Some(0.0), &[])).unwrap();
        let mut out = vec![];
        // Minute 1: a match; minute 2: two events, no match; minute 3: no events at all.
        c.data(&[(60_500, "ERROR a"), (61_000, "ok"), (120_100, "ok"), (179_999, "ok")], &mut out);
        let got: Vec<(i64, f64)> = out.iter().map(|d| (d.timestamp_ms, d.value)).collect();
        assert_eq!(got, [(60_500, 1.0), (120_000, 0.0)]);
        // No default: nothing for a batch without a match.
        let c = Compiled::new("ERROR", &t("1", None, &[])).unwrap();
        let mut out = vec![];
        c.data(&[(1, "ok")], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn test_metric_filter_numbers_matches_from_one() {
        let p = Pattern::parse("{ $.status = 500 }").unwrap();
        let msgs: Vec<String> =
            [r#"{"status":200}"#, r#"{"status":500,"x":1}"#, "junk"].map(String::from).to_vec();
        let got = test(&p, &msgs);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 2);
        assert_eq!(got[0].1, msgs[1]);
        assert_eq!(got[0].2.get("$.status").map(String::as_str), Some("500"));
    }
}
