//! The EC2 networking API (issue #12): VPCs, subnets, security groups and their rules, the
//! awsvpc tasks' network interfaces, availability zones and tags, over the records of
//! [`berth_model::network`] in one region's view of the store; agent-backed instances
//! (`instances.rs`) and the launch templates they and Auto Scaling launch from
//! (`launch_templates.rs`).
//!
//! Where to find an operation: the generated `berth_wire::ec2::*Api` trait that names it says
//! its group; `src/ec2/<group>.rs` implements it on [`Ec2`] (`vpcs.rs` holds CreateVpc...).
//! EC2 operations Berth does not implement answer `UnsupportedOperation` naming them.
//!
//! Contract and invariants:
//! * every call first makes sure the region's default VPC exists ([`ensure_default_vpc`]):
//!   172.31.0.0/16, one default /20 subnet per zone, and its `default` security group, all
//!   created in one transaction guarded by compare-and-set on `ec2/default-vpc`, so
//!   concurrent first calls create exactly one;
//! * every VPC has exactly one group named `default` (created with the VPC, deleted with it,
//!   never by DeleteSecurityGroup); group names are unique per VPC (`ec2/sg-names/...`,
//!   created with compare-and-set on absence);
//! * a subnet's CIDR lies within its VPC's and overlaps no other subnet of it: the check and
//!   the write are one transaction that also rewrites the VPC record, so two concurrent
//!   CreateSubnets (or a CreateSubnet and a DeleteVpc) cannot both pass;
//! * a rule change is one compare-and-set on the group (and on every group it references), so
//!   a rule never references a deleted group;
//! * errors are EC2's codes (`InvalidVpcID.NotFound`, `InvalidParameterValue`...); nothing a
//!   client sends panics or answers 500.

mod defaults;
mod filters;
mod instances;
pub(crate) mod launch_templates;
mod network_interfaces;
mod rules;
mod security_groups;
mod subnets;
mod tags;
#[cfg(test)]
mod tests;
mod vpcs;
mod zones;

use std::sync::Arc;

use berth_model::network::{self, Tag, keys};
use berth_model::regions::Region;
use berth_store::{Range, Store};
use berth_wire::AwsError;
use berth_wire::ec2 as wire;
use serde::de::DeserializeOwned;

use crate::ecs::RequestContext;
use crate::records;

pub(crate) use defaults::ensure_default_vpc;

/// One region's EC2 API.
pub(crate) struct Ec2 {
    store: Arc<dyn Store>,
    region: Region,
    account_id: String,
}

impl Ec2 {
    pub fn new(store: Arc<dyn Store>, region: Region, account_id: &str) -> Self {
        Self { store, region, account_id: account_id.to_string() }
    }

    /// Creates the region's default VPC on first use (a deleted default VPC stays deleted).
    pub async fn ensure_default(&self) -> Result<(), AwsError> {
        match ensure_default_vpc(&*self.store, self.region.name, &self.account_id).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == defaults::NO_DEFAULT_VPC => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn arn(&self, kind: &str, id: &str) -> String {
        format!(
            "arn:{}:ec2:{}:{}:{kind}/{id}",
            self.region.partition, self.region.name, self.account_id
        )
    }
}

impl wire::Api for Ec2 {
    type Context = RequestContext;
    type Vpcs = Ec2;
    type Subnets = Ec2;
    type SecurityGroups = Ec2;
    type NetworkInterfaces = Ec2;
    type Zones = Ec2;
    type Tags = Ec2;
    type Instances = Ec2;
    type LaunchTemplates = Ec2;
    fn launch_templates(&self) -> &Ec2 {
        self
    }
    fn instances(&self) -> &Ec2 {
        self
    }
    fn vpcs(&self) -> &Ec2 {
        self
    }
    fn subnets(&self) -> &Ec2 {
        self
    }
    fn security_groups(&self) -> &Ec2 {
        self
    }
    fn network_interfaces(&self) -> &Ec2 {
        self
    }
    fn zones(&self) -> &Ec2 {
        self
    }
    fn tags(&self) -> &Ec2 {
        self
    }
}

/// EC2's error codes.
pub(crate) mod codes {
    use berth_wire::AwsError;

    /// An EC2 client error (HTTP 400) with `code`.
    pub fn err(code: &'static str, message: impl Into<String>) -> AwsError {
        AwsError::new(code, 400, message)
    }
    pub fn invalid(message: impl Into<String>) -> AwsError {
        err("InvalidParameterValue", message)
    }
    pub fn missing(parameter: &str) -> AwsError {
        err("MissingParameter", format!("The request must contain the parameter {parameter}"))
    }
    pub fn dependency(message: impl Into<String>) -> AwsError {
        err("DependencyViolation", message)
    }
    pub fn vpc_not_found(id: &str) -> AwsError {
        err("InvalidVpcID.NotFound", format!("The vpc ID '{id}' does not exist"))
    }
    pub fn subnet_not_found(id: &str) -> AwsError {
        err("InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist"))
    }
    pub fn group_not_found(id: &str) -> AwsError {
        err("InvalidGroup.NotFound", format!("The security group '{id}' does not exist"))
    }
    pub fn eni_not_found(id: &str) -> AwsError {
        err(
            "InvalidNetworkInterfaceID.NotFound",
            format!("The networkInterface ID '{id}' does not exist"),
        )
    }
}

/// Every record under `prefix`, decoded.
async fn list<T: DeserializeOwned>(store: &dyn Store, prefix: &str) -> Result<Vec<T>, AwsError> {
    let recs = store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
    Ok(records::decode_all::<T>(recs)?.into_iter().map(|(v, _)| v).collect())
}

/// Every subnet of the region.
pub(crate) async fn subnets_all(store: &dyn Store) -> Result<Vec<network::SubnetRecord>, AwsError> {
    list::<network::SubnetRecord>(store, keys::SUBNETS).await
}

/// How many keys lie under `prefix`.
async fn count(store: &dyn Store, prefix: &str) -> Result<u64, AwsError> {
    store.count(prefix, &berth_store::prefix_end(prefix)).await.map_err(crate::error::store)
}

/// Record tags as the wire shows them (`None` when there are none, as EC2 omits the set).
fn wire_tags(tags: &[Tag]) -> Option<Vec<wire::Tag>> {
    if tags.is_empty() {
        return None;
    }
    Some(
        tags.iter()
            .map(|t| wire::Tag { key: Some(t.key.clone()), value: Some(t.value.clone()) })
            .collect(),
    )
}

/// The tags a create call's `TagSpecifications` give a resource of `resource_type`.
fn spec_tags(
    specs: Option<Vec<wire::TagSpecification>>,
    resource_type: wire::ResourceType,
) -> Result<Vec<Tag>, AwsError> {
    let mut out = Vec::new();
    for (i, spec) in specs.unwrap_or_default().into_iter().enumerate() {
        match spec.resource_type {
            Some(t) if t == resource_type => {}
            Some(t) => {
                return Err(codes::invalid(format!(
                    "TagSpecification.{}.ResourceType: '{t}' is not valid for this call; use '{resource_type}'.",
                    i + 1
                )));
            }
            None => {
                return Err(codes::missing(&format!("TagSpecification.{}.ResourceType", i + 1)));
            }
        }
        out = tags::merge(
            out,
            spec.tags.unwrap_or_default(),
            &format!("TagSpecification.{}", i + 1),
        )?;
    }
    Ok(out)
}

/// The zone of the region a name or id names.
fn find_zone(region: &str, name: Option<&str>, id: Option<&str>) -> Option<(String, String)> {
    network::zones(region).into_iter().find(|(n, z)| match (name, id) {
        (Some(name), _) => n == name,
        (None, Some(id)) => z == id,
        (None, None) => true,
    })
}

/// Loads a VPC or fails with `InvalidVpcID.NotFound`.
async fn vpc(
    store: &dyn Store,
    id: &str,
) -> Result<(network::VpcRecord, berth_store::Revision), AwsError> {
    records::get(store, &keys::vpc(id)).await?.ok_or_else(|| codes::vpc_not_found(id))
}
