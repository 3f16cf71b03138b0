//! Amazon EC2 Auto Scaling (query protocol, `autoscaling` 2011-01-01), the subset issue #12
//! needs: CreateAutoScalingGroup, UpdateAutoScalingGroup, DescribeAutoScalingGroups,
//! DeleteAutoScalingGroup, SetDesiredCapacity, SetInstanceProtection,
//! DescribeAutoScalingInstances, TerminateInstanceInAutoScalingGroup and
//! DescribeScalingActivities, over one region's view of the store. The groups' instances are
//! the agent-backed EC2 instances of [`crate::ec2`]; the group controller
//! ([`controller`]) launches and terminates them.
//!
//! Contract and invariants:
//! * a group is one record, `autoscaling/groups/<name>` ([`key`]), created with
//!   compare-and-set on absence (`AlreadyExists`), changed with compare-and-set on its
//!   revision; its members are the instance records whose `autoScalingGroup` names it (the
//!   one place membership and scale-in protection live: no second list to keep in step);
//! * the API only writes desired state (sizes, template, subnets, protection, instances
//!   marked shutting-down); [`controller`] converges the members to it;
//! * `DesiredCapacity` always lies within `[MinSize, MaxSize]` (`ValidationError` naming the
//!   bounds otherwise); a group is created only with a launch template that resolves and
//!   subnets that exist (`ValidationError` naming them);
//! * DeleteAutoScalingGroup refuses a group with live members (`ResourceInUse`), or whose
//!   members are still terminating (`ScalingActivityInProgress`), unless `ForceDelete`,
//!   which terminates every member and removes the group at once;
//! * activities (launches, terminations) are records of their own,
//!   `autoscaling/activities/<group>/<id>`, so they never contend with the group record.

pub(crate) mod controller;
pub(crate) mod managed;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use berth_instances::record::{self as irec, InstanceRecord, InstanceState};
use berth_model::network::{SubnetRecord, keys as net_keys};
use berth_model::regions::Region;
use berth_store::{Range, Revision, Store, Txn};
use berth_wire::AwsError;
use berth_wire::autoscaling as wire;
use serde::{Deserialize, Serialize};

use crate::ec2::Ec2;
use crate::ecs::RequestContext;
use crate::records;

/// Prefix of every group record.
pub(crate) const GROUPS: &str = "autoscaling/groups/";
const ACTIVITIES: &str = "autoscaling/activities/";

/// `autoscaling/groups/<name>`.
pub(crate) fn key(name: &str) -> String {
    format!("{GROUPS}{name}")
}

/// The tag every member carries, as EC2 Auto Scaling sets it.
pub(crate) const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// Activities kept per group (oldest dropped first).
const MAX_ACTIVITIES: usize = 100;

/// The group's launch template, as given (the version is resolved at each launch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TemplateRef {
    pub id: String,
    pub name: String,
    /// `$Latest`, `$Default` or a number, as given (default `$Default`).
    pub version: String,
}

/// A group tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupTag {
    pub key: String,
    pub value: String,
    pub propagate_at_launch: bool,
}

/// `autoscaling/groups/<name>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupRecord {
    pub name: String,
    pub arn: String,
    pub created_time: f64,
    pub launch_template: TemplateRef,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// Subnet ids, in the order given (`VPCZoneIdentifier`).
    pub subnets: Vec<String>,
    /// Their zones, in the group's order without repeats.
    pub zones: Vec<String>,
    pub new_instances_protected_from_scale_in: bool,
    #[serde(default)]
    pub tags: Vec<GroupTag>,
    pub default_cooldown: i32,
    pub health_check_type: String,
    pub health_check_grace_period: i32,
    #[serde(default)]
    pub termination_policies: Vec<String>,
}

/// `autoscaling/activities/<group>/<start time><id>`: one launch or termination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ActivityRecord {
    pub id: String,
    pub group: String,
    pub description: String,
    pub cause: String,
    pub start_time: f64,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

/// One region's Auto Scaling API.
pub(crate) struct AutoScaling {
    store: Arc<dyn Store>,
    region: Region,
    account_id: String,
    ec2: Arc<Ec2>,
    /// The region's ECS and the scale-in wait, for managed scaling (set once the region's
    /// services are built; unset in tests of the API alone).
    managed: std::sync::OnceLock<(Arc<crate::ecs::Ecs>, u32)>,
}

fn now() -> f64 {
    crate::clock::epoch_seconds(time::OffsetDateTime::now_utc())
}

/// `2026-12-02T10:00:00Z`, as Auto Scaling's causes write times.
pub(crate) fn iso8601(t: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(t as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `ValidationError` (HTTP 400).
pub(crate) fn validation(message: impl Into<String>) -> AwsError {
    AwsError::new("ValidationError", 400, message)
}

fn group_not_found(name: &str) -> AwsError {
    validation(format!("AutoScalingGroup name not found - AutoScalingGroup {name} not found"))
}

fn required<T>(v: Option<T>, field: &str) -> Result<T, AwsError> {
    v.ok_or_else(|| {
        validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

fn size(v: i32, field: &str) -> Result<u32, AwsError> {
    u32::try_from(v).map_err(|_| {
        validation(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to 0"
        ))
    })
}

/// Checks `min <= desired <= max` as Auto Scaling words it.
pub(crate) fn check_bounds(min: u32, max: u32, desired: u32) -> Result<(), AwsError> {
    if min > max {
        return Err(validation(format!(
            "Max bound, {max}, must be greater than or equal to min bound, {min}"
        )));
    }
    if desired < min || desired > max {
        return Err(validation(format!(
            "Desired capacity:{desired} must be between the specified min size:{min} and max size:{max}"
        )));
    }
    Ok(())
}

/// Where an instance is in its group's lifecycle, as Auto Scaling names it.
pub(crate) fn lifecycle(r: &InstanceRecord) -> &'static str {
    match r.state {
        InstanceState::Pending => "Pending",
        InstanceState::Running | InstanceState::Stopping | InstanceState::Stopped => "InService",
        InstanceState::ShuttingDown => "Terminating",
        InstanceState::Terminated => "Terminated",
    }
}

fn health(r: &InstanceRecord) -> &'static str {
    if r.state.agent_should_run() { "Healthy" } else { "Unhealthy" }
}

impl AutoScaling {
    pub fn new(store: Arc<dyn Store>, region: Region, account_id: &str, ec2: Arc<Ec2>) -> Self {
        Self {
            store,
            region,
            account_id: account_id.to_string(),
            ec2,
            managed: std::sync::OnceLock::new(),
        }
    }

    /// Enables managed scaling of the capacity providers of `ecs` (see [`managed`]).
    pub fn set_ecs(&self, ecs: Arc<crate::ecs::Ecs>, scale_in_after_secs: u32) {
        let _ = self.managed.set((ecs, scale_in_after_secs));
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn arn(&self, name: &str) -> String {
        format!(
            "arn:{}:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{name}",
            self.region.partition,
            self.region.name,
            self.account_id,
            uuid::Uuid::new_v4()
        )
    }

    pub(crate) async fn groups(&self) -> Result<Vec<(GroupRecord, Revision)>, AwsError> {
        let recs = self.store().range(Range::prefix(GROUPS)).await.map_err(crate::error::store)?;
        records::decode_all(recs)
    }

    pub(crate) async fn group(&self, name: &str) -> Result<(GroupRecord, Revision), AwsError> {
        records::get::<GroupRecord>(self.store(), &key(name))
            .await?
            .ok_or_else(|| group_not_found(name))
    }

    /// The group's live members (not terminated).
    pub(crate) async fn members(&self, name: &str) -> Result<Vec<InstanceRecord>, AwsError> {
        Ok(self
            .ec2
            .instances_all()
            .await?
            .into_iter()
            .filter(|r| {
                r.auto_scaling_group.as_deref() == Some(name)
                    && r.state != InstanceState::Terminated
            })
            .collect())
    }

    /// The template a request names, checked: it must resolve.
    async fn template_ref(
        &self,
        spec: wire::LaunchTemplateSpecification,
    ) -> Result<TemplateRef, AwsError> {
        let version = spec.version.filter(|v| !v.is_empty()).unwrap_or_else(|| "$Default".into());
        let (rec, _) = self
            .ec2
            .find_template(spec.launch_template_id.as_deref(), spec.launch_template_name.as_deref())
            .await
            .map_err(|e| {
                validation(format!(
                    "You must use a valid fully-formed launch template. {}",
                    e.message
                ))
            })?;
        rec.version(Some(&version)).map_err(|e| {
            validation(format!("You must use a valid fully-formed launch template. {}", e.message))
        })?;
        Ok(TemplateRef { id: rec.id, name: rec.name, version })
    }

    /// The subnets (and their zones) of `VPCZoneIdentifier`, or the default subnets of
    /// `AvailabilityZones`.
    async fn placement(
        &self,
        vpc_zone_identifier: Option<String>,
        zones: Option<Vec<String>>,
    ) -> Result<(Vec<String>, Vec<String>), AwsError> {
        let ids: Vec<String> = vpc_zone_identifier
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let mut subnets = vec![];
        let mut out_zones: Vec<String> = vec![];
        if ids.is_empty() {
            let zones = zones.unwrap_or_default();
            if zones.is_empty() {
                return Err(validation(
                    "At least one Availability Zone or VPC Subnet is required.",
                ));
            }
            self.ec2.ensure_default().await?;
            let all = crate::ec2::subnets_all(self.store()).await?;
            for z in zones {
                let Some(s) = all.iter().find(|s| s.availability_zone == z && s.default_for_az)
                else {
                    return Err(validation(format!(
                        "The availability zone '{z}' is not legal or has no default subnet: use VPCZoneIdentifier."
                    )));
                };
                subnets.push(s.id.clone());
                if !out_zones.contains(&z) {
                    out_zones.push(z);
                }
            }
            return Ok((subnets, out_zones));
        }
        let mut vpc: Option<String> = None;
        for id in ids {
            let Some((s, _)) =
                records::get::<SubnetRecord>(self.store(), &net_keys::subnet(&id)).await?
            else {
                return Err(validation(format!("The subnet ID '{id}' does not exist")));
            };
            if vpc.as_ref().is_some_and(|v| *v != s.vpc_id) {
                return Err(validation(
                    "VPCZoneIdentifier: the subnets must all belong to the same VPC.",
                ));
            }
            vpc = Some(s.vpc_id.clone());
            if !out_zones.contains(&s.availability_zone) {
                out_zones.push(s.availability_zone.clone());
            }
            if !subnets.contains(&s.id) {
                subnets.push(s.id);
            }
        }
        Ok((subnets, out_zones))
    }

    /// Reads, changes and writes a group with compare-and-set.
    async fn update_group(
        &self,
        name: &str,
        change: impl Fn(&mut GroupRecord) -> Result<(), AwsError>,
    ) -> Result<GroupRecord, AwsError> {
        let mut cas = records::Cas::new(self.store(), format!("Auto Scaling group {name}"));
        loop {
            cas.attempt().await?;
            let (mut g, rev) = self.group(name).await?;
            change(&mut g)?;
            let k = key(name);
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&g))).await? {
                return Ok(g);
            }
        }
    }

    /// Records an activity of `group`, dropping the oldest beyond [`MAX_ACTIVITIES`].
    pub(crate) async fn record_activity(
        &self,
        group: &str,
        description: String,
        cause: String,
        status: &str,
        status_message: Option<String>,
    ) -> Result<(), AwsError> {
        let t = now();
        let a = ActivityRecord {
            id: uuid::Uuid::new_v4().to_string(),
            group: group.to_string(),
            description,
            cause,
            start_time: t,
            status: status.to_string(),
            status_message,
        };
        let prefix = format!("{ACTIVITIES}{group}/");
        let k = format!("{prefix}{:020}-{}", (t * 1000.0) as u64, a.id);
        records::commit(self.store(), Txn::new().put(k, records::encode(&a))).await?;
        let keys = self.store().range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
        if keys.len() > MAX_ACTIVITIES {
            let mut txn = Txn::new();
            for r in &keys[..keys.len() - MAX_ACTIVITIES] {
                txn = txn.delete(r.key.clone());
            }
            records::commit(self.store(), txn).await?;
        }
        Ok(())
    }

    /// Sets scale-in protection on `ids` (each must be a live member of `group`).
    async fn protect(&self, group: &str, ids: &[String], protect: bool) -> Result<(), AwsError> {
        for id in ids {
            let k = irec::key(id);
            let mut cas = records::Cas::new(self.store(), format!("instance {id}"));
            loop {
                cas.attempt().await?;
                let rec = records::get::<InstanceRecord>(self.store(), &k).await?;
                let Some((mut r, rev)) = rec.filter(|(r, _)| {
                    r.auto_scaling_group.as_deref() == Some(group)
                        && r.state != InstanceState::Terminated
                }) else {
                    return Err(validation(format!(
                        "The instance {id} is not part of Auto Scaling group {group}."
                    )));
                };
                if r.protected_from_scale_in == protect {
                    break;
                }
                r.protected_from_scale_in = protect;
                if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&r))).await? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn wire_instance(&self, r: &InstanceRecord, g: Option<&GroupRecord>) -> wire::Instance {
        wire::Instance {
            instance_id: Some(r.id.clone()),
            instance_type: Some(r.instance_type.clone()),
            availability_zone: Some(r.availability_zone.clone()),
            lifecycle_state: wire::LifecycleState::from_str(lifecycle(r)),
            health_status: Some(health(r).into()),
            launch_template: wire_template(r, g),
            image_id: Some(r.image_id.clone()),
            protected_from_scale_in: Some(r.protected_from_scale_in),
            ..Default::default()
        }
    }

    fn wire_group(&self, g: &GroupRecord, members: &[InstanceRecord]) -> wire::AutoScalingGroup {
        wire::AutoScalingGroup {
            auto_scaling_group_name: Some(g.name.clone()),
            auto_scaling_group_arn: Some(g.arn.clone()),
            launch_template: Some(wire::LaunchTemplateSpecification {
                launch_template_id: Some(g.launch_template.id.clone()),
                launch_template_name: Some(g.launch_template.name.clone()),
                version: Some(g.launch_template.version.clone()),
            }),
            min_size: Some(g.min_size as i32),
            max_size: Some(g.max_size as i32),
            desired_capacity: Some(g.desired_capacity as i32),
            default_cooldown: Some(g.default_cooldown),
            availability_zones: Some(g.zones.clone()),
            load_balancer_names: Some(vec![]),
            target_group_ar_ns: Some(vec![]),
            health_check_type: Some(g.health_check_type.clone()),
            health_check_grace_period: Some(g.health_check_grace_period),
            instances: Some(members.iter().map(|r| self.wire_instance(r, Some(g))).collect()),
            created_time: Some(g.created_time),
            suspended_processes: Some(vec![]),
            vpc_zone_identifier: Some(g.subnets.join(",")),
            enabled_metrics: Some(vec![]),
            tags: Some(
                g.tags
                    .iter()
                    .map(|t| wire::TagDescription {
                        resource_id: Some(g.name.clone()),
                        resource_type: Some("auto-scaling-group".into()),
                        key: Some(t.key.clone()),
                        value: Some(t.value.clone()),
                        propagate_at_launch: Some(t.propagate_at_launch),
                    })
                    .collect(),
            ),
            termination_policies: Some(if g.termination_policies.is_empty() {
                vec!["Default".into()]
            } else {
                g.termination_policies.clone()
            }),
            new_instances_protected_from_scale_in: Some(g.new_instances_protected_from_scale_in),
            service_linked_role_arn: Some(format!(
                "arn:{}:iam::{}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                self.region.partition, self.account_id
            )),
            capacity_rebalance: Some(false),
            traffic_sources: Some(vec![]),
            ..Default::default()
        }
    }
}

fn wire_template(
    r: &InstanceRecord,
    g: Option<&GroupRecord>,
) -> Option<wire::LaunchTemplateSpecification> {
    let (id, version) = r.launch_template.clone()?;
    Some(wire::LaunchTemplateSpecification {
        launch_template_name: g
            .filter(|g| g.launch_template.id == id)
            .map(|g| g.launch_template.name.clone()),
        launch_template_id: Some(id),
        version: Some(version),
    })
}

fn group_tags(tags: Option<Vec<wire::Tag>>, name: &str) -> Result<Vec<GroupTag>, AwsError> {
    let mut out: Vec<GroupTag> = vec![];
    for (i, t) in tags.unwrap_or_default().into_iter().enumerate() {
        let Some(k) = t.key.filter(|k| !k.is_empty()) else {
            return Err(validation(format!("Tags.member.{}.Key: a tag needs a key.", i + 1)));
        };
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(validation(format!(
                "Tags.member.{}.Key: tag keys starting with 'aws:' are reserved ('{k}').",
                i + 1
            )));
        }
        if let Some(rid) = t.resource_id.as_deref().filter(|r| !r.is_empty() && *r != name) {
            return Err(validation(format!(
                "Tags.member.{}.ResourceId: '{rid}' is not the group being created ({name}).",
                i + 1
            )));
        }
        let tag = GroupTag {
            key: k,
            value: t.value.unwrap_or_default(),
            propagate_at_launch: t.propagate_at_launch.unwrap_or(false),
        };
        match out.iter_mut().find(|o| o.key == tag.key) {
            Some(o) => *o = tag,
            None => out.push(tag),
        }
    }
    if out.len() > 50 {
        return Err(validation("Tags: a group may have at most 50 tags."));
    }
    Ok(out)
}

impl wire::Api for AutoScaling {
    type Context = RequestContext;
    type Groups = AutoScaling;
    type Instances = AutoScaling;
    type Activities = AutoScaling;
    fn groups(&self) -> &AutoScaling {
        self
    }
    fn instances(&self) -> &AutoScaling {
        self
    }
    fn activities(&self) -> &AutoScaling {
        self
    }
}

impl wire::GroupsApi<RequestContext> for AutoScaling {
    async fn create_auto_scaling_group(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateAutoScalingGroupType,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.auto_scaling_group_name, "autoScalingGroupName")?;
        if name.is_empty() || name.len() > 255 {
            return Err(validation("AutoScalingGroupName: 1 to 255 characters."));
        }
        let min = size(required(input.min_size, "minSize")?, "minSize")?;
        let max = size(required(input.max_size, "maxSize")?, "maxSize")?;
        let desired = match input.desired_capacity {
            Some(d) => size(d, "desiredCapacity")?,
            None => min,
        };
        check_bounds(min, max, desired)?;
        if input.launch_configuration_name.is_some()
            || input.mixed_instances_policy.is_some()
            || input.instance_id.is_some()
        {
            return Err(validation(
                "Berth's Auto Scaling groups launch from a LaunchTemplate only (LaunchConfigurationName, MixedInstancesPolicy and InstanceId are not supported).",
            ));
        }
        let Some(spec) = input.launch_template else {
            return Err(validation(
                "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
            ));
        };
        let template = self.template_ref(spec).await?;
        let (subnets, zones) =
            self.placement(input.vpc_zone_identifier, input.availability_zones).await?;
        let tags = group_tags(input.tags, &name)?;
        let g = GroupRecord {
            arn: self.arn(&name),
            name: name.clone(),
            created_time: now(),
            launch_template: template,
            min_size: min,
            max_size: max,
            desired_capacity: desired,
            subnets,
            zones,
            new_instances_protected_from_scale_in: input
                .new_instances_protected_from_scale_in
                .unwrap_or(false),
            tags,
            default_cooldown: input.default_cooldown.unwrap_or(300),
            health_check_type: input.health_check_type.unwrap_or_else(|| "EC2".into()),
            health_check_grace_period: input.health_check_grace_period.unwrap_or(0),
            termination_policies: input.termination_policies.unwrap_or_default(),
        };
        let k = key(&name);
        if !records::commit(self.store(), Txn::new().when(&k, 0).put(&k, records::encode(&g)))
            .await?
        {
            return Err(AwsError::new(
                "AlreadyExists",
                400,
                format!(
                    "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
                ),
            ));
        }
        Ok(wire::Empty {})
    }

    async fn update_auto_scaling_group(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateAutoScalingGroupType,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.auto_scaling_group_name, "autoScalingGroupName")?;
        self.group(&name).await?;
        let template = match input.launch_template {
            Some(spec) => Some(self.template_ref(spec).await?),
            None => None,
        };
        let placement = if input.vpc_zone_identifier.is_some() || input.availability_zones.is_some()
        {
            Some(self.placement(input.vpc_zone_identifier, input.availability_zones).await?)
        } else {
            None
        };
        let min = input.min_size.map(|v| size(v, "minSize")).transpose()?;
        let max = input.max_size.map(|v| size(v, "maxSize")).transpose()?;
        let desired = input.desired_capacity.map(|v| size(v, "desiredCapacity")).transpose()?;
        self.update_group(&name, |g| {
            let (new_min, new_max) = (min.unwrap_or(g.min_size), max.unwrap_or(g.max_size));
            if new_min > new_max {
                return Err(validation(format!(
                    "Max bound, {new_max}, must be greater than or equal to min bound, {new_min}"
                )));
            }
            // Without a desired capacity, changed bounds pull the old one within them.
            let new_desired = desired.unwrap_or(g.desired_capacity.clamp(new_min, new_max));
            check_bounds(new_min, new_max, new_desired)?;
            g.min_size = new_min;
            g.max_size = new_max;
            g.desired_capacity = new_desired;
            if let Some(t) = &template {
                g.launch_template = t.clone();
            }
            if let Some((s, z)) = &placement {
                g.subnets = s.clone();
                g.zones = z.clone();
            }
            if let Some(p) = input.new_instances_protected_from_scale_in {
                g.new_instances_protected_from_scale_in = p;
            }
            if let Some(c) = input.default_cooldown {
                g.default_cooldown = c;
            }
            if let Some(t) = &input.health_check_type {
                g.health_check_type = t.clone();
            }
            if let Some(p) = input.health_check_grace_period {
                g.health_check_grace_period = p;
            }
            if let Some(p) = &input.termination_policies {
                g.termination_policies = p.clone();
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn describe_auto_scaling_groups(
        &self,
        _ctx: &RequestContext,
        input: wire::AutoScalingGroupNamesType,
    ) -> Result<wire::AutoScalingGroupsType, AwsError> {
        let max = input.max_records.unwrap_or(50);
        if !(1..=100).contains(&max) {
            return Err(validation(format!(
                "1 validation error detected: Value '{max}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to 100 and greater than or equal to 1"
            )));
        }
        let mut groups: Vec<GroupRecord> =
            self.groups().await?.into_iter().map(|(g, _)| g).collect();
        if let Some(names) = input.auto_scaling_group_names.filter(|n| !n.is_empty()) {
            groups.retain(|g| names.contains(&g.name));
        }
        for (i, f) in input.filters.unwrap_or_default().into_iter().enumerate() {
            let fname = f.name.unwrap_or_default();
            let values = f.values.unwrap_or_default();
            let keep = |g: &GroupRecord| -> Result<bool, AwsError> {
                Ok(match fname.as_str() {
                    "tag-key" => g.tags.iter().any(|t| values.contains(&t.key)),
                    "tag-value" => g.tags.iter().any(|t| values.contains(&t.value)),
                    n if n.starts_with("tag:") => {
                        g.tags.iter().any(|t| t.key == n[4..] && values.contains(&t.value))
                    }
                    other => {
                        return Err(validation(format!(
                            "Filters.member.{}.Name: '{other}' is not a filter of this call (tag:<key>, tag-key, tag-value).",
                            i + 1
                        )));
                    }
                })
            };
            let mut kept = vec![];
            for g in groups {
                if keep(&g)? {
                    kept.push(g);
                }
            }
            groups = kept;
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(token) = input.next_token.filter(|t| !t.is_empty()) {
            groups.retain(|g| g.name > token);
        }
        let next_token =
            (groups.len() > max as usize).then(|| groups[max as usize - 1].name.clone());
        groups.truncate(max as usize);
        let all = self.ec2.instances_all().await?;
        let include = input.include_instances.unwrap_or(true);
        let out = groups
            .iter()
            .map(|g| {
                let members: Vec<InstanceRecord> = if include {
                    all.iter()
                        .filter(|r| {
                            r.auto_scaling_group.as_deref() == Some(g.name.as_str())
                                && r.state != InstanceState::Terminated
                        })
                        .cloned()
                        .collect()
                } else {
                    vec![]
                };
                self.wire_group(g, &members)
            })
            .collect();
        Ok(wire::AutoScalingGroupsType { auto_scaling_groups: Some(out), next_token })
    }

    async fn delete_auto_scaling_group(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteAutoScalingGroupType,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.auto_scaling_group_name, "autoScalingGroupName")?;
        let (_, rev) = self.group(&name).await?;
        let members = self.members(&name).await?;
        let force = input.force_delete.unwrap_or(false);
        if !force {
            if members.iter().any(|r| r.state != InstanceState::ShuttingDown) {
                return Err(AwsError::new(
                    "ResourceInUse",
                    400,
                    "You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.",
                ));
            }
            if !members.is_empty() {
                return Err(AwsError::new(
                    "ScalingActivityInProgress",
                    400,
                    "You cannot delete an AutoScalingGroup while there are scaling activities in progress for that group.",
                ));
            }
        }
        let k = key(&name);
        if !records::commit(self.store(), Txn::new().when(&k, rev).delete(&k)).await? {
            return Err(AwsError::new(
                "ScalingActivityInProgress",
                400,
                format!("The group {name} changed while it was being deleted; retry."),
            ));
        }
        let ids: Vec<String> = members.iter().map(|r| r.id.clone()).collect();
        if !ids.is_empty() {
            self.ec2.terminate(ids, "Auto Scaling group deleted (ForceDelete)").await?;
        }
        let prefix = format!("{ACTIVITIES}{name}/");
        let txn = Txn::new();
        let keys = self.store().range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
        let txn = keys.into_iter().fold(txn, |t, r| t.delete(r.key));
        records::commit(self.store(), txn).await?;
        Ok(wire::Empty {})
    }

    async fn set_desired_capacity(
        &self,
        _ctx: &RequestContext,
        input: wire::SetDesiredCapacityType,
    ) -> Result<wire::Empty, AwsError> {
        let name = required(input.auto_scaling_group_name, "autoScalingGroupName")?;
        let desired =
            size(required(input.desired_capacity, "desiredCapacity")?, "desiredCapacity")?;
        self.update_group(&name, |g| {
            if desired < g.min_size || desired > g.max_size {
                return Err(validation(format!(
                    "New SetDesiredCapacity value {desired} is {} {} value {}.",
                    if desired < g.min_size { "below" } else { "above" },
                    if desired < g.min_size { "min" } else { "max" },
                    if desired < g.min_size { g.min_size } else { g.max_size }
                )));
            }
            g.desired_capacity = desired;
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }
}

impl wire::InstancesApi<RequestContext> for AutoScaling {
    async fn set_instance_protection(
        &self,
        _ctx: &RequestContext,
        input: wire::SetInstanceProtectionQuery,
    ) -> Result<wire::SetInstanceProtectionAnswer, AwsError> {
        let name = required(input.auto_scaling_group_name, "autoScalingGroupName")?;
        let ids = required(input.instance_ids, "instanceIds")?;
        let protect = required(input.protected_from_scale_in, "protectedFromScaleIn")?;
        self.group(&name).await?;
        // Check every instance first, so a refused one changes nothing.
        let members = self.members(&name).await?;
        if let Some(bad) = ids.iter().find(|id| !members.iter().any(|m| &m.id == *id)) {
            return Err(validation(format!(
                "The instance {bad} is not part of Auto Scaling group {name}."
            )));
        }
        self.protect(&name, &ids, protect).await?;
        Ok(wire::SetInstanceProtectionAnswer {})
    }

    async fn describe_auto_scaling_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAutoScalingInstancesType,
    ) -> Result<wire::AutoScalingInstancesType, AwsError> {
        let max = input.max_records.unwrap_or(50);
        if !(1..=50).contains(&max) {
            return Err(validation(format!(
                "1 validation error detected: Value '{max}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to 50 and greater than or equal to 1"
            )));
        }
        let groups: Vec<GroupRecord> = self.groups().await?.into_iter().map(|(g, _)| g).collect();
        let mut all: Vec<InstanceRecord> = self
            .ec2
            .instances_all()
            .await?
            .into_iter()
            .filter(|r| r.auto_scaling_group.is_some() && r.state != InstanceState::Terminated)
            .collect();
        if let Some(ids) = input.instance_ids.filter(|v| !v.is_empty()) {
            all.retain(|r| ids.contains(&r.id));
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(token) = input.next_token.filter(|t| !t.is_empty()) {
            all.retain(|r| r.id > token);
        }
        let next_token = (all.len() > max as usize).then(|| all[max as usize - 1].id.clone());
        all.truncate(max as usize);
        let out = all
            .iter()
            .map(|r| {
                let group = r.auto_scaling_group.clone().unwrap_or_default();
                let g = groups.iter().find(|g| g.name == group);
                wire::AutoScalingInstanceDetails {
                    instance_id: Some(r.id.clone()),
                    instance_type: Some(r.instance_type.clone()),
                    auto_scaling_group_name: Some(group),
                    availability_zone: Some(r.availability_zone.clone()),
                    lifecycle_state: Some(lifecycle(r).to_string()),
                    health_status: Some(health(r).to_uppercase()),
                    launch_template: wire_template(r, g),
                    image_id: Some(r.image_id.clone()),
                    protected_from_scale_in: Some(r.protected_from_scale_in),
                    ..Default::default()
                }
            })
            .collect();
        Ok(wire::AutoScalingInstancesType { auto_scaling_instances: Some(out), next_token })
    }

    async fn terminate_instance_in_auto_scaling_group(
        &self,
        _ctx: &RequestContext,
        input: wire::TerminateInstanceInAutoScalingGroupType,
    ) -> Result<wire::ActivityType, AwsError> {
        let id = required(input.instance_id, "instanceId")?;
        let decrement =
            required(input.should_decrement_desired_capacity, "shouldDecrementDesiredCapacity")?;
        let rec = records::get::<InstanceRecord>(self.store(), &irec::key(&id))
            .await?
            .map(|(r, _)| r)
            .filter(|r| r.state != InstanceState::Terminated);
        let Some(group) = rec.and_then(|r| r.auto_scaling_group) else {
            return Err(validation(format!(
                "Instance Id not found - No managed instance found for instance ID: {id}"
            )));
        };
        if decrement {
            self.update_group(&group, |g| {
                if g.desired_capacity <= g.min_size {
                    return Err(validation(format!(
                        "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
                        g.min_size
                    )));
                }
                g.desired_capacity -= 1;
                Ok(())
            })
            .await?;
        }
        self.ec2
            .terminate(vec![id.clone()], "Terminated by TerminateInstanceInAutoScalingGroup")
            .await?;
        let cause = if decrement {
            "an instance was taken out of service in response to a user request, shrinking the capacity."
        } else {
            "an instance was taken out of service in response to a user request."
        };
        let description = format!("Terminating EC2 instance: {id}");
        let t = now();
        self.record_activity(
            &group,
            description.clone(),
            format!("At {} {cause}", iso8601(t)),
            "Successful",
            None,
        )
        .await?;
        Ok(wire::ActivityType {
            activity: Some(wire::Activity {
                activity_id: Some(uuid::Uuid::new_v4().to_string()),
                auto_scaling_group_name: Some(group),
                description: Some(description),
                cause: Some(cause.into()),
                start_time: Some(t),
                status_code: Some(wire::ScalingActivityStatusCode::InProgress),
                progress: Some(0),
                ..Default::default()
            }),
        })
    }
}

impl wire::ActivitiesApi<RequestContext> for AutoScaling {
    async fn describe_scaling_activities(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeScalingActivitiesType,
    ) -> Result<wire::ActivitiesType, AwsError> {
        let max = input.max_records.unwrap_or(100);
        if !(1..=100).contains(&max) {
            return Err(validation(format!(
                "1 validation error detected: Value '{max}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to 100 and greater than or equal to 1"
            )));
        }
        let prefix = match input.auto_scaling_group_name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => format!("{ACTIVITIES}{n}/"),
            None => ACTIVITIES.to_string(),
        };
        let recs = self.store().range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
        let mut all: Vec<(String, ActivityRecord)> =
            records::decode_all::<ActivityRecord>(recs.clone())?
                .into_iter()
                .zip(recs)
                .map(|((a, _), r)| (r.key, a))
                .collect();
        if let Some(ids) = input.activity_ids.filter(|v| !v.is_empty()) {
            all.retain(|(_, a)| ids.contains(&a.id));
        }
        // Newest first.
        all.sort_by(|a, b| b.1.start_time.total_cmp(&a.1.start_time).then(b.0.cmp(&a.0)));
        let start = match input.next_token.filter(|t| !t.is_empty()) {
            Some(t) => all.iter().position(|(k, _)| *k == t).map(|i| i + 1).unwrap_or(all.len()),
            None => 0,
        };
        let rest = &all[start..];
        let page = &rest[..rest.len().min(max as usize)];
        let next_token =
            (rest.len() > page.len()).then(|| page.last().map(|(k, _)| k.clone())).flatten();
        let activities = page
            .iter()
            .map(|(_, a)| wire::Activity {
                activity_id: Some(a.id.clone()),
                auto_scaling_group_name: Some(a.group.clone()),
                description: Some(a.description.clone()),
                cause: Some(a.cause.clone()),
                start_time: Some(a.start_time),
                end_time: (a.status != "InProgress").then_some(a.start_time),
                status_code: wire::ScalingActivityStatusCode::from_str(&a.status),
                status_message: a.status_message.clone(),
                progress: Some(if a.status == "InProgress" { 0 } else { 100 }),
                ..Default::default()
            })
            .collect();
        Ok(wire::ActivitiesType { activities: Some(activities), next_token })
    }
}
