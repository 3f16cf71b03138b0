//! Elastic Load Balancing v2 (issue #13): application and network load balancers, target
//! groups, listeners, rules, targets and tags, over the records of [`berth_model::elbv2`] in
//! one region's view of the store, and that region's data plane ([`berth_lb::Lb`], fed by
//! [`dataplane::run`]).
//!
//! Where to find an operation: the generated `berth_wire::elbv2::*Api` trait that names it
//! says its group; `src/elbv2/<group>.rs` implements it on [`Elbv2`] (`load_balancers.rs`
//! holds CreateLoadBalancer...). ELBv2 operations Berth does not implement answer
//! `InvalidAction` naming them.
//!
//! Contract and invariants (the record invariants are [`berth_model::elbv2`]'s):
//! * errors are ELB's codes (`LoadBalancerNotFound`, `DuplicateTargetGroupName`,
//!   `PriorityInUse`, `ResourceInUse`, `ValidationError` naming the parameter...); nothing a
//!   client sends panics or answers 500;
//! * a load balancer's subnets and security groups are checked against the region's EC2
//!   records (the default VPC exists, [`crate::ec2::ensure_default_vpc`]);
//! * listeners bind on the server's `--lb-bind-address` and their own port; `DNSName` is
//!   `NAME-ID.REGION.elb.localhost` (the bind address itself when it is a specific
//!   non-loopback address). A port that cannot be bound is logged and kept in
//!   [`Elbv2::bind_errors`]; the listener stays described, the rest of the data plane runs;
//! * Describe* operations page with `Marker` / `PageSize` (1-400): the marker is the last
//!   record key returned, base64url.

mod dataplane;
mod ecs_targets;
mod listeners;
mod load_balancers;
pub(crate) mod metrics;
mod rules;
mod tags;
mod target_groups;
mod targets;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_model::elbv2::{self as model, ParsedArn, keys};
use berth_model::regions::Region;
use berth_store::{Range, Store};
use berth_wire::AwsError;
use berth_wire::elbv2 as wire;
use serde::de::DeserializeOwned;

use crate::ecs::RequestContext;
use crate::records;

pub(crate) use dataplane::run;

/// One region's ELBv2 API and data plane.
pub(crate) struct Elbv2 {
    store: Arc<dyn Store>,
    region: Region,
    account_id: String,
    /// Where listeners bind (`--lb-bind-address`).
    bind: IpAddr,
    /// The region's data plane.
    lb: berth_lb::Lb,
    /// Listener ARN -> why its port could not be bound, from the data plane's last apply.
    bind_errors: Mutex<HashMap<String, String>>,
}

impl Elbv2 {
    pub fn new(store: Arc<dyn Store>, region: Region, account_id: &str, bind: IpAddr) -> Self {
        Self {
            store,
            region,
            account_id: account_id.to_string(),
            bind,
            lb: berth_lb::Lb::new(berth_lb::LbOptions::default()),
            bind_errors: Mutex::new(HashMap::new()),
        }
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Listener ARN -> why it could not bind its port.
    pub fn bind_errors(&self) -> HashMap<String, String> {
        self.bind_errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn arn(&self, resource: &str) -> String {
        format!(
            "arn:{}:elasticloadbalancing:{}:{}:{resource}",
            self.region.partition, self.region.name, self.account_id
        )
    }

    fn parse(&self, arn: &str) -> Option<ParsedArn> {
        model::parse_arn(arn, self.region.partition, self.region.name, &self.account_id)
    }

    /// The `DNSName` of a load balancer (see the module header).
    fn dns_name(&self, name: &str, id: &str) -> String {
        if !self.bind.is_loopback() && !self.bind.is_unspecified() {
            return self.bind.to_string();
        }
        format!("{name}-{}.{}.elb.localhost", &id[..8.min(id.len())], self.region.name)
    }

    /// A load balancer by ARN, or `LoadBalancerNotFound`.
    async fn load_balancer(
        &self,
        arn: &str,
    ) -> Result<(model::LoadBalancerRecord, berth_store::Revision), AwsError> {
        let Some(ParsedArn::LoadBalancer { id, .. }) = self.parse(arn) else {
            return Err(codes::lb_not_found(arn));
        };
        match records::get::<model::LoadBalancerRecord>(self.store(), &keys::load_balancer(&id))
            .await?
        {
            Some((r, rev)) if r.arn == arn => Ok((r, rev)),
            _ => Err(codes::lb_not_found(arn)),
        }
    }

    /// A target group by ARN, or `TargetGroupNotFound`.
    async fn target_group(
        &self,
        arn: &str,
    ) -> Result<(model::TargetGroupRecord, berth_store::Revision), AwsError> {
        let Some(ParsedArn::TargetGroup { id, .. }) = self.parse(arn) else {
            return Err(codes::tg_not_found(arn));
        };
        match records::get::<model::TargetGroupRecord>(self.store(), &keys::target_group(&id))
            .await?
        {
            Some((r, rev)) if r.arn == arn => Ok((r, rev)),
            _ => Err(codes::tg_not_found(arn)),
        }
    }

    /// A listener by ARN, with its key, or `ListenerNotFound`.
    async fn listener(
        &self,
        arn: &str,
    ) -> Result<(model::ListenerRecord, berth_store::Revision, String), AwsError> {
        let Some(ParsedArn::Listener { lb_id, id }) = self.parse(arn) else {
            return Err(codes::listener_not_found(arn));
        };
        let key = keys::listener(&lb_id, &id);
        match records::get::<model::ListenerRecord>(self.store(), &key).await? {
            Some((r, rev)) if r.arn == arn => Ok((r, rev, key)),
            _ => Err(codes::listener_not_found(arn)),
        }
    }
}

impl wire::Api for Elbv2 {
    type Context = RequestContext;
    type LoadBalancers = Elbv2;
    type TargetGroups = Elbv2;
    type Listeners = Elbv2;
    type Rules = Elbv2;
    type Targets = Elbv2;
    type Tags = Elbv2;
    fn load_balancers(&self) -> &Elbv2 {
        self
    }
    fn target_groups(&self) -> &Elbv2 {
        self
    }
    fn listeners(&self) -> &Elbv2 {
        self
    }
    fn rules(&self) -> &Elbv2 {
        self
    }
    fn targets(&self) -> &Elbv2 {
        self
    }
    fn tags(&self) -> &Elbv2 {
        self
    }
}

/// ELB's error codes.
pub(crate) mod codes {
    use berth_wire::AwsError;

    /// An ELB client error (HTTP 400) with `code`.
    pub fn err(code: &'static str, message: impl Into<String>) -> AwsError {
        AwsError::new(code, 400, message)
    }
    /// `ValidationError`: the message names the parameter.
    pub fn validation(message: impl Into<String>) -> AwsError {
        err("ValidationError", message)
    }
    pub fn lb_not_found(what: &str) -> AwsError {
        err("LoadBalancerNotFound", format!("Load balancer '{what}' not found"))
    }
    pub fn tg_not_found(what: &str) -> AwsError {
        err("TargetGroupNotFound", format!("Target group '{what}' not found"))
    }
    pub fn listener_not_found(what: &str) -> AwsError {
        err("ListenerNotFound", format!("Listener '{what}' not found"))
    }
    pub fn rule_not_found(what: &str) -> AwsError {
        err("RuleNotFound", format!("Rule '{what}' not found"))
    }
    pub fn invalid_config(message: impl Into<String>) -> AwsError {
        err("InvalidConfigurationRequest", message)
    }
}

/// A new ELB id: 16 lowercase hex digits.
fn new_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    u[..16].to_string()
}

/// Every record under `prefix`, decoded, with its key, in key order.
async fn list<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<(String, T)>, AwsError> {
    let recs = store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
    let keys: Vec<String> = recs.iter().map(|r| r.key.clone()).collect();
    let vals = records::decode_all::<T>(recs)?;
    Ok(keys.into_iter().zip(vals.into_iter().map(|(v, _)| v)).collect())
}

/// Largest `PageSize`.
const MAX_PAGE: i32 = 400;

/// One page of `items` (sorted by key) after `marker`, at most `page_size`: the page and the
/// next marker.
fn page<T>(
    items: Vec<(String, T)>,
    marker: Option<&str>,
    page_size: Option<i32>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    let limit = match page_size {
        None => MAX_PAGE as usize,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n as usize,
        Some(n) => {
            return Err(codes::validation(format!(
                "PageSize: {n} is not between 1 and {MAX_PAGE}"
            )));
        }
    };
    let after =
        match marker {
            None | Some("") => None,
            Some(m) => Some(
                URL_SAFE_NO_PAD.decode(m).ok().and_then(|b| String::from_utf8(b).ok()).ok_or_else(
                    || codes::validation("Marker: not a marker this listing returned"),
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

/// The tags of a create call, checked (keys unique, at most 50).
fn new_tags(tags: Option<Vec<wire::Tag>>) -> Result<Vec<model::Tag>, AwsError> {
    tags::merge(Vec::new(), tags.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_resume_after_the_marker() {
        let items: Vec<(String, u32)> = (0..5).map(|i| (format!("k{i}"), i)).collect();
        let (p1, m) = page(items.clone(), None, Some(2)).unwrap();
        assert_eq!(p1, [0, 1]);
        let (p2, m) = page(items.clone(), m.as_deref(), Some(2)).unwrap();
        assert_eq!(p2, [2, 3]);
        let (p3, m) = page(items.clone(), m.as_deref(), Some(2)).unwrap();
        assert_eq!((p3, m), (vec![4], None));
        for bad in [Some(0), Some(401), Some(-1)] {
            assert_eq!(page(items.clone(), None, bad).unwrap_err().code, "ValidationError");
        }
        assert_eq!(page(items, Some("%%%"), None).unwrap_err().code, "ValidationError");
    }
}
