//! The default VPC of a region and the `default` security group of every VPC.
//!
//! Contract: [`ensure_default_vpc`] creates, on the first call in a region, the VPC
//! 172.31.0.0/16 (`isDefault`), one default /20 subnet per zone (`DefaultForAz`,
//! `MapPublicIpOnLaunch`) and the VPC's `default` group, in ONE transaction that requires
//! `ec2/default-vpc` to be absent: concurrent first calls create exactly one default VPC, the
//! losers read the winner's. Later calls are one read. A default VPC the user deleted stays
//! deleted (the marker keeps its id): the call then fails with [`NO_DEFAULT_VPC`].

use berth_model::network::{
    self, DEFAULT_SECURITY_GROUP, DEFAULT_VPC_CIDR, IpProtocol, Peer, SecurityGroupRecord,
    SecurityGroupRule, SubnetRecord, VpcRecord, keys,
};
use berth_store::{Store, Txn};
use berth_wire::AwsError;

use crate::records::{self, Cas};

/// The code EC2 answers when a call needs the default VPC and there is none.
pub(crate) const NO_DEFAULT_VPC: &str = "VPCIdNotSpecified";

/// The region's default VPC, created on first use (see the module header). Callable by ECS
/// code (awsvpc placement) as well as by the EC2 API.
pub(crate) async fn ensure_default_vpc(
    store: &dyn Store,
    region: &str,
    account_id: &str,
) -> Result<VpcRecord, AwsError> {
    let mut cas = Cas::new(store, "the default VPC");
    loop {
        cas.attempt().await?;
        if let Some(rec) = store.get(keys::DEFAULT_VPC).await.map_err(crate::error::store)? {
            let id = String::from_utf8_lossy(&rec.value).to_string();
            return match records::get::<VpcRecord>(store, &keys::vpc(&id)).await? {
                Some((vpc, _)) => Ok(vpc),
                None => Err(AwsError::new(
                    NO_DEFAULT_VPC,
                    400,
                    "No default VPC for this user: it was deleted. Name a VpcId or SubnetId.",
                )),
            };
        }
        let vpc = VpcRecord {
            id: network::new_id("vpc"),
            cidr_block: DEFAULT_VPC_CIDR.to_string(),
            is_default: true,
            state: "available".into(),
            owner_id: account_id.to_string(),
            tags: vec![],
        };
        let mut txn = Txn::new()
            .when(keys::DEFAULT_VPC, 0)
            .put(keys::DEFAULT_VPC, vpc.id.clone())
            .put(keys::vpc(&vpc.id), records::encode(&vpc));
        for ((zone, zone_id), cidr) in
            network::zones(region).into_iter().zip(network::default_subnet_cidrs())
        {
            let subnet = SubnetRecord {
                id: network::new_id("subnet"),
                vpc_id: vpc.id.clone(),
                cidr_block: cidr.to_string(),
                availability_zone: zone,
                availability_zone_id: zone_id,
                default_for_az: true,
                map_public_ip_on_launch: true,
                state: "available".into(),
                owner_id: account_id.to_string(),
                tags: vec![],
            };
            txn = txn.put(keys::subnet(&subnet.id), records::encode(&subnet));
        }
        txn = with_default_group(txn, &vpc);
        if cas.commit(txn).await? {
            tracing::info!(region, vpc = %vpc.id, "created the region's default VPC");
            return Ok(vpc);
        }
    }
}

/// `txn` plus `vpc`'s `default` security group (and its name), with AWS's default rules:
/// ingress from the group's own members on every protocol, egress to anywhere.
pub(super) fn with_default_group(txn: Txn, vpc: &VpcRecord) -> Txn {
    let id = network::new_id("sg");
    let all = |peer: Peer| SecurityGroupRule {
        id: network::new_id("sgr"),
        protocol: IpProtocol::All,
        from_port: None,
        to_port: None,
        peer,
        description: None,
    };
    let group = SecurityGroupRecord {
        id: id.clone(),
        name: DEFAULT_SECURITY_GROUP.into(),
        description: "default VPC security group".into(),
        vpc_id: vpc.id.clone(),
        owner_id: vpc.owner_id.clone(),
        ingress: vec![all(Peer::Group(id.clone()))],
        egress: vec![all(Peer::Cidr("0.0.0.0/0".into()))],
        tags: vec![],
    };
    let name = keys::security_group_name(&vpc.id, DEFAULT_SECURITY_GROUP);
    txn.when(name.clone(), 0)
        .put(name, id.clone())
        .put(keys::security_group(&id), records::encode(&group))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_first_calls_create_one_default_vpc() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    ensure_default_vpc(&*store, "eu-west-1", "000000000000").await.unwrap()
                })
            })
            .collect();
        let mut ids = std::collections::BTreeSet::new();
        for c in calls {
            ids.insert(c.await.unwrap().id);
        }
        assert_eq!(ids.len(), 1, "one default VPC: {ids:?}");
        let vpcs = super::super::list::<VpcRecord>(&*store, keys::VPCS).await.unwrap();
        assert_eq!(vpcs.len(), 1);
        assert!(vpcs[0].is_default);
        let subnets = super::super::list::<SubnetRecord>(&*store, keys::SUBNETS).await.unwrap();
        let mut zones: Vec<_> = subnets.iter().map(|s| s.availability_zone.clone()).collect();
        zones.sort();
        assert_eq!(zones, ["eu-west-1a", "eu-west-1b", "eu-west-1c"]);
        let groups = super::super::list::<SecurityGroupRecord>(&*store, keys::SECURITY_GROUPS)
            .await
            .unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name, "default");
        assert_eq!(groups[0].ingress[0].peer, Peer::Group(groups[0].id.clone()));
        // Deleted: it stays deleted, and callers are told.
        store.txn(Txn::new().delete(keys::vpc(&vpcs[0].id))).await.unwrap();
        let e = ensure_default_vpc(&*store, "eu-west-1", "000000000000").await.unwrap_err();
        assert_eq!(e.code, NO_DEFAULT_VPC);
    }
}
