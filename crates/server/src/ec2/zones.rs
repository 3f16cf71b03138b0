//! DescribeAvailabilityZones: the region's zones ([`berth_model::network::zones`]), all
//! `available` and opted in.

use berth_model::network;
use berth_wire::AwsError;
use berth_wire::ec2 as wire;

use super::{Ec2, codes, filters};
use crate::ecs::RequestContext;

impl wire::ZonesApi<RequestContext> for Ec2 {
    async fn describe_availability_zones(
        &self,
        _ctx: &RequestContext,
        input: wire::DescribeAvailabilityZonesRequest,
    ) -> Result<wire::DescribeAvailabilityZonesResult, AwsError> {
        let filters = filters::parse(
            input.filters,
            &[
                "zone-name",
                "zone-id",
                "region-name",
                "state",
                "zone-type",
                "opt-in-status",
                "group-name",
                "network-border-group",
            ],
        )?;
        let region = self.region.name;
        let zones = network::zones(region);
        for n in input.zone_names.iter().flatten() {
            if !zones.iter().any(|(z, _)| z == n) {
                return Err(codes::invalid(format!("Invalid availability zone: [{n}]")));
            }
        }
        for n in input.zone_ids.iter().flatten() {
            if !zones.iter().any(|(_, z)| z == n) {
                return Err(codes::invalid(format!("Invalid availability zone ID: [{n}]")));
            }
        }
        let out = zones
            .into_iter()
            .filter(|(name, id)| {
                input.zone_names.as_ref().is_none_or(|n| n.is_empty() || n.contains(name))
                    && input.zone_ids.as_ref().is_none_or(|n| n.is_empty() || n.contains(id))
            })
            .filter(|(name, id)| {
                filters::matches(&filters, &[], |f| match f {
                    "zone-name" => filters::one(name.clone()),
                    "zone-id" => filters::one(id.clone()),
                    "region-name" | "group-name" | "network-border-group" => filters::one(region),
                    "state" => filters::one("available"),
                    "zone-type" => filters::one("availability-zone"),
                    "opt-in-status" => filters::one("opt-in-not-required"),
                    _ => vec![],
                })
            })
            .map(|(name, id)| wire::AvailabilityZone {
                zone_name: Some(name),
                zone_id: Some(id),
                region_name: Some(region.to_string()),
                state: Some(wire::AvailabilityZoneState::Available),
                opt_in_status: Some(wire::AvailabilityZoneOptInStatus::OptInNotRequired),
                zone_type: Some("availability-zone".into()),
                group_name: Some(region.to_string()),
                network_border_group: Some(region.to_string()),
                messages: Some(vec![]),
                ..Default::default()
            })
            .collect();
        Ok(wire::DescribeAvailabilityZonesResult { availability_zones: Some(out) })
    }
}
