//! Alarms (`wire::AlarmsApi`): PutMetricAlarm's checks, Describe/Delete/SetAlarmState and the alarm history; evaluation itself is [`super::eval`].

use super::*;

/// Checks a PutMetricAlarm request and builds the alarm it describes (state: new).
fn alarm_of(
    input: &wire::PutMetricAlarmInput,
    arn: String,
    now: i64,
) -> Result<wire::MetricAlarm, AwsError> {
    if input.metrics.as_ref().is_some_and(|m| !m.is_empty()) || input.threshold_metric_id.is_some()
    {
        return Err(invalid(
            "Berth does not evaluate alarms on metric math (Metrics, ThresholdMetricId) yet; alarm on one metric.",
        ));
    }
    if input.evaluation_criteria.is_some() {
        return Err(invalid("Berth does not evaluate PromQL alarms (EvaluationCriteria) yet."));
    }
    let name = input.metric_name.as_deref().ok_or_else(|| missing("MetricName"))?;
    let _ = name;
    let ns = input.namespace.as_deref().ok_or_else(|| missing("Namespace"))?;
    check_namespace(ns, "Namespace")?;
    check_dims(input.dimensions.as_deref().unwrap_or_default(), "Dimensions")?;
    match (&input.statistic, &input.extended_statistic) {
        (Some(_), Some(_)) => {
            return Err(combination(
                "The parameters Statistic and ExtendedStatistic are mutually exclusive.",
            ));
        }
        (None, None) => return Err(missing("Statistic or ExtendedStatistic")),
        (None, Some(e)) if parse_percentile(e).is_none() => {
            return Err(invalid(format!(
                "The value {e} for parameter ExtendedStatistic is invalid."
            )));
        }
        _ => {}
    }
    let period = input.period.ok_or_else(|| missing("Period"))?;
    if !(matches!(period, 10 | 20 | 30) || (period >= 60 && period % 60 == 0)) {
        return Err(invalid(format!(
            "The parameter Period must be 10, 20, 30 or a multiple of 60 (got {period})."
        )));
    }
    let n = input.evaluation_periods.ok_or_else(|| missing("EvaluationPeriods"))?;
    if i64::from(period) * i64::from(n) > 7 * 86_400 {
        return Err(invalid(
            "The product of EvaluationPeriods and Period must not exceed 7 days (604800 seconds).",
        ));
    }
    if let Some(m) = input.datapoints_to_alarm
        && m > n
    {
        return Err(invalid(format!(
            "DatapointsToAlarm ({m}) must be less than or equal to EvaluationPeriods ({n})."
        )));
    }
    let op = input.comparison_operator.ok_or_else(|| missing("ComparisonOperator"))?;
    if eval::Comparison::parse(op.as_str()).is_none() {
        return Err(invalid(format!(
            "Berth does not evaluate the ComparisonOperator {} (anomaly detection) yet.",
            op.as_str()
        )));
    }
    if input.threshold.is_none() {
        return Err(missing("Threshold"));
    }
    if let Some(t) = &input.treat_missing_data
        && eval::TreatMissing::parse(t).is_none()
    {
        return Err(invalid(format!(
            "The value {t} for parameter TreatMissingData is invalid: use missing, ignore, breaching or notBreaching."
        )));
    }
    if let Some(e) = &input.evaluate_low_sample_count_percentile
        && !matches!(e.as_str(), "evaluate" | "ignore")
    {
        return Err(invalid(format!(
            "The value {e} for parameter EvaluateLowSampleCountPercentile is invalid."
        )));
    }
    Ok(wire::MetricAlarm {
        alarm_name: input.alarm_name.clone(),
        alarm_arn: Some(arn),
        alarm_description: input.alarm_description.clone(),
        alarm_configuration_updated_timestamp: Some(secs(now)),
        actions_enabled: Some(input.actions_enabled.unwrap_or(true)),
        ok_actions: Some(input.ok_actions.clone().unwrap_or_default()),
        alarm_actions: Some(input.alarm_actions.clone().unwrap_or_default()),
        insufficient_data_actions: Some(
            input.insufficient_data_actions.clone().unwrap_or_default(),
        ),
        state_value: Some(wire::StateValue::InsufficientData),
        state_reason: Some("Unchecked: Initial alarm creation".into()),
        state_reason_data: None,
        state_updated_timestamp: Some(secs(now)),
        metric_name: input.metric_name.clone(),
        namespace: input.namespace.clone(),
        statistic: input.statistic,
        extended_statistic: input.extended_statistic.clone(),
        dimensions: Some(input.dimensions.clone().unwrap_or_default()),
        period: Some(period),
        unit: input.unit,
        evaluation_periods: Some(n),
        datapoints_to_alarm: input.datapoints_to_alarm,
        threshold: input.threshold,
        comparison_operator: Some(op),
        treat_missing_data: input.treat_missing_data.clone(),
        evaluate_low_sample_count_percentile: input.evaluate_low_sample_count_percentile.clone(),
        metrics: None,
        threshold_metric_id: None,
        evaluation_state: None,
        state_transitioned_timestamp: Some(secs(now)),
        evaluation_criteria: None,
        evaluation_interval: None,
    })
}

impl wire::AlarmsApi<RequestContext> for Region<'_> {
    async fn put_metric_alarm(
        &self,
        _ctx: &RequestContext,
        input: wire::PutMetricAlarmInput,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.alarm_name.clone().unwrap_or_default();
        let now = self.now_ms();
        let mut alarm = alarm_of(&input, self.alarm_arn(&name), now)?;
        let tags = input.tags.clone().unwrap_or_default();
        let region = self.region;
        self.cw
            .blocking(move |cw| {
                let _guard =
                    cw.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let old = cw.store.get_alarm(region, &name).map_err(store_error)?;
                let old: Option<StoredAlarm> = old.and_then(|b| serde_json::from_str(&b).ok());
                let summary = match &old {
                    // An update keeps the alarm's state, as CloudWatch does.
                    Some(o) => {
                        alarm.state_value = o.alarm.state_value;
                        alarm.state_reason.clone_from(&o.alarm.state_reason);
                        alarm.state_reason_data.clone_from(&o.alarm.state_reason_data);
                        alarm.state_updated_timestamp = o.alarm.state_updated_timestamp;
                        alarm.state_transitioned_timestamp = o.alarm.state_transitioned_timestamp;
                        format!("Alarm \"{name}\" updated")
                    }
                    None => format!("Alarm \"{name}\" created"),
                };
                let mut all_tags = old.map(|o| o.tags).unwrap_or_default();
                for t in tags {
                    all_tags.retain(|o| o.key != t.key);
                    all_tags.push(t);
                }
                cw.save(region, &StoredAlarm { alarm, tags: all_tags })?;
                cw.history_config(region, &name, now, &summary)?;
                // Evaluate the new configuration at the next tick.
                cw.evaluated
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&(region.to_string(), name.clone()));
                Ok(())
            })
            .await?;
        Ok(wire::Empty {})
    }

    async fn describe_alarms(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmsInput,
    ) -> Result<wire::DescribeAlarmsOutput, AwsError> {
        if input.alarm_names.is_some() && input.alarm_name_prefix.is_some() {
            return Err(combination(
                "The parameters AlarmNames and AlarmNamePrefix are mutually exclusive.",
            ));
        }
        if input.children_of_alarm_name.is_some() || input.parents_of_alarm_name.is_some() {
            return Ok(wire::DescribeAlarmsOutput {
                composite_alarms: Some(Vec::new()),
                metric_alarms: Some(Vec::new()),
                next_token: None,
            });
        }
        let wants_metric = input
            .alarm_types
            .as_ref()
            .is_none_or(|t| t.is_empty() || t.contains(&wire::AlarmType::MetricAlarm));
        let alarms: Vec<wire::MetricAlarm> = if wants_metric {
            self.alarms()
                .await?
                .into_iter()
                .map(|s| s.alarm)
                .filter(|a| {
                    let n = a.alarm_name.as_deref().unwrap_or_default();
                    input.alarm_names.as_ref().is_none_or(|names| names.iter().any(|x| x == n))
                        && input
                            .alarm_name_prefix
                            .as_ref()
                            .is_none_or(|p| n.starts_with(p.as_str()))
                        && input.state_value.is_none_or(|s| a.state_value == Some(s))
                        && input.action_prefix.as_ref().is_none_or(|p| {
                            a.alarm_actions
                                .iter()
                                .chain(&a.ok_actions)
                                .chain(&a.insufficient_data_actions)
                                .flatten()
                                .any(|x| x.starts_with(p.as_str()))
                        })
                })
                .collect()
        } else {
            Vec::new()
        };
        let (alarms, next) = page(alarms, input.max_records, 50, input.next_token.as_deref())?;
        Ok(wire::DescribeAlarmsOutput {
            composite_alarms: Some(Vec::new()),
            metric_alarms: Some(alarms),
            next_token: next,
        })
    }

    async fn describe_alarms_for_metric(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmsForMetricInput,
    ) -> Result<wire::DescribeAlarmsForMetricOutput, AwsError> {
        let dims = input.dimensions.as_deref().map(|d| {
            let mut d = dims_of(d);
            d.sort();
            d
        });
        let alarms = self
            .alarms()
            .await?
            .into_iter()
            .map(|s| s.alarm)
            .filter(|a| {
                a.namespace == input.namespace
                    && a.metric_name == input.metric_name
                    && input.statistic.is_none_or(|s| a.statistic == Some(s))
                    && input
                        .extended_statistic
                        .as_ref()
                        .is_none_or(|s| a.extended_statistic.as_ref() == Some(s))
                    && input.period.is_none_or(|p| a.period == Some(p))
                    && input.unit.is_none_or(|u| a.unit == Some(u))
                    && dims.as_ref().is_none_or(|d| {
                        let mut own = dims_of(a.dimensions.as_deref().unwrap_or_default());
                        own.sort();
                        own == *d
                    })
            })
            .collect();
        Ok(wire::DescribeAlarmsForMetricOutput { metric_alarms: Some(alarms) })
    }

    async fn delete_alarms(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteAlarmsInput,
    ) -> Result<wire::Empty, AwsError> {
        let names = input.alarm_names.unwrap_or_default();
        if names.len() > 100 {
            return Err(invalid("The collection AlarmNames must not have more than 100 members."));
        }
        let region = self.region;
        self.cw
            .blocking(move |cw| {
                let _guard =
                    cw.alarm_lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut unknown = Vec::new();
                for n in &names {
                    if cw.store.get_alarm(region, n).map_err(store_error)?.is_none() {
                        unknown.push(n.as_str());
                    }
                }
                if !unknown.is_empty() {
                    return Err(ErrorCode::ResourceNotFound.with(format!(
                        "The following alarms could not be found: [{}].",
                        unknown.join(", ")
                    )));
                }
                for n in &names {
                    cw.store.delete_alarm(region, n).map_err(store_error)?;
                }
                Ok(())
            })
            .await?;
        Ok(wire::Empty {})
    }

    async fn set_alarm_state(
        &self,
        _ctx: &RequestContext,
        input: wire::SetAlarmStateInput,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.alarm_name.clone().unwrap_or_default();
        let new = input
            .state_value
            .and_then(|s| eval::State::parse(s.as_str()))
            .ok_or_else(|| missing("StateValue"))?;
        let reason = input.state_reason.clone().unwrap_or_default();
        if let Some(d) = &input.state_reason_data
            && serde_json::from_str::<serde_json::Value>(d).is_err()
        {
            return Err(ErrorCode::InvalidFormatFault
                .with("The parameter StateReasonData is not valid JSON."));
        }
        let data = input.state_reason_data.clone();
        let region = self.region;
        let found = self
            .modify(name.clone(), move |cw, s, now| {
                let a = &mut s.alarm;
                let old = a
                    .state_value
                    .and_then(|v| eval::State::parse(v.as_str()))
                    .unwrap_or(eval::State::InsufficientData);
                let old_reason = a.state_reason.clone().unwrap_or_default();
                a.state_value = wire::StateValue::from_str(new.as_str());
                a.state_reason = Some(reason.clone());
                a.state_reason_data = data;
                a.state_updated_timestamp = Some(secs(now));
                if old != new {
                    a.state_transitioned_timestamp = Some(secs(now));
                    let name = a.alarm_name.clone().unwrap_or_default();
                    cw.history_state(region, &name, now, old, &old_reason, new, &reason)?;
                }
                Ok(())
            })
            .await?;
        found.ok_or_else(|| {
            ErrorCode::ResourceNotFound.with(format!("Alarm {name} does not exist."))
        })?;
        Ok(wire::Empty {})
    }

    async fn enable_alarm_actions(
        &self,
        _ctx: &RequestContext,
        input: wire::EnableAlarmActionsInput,
    ) -> Result<wire::Empty, AwsError> {
        for n in input.alarm_names.unwrap_or_default() {
            self.modify(n, |_, s, _| {
                s.alarm.actions_enabled = Some(true);
                Ok(())
            })
            .await?;
        }
        Ok(wire::Empty {})
    }

    async fn disable_alarm_actions(
        &self,
        _ctx: &RequestContext,
        input: wire::DisableAlarmActionsInput,
    ) -> Result<wire::Empty, AwsError> {
        for n in input.alarm_names.unwrap_or_default() {
            self.modify(n, |_, s, _| {
                s.alarm.actions_enabled = Some(false);
                Ok(())
            })
            .await?;
        }
        Ok(wire::Empty {})
    }

    async fn describe_alarm_history(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAlarmHistoryInput,
    ) -> Result<wire::DescribeAlarmHistoryOutput, AwsError> {
        let start = input.start_date.map_or(i64::MIN, ms);
        let end = input.end_date.map_or(i64::MAX, ms);
        let oldest_first = input.scan_by == Some(wire::ScanBy::TimestampAscending);
        let region = self.region;
        let alarm = input.alarm_name.clone();
        let items = self
            .cw
            .blocking(move |cw| {
                cw.store
                    .history(region, alarm.as_deref(), start, end, oldest_first)
                    .map_err(store_error)
            })
            .await?;
        let kind = input.history_item_type.map(|k| k.as_str());
        let items: Vec<wire::AlarmHistoryItem> = items
            .into_iter()
            .filter(|i| kind.is_none_or(|k| k == i.kind))
            .map(|i| {
                let body: serde_json::Value = serde_json::from_str(&i.body).unwrap_or_default();
                wire::AlarmHistoryItem {
                    alarm_name: Some(i.alarm),
                    alarm_contributor_id: None,
                    alarm_type: Some(wire::AlarmType::MetricAlarm),
                    timestamp: Some(secs(i.at_ms)),
                    history_item_type: wire::HistoryItemType::from_str(&i.kind),
                    history_summary: body["summary"].as_str().map(str::to_string),
                    history_data: body["data"].as_str().map(str::to_string),
                    alarm_contributor_attributes: None,
                }
            })
            .collect();
        let (items, next) = page(items, input.max_records, 100, input.next_token.as_deref())?;
        Ok(wire::DescribeAlarmHistoryOutput { alarm_history_items: Some(items), next_token: next })
    }
}

impl Region<'_> {
    /// The alarm an ARN names, in this region.
    pub(super) fn alarm_of_arn(&self, arn: &str) -> Result<String, AwsError> {
        let prefix = self.alarm_arn("");
        arn.strip_prefix(prefix.as_str()).filter(|n| !n.is_empty()).map(str::to_string).ok_or_else(|| {
            ErrorCode::ResourceNotFoundException.with(format!(
                "{arn} is not the ARN of an alarm of this account and region (Berth tags alarms only)."
            ))
        })
    }

    pub(super) async fn tags_of(
        &self,
        arn: &str,
        f: impl FnOnce(&mut Vec<wire::Tag>) + Send + 'static,
    ) -> Result<Vec<wire::Tag>, AwsError> {
        let name = self.alarm_of_arn(arn)?;
        self.modify(name, move |_, s, _| {
            f(&mut s.tags);
            Ok(s.tags.clone())
        })
        .await?
        .ok_or_else(|| {
            ErrorCode::ResourceNotFoundException.with(format!("The resource {arn} does not exist."))
        })
    }
}
