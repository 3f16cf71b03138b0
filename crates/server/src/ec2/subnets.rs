//! CreateSubnet, DescribeSubnets and DeleteSubnet.
//!
//! Contract: a subnet's CIDR (/16../28) lies within its VPC's (`InvalidSubnet.Range`) and
//! overlaps no other subnet of the VPC (`InvalidSubnet.Conflict`); the check commits with a
//! rewrite of the VPC record, so concurrent creations in one VPC serialise. Its zone is the
//! one named (by name or id), else the region's first. `AvailableIpAddressCount` is
//! [`network::usable_addresses`] minus the addresses taken (`ec2/eni-ips/<subnet>/`).
//! DeleteSubnet refuses (`DependencyViolation`) while any address of it is taken.

use berth_model::network::{self, Ipv4Net, SubnetRecord, keys};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::ec2::{self as wire, ResourceType};

use super::{Ec2, codes, filters, find_zone, list, spec_tags, wire_tags};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

/// Why `new` cannot be a subnet of `vpc` next to `others`.
pub(super) fn check_placement(
    new: Ipv4Net,
    vpc: Ipv4Net,
    others: &[(String, Ipv4Net)],
) -> Result<(), AwsError> {
    if !vpc.contains(&new) {
        return Err(codes::err(
            "InvalidSubnet.Range",
            format!("The CIDR '{new}' is invalid: it is not within the VPC's CIDR {vpc}."),
        ));
    }
    if let Some((id, other)) = others.iter().find(|(_, o)| o.contains(&new) || new.contains(o)) {
        return Err(codes::err(
            "InvalidSubnet.Conflict",
            format!("The CIDR '{new}' conflicts with another subnet: {id} ({other})."),
        ));
    }
    Ok(())
}

impl Ec2 {
    async fn wire_subnet(&self, s: &SubnetRecord) -> Result<wire::Subnet, AwsError> {
        let net: Ipv4Net = s.cidr_block.parse().unwrap_or_default();
        let taken = super::count(self.store(), &keys::eni_ips_prefix(&s.id)).await?;
        let available = u64::from(network::usable_addresses(net)).saturating_sub(taken);
        Ok(wire::Subnet {
            subnet_id: Some(s.id.clone()),
            vpc_id: Some(s.vpc_id.clone()),
            cidr_block: Some(s.cidr_block.clone()),
            availability_zone: Some(s.availability_zone.clone()),
            availability_zone_id: Some(s.availability_zone_id.clone()),
            available_ip_address_count: Some(i32::try_from(available).unwrap_or(i32::MAX)),
            default_for_az: Some(s.default_for_az),
            map_public_ip_on_launch: Some(s.map_public_ip_on_launch),
            map_customer_owned_ip_on_launch: Some(false),
            assign_ipv6_address_on_creation: Some(false),
            ipv6_native: Some(false),
            enable_dns64: Some(false),
            state: wire::SubnetState::from_str(&s.state).or(Some(wire::SubnetState::Available)),
            owner_id: Some(s.owner_id.clone()),
            subnet_arn: Some(self.arn("subnet", &s.id)),
            tags: wire_tags(&s.tags),
            ..Default::default()
        })
    }
}

impl wire::SubnetsApi<RequestContext> for Ec2 {
    async fn create_subnet(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateSubnetRequest,
    ) -> Result<wire::CreateSubnetResult, AwsError> {
        let vpc_id = input.vpc_id.ok_or_else(|| codes::missing("VpcId"))?;
        if input.ipv6_cidr_block.is_some() || input.ipv6_native == Some(true) {
            return Err(codes::invalid("Berth's subnets are IPv4 only."));
        }
        if input.ipv4_ipam_pool_id.is_some() || input.outpost_arn.is_some() {
            return Err(codes::invalid(
                "Berth does not manage IPAM pools or Outposts: give a CidrBlock.",
            ));
        }
        let cidr = input.cidr_block.ok_or_else(|| codes::missing("CidrBlock"))?;
        let net = super::vpcs::parse_block(&cidr, "CidrBlock", "InvalidSubnet.Range")?;
        let region = self.region.name;
        let (zone, zone_id) = find_zone(
            region,
            input.availability_zone.as_deref(),
            input.availability_zone_id.as_deref(),
        )
        .ok_or_else(|| {
            let given = input.availability_zone.or(input.availability_zone_id).unwrap_or_default();
            let zones: Vec<String> = network::zones(region)
                .into_iter()
                .map(|(n, i)| format!("{n} ({i})"))
                .collect();
            codes::invalid(format!(
                "Value ({given}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {}.",
                zones.join(", ")
            ))
        })?;
        let tags = spec_tags(input.tag_specifications, ResourceType::Subnet)?;
        let store = self.store();
        let mut cas = Cas::new(store, format!("VPC {vpc_id}"));
        let subnet = loop {
            cas.attempt().await?;
            let (vpc, rev) = super::vpc(store, &vpc_id).await?;
            let vpc_net: Ipv4Net = vpc.cidr_block.parse().unwrap_or_default();
            let others: Vec<(String, Ipv4Net)> = list::<SubnetRecord>(store, keys::SUBNETS)
                .await?
                .into_iter()
                .filter(|s| s.vpc_id == vpc_id)
                .filter_map(|s| s.cidr_block.parse().ok().map(|n| (s.id, n)))
                .collect();
            check_placement(net, vpc_net, &others)?;
            let subnet = SubnetRecord {
                id: network::new_id("subnet"),
                vpc_id: vpc_id.clone(),
                cidr_block: net.to_string(),
                availability_zone: zone.clone(),
                availability_zone_id: zone_id.clone(),
                default_for_az: false,
                map_public_ip_on_launch: false,
                state: "available".into(),
                owner_id: self.account_id.clone(),
                tags: tags.clone(),
            };
            let vkey = keys::vpc(&vpc_id);
            let skey = keys::subnet(&subnet.id);
            let txn = Txn::new()
                .when(vkey.clone(), rev)
                .put(vkey, records::encode(&vpc))
                .when(skey.clone(), 0)
                .put(skey, records::encode(&subnet));
            if cas.commit(txn).await? {
                break subnet;
            }
        };
        Ok(wire::CreateSubnetResult { subnet: Some(self.wire_subnet(&subnet).await?) })
    }

    async fn describe_subnets(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeSubnetsRequest,
    ) -> Result<wire::DescribeSubnetsResult, AwsError> {
        let filters = filters::parse(
            input.filters,
            &[
                "subnet-id",
                "subnet-arn",
                "vpc-id",
                "vpcId",
                "cidr-block",
                "cidr",
                "cidrBlock",
                "availability-zone",
                "availabilityZone",
                "availability-zone-id",
                "availabilityZoneId",
                "default-for-az",
                "defaultForAz",
                "map-public-ip-on-launch",
                "state",
                "owner-id",
                "available-ip-address-count",
            ],
        )?;
        let mut subnets = list::<SubnetRecord>(self.store(), keys::SUBNETS).await?;
        if let Some(ids) = input.subnet_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                if !subnets.iter().any(|s| &s.id == id) {
                    return Err(codes::subnet_not_found(id));
                }
            }
            subnets.retain(|s| ids.contains(&s.id));
        }
        let mut out = Vec::new();
        for s in subnets {
            let w = self.wire_subnet(&s).await?;
            let ok = filters::matches(&filters, &s.tags, |name| match name {
                "subnet-id" => filters::one(s.id.clone()),
                "subnet-arn" => filters::one(w.subnet_arn.clone().unwrap_or_default()),
                "vpc-id" | "vpcId" => filters::one(s.vpc_id.clone()),
                "cidr-block" | "cidr" | "cidrBlock" => filters::one(s.cidr_block.clone()),
                "availability-zone" | "availabilityZone" => {
                    filters::one(s.availability_zone.clone())
                }
                "availability-zone-id" | "availabilityZoneId" => {
                    filters::one(s.availability_zone_id.clone())
                }
                "default-for-az" | "defaultForAz" => filters::b(s.default_for_az),
                "map-public-ip-on-launch" => filters::b(s.map_public_ip_on_launch),
                "state" => filters::one(s.state.clone()),
                "owner-id" => filters::one(s.owner_id.clone()),
                "available-ip-address-count" => {
                    filters::one(w.available_ip_address_count.unwrap_or(0).to_string())
                }
                _ => vec![],
            });
            if ok {
                out.push(w);
            }
        }
        let (subnets, next_token) = filters::page(
            out,
            |s| s.subnet_id.as_deref().unwrap_or(""),
            input.max_results,
            5,
            input.next_token.as_deref(),
        )?;
        Ok(wire::DescribeSubnetsResult { subnets: Some(subnets), next_token })
    }

    async fn delete_subnet(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteSubnetRequest,
    ) -> Result<wire::Empty, AwsError> {
        let id = input.subnet_id.ok_or_else(|| codes::missing("SubnetId"))?;
        let store = self.store();
        let key = keys::subnet(&id);
        let mut cas = Cas::new(store, format!("subnet {id}"));
        loop {
            cas.attempt().await?;
            let Some((_, rev)) = records::get::<SubnetRecord>(store, &key).await? else {
                return Err(codes::subnet_not_found(&id));
            };
            let taken = super::count(store, &keys::eni_ips_prefix(&id)).await?;
            if taken > 0 {
                return Err(codes::dependency(format!(
                    "The subnet '{id}' has dependencies and cannot be deleted: {taken} network interface(s) use it."
                )));
            }
            if cas.commit(Txn::new().when(key.clone(), rev).delete(key.clone())).await? {
                return Ok(wire::Empty {});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_stay_inside_and_apart() {
        let vpc = n("10.0.0.0/16");
        let others = vec![("subnet-a".to_string(), n("10.0.1.0/24"))];
        assert!(check_placement(n("10.0.2.0/24"), vpc, &others).is_ok());
        let e = check_placement(n("10.0.1.128/25"), vpc, &others).unwrap_err();
        assert_eq!(e.code, "InvalidSubnet.Conflict");
        assert!(e.message.contains("subnet-a"));
        assert_eq!(
            check_placement(n("10.0.0.0/16"), vpc, &others).unwrap_err().code,
            "InvalidSubnet.Conflict",
            "a subnet containing another conflicts too"
        );
        assert_eq!(
            check_placement(n("10.1.0.0/24"), vpc, &others).unwrap_err().code,
            "InvalidSubnet.Range"
        );
    }
}
