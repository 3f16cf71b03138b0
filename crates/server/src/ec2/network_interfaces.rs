//! DescribeNetworkInterfaces: the awsvpc tasks' interfaces, as ECS placement writes them
//! (`ec2/enis/`). Read-only here: interfaces come and go with their tasks.
//!
//! Contract: each shows as EC2 shows a Fargate or awsvpc task's interface: `InterfaceType`
//! `interface`, `RequesterManaged` true, `Status` from the record (`in-use` while its task
//! holds it), its groups with their names, its one private address with its DNS name, and
//! the ECS attachment as its description.

use berth_model::network::{self, NetworkInterfaceRecord, SecurityGroupRecord, keys};
use berth_wire::AwsError;
use berth_wire::ec2 as wire;

use super::{Ec2, codes, filters, list, wire_tags};
use crate::ecs::RequestContext;

impl Ec2 {
    fn wire_eni(
        &self,
        e: &NetworkInterfaceRecord,
        groups: &[SecurityGroupRecord],
    ) -> wire::NetworkInterface {
        let dns = network::private_dns_name(e.private_ip, self.region.name);
        let zone_id = network::zones(self.region.name)
            .into_iter()
            .find(|(z, _)| *z == e.availability_zone)
            .map(|(_, id)| id);
        wire::NetworkInterface {
            network_interface_id: Some(e.id.clone()),
            subnet_id: Some(e.subnet_id.clone()),
            vpc_id: Some(e.vpc_id.clone()),
            availability_zone: Some(e.availability_zone.clone()),
            availability_zone_id: zone_id,
            private_ip_address: Some(e.private_ip.to_string()),
            private_dns_name: Some(dns.clone()),
            private_ip_addresses: Some(vec![wire::NetworkInterfacePrivateIpAddress {
                primary: Some(true),
                private_ip_address: Some(e.private_ip.to_string()),
                private_dns_name: Some(dns),
                association: None,
            }]),
            mac_address: Some(e.mac_address.clone()),
            groups: Some(
                e.security_groups
                    .iter()
                    .map(|id| wire::GroupIdentifier {
                        group_id: Some(id.clone()),
                        group_name: groups.iter().find(|g| &g.id == id).map(|g| g.name.clone()),
                    })
                    .collect(),
            ),
            status: wire::NetworkInterfaceStatus::from_str(&e.status)
                .or(Some(wire::NetworkInterfaceStatus::InUse)),
            interface_type: Some(wire::NetworkInterfaceType::Interface),
            requester_managed: Some(true),
            requester_id: Some("amazon-ecs".into()),
            source_dest_check: Some(true),
            description: Some(e.description.clone()),
            owner_id: Some(e.owner_id.clone()),
            tag_set: wire_tags(&e.tags).or(Some(vec![])),
            ipv6_addresses: Some(vec![]),
            ..Default::default()
        }
    }
}

impl wire::NetworkInterfacesApi<RequestContext> for Ec2 {
    async fn describe_network_interfaces(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeNetworkInterfacesRequest,
    ) -> Result<wire::DescribeNetworkInterfacesResult, AwsError> {
        let filters = filters::parse(
            input.filters,
            &[
                "network-interface-id",
                "subnet-id",
                "vpc-id",
                "availability-zone",
                "private-ip-address",
                "addresses.private-ip-address",
                "private-dns-name",
                "mac-address",
                "group-id",
                "group-name",
                "status",
                "description",
                "interface-type",
                "requester-managed",
                "requester-id",
                "owner-id",
            ],
        )?;
        let store = self.store();
        let mut enis = list::<NetworkInterfaceRecord>(store, keys::ENIS).await?;
        let groups = list::<SecurityGroupRecord>(store, keys::SECURITY_GROUPS).await?;
        if let Some(ids) = input.network_interface_ids.filter(|v| !v.is_empty()) {
            for id in &ids {
                if !enis.iter().any(|e| &e.id == id) {
                    return Err(codes::eni_not_found(id));
                }
            }
            enis.retain(|e| ids.contains(&e.id));
        }
        enis.retain(|e| {
            filters::matches(&filters, &e.tags, |name| match name {
                "network-interface-id" => filters::one(e.id.clone()),
                "subnet-id" => filters::one(e.subnet_id.clone()),
                "vpc-id" => filters::one(e.vpc_id.clone()),
                "availability-zone" => filters::one(e.availability_zone.clone()),
                "private-ip-address" | "addresses.private-ip-address" => {
                    filters::one(e.private_ip.to_string())
                }
                "private-dns-name" => {
                    filters::one(network::private_dns_name(e.private_ip, self.region.name))
                }
                "mac-address" => filters::one(e.mac_address.clone()),
                "group-id" => e.security_groups.clone(),
                "group-name" => groups
                    .iter()
                    .filter(|g| e.security_groups.contains(&g.id))
                    .map(|g| g.name.clone())
                    .collect(),
                "status" => filters::one(e.status.clone()),
                "description" => filters::one(e.description.clone()),
                "interface-type" => filters::one("interface"),
                "requester-managed" => filters::b(true),
                "requester-id" => filters::one("amazon-ecs"),
                "owner-id" => filters::one(e.owner_id.clone()),
                _ => vec![],
            })
        });
        let (enis, next_token) =
            filters::page(enis, |e| &e.id, input.max_results, 5, input.next_token.as_deref())?;
        Ok(wire::DescribeNetworkInterfacesResult {
            network_interfaces: Some(enis.iter().map(|e| self.wire_eni(e, &groups)).collect()),
            next_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_model::network::{NetworkInterfaceRecord, keys};
    use berth_store::{Store, Txn};
    use berth_wire::ec2::{self as wire, NetworkInterfacesApi};

    use super::Ec2;
    use crate::auth::Principal;
    use crate::ecs::RequestContext;
    use crate::records;

    #[tokio::test]
    async fn an_eni_placement_wrote_shows_as_ec2_shows_a_tasks_interface() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let region = berth_model::regions::lookup("eu-west-1").unwrap();
        let ec2 = Ec2::new(store.clone(), region, "123456789012");
        ec2.ensure_default().await.unwrap();
        let sg = store
            .get(&keys::security_group_name(
                &String::from_utf8_lossy(
                    &store.get(keys::DEFAULT_VPC).await.unwrap().unwrap().value,
                ),
                "default",
            ))
            .await
            .unwrap()
            .unwrap();
        let sg = String::from_utf8_lossy(&sg.value).to_string();
        let eni = NetworkInterfaceRecord {
            id: "eni-0123456789abcdef0".into(),
            subnet_id: "subnet-1".into(),
            vpc_id: "vpc-1".into(),
            availability_zone: "eu-west-1b".into(),
            private_ip: "172.31.16.4".parse().unwrap(),
            mac_address: "0e:01:02:03:04:05".into(),
            security_groups: vec![sg.clone()],
            status: "in-use".into(),
            description: "arn:aws:ecs:eu-west-1:123456789012:attachment/a-b-c".into(),
            task_arn: "arn:aws:ecs:eu-west-1:123456789012:task/c/t".into(),
            attachment_id: "a-b-c".into(),
            owner_id: "123456789012".into(),
            tags: vec![],
        };
        store.txn(Txn::new().put(keys::eni(&eni.id), records::encode(&eni))).await.unwrap();
        let ctx = RequestContext {
            principal: Arc::new(Principal {
                arn: "arn:aws:iam::123456789012:root".into(),
                account_id: "123456789012".into(),
                access_key_id: "AKID".into(),
                instance: None,
            }),
            request_id: "r".into(),
        };
        let filter = |name: &str, v: &str| wire::Filter {
            name: Some(name.into()),
            values: Some(vec![v.into()]),
        };
        let got = ec2
            .describe_network_interfaces(
                &ctx,
                wire::DescribeNetworkInterfacesRequest {
                    filters: Some(vec![
                        filter("group-name", "default"),
                        filter("addresses.private-ip-address", "172.31.16.*"),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let n = &got.network_interfaces.unwrap()[0];
        assert_eq!(n.private_ip_address.as_deref(), Some("172.31.16.4"));
        assert_eq!(
            n.private_dns_name.as_deref(),
            Some("ip-172-31-16-4.eu-west-1.compute.internal")
        );
        assert_eq!(n.availability_zone_id.as_deref(), Some("euw1-az2"));
        assert_eq!(n.interface_type, Some(wire::NetworkInterfaceType::Interface));
        assert_eq!(n.status, Some(wire::NetworkInterfaceStatus::InUse));
        assert_eq!(n.requester_managed, Some(true));
        let g = &n.groups.as_ref().unwrap()[0];
        assert_eq!(
            (g.group_id.as_deref(), g.group_name.as_deref()),
            (Some(sg.as_str()), Some("default"))
        );
        let none = ec2
            .describe_network_interfaces(
                &ctx,
                wire::DescribeNetworkInterfacesRequest {
                    filters: Some(vec![filter("subnet-id", "subnet-2")]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(none.network_interfaces.unwrap().is_empty());
    }
}
