//! CloudWatch Logs (issue #15): the API in front of [`berth_logstore`] (JSON 1.1,
//! `Logs_20140328.` target prefix, wire types generated from botocore's `logs` model for the
//! operations below), routed here by the `logs` signing name of a request's credential scope.
//!
//! Contract:
//! * log groups, streams, events and retention policies (CreateLogGroup, DeleteLogGroup,
//!   DescribeLogGroups, PutRetentionPolicy, DeleteRetentionPolicy, CreateLogStream,
//!   DeleteLogStream, DescribeLogStreams, PutLogEvents, GetLogEvents, FilterLogEvents) and
//!   group tags (TagResource, UntagResource, ListTagsForResource and the older TagLogGroup,
//!   UntagLogGroup, ListTagsLogGroup), each region with its own groups, as in AWS;
//! * errors are CloudWatch Logs': `ResourceNotFoundException`, `ResourceAlreadyExistsException`,
//!   `InvalidParameterException` (naming the member), `TooManyTagsException`;
//! * PutLogEvents applies [`berth_logstore::ingest`]'s rules; an answered batch is on disk;
//! * metric filters (PutMetricFilter, DescribeMetricFilters, DeleteMetricFilter,
//!   TestMetricFilter: [`metric_filters`]) run on both ingest paths (PutLogEvents and the
//!   `awslogs` driver's shipments), and their datapoints are in the metric store when the
//!   ingest call answers;
//! * retention is enforced by a sweep every [`SWEEP_EVERY`] and right after each
//!   PutRetentionPolicy ([`Logs::sweeper`]);
//! * the store is a SQLite file of its own, `DATA_DIR/logs.db`; its calls run on the blocking
//!   pool.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_logstore::{self as store, LogStore, LogStoreError, Pattern};
use berth_wire::AwsError;
use berth_wire::common;
use berth_wire::logs as wire;
use wire::ErrorCode;

use crate::App;
use crate::cloudwatch::CloudWatch;
use crate::ecs::RequestContext;

mod metric_filters;

/// How often the retention sweep runs.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The log service: its store and the sweep's wake-up.
pub(crate) struct Logs {
    store: Arc<LogStore>,
    sweep_now: tokio::sync::Notify,
}

impl Logs {
    pub fn open(path: &std::path::Path) -> Result<Self, LogStoreError> {
        Ok(Self { store: Arc::new(LogStore::open(path)?), sweep_now: tokio::sync::Notify::new() })
    }

    /// The tags of log group `name` in `region`, for `aws:ResourceTag` (`None`: no such
    /// group, or the log store cannot answer).
    pub(crate) async fn group_tags(
        &self,
        region: &'static str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let store = self.store.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || store.group_tags(region, &name).ok()).await.ok()?
    }

    /// The retention sweep, until `stop` is set.
    pub async fn sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let store = self.store.clone();
            let now = now_ms();
            match tokio::task::spawn_blocking(move || store.sweep_retention(now)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(deleted = n, "log retention sweep"),
                Ok(Err(e)) => tracing::warn!(error = %e, "log retention sweep failed"),
                Err(e) => tracing::warn!(error = %e, "log retention sweep panicked"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = self.sweep_now.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

impl Logs {
    /// A shipment of the `awslogs` log driver ([`berth_agent_protocol::LOGS_PATH`]), in
    /// `region` (the caller has checked the task is the instance's own).
    pub async fn ship(
        &self,
        region: &'static str,
        input: berth_agent_protocol::LogShipment,
        metrics: &Arc<CloudWatch>,
    ) -> Result<berth_agent_protocol::LogShipmentAck, AwsError> {
        check_group_name(&input.log_group)?;
        check_stream_name(&input.log_stream)?;
        let store = self.store.clone();
        let (cursor, data) = tokio::task::spawn_blocking(move || {
            let events: Vec<(i64, &str)> =
                input.events.iter().map(|e| (e.timestamp, e.message.as_str())).collect();
            store.ship_metered(
                region,
                &input.log_group,
                &input.log_stream,
                input.create_group,
                input.create_stream,
                &events,
                input.cursor.as_deref(),
                now_ms(),
            )
        })
        .await
        .map_err(|e| common::internal(format!("log store call failed: {e}")))?
        .map_err(to_aws)?;
        metric_filters::publish(metrics, region, data).await;
        Ok(berth_agent_protocol::LogShipmentAck { cursor })
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn to_aws(e: LogStoreError) -> AwsError {
    match e {
        LogStoreError::NotFound(m) => ErrorCode::ResourceNotFoundException.with(m),
        LogStoreError::AlreadyExists(m) => ErrorCode::ResourceAlreadyExistsException.with(m),
        LogStoreError::InvalidParameter(m) => ErrorCode::InvalidParameterException.with(m),
        LogStoreError::LimitExceeded(m) => ErrorCode::LimitExceededException.with(m),
        LogStoreError::Sqlite(e) => {
            tracing::error!(error = %e, "log store failed");
            ErrorCode::ServiceUnavailableException.with("The log store could not answer; retry.")
        }
    }
}

fn invalid(m: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterException.with(m)
}

/// One region's view of the log service.
struct Region<'a> {
    logs: &'a Arc<Logs>,
    /// Where metric filters publish.
    cloudwatch: &'a Arc<CloudWatch>,
    region: &'static str,
    partition: &'static str,
    account: &'a str,
}

impl Region<'_> {
    /// Runs a store call on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LogStore, &'static str) -> Result<T, LogStoreError> + Send + 'static,
    ) -> Result<T, AwsError> {
        let store = self.logs.store.clone();
        let region = self.region;
        tokio::task::spawn_blocking(move || f(&store, region))
            .await
            .map_err(|e| common::internal(format!("log store call failed: {e}")))?
            .map_err(to_aws)
    }

    fn group_arn(&self, name: &str) -> String {
        format!("arn:{}:logs:{}:{}:log-group:{name}", self.partition, self.region, self.account)
    }

    /// The group a request names by `logGroupName` or `logGroupIdentifier` (a name or an ARN).
    fn group_name(
        &self,
        name: Option<String>,
        identifier: Option<String>,
    ) -> Result<String, AwsError> {
        match (name, identifier) {
            (Some(_), Some(_)) => Err(invalid(
                "logGroupName and logGroupIdentifier are mutually exclusive; specify one.",
            )),
            (Some(n), None) => Ok(n),
            (None, Some(id)) if id.starts_with("arn:") => self.name_from_arn(&id),
            (None, Some(id)) => Ok(id),
            (None, None) => {
                Err(invalid("logGroupName: specify the log group (or logGroupIdentifier)."))
            }
        }
    }

    /// The group name in `arn:PARTITION:logs:REGION:ACCOUNT:log-group:NAME[:*]`, for this region.
    fn name_from_arn(&self, arn: &str) -> Result<String, AwsError> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        let [_, _, service, region, account, kind, rest] = parts[..] else {
            return Err(invalid(format!("resourceArn: '{arn}' is not a log group ARN.")));
        };
        if service != "logs" || kind != "log-group" || rest.is_empty() {
            return Err(invalid(format!("resourceArn: '{arn}' is not a log group ARN.")));
        }
        if region != self.region || account != self.account {
            return Err(ErrorCode::ResourceNotFoundException
                .with(format!("The specified log group does not exist: {arn}")));
        }
        Ok(rest.strip_suffix(":*").unwrap_or(rest).to_string())
    }

    fn log_group(&self, g: store::Group) -> wire::LogGroup {
        let arn = self.group_arn(&g.name);
        wire::LogGroup {
            creation_time: Some(g.created_ms),
            retention_in_days: g.retention_days,
            metric_filter_count: Some(g.metric_filters as i32),
            arn: Some(format!("{arn}:*")),
            log_group_arn: Some(arn),
            stored_bytes: Some(g.stored_bytes),
            log_group_class: Some(wire::LogGroupClass::Standard),
            deletion_protection_enabled: Some(false),
            log_group_name: Some(g.name),
            ..Default::default()
        }
    }
}

fn check_group_name(name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/#".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "logGroupName: '{name}' must be 1 to 512 characters of a-z, A-Z, 0-9, '_', '-', '/', '.' and '#'."
        )))
    }
}

fn check_stream_name(name: &str) -> Result<(), AwsError> {
    if name.is_empty() || name.len() > 512 || name.contains([':', '*']) {
        return Err(invalid(format!(
            "logStreamName: '{name}' must be 1 to 512 characters, without ':' or '*'."
        )));
    }
    Ok(())
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
    if tags.len() > 50 {
        return Err(ErrorCode::TooManyTagsException
            .with(format!("tags: {} tags exceed the 50 a log group may hold.", tags.len())));
    }
    for k in tags.keys() {
        if k.starts_with("aws:") {
            return Err(invalid(format!("tags: the key '{k}' uses the reserved prefix 'aws:'.")));
        }
    }
    Ok(())
}

/// An offset pagination token (`PREFIX/N`), `0` for none.
fn offset(token: Option<&str>, prefix: &str) -> Result<usize, AwsError> {
    match token {
        None => Ok(0),
        Some(t) => t
            .strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| invalid("nextToken: the token is not one this service issued.")),
    }
}

fn required<T>(v: Option<T>, member: &str) -> Result<T, AwsError> {
    v.ok_or_else(|| invalid(format!("{member}: this member is required.")))
}

impl wire::LogGroupsApi<RequestContext> for Region<'_> {
    async fn create_log_group(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateLogGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        check_group_name(&name)?;
        let tags = input.tags.unwrap_or_default();
        check_tags(&tags)?;
        if input.kms_key_id.is_some() {
            return Err(invalid("kmsKeyId: Berth does not encrypt log groups with KMS keys."));
        }
        let now = now_ms();
        self.run(move |s, r| s.create_group(r, &name, now, &tags)).await?;
        Ok(wire::Empty {})
    }

    async fn delete_log_group(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteLogGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        self.run(move |s, r| s.delete_group(r, &name)).await?;
        Ok(wire::Empty {})
    }

    async fn describe_log_groups(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLogGroupsRequest,
    ) -> Result<wire::DescribeLogGroupsResponse, AwsError> {
        if input.log_group_name_prefix.is_some() && input.log_group_name_pattern.is_some() {
            return Err(invalid(
                "logGroupNamePrefix and logGroupNamePattern are mutually exclusive; specify one.",
            ));
        }
        let limit = input.limit.unwrap_or(50).clamp(1, 50) as usize;
        let from = offset(input.next_token.as_deref(), "g/")?;
        let (prefix, pattern) = (input.log_group_name_prefix, input.log_group_name_pattern);
        let wanted: Option<Vec<String>> = input.log_group_identifiers.map(|ids| {
            ids.into_iter()
                .map(|id| match id.starts_with("arn:") {
                    true => self.name_from_arn(&id).unwrap_or(id),
                    false => id,
                })
                .collect()
        });
        let mut groups = self
            .run(move |s, r| {
                s.describe_groups(r, prefix.as_deref(), pattern.as_deref(), from, limit + 1)
            })
            .await?;
        let more = groups.len() > limit;
        groups.truncate(limit);
        if let Some(w) = &wanted {
            groups.retain(|g| w.contains(&g.name));
        }
        Ok(wire::DescribeLogGroupsResponse {
            log_groups: Some(groups.into_iter().map(|g| self.log_group(g)).collect()),
            next_token: more.then(|| format!("g/{}", from + limit)),
        })
    }

    async fn put_retention_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::PutRetentionPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        let days = required(input.retention_in_days, "retentionInDays")?;
        if !store::ingest::RETENTION_DAYS.contains(&days) {
            return Err(invalid(format!(
                "retentionInDays: {days} is not one of {:?}.",
                store::ingest::RETENTION_DAYS
            )));
        }
        self.run(move |s, r| s.set_retention(r, &name, Some(days))).await?;
        self.logs.sweep_now.notify_one();
        Ok(wire::Empty {})
    }

    async fn delete_retention_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRetentionPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        self.run(move |s, r| s.set_retention(r, &name, None)).await?;
        Ok(wire::Empty {})
    }
}

impl wire::LogStreamsApi<RequestContext> for Region<'_> {
    async fn create_log_stream(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateLogStreamRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = required(input.log_group_name, "logGroupName")?;
        let stream = required(input.log_stream_name, "logStreamName")?;
        check_stream_name(&stream)?;
        let now = now_ms();
        self.run(move |s, r| s.create_stream(r, &group, &stream, now)).await?;
        Ok(wire::Empty {})
    }

    async fn delete_log_stream(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteLogStreamRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = required(input.log_group_name, "logGroupName")?;
        let stream = required(input.log_stream_name, "logStreamName")?;
        self.run(move |s, r| s.delete_stream(r, &group, &stream)).await?;
        Ok(wire::Empty {})
    }

    async fn describe_log_streams(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeLogStreamsRequest,
    ) -> Result<wire::DescribeLogStreamsResponse, AwsError> {
        let group = self.group_name(input.log_group_name, input.log_group_identifier)?;
        let order = match input.order_by {
            Some(wire::OrderBy::LastEventTime) => store::StreamOrder::LastEventTime,
            _ => store::StreamOrder::Name,
        };
        if order == store::StreamOrder::LastEventTime && input.log_stream_name_prefix.is_some() {
            return Err(invalid(
                "logStreamNamePrefix: cannot order by LastEventTime with a logStreamNamePrefix.",
            ));
        }
        let descending = input.descending.unwrap_or(false);
        let limit = input.limit.unwrap_or(50).clamp(1, 50) as usize;
        let from = offset(input.next_token.as_deref(), "s/")?;
        let prefix = input.log_stream_name_prefix;
        let g = group.clone();
        let mut streams = self
            .run(move |s, r| {
                s.describe_streams(r, &g, prefix.as_deref(), order, descending, from, limit + 1)
            })
            .await?;
        let more = streams.len() > limit;
        streams.truncate(limit);
        let group_arn = self.group_arn(&group);
        Ok(wire::DescribeLogStreamsResponse {
            log_streams: Some(
                streams
                    .into_iter()
                    .map(|s| wire::LogStream {
                        arn: Some(format!("{group_arn}:log-stream:{}", s.name)),
                        log_stream_name: Some(s.name),
                        creation_time: Some(s.created_ms),
                        first_event_timestamp: s.first_event_ms,
                        last_event_timestamp: s.last_event_ms,
                        last_ingestion_time: s.last_ingestion_ms,
                        upload_sequence_token: Some(s.next_seq.to_string()),
                        stored_bytes: Some(s.stored_bytes),
                    })
                    .collect(),
            ),
            next_token: more.then(|| format!("s/{}", from + limit)),
        })
    }
}

impl wire::LogEventsApi<RequestContext> for Region<'_> {
    async fn put_log_events(
        &self,
        _ctx: &RequestContext,
        input: wire::PutLogEventsRequest,
    ) -> Result<wire::PutLogEventsResponse, AwsError> {
        let group = required(input.log_group_name, "logGroupName")?;
        let stream = required(input.log_stream_name, "logStreamName")?;
        let events: Vec<(i64, String)> = required(input.log_events, "logEvents")?
            .into_iter()
            .map(|e| (e.timestamp.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect();
        let now = now_ms();
        let verdict = self
            .run(move |s, r| {
                let retention = s.stream_retention(r, &group, &stream)?;
                let refs: Vec<(i64, &str)> = events.iter().map(|(t, m)| (*t, m.as_str())).collect();
                let verdict = store::ingest::check_batch(&refs, retention, now)
                    .map_err(LogStoreError::InvalidParameter)?;
                let accepted: Vec<(i64, &str)> =
                    verdict.accepted.iter().map(|i| refs[*i]).collect();
                let (next, data) = s.put_events_metered(r, &group, &stream, &accepted, now)?;
                Ok((verdict, next, data))
            })
            .await;
        let (verdict, next, data) = verdict?;
        metric_filters::publish(self.cloudwatch, self.region, data).await;
        let rejected = (verdict.too_new_start.is_some()
            || verdict.too_old_end.is_some()
            || verdict.expired_end.is_some())
        .then(|| wire::RejectedLogEventsInfo {
            too_new_log_event_start_index: verdict.too_new_start.map(|i| i as i32),
            too_old_log_event_end_index: verdict.too_old_end.map(|i| i as i32),
            expired_log_event_end_index: verdict.expired_end.map(|i| i as i32),
        });
        Ok(wire::PutLogEventsResponse {
            next_sequence_token: Some(next.to_string()),
            rejected_log_events_info: rejected,
            rejected_entity_info: None,
        })
    }

    async fn get_log_events(
        &self,
        _ctx: &RequestContext,
        input: wire::GetLogEventsRequest,
    ) -> Result<wire::GetLogEventsResponse, AwsError> {
        let group = self.group_name(input.log_group_name, input.log_group_identifier)?;
        let stream = required(input.log_stream_name, "logStreamName")?;
        let q = store::GetQuery {
            start_ms: input.start_time,
            end_ms: input.end_time,
            token: input.next_token,
            limit: input.limit.unwrap_or(10_000).clamp(1, 10_000) as usize,
            start_from_head: input.start_from_head.unwrap_or(false),
        };
        let page = self.run(move |s, r| s.get_events(r, &group, &stream, &q)).await?;
        Ok(wire::GetLogEventsResponse {
            events: Some(
                page.events
                    .into_iter()
                    .map(|e| wire::OutputLogEvent {
                        timestamp: Some(e.timestamp_ms),
                        message: Some(e.message),
                        ingestion_time: Some(e.ingestion_ms),
                    })
                    .collect(),
            ),
            next_forward_token: Some(page.forward_token),
            next_backward_token: Some(page.backward_token),
        })
    }

    async fn filter_log_events(
        &self,
        _ctx: &RequestContext,
        input: wire::FilterLogEventsRequest,
    ) -> Result<wire::FilterLogEventsResponse, AwsError> {
        let group = self.group_name(input.log_group_name, input.log_group_identifier)?;
        if input.log_stream_names.is_some() && input.log_stream_name_prefix.is_some() {
            return Err(invalid(
                "logStreamNames and logStreamNamePrefix are mutually exclusive; specify one.",
            ));
        }
        let pattern = Pattern::parse(input.filter_pattern.as_deref().unwrap_or(""))
            .map_err(|e| invalid(format!("filterPattern: {e}")))?;
        let (names, prefix) = (input.log_stream_names, input.log_stream_name_prefix);
        let (start, end, token) = (input.start_time, input.end_time, input.next_token);
        let limit = input.limit.unwrap_or(10_000).clamp(1, 10_000) as usize;
        let page = self
            .run(move |s, r| {
                s.filter_events(
                    r,
                    &group,
                    &store::FilterQuery {
                        stream_names: names.as_deref(),
                        stream_prefix: prefix.as_deref(),
                        start_ms: start,
                        end_ms: end,
                        pattern: &pattern,
                        token: token.as_deref(),
                        limit,
                    },
                )
            })
            .await?;
        Ok(wire::FilterLogEventsResponse {
            events: Some(
                page.events
                    .into_iter()
                    .map(|e| wire::FilteredLogEvent {
                        log_stream_name: Some(e.stream),
                        timestamp: Some(e.event.timestamp_ms),
                        message: Some(e.event.message),
                        ingestion_time: Some(e.event.ingestion_ms),
                        event_id: Some(e.id),
                    })
                    .collect(),
            ),
            searched_log_streams: Some(
                page.searched_streams
                    .into_iter()
                    .map(|n| wire::SearchedLogStream {
                        log_stream_name: Some(n),
                        searched_completely: Some(page.next_token.is_none()),
                    })
                    .collect(),
            ),
            next_token: page.next_token,
        })
    }
}

impl Region<'_> {
    async fn tag(
        &self,
        name: String,
        tags: BTreeMap<String, String>,
    ) -> Result<wire::Empty, AwsError> {
        check_tags(&tags)?;
        self.run(move |s, r| s.tag_group(r, &name, &tags)).await.map_err(|e| {
            if e.message.contains("at most 50 tags") {
                ErrorCode::TooManyTagsException.with(e.message)
            } else {
                e
            }
        })?;
        Ok(wire::Empty {})
    }
    async fn untag(&self, name: String, keys: Vec<String>) -> Result<wire::Empty, AwsError> {
        self.run(move |s, r| s.untag_group(r, &name, &keys)).await?;
        Ok(wire::Empty {})
    }
    async fn tags(&self, name: String) -> Result<BTreeMap<String, String>, AwsError> {
        self.run(move |s, r| s.group_tags(r, &name)).await
    }
}

impl wire::TagsApi<RequestContext> for Region<'_> {
    async fn tag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::TagResourceRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = self.name_from_arn(&required(input.resource_arn, "resourceArn")?)?;
        self.tag(name, required(input.tags, "tags")?).await
    }

    async fn untag_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagResourceRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = self.name_from_arn(&required(input.resource_arn, "resourceArn")?)?;
        self.untag(name, required(input.tag_keys, "tagKeys")?).await
    }

    async fn list_tags_for_resource(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsForResourceRequest,
    ) -> Result<wire::ListTagsForResourceResponse, AwsError> {
        let name = self.name_from_arn(&required(input.resource_arn, "resourceArn")?)?;
        Ok(wire::ListTagsForResourceResponse { tags: Some(self.tags(name).await?) })
    }

    async fn tag_log_group(
        &self,
        _ctx: &RequestContext,
        input: wire::TagLogGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        self.tag(name, required(input.tags, "tags")?).await
    }

    async fn untag_log_group(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagLogGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        self.untag(name, required(input.tags, "tags")?).await
    }

    async fn list_tags_log_group(
        &self,
        _ctx: &RequestContext,
        input: wire::ListTagsLogGroupRequest,
    ) -> Result<wire::ListTagsLogGroupResponse, AwsError> {
        let name = required(input.log_group_name, "logGroupName")?;
        Ok(wire::ListTagsLogGroupResponse { tags: Some(self.tags(name).await?) })
    }
}

impl<'a> wire::Api for Region<'a> {
    type Context = RequestContext;
    type LogGroups = Region<'a>;
    type LogStreams = Region<'a>;
    type LogEvents = Region<'a>;
    type MetricFilters = Region<'a>;
    type Tags = Region<'a>;
    fn log_groups(&self) -> &Self {
        self
    }
    fn log_streams(&self) -> &Self {
        self
    }
    fn log_events(&self) -> &Self {
        self
    }
    fn metric_filters(&self) -> &Self {
        self
    }
    fn tags(&self) -> &Self {
        self
    }
}

/// Serves one CloudWatch Logs request (already routed here by its `logs` credential scope).
pub(crate) async fn serve(
    app: &App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let call = crate::protocol::json_call(
        app,
        req,
        request_id,
        &crate::protocol::JsonService {
            signing_name: wire::SIGNING_NAME,
            target_prefix: wire::TARGET_PREFIX,
            title: "CloudWatch Logs",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = Region {
        logs: &app.logs,
        cloudwatch: &app.cloudwatch,
        region: call.region.name,
        partition: call.region.partition,
        account: &app.account_id,
    };
    wire::dispatch(&api, &call.ctx, call.op, &call.body).await
}
