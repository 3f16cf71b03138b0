//! RunInstances, DescribeInstances, TerminateInstances, StopInstances and StartInstances over
//! the agent-backed instance records of [`berth_instances::record`] (`ec2/instances/<id>`).
//!
//! Contract:
//! * The API only writes records; the instance controller ([`crate::instances`]) runs and
//!   stops the agents, marks `pending` instances `running` once their agent registered, and
//!   moves `stopping`/`shutting-down` ones on once their agent is gone.
//! * RunInstances accepts any well-formed image id (`ami-` and 8 or 17 hex digits, else
//!   `InvalidAMIID.Malformed`): every image runs the same agent, so templates written for
//!   real AMIs work unchanged; `/aws/service/ecs/optimized-ami/.../recommended` names
//!   [`berth_instances::image::BERTH_IMAGE_ID`]. `InstanceType` must be in Berth's type table
//!   (`InvalidParameterValue` naming it). Without `SubnetId` the instance goes to the default
//!   subnet of the region's first zone; `SecurityGroupIds` must exist in the subnet's VPC
//!   (`InvalidGroup.NotFound`), default: the VPC's `default` group.
//! * Each instance's record and its address (`ec2/eni-ips/<subnet>/<ip>`) are written in one
//!   transaction with compare-and-set on absence, so instance and task addresses never
//!   collide. `MaxCount` instances are launched if the subnet has the addresses, at least
//!   `MinCount` or nothing (`InsufficientFreeAddressesInSubnet`).
//! * A `ClientToken` seen before answers the reservation it launched, unchanged.
//! * State changes follow [`berth_instances::record::InstanceState`]'s `on_*` functions; every
//!   write is a compare-and-set on the record's revision.

use std::collections::{BTreeMap, BTreeSet};

use berth_instances::InstanceError;
use berth_instances::record::{self as irec, InstanceRecord, InstanceState, LaunchParams};
use berth_model::network::{SecurityGroupRecord, SubnetRecord, keys};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::ec2 as wire;

use super::launch_templates::TemplateData;
use super::{Ec2, codes, filters, list, spec_tags, tags, wire_tags};
use crate::ecs::RequestContext;
use crate::records;

/// Most instances one RunInstances call may launch.
const MAX_PER_CALL: i32 = 50;

fn instance_error(e: InstanceError) -> AwsError {
    codes::err(e.code(), e.to_string())
}

fn not_found(ids: &[String]) -> AwsError {
    let list = ids.join(", ");
    let what = if ids.len() == 1 { "ID" } else { "IDs" };
    codes::err("InvalidInstanceID.NotFound", format!("The instance {what} '{list}' does not exist"))
}

fn now() -> f64 {
    crate::clock::epoch_seconds(time::OffsetDateTime::now_utc())
}

fn wire_state(s: InstanceState) -> wire::InstanceState {
    wire::InstanceState {
        code: Some(s.code()),
        name: wire::InstanceStateName::from_str(s.as_str()),
    }
}

/// Checks the shape of the ids a request names (`InvalidInstanceID.Malformed`).
fn check_ids(ids: &[String]) -> Result<(), AwsError> {
    if let Some(bad) = ids.iter().find(|id| !irec::is_instance_id(id)) {
        return Err(codes::err(
            "InvalidInstanceID.Malformed",
            format!("Invalid id: \"{bad}\" (expecting \"i-...\")"),
        ));
    }
    Ok(())
}

impl Ec2 {
    pub(crate) async fn instances_all(&self) -> Result<Vec<InstanceRecord>, AwsError> {
        list::<InstanceRecord>(self.store(), irec::INSTANCES).await
    }

    fn wire_instance(&self, r: &InstanceRecord, groups: &[SecurityGroupRecord]) -> wire::Instance {
        let live = r.state != InstanceState::Terminated;
        let zone_id = berth_model::network::zones(self.region.name)
            .into_iter()
            .find(|(z, _)| *z == r.availability_zone)
            .map(|(_, id)| id);
        let arch = berth_instances::types::lookup(&r.instance_type)
            .ok()
            .and_then(|t| wire::ArchitectureValues::from_str(t.architecture.as_str()));
        wire::Instance {
            instance_id: Some(r.id.clone()),
            image_id: Some(r.image_id.clone()),
            instance_type: wire::InstanceType::from_str(&r.instance_type),
            state: Some(wire_state(r.state)),
            state_transition_reason: Some(r.state_reason.clone()),
            private_ip_address: live.then(|| r.private_ip.to_string()),
            private_dns_name: Some(if live {
                r.private_dns_name(self.region.name)
            } else {
                String::new()
            }),
            public_dns_name: Some(String::new()),
            subnet_id: live.then(|| r.subnet_id.clone()),
            vpc_id: live.then(|| r.vpc_id.clone()),
            placement: Some(wire::Placement {
                availability_zone: Some(r.availability_zone.clone()),
                availability_zone_id: zone_id,
                tenancy: Some(wire::Tenancy::Default),
                group_name: Some(String::new()),
                ..Default::default()
            }),
            launch_time: Some(r.launch_time),
            key_name: r.key_name.clone(),
            ami_launch_index: Some(0),
            architecture: arch,
            client_token: r.client_token.clone(),
            security_groups: Some(
                r.security_groups
                    .iter()
                    .map(|id| wire::GroupIdentifier {
                        group_id: Some(id.clone()),
                        group_name: groups.iter().find(|g| &g.id == id).map(|g| g.name.clone()),
                    })
                    .collect(),
            ),
            tags: wire_tags(&r.tags),
            monitoring: Some(wire::Monitoring { state: Some(wire::MonitoringState::Disabled) }),
            root_device_type: Some(wire::DeviceType::Ebs),
            root_device_name: Some("/dev/xvda".into()),
            virtualization_type: Some(wire::VirtualizationType::Hvm),
            hypervisor: Some(wire::HypervisorType::Xen),
            source_dest_check: Some(true),
            platform_details: Some("Linux/UNIX".into()),
            ..Default::default()
        }
    }

    fn reservation(
        &self,
        id: &str,
        instances: &[&InstanceRecord],
        groups: &[SecurityGroupRecord],
    ) -> wire::Reservation {
        wire::Reservation {
            reservation_id: Some(id.to_string()),
            owner_id: Some(self.account_id.clone()),
            groups: Some(vec![]),
            instances: Some(instances.iter().map(|r| self.wire_instance(r, groups)).collect()),
            ..Default::default()
        }
    }

    /// The subnet an instance goes to: the one named, or the default subnet of the first zone.
    async fn launch_subnet(&self, subnet_id: Option<String>) -> Result<SubnetRecord, AwsError> {
        if let Some(id) = subnet_id {
            return records::get::<SubnetRecord>(self.store(), &keys::subnet(&id))
                .await?
                .map(|(s, _)| s)
                .ok_or_else(|| codes::subnet_not_found(&id));
        }
        let vpc = super::ensure_default_vpc(self.store(), self.region.name, &self.account_id)
            .await
            .map_err(|_| {
                codes::err(
                    "VPCIdNotSpecified",
                    "No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.",
                )
            })?;
        let mut subnets: Vec<SubnetRecord> = list::<SubnetRecord>(self.store(), keys::SUBNETS)
            .await?
            .into_iter()
            .filter(|s| s.vpc_id == vpc.id && s.default_for_az)
            .collect();
        subnets.sort_by(|a, b| a.availability_zone.cmp(&b.availability_zone));
        subnets.into_iter().next().ok_or_else(|| {
            codes::err("MissingInput", "No subnets found for the default VPC. Specify SubnetId.")
        })
    }

    /// The groups an instance in `vpc_id` gets: those named (each must exist in that VPC), or
    /// the VPC's `default` group.
    async fn launch_groups(&self, ids: Vec<String>, vpc_id: &str) -> Result<Vec<String>, AwsError> {
        if ids.is_empty() {
            let key = keys::security_group_name(vpc_id, "default");
            let rec = self.store().get(&key).await.map_err(crate::error::store)?;
            return Ok(rec
                .map(|r| String::from_utf8_lossy(&r.value).to_string())
                .into_iter()
                .collect());
        }
        let mut out = vec![];
        for id in ids {
            let Some((g, _)) =
                records::get::<SecurityGroupRecord>(self.store(), &keys::security_group(&id))
                    .await?
            else {
                return Err(codes::group_not_found(&id));
            };
            if g.vpc_id != vpc_id {
                return Err(codes::invalid(format!(
                    "SecurityGroupId: security group '{id}' and subnet belong to different networks."
                )));
            }
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Launches between `min` and `max` instances of `params` (RunInstances' rules, module
    /// docs) into `subnet_id` (default: the first zone's default subnet) with `groups`:
    /// the reservation id and the records written. A `ClientToken` seen before answers the
    /// instances it launched. Auto Scaling launches through here too.
    pub(crate) async fn launch(
        &self,
        params: LaunchParams,
        subnet_id: Option<String>,
        groups: Vec<String>,
        min: i32,
        max: i32,
    ) -> Result<(String, Vec<InstanceRecord>), AwsError> {
        params.validate().map_err(instance_error)?;
        if let Some(token) = &params.client_token {
            let seen: Vec<InstanceRecord> = self
                .instances_all()
                .await?
                .into_iter()
                .filter(|r| r.client_token.as_ref() == Some(token))
                .collect();
            if let Some(first) = seen.first() {
                return Ok((first.reservation_id.clone(), seen));
            }
        }
        let subnet = self.launch_subnet(subnet_id).await?;
        let groups = self.launch_groups(groups, &subnet.vpc_id).await?;
        let reservation_id = berth_model::network::new_id("r");
        let mut launched: Vec<InstanceRecord> = vec![];
        while launched.len() < max as usize {
            let mut cas =
                records::Cas::new(self.store(), format!("subnet {} addresses", subnet.id));
            let rec = loop {
                cas.attempt().await?;
                let taken: BTreeSet<std::net::Ipv4Addr> = self
                    .store()
                    .range(Range::prefix(&keys::eni_ips_prefix(&subnet.id)))
                    .await
                    .map_err(crate::error::store)?
                    .iter()
                    .filter_map(|r| r.key.rsplit('/').next().and_then(|ip| ip.parse().ok()))
                    .collect();
                let ip = match irec::choose_ip(&subnet.id, &subnet.cidr_block, &taken) {
                    Ok(ip) => ip,
                    Err(e) => break Err(e),
                };
                let mut rec =
                    irec::new_record(&params, &subnet, ip, now()).map_err(instance_error)?;
                rec.reservation_id = reservation_id.clone();
                rec.security_groups = groups.clone();
                if cas.commit(irec::create_txn(&rec)).await? {
                    break Ok(rec);
                }
            };
            match rec {
                Ok(r) => launched.push(r),
                Err(e) if launched.len() >= min as usize => {
                    tracing::info!(error = %e, "RunInstances launched fewer than MaxCount");
                    break;
                }
                Err(e) => {
                    // All or nothing below MinCount: take back what this call wrote.
                    for r in &launched {
                        let txn = Txn::new()
                            .delete(irec::key(&r.id))
                            .delete(keys::eni_ip(&r.subnet_id, r.private_ip));
                        records::commit(self.store(), txn).await?;
                    }
                    return Err(instance_error(e));
                }
            }
        }
        Ok((reservation_id, launched))
    }

    /// Terminates `ids` (TerminateInstances for Berth's own callers: Auto Scaling).
    pub(crate) async fn terminate(&self, ids: Vec<String>, reason: &str) -> Result<(), AwsError> {
        self.change_states(Some(ids), reason, |r| Ok(r.state.on_terminate())).await.map(|_| ())
    }

    /// Applies `step` to each named instance; the state changes as EC2 reports them.
    async fn change_states(
        &self,
        ids: Option<Vec<String>>,
        reason: &str,
        step: impl Fn(&InstanceRecord) -> Result<Option<InstanceState>, InstanceError>,
    ) -> Result<Vec<wire::InstanceStateChange>, AwsError> {
        let ids = ids.unwrap_or_default();
        if ids.is_empty() {
            return Err(codes::missing("InstanceId"));
        }
        check_ids(&ids)?;
        let mut missing = vec![];
        for id in &ids {
            if self.store().get(&irec::key(id)).await.map_err(crate::error::store)?.is_none() {
                missing.push(id.clone());
            }
        }
        if !missing.is_empty() {
            return Err(not_found(&missing));
        }
        // Check every instance first, so a refused one changes nothing.
        for id in &ids {
            if let Some((r, _)) =
                records::get::<InstanceRecord>(self.store(), &irec::key(id)).await?
            {
                step(&r).map_err(instance_error)?;
            }
        }
        let mut out = vec![];
        for id in ids {
            let key = irec::key(&id);
            let mut cas = records::Cas::new(self.store(), format!("instance {id}"));
            loop {
                cas.attempt().await?;
                let Some((mut r, rev)) = records::get::<InstanceRecord>(self.store(), &key).await?
                else {
                    return Err(not_found(std::slice::from_ref(&id)));
                };
                let before = r.state;
                let Some(next) = step(&r).map_err(instance_error)? else {
                    out.push(wire::InstanceStateChange {
                        instance_id: Some(id.clone()),
                        current_state: Some(wire_state(before)),
                        previous_state: Some(wire_state(before)),
                    });
                    break;
                };
                r.transition(next, now(), reason)
                    .map_err(|e| AwsError::new("InternalError", 500, e))?;
                if cas.commit(Txn::new().when(&key, rev).put(&key, records::encode(&r))).await? {
                    out.push(wire::InstanceStateChange {
                        instance_id: Some(id.clone()),
                        current_state: Some(wire_state(next)),
                        previous_state: Some(wire_state(before)),
                    });
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn user_reason() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "User initiated ({:04}-{:02}-{:02} {:02}:{:02}:{:02} GMT)",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

impl wire::InstancesApi<RequestContext> for Ec2 {
    async fn run_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::RunInstancesRequest,
    ) -> Result<wire::Reservation, AwsError> {
        let min = input.min_count.ok_or_else(|| codes::missing("MinCount"))?;
        let max = input.max_count.ok_or_else(|| codes::missing("MaxCount"))?;
        if min < 1 {
            return Err(codes::invalid(format!("MinCount: Value ({min}) must be at least 1.")));
        }
        if max < min {
            return Err(codes::invalid(format!(
                "MaxCount: Value ({max}) must be at least MinCount ({min})."
            )));
        }
        if min > MAX_PER_CALL {
            return Err(codes::err(
                "InstanceLimitExceeded",
                format!(
                    "You have requested more instances ({min}) than your current instance limit of {MAX_PER_CALL} allows for the specified instance type."
                ),
            ));
        }
        let max = max.min(MAX_PER_CALL);
        // A launch template gives what the request leaves out.
        let (template, data) = match &input.launch_template {
            Some(spec) => {
                let (id, version, data) = self
                    .resolve_template(
                        spec.launch_template_id.as_deref(),
                        spec.launch_template_name.as_deref(),
                        spec.version.as_deref(),
                    )
                    .await?;
                (Some((id, version.to_string())), data)
            }
            None => (None, TemplateData::default()),
        };
        let image_id = input
            .image_id
            .clone()
            .or(data.image_id.clone())
            .ok_or_else(|| codes::missing("ImageId"))?;
        let tags = tags::merge(
            data.instance_tags.clone(),
            spec_tags(input.tag_specifications.clone(), wire::ResourceType::Instance)?
                .into_iter()
                .map(|t| wire::Tag { key: Some(t.key), value: Some(t.value) })
                .collect(),
            "TagSpecification",
        )?;
        let params = LaunchParams {
            image_id,
            instance_type: input
                .instance_type
                .map(|t| t.as_str().to_string())
                .or(data.instance_type.clone())
                .unwrap_or_else(|| "m1.small".into()),
            user_data: input.user_data.clone().filter(|u| !u.is_empty()).or(data.user_data.clone()),
            tags,
            key_name: input.key_name.clone().or(data.key_name.clone()),
            client_token: input.client_token.clone().filter(|t| !t.is_empty()),
            launch_template: template,
            ..Default::default()
        };
        let groups = input
            .security_group_ids
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or(data.security_group_ids.clone());
        let (reservation_id, launched) =
            self.launch(params, input.subnet_id.clone(), groups, min, max).await?;
        let all_groups = list::<SecurityGroupRecord>(self.store(), keys::SECURITY_GROUPS).await?;
        let refs: Vec<&InstanceRecord> = launched.iter().collect();
        Ok(self.reservation(&reservation_id, &refs, &all_groups))
    }

    async fn describe_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeInstancesRequest,
    ) -> Result<wire::DescribeInstancesResult, AwsError> {
        let filters = filters::parse(
            input.filters,
            &[
                "instance-id",
                "instance-state-name",
                "instance-state-code",
                "instance-type",
                "subnet-id",
                "vpc-id",
                "image-id",
                "availability-zone",
                "private-ip-address",
                "private-dns-name",
                "reservation-id",
                "instance.group-id",
                "key-name",
            ],
        )?;
        let mut all = self.instances_all().await?;
        if let Some(ids) = input.instance_ids.filter(|v| !v.is_empty()) {
            check_ids(&ids)?;
            let missing: Vec<String> =
                ids.iter().filter(|id| !all.iter().any(|r| &r.id == *id)).cloned().collect();
            if !missing.is_empty() {
                return Err(not_found(&missing));
            }
            all.retain(|r| ids.contains(&r.id));
        }
        let region = self.region.name;
        all.retain(|r| {
            filters::matches(&filters, &r.tags, |name| match name {
                "instance-id" => filters::one(r.id.clone()),
                "instance-state-name" => filters::one(r.state.as_str()),
                "instance-state-code" => filters::one(r.state.code().to_string()),
                "instance-type" => filters::one(r.instance_type.clone()),
                "subnet-id" => filters::one(r.subnet_id.clone()),
                "vpc-id" => filters::one(r.vpc_id.clone()),
                "image-id" => filters::one(r.image_id.clone()),
                "availability-zone" => filters::one(r.availability_zone.clone()),
                "private-ip-address" => filters::one(r.private_ip.to_string()),
                "private-dns-name" => filters::one(r.private_dns_name(region)),
                "reservation-id" => filters::one(r.reservation_id.clone()),
                "instance.group-id" => r.security_groups.clone(),
                "key-name" => r.key_name.clone().into_iter().collect(),
                _ => vec![],
            })
        });
        let (page, next_token) = filters::page(
            all,
            |r| r.id.as_str(),
            input.max_results,
            5,
            input.next_token.as_deref(),
        )?;
        let groups = list::<SecurityGroupRecord>(self.store(), keys::SECURITY_GROUPS).await?;
        // One reservation per RunInstances call, in the order their instances come.
        let mut order: Vec<String> = vec![];
        let mut by_res: BTreeMap<String, Vec<&InstanceRecord>> = BTreeMap::new();
        for r in &page {
            let res = if r.reservation_id.is_empty() {
                format!("r-{}", &r.id[2..])
            } else {
                r.reservation_id.clone()
            };
            if !by_res.contains_key(&res) {
                order.push(res.clone());
            }
            by_res.entry(res).or_default().push(r);
        }
        let reservations =
            order.iter().map(|id| self.reservation(id, &by_res[id], &groups)).collect();
        Ok(wire::DescribeInstancesResult { reservations: Some(reservations), next_token })
    }

    async fn terminate_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::TerminateInstancesRequest,
    ) -> Result<wire::TerminateInstancesResult, AwsError> {
        let reason = user_reason();
        let changes =
            self.change_states(input.instance_ids, &reason, |r| Ok(r.state.on_terminate())).await?;
        Ok(wire::TerminateInstancesResult { terminating_instances: Some(changes) })
    }

    async fn stop_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::StopInstancesRequest,
    ) -> Result<wire::StopInstancesResult, AwsError> {
        let reason = user_reason();
        let changes =
            self.change_states(input.instance_ids, &reason, |r| r.state.on_stop(&r.id)).await?;
        Ok(wire::StopInstancesResult { stopping_instances: Some(changes) })
    }

    async fn start_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::StartInstancesRequest,
    ) -> Result<wire::StartInstancesResult, AwsError> {
        let changes =
            self.change_states(input.instance_ids, "", |r| r.state.on_start(&r.id)).await?;
        Ok(wire::StartInstancesResult { starting_instances: Some(changes) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use berth_wire::ec2::{self as wire, InstancesApi, SubnetsApi, VpcsApi};

    use super::*;
    use crate::auth::Principal;

    fn setup() -> (tempfile::TempDir, Arc<Ec2>, RequestContext) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn berth_store::Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let region = berth_model::regions::lookup("us-east-1").unwrap();
        let ec2 = Arc::new(Ec2::new(store, region, "123456789012"));
        let ctx = RequestContext {
            principal: Arc::new(Principal {
                arn: "arn:aws:iam::123456789012:root".into(),
                account_id: "123456789012".into(),
                access_key_id: "AKID".into(),
                instance: None,
            }),
            request_id: "r".into(),
        };
        (dir, ec2, ctx)
    }

    fn run(subnet: &str, min: i32, max: i32, token: Option<&str>) -> wire::RunInstancesRequest {
        wire::RunInstancesRequest {
            image_id: Some(berth_instances::image::BERTH_IMAGE_ID.into()),
            instance_type: wire::InstanceType::from_str("t3.small"),
            min_count: Some(min),
            max_count: Some(max),
            subnet_id: Some(subnet.into()),
            client_token: token.map(str::to_string),
            ..Default::default()
        }
    }

    /// A /28 has 11 usable addresses: concurrent launches share none, and a launch that cannot
    /// get MinCount launches nothing.
    #[tokio::test]
    async fn addresses_are_unique_and_min_count_is_all_or_nothing() {
        let (_dir, ec2, ctx) = setup();
        let vpc = ec2
            .create_vpc(
                &ctx,
                wire::CreateVpcRequest {
                    cidr_block: Some("10.0.0.0/16".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .vpc
            .unwrap()
            .vpc_id
            .unwrap();
        let subnet = ec2
            .create_subnet(
                &ctx,
                wire::CreateSubnetRequest {
                    vpc_id: Some(vpc),
                    cidr_block: Some("10.0.1.0/28".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .subnet
            .unwrap()
            .subnet_id
            .unwrap();
        let tries: Vec<_> = (0..4)
            .map(|_| {
                let (ec2, ctx, subnet) = (ec2.clone(), ctx_clone(&ctx), subnet.clone());
                tokio::spawn(async move { ec2.run_instances(&ctx, run(&subnet, 1, 2, None)).await })
            })
            .collect();
        let mut ips = BTreeSet::new();
        for t in tries {
            for i in t.await.unwrap().unwrap().instances.unwrap() {
                assert!(ips.insert(i.private_ip_address.unwrap()), "an address given twice");
            }
        }
        assert_eq!(ips.len(), 8);
        let e = ec2.run_instances(&ctx, run(&subnet, 4, 4, None)).await.unwrap_err();
        assert_eq!(e.code, "InsufficientFreeAddressesInSubnet");
        let all =
            ec2.describe_instances(&ctx, wire::DescribeInstancesRequest::default()).await.unwrap();
        let n: usize =
            all.reservations.unwrap().iter().map(|r| r.instances.as_ref().unwrap().len()).sum();
        assert_eq!(n, 8, "the refused launch left nothing behind");
        // MaxCount is best effort above MinCount: 3 addresses are left.
        let r = ec2.run_instances(&ctx, run(&subnet, 1, 5, Some("t"))).await.unwrap();
        assert_eq!(r.instances.as_ref().unwrap().len(), 3);
        let again = ec2.run_instances(&ctx, run(&subnet, 1, 5, Some("t"))).await.unwrap();
        assert_eq!(again.reservation_id, r.reservation_id, "the client token's reservation");
        // Paging: 11 instances, 5 a page.
        let mut token = None;
        let mut seen = 0;
        loop {
            let page = ec2
                .describe_instances(
                    &ctx,
                    wire::DescribeInstancesRequest {
                        max_results: Some(5),
                        next_token: token.clone(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            seen += page
                .reservations
                .unwrap()
                .iter()
                .map(|r| r.instances.as_ref().unwrap().len())
                .sum::<usize>();
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(seen, 11);
    }

    fn ctx_clone(c: &RequestContext) -> RequestContext {
        RequestContext { principal: c.principal.clone(), request_id: c.request_id.clone() }
    }

    #[tokio::test]
    async fn state_changes_answer_as_ec2_does() {
        let (_dir, ec2, ctx) = setup();
        let mut req = run("", 1, 1, None);
        req.subnet_id = None;
        let id = ec2.run_instances(&ctx, req).await.unwrap().instances.unwrap()[0]
            .instance_id
            .clone()
            .unwrap();
        let ids = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // Pending cannot be stopped; nothing changes when one of the ids is refused.
        let e = ec2
            .stop_instances(
                &ctx,
                wire::StopInstancesRequest { instance_ids: ids(&[&id]), ..Default::default() },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "IncorrectInstanceState");
        let e = ec2
            .terminate_instances(
                &ctx,
                wire::TerminateInstancesRequest {
                    instance_ids: ids(&[&id, "i-0000000000000000a"]),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "InvalidInstanceID.NotFound");
        assert!(e.message.contains("i-0000000000000000a"));
        let t = ec2
            .terminate_instances(
                &ctx,
                wire::TerminateInstancesRequest { instance_ids: ids(&[&id]), ..Default::default() },
            )
            .await
            .unwrap()
            .terminating_instances
            .unwrap();
        assert_eq!(t[0].previous_state.as_ref().unwrap().code, Some(0));
        assert_eq!(t[0].current_state.as_ref().unwrap().code, Some(32));
        // Terminating twice is harmless and reports the state unchanged.
        let t = ec2
            .terminate_instances(
                &ctx,
                wire::TerminateInstancesRequest { instance_ids: ids(&[&id]), ..Default::default() },
            )
            .await
            .unwrap()
            .terminating_instances
            .unwrap();
        assert_eq!(t[0].previous_state, t[0].current_state);
        let e = ec2
            .start_instances(
                &ctx,
                wire::StartInstancesRequest { instance_ids: ids(&[&id]), ..Default::default() },
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, "IncorrectInstanceState");
        let d = ec2
            .describe_instances(
                &ctx,
                wire::DescribeInstancesRequest {
                    filters: Some(vec![wire::Filter {
                        name: Some("instance-state-name".into()),
                        values: Some(vec!["shutting-down".into()]),
                    }]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let inst = &d.reservations.unwrap()[0].instances.clone().unwrap()[0];
        assert_eq!(inst.instance_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            inst.placement.as_ref().unwrap().availability_zone.as_deref(),
            Some("us-east-1a")
        );
        assert_eq!(inst.security_groups.as_ref().unwrap().len(), 1, "the VPC's default group");
        assert_eq!(
            inst.security_groups.as_ref().unwrap()[0].group_name.as_deref(),
            Some("default")
        );
    }
}
