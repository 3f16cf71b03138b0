//! CloudWatch as Application Auto Scaling reads and writes it
//! ([`crate::appautoscaling::metrics`]): the metric store answers [`MetricSource`], and the
//! alarms target tracking and step scaling own are ordinary metric alarms ([`AlarmSink`]),
//! evaluated by the same loop and shown by DescribeAlarms.

use super::{CloudWatch, StoredAlarm, secs, store_error, wire};
use crate::appautoscaling::metrics::{
    AlarmSink, AlarmSpec, AlarmView, MetricError, MetricSource, Statistic,
};

fn err(e: impl std::fmt::Display) -> MetricError {
    MetricError(e.to_string())
}

#[async_trait::async_trait]
impl MetricSource for CloudWatch {
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
        CloudWatch::statistic(
            self,
            region,
            namespace,
            metric,
            dimensions,
            stat.as_str(),
            start_ms,
            end_ms,
        )
        .await
        .map_err(MetricError)
    }
}

/// Creates or replaces a scaling policy's alarm (its state kept across updates).
fn put_spec(
    store: &berth_metricstore::MetricStore,
    lock: &std::sync::Mutex<()>,
    account: &str,
    now: i64,
    region: &str,
    spec: &AlarmSpec,
) -> Result<(), berth_wire::AwsError> {
    {
        let _guard = lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let old: Option<StoredAlarm> = store
            .get_alarm(region, &spec.name)
            .map_err(store_error)?
            .and_then(|b| serde_json::from_str(&b).ok());
        let partition = berth_model::regions::lookup(region).map_or("aws", |r| r.partition);
        let (state, reason) = match &old {
            Some(o) => (o.alarm.state_value, o.alarm.state_reason.clone()),
            None => (
                Some(wire::StateValue::InsufficientData),
                Some("Unchecked: Initial alarm creation".into()),
            ),
        };
        let alarm = wire::MetricAlarm {
            alarm_name: Some(spec.name.clone()),
            alarm_arn: Some(format!(
                "arn:{partition}:cloudwatch:{region}:{account}:alarm:{}",
                spec.name
            )),
            alarm_description: Some(spec.description.clone()),
            alarm_configuration_updated_timestamp: Some(secs(now)),
            actions_enabled: Some(true),
            ok_actions: Some(Vec::new()),
            alarm_actions: Some(spec.alarm_actions.clone()),
            insufficient_data_actions: Some(Vec::new()),
            state_value: state,
            state_reason: reason,
            state_updated_timestamp: Some(secs(now)),
            metric_name: Some(spec.metric.clone()),
            namespace: Some(spec.namespace.clone()),
            statistic: wire::Statistic::from_str(spec.statistic.as_str()),
            dimensions: Some(super::wire_dims(&spec.dimensions)),
            period: Some(spec.period_secs as i32),
            evaluation_periods: Some(spec.evaluation_periods as i32),
            datapoints_to_alarm: Some(spec.datapoints_to_alarm as i32),
            threshold: Some(spec.threshold),
            comparison_operator: wire::ComparisonOperator::from_str(spec.comparison.as_str()),
            treat_missing_data: Some("missing".into()),
            state_transitioned_timestamp: Some(secs(now)),
            ..Default::default()
        };
        let tags = old.map(|o| o.tags).unwrap_or_default();
        let body = serde_json::to_string(&StoredAlarm { alarm, tags })
            .map_err(|e| berth_wire::common::internal(format!("alarm not encoded: {e}")))?;
        store.put_alarm(region, &spec.name, &body).map_err(store_error)
    }
}

#[async_trait::async_trait]
impl AlarmSink for CloudWatch {
    async fn put_alarm(&self, region: &str, alarm: &AlarmSpec) -> Result<(), MetricError> {
        let region = region.to_string();
        let alarm = alarm.clone();
        let (store, lock, account) =
            (self.store.clone(), self.alarm_lock.clone(), self.account.clone());
        let now = self.now_ms();
        tokio::task::spawn_blocking(move || put_spec(&store, &lock, &account, now, &region, &alarm))
            .await
            .map_err(err)?
            .map_err(|e| MetricError(e.message))
    }

    async fn delete_alarms(&self, region: &str, names: &[String]) -> Result<(), MetricError> {
        let store = self.store.clone();
        let region = region.to_string();
        let names = names.to_vec();
        tokio::task::spawn_blocking(move || {
            for n in &names {
                store.delete_alarm(&region, n)?;
            }
            Ok::<_, berth_metricstore::MetricStoreError>(())
        })
        .await
        .map_err(err)?
        .map_err(err)
    }

    async fn alarms_with_action(
        &self,
        region: &str,
        action: &str,
    ) -> Result<Vec<AlarmView>, MetricError> {
        let store = self.store.clone();
        let r = region.to_string();
        let rows = tokio::task::spawn_blocking(move || store.alarms(Some(&r)))
            .await
            .map_err(err)?
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter_map(|(_, _, b)| serde_json::from_str::<StoredAlarm>(&b).ok())
            .map(|s| s.alarm)
            .filter(|a| a.alarm_actions.iter().flatten().any(|x| x == action))
            .filter_map(|a| {
                Some(AlarmView {
                    name: a.alarm_name.clone()?,
                    arn: a.alarm_arn.clone().unwrap_or_default(),
                    in_alarm: a.state_value == Some(wire::StateValue::Alarm),
                    namespace: a.namespace.clone()?,
                    metric: a.metric_name.clone()?,
                    dimensions: super::dims_of(a.dimensions.as_deref().unwrap_or_default()),
                    statistic: Statistic::parse(a.statistic?.as_str())?,
                    period_secs: a.period? as u32,
                    threshold: a.threshold?,
                })
            })
            .collect())
    }
}
