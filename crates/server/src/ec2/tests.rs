//! Races the EC2 API must win: concurrent writers never break the invariants in the module
//! header (one subnet per CIDR range, one group per name, no subnet outliving its VPC).

use std::sync::Arc;

use berth_model::network::{Ipv4Net, SubnetRecord, VpcRecord, keys};
use berth_store::Store;
use berth_wire::ec2::{self as wire, SecurityGroupsApi, SubnetsApi, VpcsApi};

use super::{Ec2, list};
use crate::auth::Principal;
use crate::ecs::RequestContext;

fn setup() -> (tempfile::TempDir, Arc<Ec2>, Arc<dyn Store>, RequestContext) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let region = berth_model::regions::lookup("us-east-1").unwrap();
    let ec2 = Arc::new(Ec2::new(store.clone(), region, "123456789012"));
    let ctx = RequestContext {
        principal: Arc::new(Principal {
            arn: "arn:aws:iam::123456789012:root".into(),
            account_id: "123456789012".into(),
            access_key_id: "AKID".into(),
            instance: None,
        }),
        request_id: "r".into(),
    };
    (dir, ec2, store, ctx)
}

fn ctx_clone(c: &RequestContext) -> RequestContext {
    RequestContext { principal: c.principal.clone(), request_id: c.request_id.clone() }
}

async fn new_vpc(ec2: &Ec2, ctx: &RequestContext, cidr: &str) -> String {
    let req = wire::CreateVpcRequest { cidr_block: Some(cidr.into()), ..Default::default() };
    ec2.create_vpc(ctx, req).await.unwrap().vpc.unwrap().vpc_id.unwrap()
}

#[tokio::test]
async fn concurrent_overlapping_subnets_one_wins() {
    let (_dir, ec2, store, ctx) = setup();
    let vpc = new_vpc(&ec2, &ctx, "10.0.0.0/16").await;
    let cidrs = ["10.0.0.0/24", "10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/20", "10.0.0.64/26"];
    let tries: Vec<_> = cidrs
        .iter()
        .map(|c| {
            let (ec2, ctx, vpc) = (ec2.clone(), ctx_clone(&ctx), vpc.clone());
            let req = wire::CreateSubnetRequest {
                vpc_id: Some(vpc),
                cidr_block: Some(c.to_string()),
                ..Default::default()
            };
            tokio::spawn(async move { ec2.create_subnet(&ctx, req).await })
        })
        .collect();
    let mut won = Vec::new();
    for t in tries {
        match t.await.unwrap() {
            Ok(s) => won.push(s.subnet.unwrap().cidr_block.unwrap()),
            Err(e) => assert_eq!(e.code, "InvalidSubnet.Conflict", "{e}"),
        }
    }
    let stored: Vec<SubnetRecord> = list::<SubnetRecord>(&*store, keys::SUBNETS)
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.vpc_id == vpc)
        .collect();
    assert_eq!(stored.len(), won.len());
    // Whatever won, no two stored subnets overlap.
    for a in &stored {
        for b in &stored {
            let (x, y): (Ipv4Net, Ipv4Net) =
                (a.cidr_block.parse().unwrap(), b.cidr_block.parse().unwrap());
            assert!(a.id == b.id || !(x.contains(&y) || y.contains(&x)), "{x} / {y}");
        }
    }
    assert!(!won.is_empty());
}

#[tokio::test]
async fn concurrent_groups_of_one_name_one_wins() {
    let (_dir, ec2, _store, ctx) = setup();
    let vpc = new_vpc(&ec2, &ctx, "10.1.0.0/16").await;
    let tries: Vec<_> = (0..6)
        .map(|_| {
            let (ec2, ctx) = (ec2.clone(), ctx_clone(&ctx));
            let req = wire::CreateSecurityGroupRequest {
                group_name: Some("web".into()),
                description: Some("web".into()),
                vpc_id: Some(vpc.clone()),
                ..Default::default()
            };
            tokio::spawn(async move { ec2.create_security_group(&ctx, req).await })
        })
        .collect();
    let mut ok = 0;
    for t in tries {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, "InvalidGroup.Duplicate", "{e}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn no_subnet_outlives_its_vpc() {
    let (_dir, ec2, store, ctx) = setup();
    for round in 0..8 {
        let vpc = new_vpc(&ec2, &ctx, "10.2.0.0/16").await;
        let create = {
            let (ec2, ctx) = (ec2.clone(), ctx_clone(&ctx));
            let req = wire::CreateSubnetRequest {
                vpc_id: Some(vpc.clone()),
                cidr_block: Some("10.2.0.0/24".into()),
                ..Default::default()
            };
            tokio::spawn(async move { ec2.create_subnet(&ctx, req).await })
        };
        let delete = {
            let (ec2, ctx) = (ec2.clone(), ctx_clone(&ctx));
            let req = wire::DeleteVpcRequest { vpc_id: Some(vpc.clone()), ..Default::default() };
            tokio::spawn(async move { ec2.delete_vpc(&ctx, req).await })
        };
        let (created, deleted) = (create.await.unwrap(), delete.await.unwrap());
        let vpc_left = store.get(&keys::vpc(&vpc)).await.unwrap().is_some();
        let subnets: Vec<SubnetRecord> = list::<SubnetRecord>(&*store, keys::SUBNETS)
            .await
            .unwrap()
            .into_iter()
            .filter(|s| s.vpc_id == vpc)
            .collect();
        match (created, deleted) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.code, "DependencyViolation", "round {round}");
                assert!(vpc_left && subnets.len() == 1, "round {round}");
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.code, "InvalidVpcID.NotFound", "round {round}");
                assert!(!vpc_left && subnets.is_empty(), "round {round}");
            }
            (c, d) => panic!("round {round}: both or neither won: {c:?} / {d:?}"),
        }
        if vpc_left {
            let sid = subnets[0].id.clone();
            let req = wire::DeleteSubnetRequest { subnet_id: Some(sid), ..Default::default() };
            ec2.delete_subnet(&ctx, req).await.unwrap();
            let req = wire::DeleteVpcRequest { vpc_id: Some(vpc), ..Default::default() };
            ec2.delete_vpc(&ctx, req).await.unwrap();
        }
    }
    let vpcs = list::<VpcRecord>(&*store, keys::VPCS).await.unwrap();
    assert!(vpcs.is_empty(), "{vpcs:?}");
}
