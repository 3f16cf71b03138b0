//! CreateVpc, DescribeVpcs and DeleteVpc.
//!
//! Contract: a VPC is created `available` with its `default` security group in one
//! transaction; its CIDR is an IPv4 block from /16 to /28 (`InvalidVpc.Range`), kept in its
//! canonical form. DeleteVpc refuses (`DependencyViolation`) while the VPC has subnets or
//! security groups other than `default`, and deletes the `default` group with it; the
//! transaction compares every record it checked, so a subnet or group created meanwhile
//! makes it retry and refuse.

use berth_model::network::{
    self, DEFAULT_SECURITY_GROUP, Ipv4Net, SecurityGroupRecord, SubnetRecord, VpcRecord, keys,
};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::ec2::{self as wire, ResourceType};

use super::{Ec2, codes, filters, list, spec_tags, wire_tags};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

/// Parses a VPC or subnet CIDR block: IPv4, prefix within `/16..=/28`, canonical form.
pub(super) fn parse_block(
    cidr: &str,
    parameter: &str,
    range_code: &'static str,
) -> Result<Ipv4Net, AwsError> {
    let net: Ipv4Net = cidr.trim().parse().map_err(|_| {
        codes::invalid(format!(
            "Value ({cidr}) for parameter {parameter} is invalid. This is not a valid IPv4 CIDR block."
        ))
    })?;
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(codes::err(
            range_code,
            format!("The CIDR '{cidr}' is invalid: the netmask must be between /16 and /28."),
        ));
    }
    Ok(net.trunc())
}

impl Ec2 {
    pub(super) fn wire_vpc(&self, v: &VpcRecord) -> wire::Vpc {
        wire::Vpc {
            vpc_id: Some(v.id.clone()),
            cidr_block: Some(v.cidr_block.clone()),
            state: wire::VpcState::from_str(&v.state).or(Some(wire::VpcState::Available)),
            owner_id: Some(v.owner_id.clone()),
            is_default: Some(v.is_default),
            instance_tenancy: Some(wire::Tenancy::Default),
            dhcp_options_id: Some("default".into()),
            cidr_block_association_set: Some(vec![wire::VpcCidrBlockAssociation {
                association_id: Some(format!("vpc-cidr-assoc-{}", &v.id[4..])),
                cidr_block: Some(v.cidr_block.clone()),
                cidr_block_state: Some(wire::VpcCidrBlockState {
                    state: Some(wire::VpcCidrBlockStateCode::Associated),
                    status_message: None,
                }),
            }]),
            tags: wire_tags(&v.tags),
            ..Default::default()
        }
    }
}

impl wire::VpcsApi<RequestContext> for Ec2 {
    async fn create_vpc(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateVpcRequest,
    ) -> Result<wire::CreateVpcResult, AwsError> {
        if input.ipv4_ipam_pool_id.is_some() || input.ipv6_ipam_pool_id.is_some() {
            return Err(codes::invalid("Berth does not manage IPAM pools: give a CidrBlock."));
        }
        if input.amazon_provided_ipv6_cidr_block == Some(true) || input.ipv6_cidr_block.is_some() {
            return Err(codes::invalid(
                "Berth's VPCs are IPv4 only: IPv6 CIDR blocks are not supported.",
            ));
        }
        if matches!(input.instance_tenancy, Some(t) if t != wire::Tenancy::Default) {
            return Err(codes::invalid("Berth's VPCs have InstanceTenancy 'default' only."));
        }
        let cidr = input.cidr_block.ok_or_else(|| codes::missing("CidrBlock"))?;
        let net = parse_block(&cidr, "CidrBlock", "InvalidVpc.Range")?;
        let tags = spec_tags(input.tag_specifications, ResourceType::Vpc)?;
        let vpc = VpcRecord {
            id: network::new_id("vpc"),
            cidr_block: net.to_string(),
            is_default: false,
            state: "available".into(),
            owner_id: self.account_id.clone(),
            tags,
        };
        let key = keys::vpc(&vpc.id);
        let txn = Txn::new().when(key.clone(), 0).put(key, records::encode(&vpc));
        let txn = super::defaults::with_default_group(txn, &vpc);
        if !records::commit(self.store(), txn).await? {
            return Err(crate::error::contention("a new VPC id"));
        }
        Ok(wire::CreateVpcResult { vpc: Some(self.wire_vpc(&vpc)) })
    }

    async fn describe_vpcs(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeVpcsRequest,
    ) -> Result<wire::DescribeVpcsResult, AwsError> {
        let filters = filters::parse(
            input.filters,
            &[
                "vpc-id",
                "cidr",
                "cidr-block-association.cidr-block",
                "cidr-block-association.state",
                "is-default",
                "isDefault",
                "state",
                "owner-id",
                "dhcp-options-id",
            ],
        )?;
        let mut vpcs = list::<VpcRecord>(self.store(), keys::VPCS).await?;
        if let Some(ids) = input.vpc_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                if !vpcs.iter().any(|v| &v.id == id) {
                    return Err(codes::vpc_not_found(id));
                }
            }
            vpcs.retain(|v| ids.contains(&v.id));
        }
        vpcs.retain(|v| {
            filters::matches(&filters, &v.tags, |name| match name {
                "vpc-id" => filters::one(v.id.clone()),
                "cidr" | "cidr-block-association.cidr-block" => filters::one(v.cidr_block.clone()),
                "cidr-block-association.state" => filters::one("associated"),
                "is-default" | "isDefault" => filters::b(v.is_default),
                "state" => filters::one(v.state.clone()),
                "owner-id" => filters::one(v.owner_id.clone()),
                "dhcp-options-id" => filters::one("default"),
                _ => vec![],
            })
        });
        let (vpcs, next_token) =
            filters::page(vpcs, |v| &v.id, input.max_results, 5, input.next_token.as_deref())?;
        Ok(wire::DescribeVpcsResult {
            vpcs: Some(vpcs.iter().map(|v| self.wire_vpc(v)).collect()),
            next_token,
        })
    }

    async fn delete_vpc(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteVpcRequest,
    ) -> Result<wire::Empty, AwsError> {
        let id = input.vpc_id.ok_or_else(|| codes::missing("VpcId"))?;
        let store = self.store();
        let mut cas = Cas::new(store, format!("VPC {id}"));
        loop {
            cas.attempt().await?;
            let (_, rev) = super::vpc(store, &id).await?;
            let subnets = store
                .range(berth_store::Range::prefix(keys::SUBNETS))
                .await
                .map_err(crate::error::store)?;
            let subnets = records::decode_all::<SubnetRecord>(subnets)?;
            if let Some((s, _)) = subnets.iter().find(|(s, _)| s.vpc_id == id) {
                return Err(codes::dependency(format!(
                    "The vpc '{id}' has dependencies and cannot be deleted: subnet {} is in it.",
                    s.id
                )));
            }
            let groups = store
                .range(berth_store::Range::prefix(keys::SECURITY_GROUPS))
                .await
                .map_err(crate::error::store)?;
            let groups = records::decode_all::<SecurityGroupRecord>(groups)?;
            let mut txn = Txn::new().when(keys::vpc(&id), rev).delete(keys::vpc(&id));
            for (g, grev) in groups.iter().filter(|(g, _)| g.vpc_id == id) {
                if g.name != DEFAULT_SECURITY_GROUP {
                    return Err(codes::dependency(format!(
                        "The vpc '{id}' has dependencies and cannot be deleted: security group {} ({}) is in it.",
                        g.id, g.name
                    )));
                }
                if super::count(store, &keys::security_group_members_prefix(&g.id)).await? > 0 {
                    return Err(codes::dependency(format!(
                        "The vpc '{id}' has dependencies and cannot be deleted: network interfaces use its default security group {}.",
                        g.id
                    )));
                }
                txn = txn
                    .when(keys::security_group(&g.id), *grev)
                    .delete(keys::security_group(&g.id))
                    .delete(keys::security_group_name(&id, &g.name));
            }
            if cas.commit(txn).await? {
                return Ok(wire::Empty {});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_canonical_and_sized() {
        assert_eq!(
            parse_block("10.0.0.0/16", "CidrBlock", "R").unwrap().to_string(),
            "10.0.0.0/16"
        );
        assert_eq!(
            parse_block("10.0.3.7/24", "CidrBlock", "R").unwrap().to_string(),
            "10.0.3.0/24"
        );
        assert_eq!(parse_block("10.0.0.0/8", "CidrBlock", "R").unwrap_err().code, "R");
        assert_eq!(parse_block("10.0.0.0/29", "CidrBlock", "R").unwrap_err().code, "R");
        let e = parse_block("ten/16", "CidrBlock", "R").unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("CidrBlock"));
        assert_eq!(
            parse_block("fd00::/64", "CidrBlock", "R").unwrap_err().code,
            "InvalidParameterValue"
        );
    }
}
