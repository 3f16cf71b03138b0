//! GetMetricData, GetMetricStatistics, PutMetricData and ListMetrics (`wire::MetricsApi`) over the region's metric store.

use super::*;

impl wire::MetricsApi<RequestContext> for Region<'_> {
    async fn put_metric_data(
        &self,
        _ctx: &RequestContext,
        input: wire::PutMetricDataInput,
    ) -> Result<wire::Empty, AwsError> {
        let ns = input.namespace.unwrap_or_default();
        check_namespace(&ns, "Namespace")?;
        if ns.starts_with("AWS/") {
            return Err(invalid(format!(
                "The value {ns} for parameter Namespace is invalid: the AWS/ namespaces are reserved for AWS services."
            )));
        }
        if input.entity_metric_data.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(invalid("Berth does not store EntityMetricData yet; send MetricData."));
        }
        let data = input.metric_data.unwrap_or_default();
        if data.is_empty() {
            return Err(missing("MetricData"));
        }
        if data.len() > 1000 {
            return Err(invalid(format!(
                "The collection MetricData must not have more than 1000 members (got {}).",
                data.len()
            )));
        }
        let now = self.now_ms();
        let mut samples = Vec::with_capacity(data.len());
        for (i, d) in data.into_iter().enumerate() {
            let p = format!("MetricData.member.{}", i + 1);
            let name = d.metric_name.clone().unwrap_or_default();
            let dims = check_dims(
                d.dimensions.as_deref().unwrap_or_default(),
                &format!("{p}.Dimensions"),
            )?;
            if dims.len() > 30 {
                return Err(invalid(format!(
                    "The collection {p}.Dimensions must not have more than 30 members."
                )));
            }
            let at = d.timestamp.map_or(now, ms);
            if at < now - 14 * 86_400_000 || at > now + 2 * 3_600_000 {
                return Err(invalid(format!(
                    "The parameter {p}.Timestamp must specify a time no more than two weeks in the past and no more than two hours in the future."
                )));
            }
            let res = match d.storage_resolution {
                None | Some(60) => 60,
                Some(1) => 1,
                Some(r) => {
                    return Err(invalid(format!(
                        "The value {r} for parameter {p}.StorageResolution is invalid: use 1 or 60."
                    )));
                }
            };
            let check = |v: f64, field: &str| -> Result<f64, AwsError> {
                // CloudWatch's range: 2^-260 .. 2^360 in magnitude (or zero).
                if !v.is_finite()
                    || v.abs() > 2f64.powi(360)
                    || (v != 0.0 && v.abs() < 2f64.powi(-260))
                {
                    return Err(invalid(format!(
                        "The value {v} for parameter {p}.{field} is invalid."
                    )));
                }
                Ok(v)
            };
            let kinds = [d.value.is_some(), d.statistic_values.is_some(), d.values.is_some()];
            if kinds.iter().filter(|k| **k).count() > 1 {
                return Err(combination(format!(
                    "The parameters {p}.Value, {p}.StatisticValues and {p}.Values are mutually exclusive; send one."
                )));
            }
            let mut agg = if let Some(v) = d.value {
                Agg::value(check(v, "Value")?, 1.0)
            } else if let Some(s) = &d.statistic_values {
                let count =
                    check(s.sample_count.unwrap_or_default(), "StatisticValues.SampleCount")?;
                let sum = check(s.sum.unwrap_or_default(), "StatisticValues.Sum")?;
                let min = check(s.minimum.unwrap_or_default(), "StatisticValues.Minimum")?;
                let max = check(s.maximum.unwrap_or_default(), "StatisticValues.Maximum")?;
                if count <= 0.0 {
                    return Err(invalid(format!(
                        "The parameter {p}.StatisticValues.SampleCount must be greater than 0."
                    )));
                }
                if min > max {
                    return Err(invalid(format!(
                        "The parameter {p}.StatisticValues.Minimum must be less than or equal to {p}.StatisticValues.Maximum."
                    )));
                }
                Agg::set(count, sum, min, max)
            } else if let Some(values) = &d.values {
                if values.is_empty() || values.len() > 150 {
                    return Err(invalid(format!(
                        "The collection {p}.Values must have 1 to 150 members (got {}).",
                        values.len()
                    )));
                }
                let counts = d.counts.clone().unwrap_or_else(|| vec![1.0; values.len()]);
                if counts.len() != values.len() {
                    return Err(invalid(format!(
                        "The parameters {p}.Values and {p}.Counts must be of the same size."
                    )));
                }
                let mut agg: Option<Agg> = None;
                for (j, (v, c)) in values.iter().zip(&counts).enumerate() {
                    let v = check(*v, &format!("Values.member.{}", j + 1))?;
                    if !c.is_finite() || *c < 0.0 {
                        return Err(invalid(format!(
                            "The value {c} for parameter {p}.Counts.member.{} is invalid.",
                            j + 1
                        )));
                    }
                    let one = Agg::value(v, *c);
                    match agg.as_mut() {
                        Some(a) => a.merge(&one),
                        None => agg = Some(one),
                    }
                }
                agg.unwrap_or_else(|| Agg::value(0.0, 0.0))
            } else {
                return Err(missing(&format!("{p}.Value")));
            };
            if d.counts.is_some() && d.values.is_none() {
                return Err(combination(format!("The parameter {p}.Counts needs {p}.Values.")));
            }
            agg.unit = d.unit.map(|u| u.as_str().to_string());
            samples.push(Sample {
                key: MetricKey::new(&ns, &name, &dims),
                at_ms: at,
                resolution_secs: res,
                agg,
            });
        }
        let region = self.region;
        self.cw
            .blocking(move |cw| cw.store.put(region, &samples, now).map_err(store_error))
            .await?;
        Ok(wire::Empty {})
    }

    async fn get_metric_statistics(
        &self,
        _ctx: &RequestContext,
        input: wire::GetMetricStatisticsInput,
    ) -> Result<wire::GetMetricStatisticsOutput, AwsError> {
        let stats = input.statistics.unwrap_or_default();
        let ext = input.extended_statistics.unwrap_or_default();
        if stats.is_empty() && ext.is_empty() {
            return Err(missing("Statistics or ExtendedStatistics"));
        }
        for (i, e) in ext.iter().enumerate() {
            if parse_percentile(e).is_none() {
                return Err(invalid(format!(
                    "The value {e} for parameter ExtendedStatistics.member.{} is invalid: use a percentile such as p99 or p99.9.",
                    i + 1
                )));
            }
        }
        let period = check_period(input.period.unwrap_or_default(), "Period")?;
        let (start, end) =
            (ms(input.start_time.unwrap_or_default()), ms(input.end_time.unwrap_or_default()));
        if start >= end {
            return Err(invalid(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let points = (end - start) / (period * 1000);
        if points > 1440 {
            return Err(combination(format!(
                "You have requested up to {points} datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
            )));
        }
        let ns = input.namespace.unwrap_or_default();
        let name = input.metric_name.unwrap_or_default();
        let dims = check_dims(input.dimensions.as_deref().unwrap_or_default(), "Dimensions")?;
        let key = MetricKey::new(&ns, &name, &dims);
        let region = self.region;
        let unit = input.unit;
        let buckets = self
            .cw
            .blocking(move |cw| {
                cw.store.buckets(region, &key, start, end, period).map_err(store_error)
            })
            .await?;
        let datapoints = buckets
            .into_iter()
            .filter(|b| unit.is_none_or(|u| b.agg.unit.as_deref().unwrap_or("None") == u.as_str()))
            .map(|b| {
                let has = |s: wire::Statistic| stats.contains(&s);
                wire::Datapoint {
                    timestamp: Some(secs(b.at_ms)),
                    sample_count: has(wire::Statistic::SampleCount).then_some(b.agg.count),
                    average: has(wire::Statistic::Average).then(|| b.agg.average()),
                    sum: has(wire::Statistic::Sum).then_some(b.agg.sum),
                    minimum: has(wire::Statistic::Minimum).then_some(b.agg.min),
                    maximum: has(wire::Statistic::Maximum).then_some(b.agg.max),
                    unit: wire::StandardUnit::from_str(b.agg.unit.as_deref().unwrap_or("None")),
                    extended_statistics: (!ext.is_empty()).then(|| {
                        ext.iter()
                            .filter_map(|e| {
                                b.agg.percentile(parse_percentile(e)?).map(|v| (e.clone(), v))
                            })
                            .collect()
                    }),
                }
            })
            .collect();
        Ok(wire::GetMetricStatisticsOutput { label: Some(name), datapoints: Some(datapoints) })
    }

    async fn get_metric_data(
        &self,
        _ctx: &RequestContext,
        input: wire::GetMetricDataInput,
    ) -> Result<wire::GetMetricDataOutput, AwsError> {
        let queries = input.metric_data_queries.unwrap_or_default();
        if queries.is_empty() || queries.len() > 500 {
            return Err(invalid("The collection MetricDataQueries must have 1 to 500 members."));
        }
        let (start, end) =
            (ms(input.start_time.unwrap_or_default()), ms(input.end_time.unwrap_or_default()));
        if start >= end {
            return Err(invalid(
                "The parameter StartTime must be less than the parameter EndTime.",
            ));
        }
        let max_points = input.max_datapoints.unwrap_or(100_800).max(1) as usize;
        let offset = token_offset(input.next_token.as_deref())?;
        let ascending = input.scan_by == Some(wire::ScanBy::TimestampAscending);
        // Validate every query, then evaluate the MetricStat ones, then the expressions in
        // dependency order.
        let mut values: HashMap<String, math::Series> = HashMap::new();
        let mut exprs: Vec<(String, math::Expr)> = Vec::new();
        for (i, q) in queries.iter().enumerate() {
            let p = format!("MetricDataQueries.member.{}", i + 1);
            let id = q.id.clone().unwrap_or_default();
            let mut c = id.chars();
            if !c.next().is_some_and(|c| c.is_ascii_lowercase())
                || !c.all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(invalid(format!(
                    "The value {id} for parameter {p}.Id is invalid: it must start with a lowercase letter and hold only letters, digits and underscores."
                )));
            }
            if queries[..i].iter().any(|o| o.id.as_deref() == Some(id.as_str())) {
                return Err(invalid(format!("The value {id} for parameter {p}.Id is used twice.")));
            }
            match (&q.metric_stat, &q.expression) {
                (Some(ms_), None) => {
                    let period = check_period(
                        ms_.period.unwrap_or_default(),
                        &format!("{p}.MetricStat.Period"),
                    )?;
                    let stat = ms_.stat.clone().unwrap_or_default();
                    check_stat(&stat, &format!("{p}.MetricStat.Stat"))?;
                    let m = ms_.metric.clone().unwrap_or_default();
                    let dims = check_dims(
                        m.dimensions.as_deref().unwrap_or_default(),
                        &format!("{p}.MetricStat.Metric.Dimensions"),
                    )?;
                    let key = MetricKey::new(
                        m.namespace.as_deref().unwrap_or_default(),
                        m.metric_name.as_deref().unwrap_or_default(),
                        &dims,
                    );
                    values
                        .insert(id.clone(), self.stat_series(key, start, end, period, stat).await?);
                }
                (None, Some(e)) => {
                    let parsed = math::parse(e).map_err(|err| {
                        invalid(format!("Error in expression '{id}' ({p}.Expression): {err}."))
                    })?;
                    exprs.push((id.clone(), parsed));
                }
                _ => {
                    return Err(combination(format!(
                        "Exactly one of {p}.MetricStat and {p}.Expression must be given."
                    )));
                }
            }
        }
        // Expressions may name one another: evaluate those whose inputs are known until
        // none is left (a cycle is an error).
        let mut pending = exprs;
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for (id, e) in pending {
                let mut ids = Vec::new();
                e.ids(&mut ids);
                let known = ids.iter().all(|i| values.contains_key(i));
                let defined =
                    ids.iter().all(|i| queries.iter().any(|q| q.id.as_deref() == Some(i.as_str())));
                if !defined || known {
                    let v = math::eval(&e, &|i| values.get(i).cloned().map(math::Value::Series))
                        .map_err(|err| invalid(format!("Error in expression '{id}': {err}.")))?;
                    let series = match v {
                        math::Value::Series(s) => s,
                        math::Value::Array(_) => {
                            return Err(invalid(format!(
                                "Error in expression '{id}': it must return one time series, not an array."
                            )));
                        }
                        math::Value::Scalar(x) => {
                            // A number: one datapoint per timestamp of the series it read.
                            let mut times: Vec<i64> = ids
                                .iter()
                                .filter_map(|i| values.get(i))
                                .flat_map(|s| s.keys().copied())
                                .collect();
                            times.sort_unstable();
                            times.dedup();
                            times
                                .into_iter()
                                .map(|t| (t, x))
                                .filter(|(_, x)| x.is_finite())
                                .collect()
                        }
                    };
                    values.insert(id, series);
                } else {
                    rest.push((id, e));
                }
            }
            if rest.len() == before {
                return Err(invalid(format!(
                    "The expressions {} name one another in a cycle.",
                    rest.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            pending = rest;
        }
        let returned: Vec<&wire::MetricDataQuery> =
            queries.iter().filter(|q| q.return_data != Some(false)).collect();
        let per = (max_points / returned.len().max(1)).max(1);
        let mut more = false;
        let results = returned
            .iter()
            .map(|q| {
                let id = q.id.clone().unwrap_or_default();
                let s = values.get(&id).cloned().unwrap_or_default();
                let mut points: Vec<(i64, f64)> = s.into_iter().collect();
                if !ascending {
                    points.reverse();
                }
                let page: Vec<(i64, f64)> = points.iter().copied().skip(offset).take(per).collect();
                let complete = points.len() <= offset + per;
                more |= !complete;
                let label = q.label.clone().or_else(|| {
                    q.metric_stat.as_ref().and_then(|m| m.metric.as_ref()?.metric_name.clone())
                });
                wire::MetricDataResult {
                    id: Some(id.clone()),
                    label: Some(label.unwrap_or(id)),
                    timestamps: Some(page.iter().map(|(t, _)| secs(*t)).collect()),
                    values: Some(page.iter().map(|(_, v)| *v).collect()),
                    status_code: Some(if complete {
                        wire::StatusCode::Complete
                    } else {
                        wire::StatusCode::PartialData
                    }),
                    messages: None,
                }
            })
            .collect();
        Ok(wire::GetMetricDataOutput {
            metric_data_results: Some(results),
            next_token: more.then(|| format!("berth-{}", offset + per)),
            messages: Some(Vec::new()),
        })
    }

    async fn list_metrics(
        &self,
        _ctx: &RequestContext,
        input: wire::ListMetricsInput,
    ) -> Result<wire::ListMetricsOutput, AwsError> {
        const PAGE: usize = 500;
        let offset = token_offset(input.next_token.as_deref())?;
        let filters: Vec<DimensionFilter> = input
            .dimensions
            .unwrap_or_default()
            .into_iter()
            .map(|f| DimensionFilter { name: f.name.unwrap_or_default(), value: f.value })
            .collect();
        let since = input.recently_active.map(|_| self.now_ms() - 3 * 3_600_000);
        let region = self.region;
        let (ns, name) = (input.namespace, input.metric_name);
        let all = self
            .cw
            .blocking(move |cw| {
                cw.store
                    .list(region, ns.as_deref(), name.as_deref(), &filters, since)
                    .map_err(store_error)
            })
            .await?;
        let more = all.len() > offset + PAGE;
        let metrics = all
            .into_iter()
            .skip(offset)
            .take(PAGE)
            .map(|l| wire::Metric {
                namespace: Some(l.key.namespace),
                metric_name: Some(l.key.name),
                dimensions: Some(wire_dims(&l.key.dimensions)),
            })
            .collect();
        Ok(wire::ListMetricsOutput {
            metrics: Some(metrics),
            next_token: more.then(|| format!("berth-{}", offset + PAGE)),
            owning_accounts: None,
        })
    }
}
