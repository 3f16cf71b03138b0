//! The narrow interfaces between Application Auto Scaling and CloudWatch (issue #15): what the
//! scaling controller reads metrics through ([`MetricSource`]) and how it keeps the alarms
//! target tracking owns ([`AlarmSink`]). CloudWatch's metric store implements both; tests use
//! [`FakeMetrics`].
//!
//! Contract:
//! * [`MetricSource::statistic`] aggregates every datapoint of one metric (exactly these
//!   dimensions, as CloudWatch matches them: same names and values, no more, no fewer) whose
//!   timestamp `t` is in `start_ms <= t < end_ms` (epoch milliseconds), with `stat`; `Ok(None)`
//!   when there is no datapoint in the window (CloudWatch's "missing data"), never `Some(0.0)`
//!   for that. The controller asks for one window per evaluation period, per policy.
//! * A source is per server; `region` is the AWS region the metric was published in (metrics
//!   are regional). Errors are transient from the controller's point of view: it logs them
//!   and tries again on the next period, so a source should not retry internally.
//! * [`AlarmSink`] is idempotent: `put_alarm` replaces an alarm of the same name wholesale,
//!   `delete_alarms` ignores names that do not exist.

#[cfg(test)]
use std::collections::BTreeMap;
#[cfg(test)]
use std::sync::Mutex;

/// A CloudWatch statistic (`Statistic` in CloudWatch's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Statistic {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
}

impl Statistic {
    /// CloudWatch's spelling (`"Average"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Average => "Average",
            Statistic::Sum => "Sum",
            Statistic::Minimum => "Minimum",
            Statistic::Maximum => "Maximum",
            Statistic::SampleCount => "SampleCount",
        }
    }

    /// From CloudWatch's spelling (and Application Auto Scaling's `MetricStatistic`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Average" => Statistic::Average,
            "Sum" => Statistic::Sum,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            "SampleCount" => Statistic::SampleCount,
            _ => return None,
        })
    }

    /// Aggregates `values` (none: `None`).
    #[cfg(test)]
    pub fn aggregate(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(match self {
            Statistic::Average => values.iter().sum::<f64>() / n,
            Statistic::Sum => values.iter().sum(),
            Statistic::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::SampleCount => n,
        })
    }
}

/// Why a metric could not be read (or an alarm written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct MetricError(pub String);

/// Where the scaling controller reads metrics from (see the module contract).
#[async_trait::async_trait]
pub(crate) trait MetricSource: Send + Sync {
    /// `stat` over the datapoints of `namespace`/`metric` with exactly `dimensions` in
    /// `[start_ms, end_ms)`; `None` when there are none.
    #[allow(clippy::too_many_arguments)]
    async fn statistic(
        &self,
        region: &str,
        namespace: &str,
        metric: &str,
        dimensions: &[(String, String)],
        stat: Statistic,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<f64>, MetricError>;
}

/// How an alarm compares its statistic with its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Comparison {
    GreaterThanThreshold,
    LessThanThreshold,
}

impl Comparison {
    /// CloudWatch's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::GreaterThanThreshold => "GreaterThanThreshold",
            Comparison::LessThanThreshold => "LessThanThreshold",
        }
    }
}

/// A metric alarm as target tracking creates it (`TargetTracking-<resource>-AlarmHigh-<uuid>`
/// and `...-AlarmLow-<uuid>`), with the policy's ARN as its only alarm action.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AlarmSpec {
    pub name: String,
    pub description: String,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: Statistic,
    pub period_secs: u32,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
    pub comparison: Comparison,
    /// The scaling policy's ARN.
    pub alarm_actions: Vec<String>,
}

/// Where target tracking keeps the alarms it owns (CloudWatch's alarm records).
#[async_trait::async_trait]
pub(crate) trait AlarmSink: Send + Sync {
    /// Creates or replaces `alarm` in `region`.
    async fn put_alarm(&self, region: &str, alarm: &AlarmSpec) -> Result<(), MetricError>;
    /// Deletes these alarms of `region` (missing names are ignored).
    async fn delete_alarms(&self, region: &str, names: &[String]) -> Result<(), MetricError>;
    /// The metric alarms of `region` whose `AlarmActions` name `action` (a step scaling
    /// policy's ARN), with their state: what step scaling acts on. The default answers that
    /// the sink cannot tell, which the controller logs (step scaling then never fires).
    async fn alarms_with_action(
        &self,
        region: &str,
        action: &str,
    ) -> Result<Vec<AlarmView>, MetricError> {
        let _ = (region, action);
        Err(MetricError("this alarm store cannot list alarms by action".into()))
    }
}

/// A metric alarm as step scaling reads it: its metric (to read the breach) and its state.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AlarmView {
    pub name: String,
    pub arn: String,
    /// `StateValue` is `ALARM`.
    pub in_alarm: bool,
    pub namespace: String,
    pub metric: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: Statistic,
    pub period_secs: u32,
    pub threshold: f64,
}

#[cfg(test)]
pub(crate) use fake::FakeMetrics;

#[cfg(test)]
mod fake {
    use super::*;

    /// (region, namespace, metric, sorted dimensions).
    type SeriesKey = (String, String, String, Vec<(String, String)>);

    /// An in-memory [`MetricSource`] and [`AlarmSink`] for tests: datapoints put with
    /// [`FakeMetrics::put`], alarms kept by name.
    #[derive(Default)]
    pub(crate) struct FakeMetrics {
        /// (region, namespace, metric, sorted dimensions) -> (timestamp ms, value).
        points: Mutex<BTreeMap<SeriesKey, Vec<(i64, f64)>>>,
        /// (region, name) -> alarm.
        pub alarms: Mutex<BTreeMap<(String, String), AlarmSpec>>,
        /// Names of the alarms in ALARM (any region).
        pub firing: Mutex<std::collections::BTreeSet<String>>,
    }

    impl FakeMetrics {
        /// Records one datapoint.
        pub fn put(
            &self,
            region: &str,
            namespace: &str,
            metric: &str,
            dimensions: &[(&str, &str)],
            at_ms: i64,
            value: f64,
        ) {
            let mut dims: Vec<(String, String)> =
                dimensions.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            dims.sort();
            let key = (region.to_string(), namespace.to_string(), metric.to_string(), dims);
            self.points
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(key)
                .or_default()
                .push((at_ms, value));
        }

        /// The names of the alarms of `region`, sorted.
        pub fn alarm_names(&self, region: &str) -> Vec<String> {
            self.alarms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .keys()
                .filter(|(r, _)| r == region)
                .map(|(_, n)| n.clone())
                .collect()
        }
    }

    #[async_trait::async_trait]
    impl MetricSource for FakeMetrics {
        async fn statistic(
            &self,
            region: &str,
            namespace: &str,
            metric: &str,
            dimensions: &[(String, String)],
            stat: Statistic,
            start_ms: i64,
            end_ms: i64,
        ) -> Result<Option<f64>, MetricError> {
            let mut dims = dimensions.to_vec();
            dims.sort();
            let key = (region.to_string(), namespace.to_string(), metric.to_string(), dims);
            let points = self.points.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let values: Vec<f64> = points
                .get(&key)
                .map(|v| {
                    v.iter()
                        .filter(|(t, _)| *t >= start_ms && *t < end_ms)
                        .map(|(_, x)| *x)
                        .collect()
                })
                .unwrap_or_default();
            Ok(stat.aggregate(&values))
        }
    }

    #[async_trait::async_trait]
    impl AlarmSink for FakeMetrics {
        async fn put_alarm(&self, region: &str, alarm: &AlarmSpec) -> Result<(), MetricError> {
            self.alarms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert((region.to_string(), alarm.name.clone()), alarm.clone());
            Ok(())
        }

        async fn alarms_with_action(
            &self,
            region: &str,
            action: &str,
        ) -> Result<Vec<AlarmView>, MetricError> {
            let alarms = self.alarms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let firing = self.firing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Ok(alarms
                .iter()
                .filter(|((r, _), a)| r == region && a.alarm_actions.iter().any(|x| x == action))
                .map(|((_, n), a)| AlarmView {
                    name: n.clone(),
                    arn: format!("arn:aws:cloudwatch:{region}:000000000000:alarm:{n}"),
                    in_alarm: firing.contains(n),
                    namespace: a.namespace.clone(),
                    metric: a.metric.clone(),
                    dimensions: a.dimensions.clone(),
                    statistic: a.statistic,
                    period_secs: a.period_secs,
                    threshold: a.threshold,
                })
                .collect())
        }

        async fn delete_alarms(&self, region: &str, names: &[String]) -> Result<(), MetricError> {
            let mut alarms = self.alarms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for n in names {
                alarms.remove(&(region.to_string(), n.clone()));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_fake_aggregates_the_window_and_matches_dimensions_exactly() {
        let m = FakeMetrics::default();
        let dims = [("ClusterName", "c"), ("ServiceName", "s")];
        m.put("us-east-1", "AWS/ECS", "CPUUtilization", &dims, 1_000, 40.0);
        m.put("us-east-1", "AWS/ECS", "CPUUtilization", &dims, 2_000, 80.0);
        m.put("us-east-1", "AWS/ECS", "CPUUtilization", &dims, 3_000, 10.0);
        let d: Vec<(String, String)> =
            dims.iter().rev().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let avg = m
            .statistic(
                "us-east-1",
                "AWS/ECS",
                "CPUUtilization",
                &d,
                Statistic::Average,
                1_000,
                3_000,
            )
            .await
            .unwrap();
        assert_eq!(avg, Some(60.0), "[1000, 3000) holds 40 and 80, dimensions in any order");
        let none = m
            .statistic(
                "us-east-1",
                "AWS/ECS",
                "CPUUtilization",
                &d[..1],
                Statistic::Average,
                0,
                9_999,
            )
            .await
            .unwrap();
        assert_eq!(none, None, "a subset of the dimensions is another metric");
        let other_region = m
            .statistic("eu-west-1", "AWS/ECS", "CPUUtilization", &d, Statistic::Maximum, 0, 9_999)
            .await
            .unwrap();
        assert_eq!(other_region, None);
        assert_eq!(Statistic::Maximum.aggregate(&[1.0, 3.0, 2.0]), Some(3.0));
        assert_eq!(Statistic::SampleCount.aggregate(&[1.0, 3.0]), Some(2.0));
    }
}
