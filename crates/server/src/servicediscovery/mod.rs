//! AWS Cloud Map (issue #17): namespaces, services, instances, operations and tags (JSON 1.1,
//! `Route53AutoNaming_v20170314.` target prefix, wire types generated from botocore's
//! `servicediscovery` model), over the records of [`berth_model::servicediscovery`] in one
//! region's view of the store, and the DNS data plane they feed ([`dns`]).
//!
//! Where to find an operation: the generated `berth_wire::servicediscovery::*Api` trait that
//! names it says its group; `src/servicediscovery/<group>.rs` implements it on [`CloudMap`]
//! (`namespaces.rs` holds CreatePrivateDnsNamespace...). Other operations of the model answer
//! `NotImplementedException` naming them.
//!
//! Contract and invariants (the record invariants are [`berth_model::servicediscovery`]'s):
//! * errors are Cloud Map's codes (`NamespaceNotFound`, `ServiceNotFound`, `InstanceNotFound`,
//!   `NamespaceAlreadyExists` / `ServiceAlreadyExists` (with the existing id),
//!   `ResourceInUse`, `DuplicateRequest`, `CustomHealthNotFound`, `OperationNotFound`,
//!   `ResourceNotFoundException`, `TooManyTagsException`, `InvalidInput` naming the field);
//!   nothing a client sends panics or answers 500;
//! * a private DNS namespace's `Vpc` is checked against the region's EC2 records (the default
//!   VPC exists, [`crate::ec2::ensure_default_vpc`]); DNS namespaces get a Berth-made Route 53
//!   hosted zone id (`Z` and 20 characters);
//! * calls that are asynchronous in AWS (namespace create/delete, UpdateService, instance
//!   register/deregister) complete within the request; their operation is recorded as
//!   `SUCCESS` for GetOperation / ListOperations;
//! * a `CreatorRequestId` given again answers the resource it created the first time
//!   (namespaces and services: Cloud Map's idempotency); the same name with another request
//!   id is `NamespaceAlreadyExists` / `ServiceAlreadyExists`;
//! * instance health: `UNKNOWN` without `HealthCheckCustomConfig`; with it, `HEALTHY` at
//!   registration (or `AWS_INIT_HEALTH_STATUS`), changed by UpdateInstanceCustomHealthStatus.
//!   Route 53 health checks (`HealthCheckConfig`) are refused: Berth runs none;
//! * List* page with `MaxResults` (1-100) / `NextToken` (the last key returned, base64url).
//!
//! DiscoverInstances: botocore sends it to the `data-` host prefix of the endpoint
//! (`data-servicediscovery...` in AWS). With `--endpoint-url http://127.0.0.1:PORT` that is
//! `data-127.0.0.1`, which does not resolve: the `DATA_DIR/config` Berth writes sets
//! `disable_host_prefix_injection = true` (`AWS_DISABLE_HOST_PREFIX_INJECTION=true` does the
//! same), and the request then reaches this endpoint like any other, routed by its
//! `servicediscovery` signing name.

pub(crate) mod dns;
pub(crate) mod ecs_registrations;
mod instances;
mod namespaces;
mod operations;
pub(crate) mod service_connect;
mod services;
mod tags;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::regions::Region;
use berth_model::servicediscovery::{self as model, keys};
use berth_store::{Range, Revision, Store, Txn};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use serde::de::DeserializeOwned;
use wire::ErrorCode;

use crate::App;
use crate::ecs::RequestContext;
use crate::records;

/// One region's Cloud Map.
pub(crate) struct CloudMap {
    store: Arc<dyn Store>,
    region: Region,
    account_id: String,
    /// Where the region's DNS view goes ([`dns::run`]).
    dns: Arc<dns::DnsFeed>,
}

impl CloudMap {
    pub fn new(
        store: Arc<dyn Store>,
        region: Region,
        account_id: &str,
        dns: Arc<dns::DnsFeed>,
    ) -> Self {
        Self { store, region, account_id: account_id.to_string(), dns }
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn arn(&self, resource: &str) -> String {
        format!(
            "arn:{}:servicediscovery:{}:{}:{resource}",
            self.region.partition, self.region.name, self.account_id
        )
    }

    /// A namespace by id, or `NamespaceNotFound`.
    async fn namespace(&self, id: &str) -> Result<(model::NamespaceRecord, Revision), AwsError> {
        records::get::<model::NamespaceRecord>(self.store(), &keys::namespace(id))
            .await?
            .ok_or_else(|| codes::namespace_not_found(id))
    }

    /// A service by id, or `ServiceNotFound`.
    async fn service(&self, id: &str) -> Result<(model::ServiceRecord, Revision), AwsError> {
        records::get::<model::ServiceRecord>(self.store(), &keys::service(id))
            .await?
            .ok_or_else(|| codes::service_not_found(id))
    }

    /// A completed operation's record, to commit with the change it describes.
    fn operation(
        &self,
        txn: Txn,
        op_type: wire::OperationType,
        targets: &[(&str, &str)],
    ) -> (Txn, String) {
        let id = model::new_operation_id();
        let now = now();
        let rec = model::OperationRecord {
            id: id.clone(),
            op_type: op_type.as_str().to_string(),
            status: "SUCCESS".into(),
            targets: targets.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            create_date: now,
            update_date: now,
        };
        (txn.put(keys::operation(&id), records::encode(&rec)), id)
    }
}

impl wire::Api for CloudMap {
    type Context = RequestContext;
    type Namespaces = CloudMap;
    type Services = CloudMap;
    type Instances = CloudMap;
    type Operations = CloudMap;
    type Tags = CloudMap;
    fn namespaces(&self) -> &CloudMap {
        self
    }
    fn services(&self) -> &CloudMap {
        self
    }
    fn instances(&self) -> &CloudMap {
        self
    }
    fn operations(&self) -> &CloudMap {
        self
    }
    fn tags(&self) -> &CloudMap {
        self
    }
}

/// Cloud Map's error codes.
pub(crate) mod codes {
    use super::ErrorCode;
    use berth_wire::AwsError;

    /// `InvalidInput`: the message names the field.
    pub fn invalid(message: impl Into<String>) -> AwsError {
        ErrorCode::InvalidInput.with(message)
    }
    pub fn namespace_not_found(id: &str) -> AwsError {
        ErrorCode::NamespaceNotFound.with(format!("Namespace not found: {id}"))
    }
    pub fn service_not_found(id: &str) -> AwsError {
        ErrorCode::ServiceNotFound.with(format!("Service not found: {id}"))
    }
    pub fn instance_not_found(id: &str) -> AwsError {
        ErrorCode::InstanceNotFound.with(format!("Instance not found: {id}"))
    }
}

/// Now, in epoch seconds.
fn now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// Every record under `prefix`, decoded, with its key and revision, in key order.
async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, T, Revision)>, AwsError> {
    let recs = store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
    let keys: Vec<String> = recs.iter().map(|r| r.key.clone()).collect();
    let vals = records::decode_all::<T>(recs)?;
    Ok(keys.into_iter().zip(vals).map(|(k, (v, rev))| (k, v, rev)).collect())
}

/// Largest `MaxResults`.
const MAX_PAGE: i32 = 100;

/// One page of `items` (sorted by key) after `token`, at most `max_results`: the page and the
/// next token.
fn page<T>(
    items: Vec<(String, T)>,
    token: Option<&str>,
    max_results: Option<i32>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = match max_results {
        None => MAX_PAGE as usize,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n as usize,
        Some(n) => {
            return Err(codes::invalid(format!(
                "MaxResults: {n} is not between 1 and {MAX_PAGE}."
            )));
        }
    };
    let after =
        match token {
            None | Some("") => None,
            Some(t) => Some(
                URL_SAFE_NO_PAD.decode(t).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(
                    || codes::invalid("NextToken: not a token this listing returned."),
                )?,
            ),
        };
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
        .collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more { rest.last().map(|(k, _)| URL_SAFE_NO_PAD.encode(k)) } else { None };
    Ok((rest.into_iter().map(|(_, v)| v).collect(), next))
}

/// Record tags as the wire shows them.
fn wire_tags(tags: &[model::Tag]) -> Vec<wire::Tag> {
    tags.iter()
        .map(|t| wire::Tag { key: Some(t.key.clone()), value: Some(t.value.clone()) })
        .collect()
}

/// Serves one Cloud Map request (already routed here by its `servicediscovery` credential
/// scope).
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
            title: "AWS Cloud Map",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = app.regions.services(call.region).servicediscovery.clone();
    wire::dispatch(&*api, &call.ctx, call.op, &call.body).await
}

#[cfg(test)]
mod tests;

/// Waits for the next commit on `feed` that touches a key `relevant` accepts (or a lag: the
/// caller re-reads everything anyway); a closed feed waits `period` instead, so a loop that
/// also wakes on a timer never spins.
pub(crate) async fn next_relevant_change(
    feed: &mut berth_store::ChangeFeed,
    relevant: impl Fn(&str) -> bool,
    period: std::time::Duration,
) {
    use berth_store::Op;
    use berth_store::RecvError;
    loop {
        match feed.recv().await {
            Ok(c) => {
                if c.ops.iter().any(|op| match op {
                    Op::Put { key, .. } | Op::Delete { key } => relevant(key),
                }) {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => {
                tokio::time::sleep(period).await;
                return;
            }
        }
    }
}
