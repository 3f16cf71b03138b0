//! RegisterInstance, DeregisterInstance, GetInstance, ListInstances, DiscoverInstances,
//! UpdateInstanceCustomHealthStatus, GetInstancesHealthStatus.

use std::collections::BTreeMap;

use berth_model::servicediscovery::{self as model, DnsRecordKind, Health, attributes, keys};
use berth_store::{Revision, Txn};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use wire::ErrorCode;

use super::{CloudMap, codes, list, now, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

/// Most attributes an instance may have.
const MAX_ATTRIBUTES: usize = 30;

/// Checks an instance id: 1-64 characters of letters, digits and `_/:.@-`.
fn check_instance_id(id: &str) -> Result<(), AwsError> {
    if id.is_empty()
        || id.len() > 64
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_/:.@-".contains(&b))
    {
        return Err(codes::invalid(format!(
            "InstanceId: '{id}' must be 1 to 64 letters, digits and '_', '/', ':', '.', '@', '-'."
        )));
    }
    Ok(())
}

/// Checks the attributes of a registration against the service (what its DNS records need):
/// the instance's initial health.
pub(super) fn check_attributes(
    service: &model::ServiceRecord,
    attrs: &BTreeMap<String, String>,
) -> Result<Health, AwsError> {
    if attrs.len() > MAX_ATTRIBUTES {
        return Err(codes::invalid(format!(
            "Attributes: {} attributes exceed the {MAX_ATTRIBUTES} an instance may have.",
            attrs.len()
        )));
    }
    for (k, v) in attrs {
        if k.is_empty() || k.len() > 255 || v.len() > 1024 {
            return Err(codes::invalid(format!(
                "Attributes.{k}: keys are 1 to 255 characters, values at most 1024."
            )));
        }
    }
    let v4 = attrs.get(attributes::IPV4);
    let v6 = attrs.get(attributes::IPV6);
    if let Some(ip) = v4
        && ip.parse::<std::net::Ipv4Addr>().is_err()
    {
        return Err(codes::invalid(format!(
            "Attributes.{}: '{ip}' is not an IPv4 address.",
            attributes::IPV4
        )));
    }
    if let Some(ip) = v6
        && ip.parse::<std::net::Ipv6Addr>().is_err()
    {
        return Err(codes::invalid(format!(
            "Attributes.{}: '{ip}' is not an IPv6 address.",
            attributes::IPV6
        )));
    }
    if let Some(p) = attrs.get(attributes::PORT)
        && p.parse::<u16>().is_err()
    {
        return Err(codes::invalid(format!(
            "Attributes.{}: '{p}' is not a port (0 to 65535).",
            attributes::PORT
        )));
    }
    if let Some(dns) = &service.dns_config {
        let has = |k| dns.records.iter().any(|r| r.kind == k);
        let need = |key: &str, why: &str| -> Result<(), AwsError> {
            if attrs.contains_key(key) {
                Ok(())
            } else {
                Err(codes::invalid(format!("Attributes.{key}: required: the service has {why}.")))
            }
        };
        match (has(DnsRecordKind::A), has(DnsRecordKind::Aaaa)) {
            (true, false) => need(attributes::IPV4, "an A record")?,
            (false, true) => need(attributes::IPV6, "an AAAA record")?,
            (true, true) if v4.is_none() && v6.is_none() => {
                return Err(codes::invalid(format!(
                    "Attributes.{}: the service has A and AAAA records: give {} or {}.",
                    attributes::IPV4,
                    attributes::IPV4,
                    attributes::IPV6
                )));
            }
            _ => {}
        }
        if has(DnsRecordKind::Srv) {
            need(attributes::PORT, "an SRV record")?;
            if v4.is_none() && v6.is_none() {
                return Err(codes::invalid(format!(
                    "Attributes.{}: the service has an SRV record: give an address ({} or {}).",
                    attributes::IPV4,
                    attributes::IPV4,
                    attributes::IPV6
                )));
            }
        }
        if has(DnsRecordKind::Cname) {
            need(attributes::CNAME, "a CNAME record")?;
        }
    }
    match (attrs.get(attributes::INIT_HEALTH_STATUS).map(String::as_str), service.custom_health) {
        (None, Some(_)) | (Some("HEALTHY"), Some(_)) => Ok(Health::Healthy),
        (Some("UNHEALTHY"), Some(_)) => Ok(Health::Unhealthy),
        (Some(other), Some(_)) => Err(codes::invalid(format!(
            "Attributes.{}: '{other}' is not HEALTHY or UNHEALTHY.",
            attributes::INIT_HEALTH_STATUS
        ))),
        (Some(_), None) => Err(codes::invalid(format!(
            "Attributes.{}: the service has no HealthCheckCustomConfig.",
            attributes::INIT_HEALTH_STATUS
        ))),
        (None, None) => Ok(Health::Unknown),
    }
}

fn wire_health(h: Health) -> wire::HealthStatus {
    match h {
        Health::Healthy => wire::HealthStatus::Healthy,
        Health::Unhealthy => wire::HealthStatus::Unhealthy,
        Health::Unknown => wire::HealthStatus::Unknown,
    }
}

/// The instances DiscoverInstances answers: those matching every query parameter, narrowed by
/// the optional parameters when any instance matches them all, then by health (for services
/// with a health check; `HEALTHY_OR_ELSE_ALL` falls back to all when none is healthy).
pub(super) fn discover<'a>(
    instances: &'a [model::InstanceRecord],
    query: &BTreeMap<String, String>,
    optional: &BTreeMap<String, String>,
    health: wire::HealthStatusFilter,
    has_health_check: bool,
) -> Vec<&'a model::InstanceRecord> {
    let all_match = |i: &model::InstanceRecord, params: &BTreeMap<String, String>| {
        params.iter().all(|(k, v)| i.attributes.get(k) == Some(v))
    };
    let mut found: Vec<&model::InstanceRecord> =
        instances.iter().filter(|i| all_match(i, query)).collect();
    if !optional.is_empty() {
        let narrowed: Vec<_> = found.iter().copied().filter(|i| all_match(i, optional)).collect();
        if !narrowed.is_empty() {
            found = narrowed;
        }
    }
    if !has_health_check {
        return found;
    }
    let healthy: Vec<_> = found.iter().copied().filter(|i| i.health == Health::Healthy).collect();
    match health {
        wire::HealthStatusFilter::Healthy => healthy,
        wire::HealthStatusFilter::Unhealthy => {
            found.into_iter().filter(|i| i.health == Health::Unhealthy).collect()
        }
        wire::HealthStatusFilter::All => found,
        wire::HealthStatusFilter::HealthyOrElseAll if healthy.is_empty() => found,
        wire::HealthStatusFilter::HealthyOrElseAll => healthy,
    }
}

impl CloudMap {
    /// An instance of a service, or `InstanceNotFound`.
    async fn instance(
        &self,
        service_id: &str,
        id: &str,
    ) -> Result<(model::InstanceRecord, Revision), AwsError> {
        records::get::<model::InstanceRecord>(self.store(), &keys::instance(service_id, id))
            .await?
            .ok_or_else(|| codes::instance_not_found(id))
    }
}

impl wire::InstancesApi<RequestContext> for CloudMap {
    async fn register_instance(
        &self,
        _ctx: &RequestContext,
        input: wire::RegisterInstanceRequest,
    ) -> Result<wire::RegisterInstanceResponse, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        let id = input.instance_id.unwrap_or_default();
        check_instance_id(&id)?;
        let attrs = input.attributes.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("service {service_id}"));
        loop {
            cas.attempt().await?;
            let (service, rev) = self.service(&service_id).await?;
            let health = check_attributes(&service, &attrs)?;
            let key = keys::instance(&service_id, &id);
            let existing = records::get::<model::InstanceRecord>(self.store(), &key).await?;
            let rec = model::InstanceRecord {
                id: id.clone(),
                service_id: service_id.clone(),
                attributes: attrs.clone(),
                creator_request_id: input.creator_request_id.clone(),
                health: match &existing {
                    // A re-registration keeps the reported health unless it sets one.
                    Some((e, _)) if !attrs.contains_key(attributes::INIT_HEALTH_STATUS) => e.health,
                    _ => health,
                },
                create_date: existing.as_ref().map(|(e, _)| e.create_date).unwrap_or_else(now),
            };
            let skey = keys::service(&service_id);
            let (txn, op) = self.operation(
                Txn::new()
                    .when(&skey, rev)
                    .put(&skey, records::encode(&service))
                    .when(&key, existing.as_ref().map(|(_, r)| *r).unwrap_or(0))
                    .put(&key, records::encode(&rec)),
                wire::OperationType::RegisterInstance,
                &[("INSTANCE", &id), ("SERVICE", &service_id)],
            );
            if cas.commit(txn).await? {
                return Ok(wire::RegisterInstanceResponse { operation_id: Some(op) });
            }
        }
    }

    async fn deregister_instance(
        &self,
        _ctx: &RequestContext,
        input: wire::DeregisterInstanceRequest,
    ) -> Result<wire::DeregisterInstanceResponse, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        let id = input.instance_id.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("service {service_id}"));
        loop {
            cas.attempt().await?;
            let (service, rev) = self.service(&service_id).await?;
            let (_, irev) = self.instance(&service_id, &id).await?;
            let skey = keys::service(&service_id);
            let key = keys::instance(&service_id, &id);
            let (txn, op) = self.operation(
                Txn::new()
                    .when(&skey, rev)
                    .put(&skey, records::encode(&service))
                    .when(&key, irev)
                    .delete(&key),
                wire::OperationType::DeregisterInstance,
                &[("INSTANCE", &id), ("SERVICE", &service_id)],
            );
            if cas.commit(txn).await? {
                return Ok(wire::DeregisterInstanceResponse { operation_id: Some(op) });
            }
        }
    }

    async fn get_instance(
        &self,
        _ctx: &RequestContext,
        input: wire::GetInstanceRequest,
    ) -> Result<wire::GetInstanceResponse, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        self.service(&service_id).await?;
        let (i, _) = self.instance(&service_id, &input.instance_id.unwrap_or_default()).await?;
        Ok(wire::GetInstanceResponse {
            resource_owner: Some(self.account_id.clone()),
            instance: Some(wire::Instance {
                id: Some(i.id),
                creator_request_id: i.creator_request_id,
                attributes: Some(i.attributes),
                created_by_account: Some(self.account_id.clone()),
            }),
        })
    }

    async fn list_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::ListInstancesRequest,
    ) -> Result<wire::ListInstancesResponse, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        self.service(&service_id).await?;
        let all =
            list::<model::InstanceRecord>(self.store(), &keys::instances(&service_id)).await?;
        let items: Vec<_> = all.into_iter().map(|(k, i, _)| (k, i)).collect();
        let (items, next) = page(items, input.next_token.as_deref(), input.max_results)?;
        Ok(wire::ListInstancesResponse {
            resource_owner: Some(self.account_id.clone()),
            instances: Some(
                items
                    .into_iter()
                    .map(|i| wire::InstanceSummary {
                        id: Some(i.id),
                        attributes: Some(i.attributes),
                        created_by_account: Some(self.account_id.clone()),
                    })
                    .collect(),
            ),
            next_token: next,
        })
    }

    async fn discover_instances(
        &self,
        _ctx: &RequestContext,
        input: wire::DiscoverInstancesRequest,
    ) -> Result<wire::DiscoverInstancesResponse, AwsError> {
        let ns_name = input.namespace_name.unwrap_or_default();
        let svc_name = input.service_name.unwrap_or_default();
        let max = match input.max_results {
            None => 100,
            Some(n) if (1..=1000).contains(&n) => n as usize,
            Some(n) => {
                return Err(codes::invalid(format!("MaxResults: {n} is not between 1 and 1000.")));
            }
        };
        let wanted = ns_name.trim_end_matches('.').to_ascii_lowercase();
        let namespaces = list::<model::NamespaceRecord>(self.store(), keys::NAMESPACES).await?;
        let Some((_, ns, _)) =
            namespaces.into_iter().find(|(_, n, _)| n.http_name.to_ascii_lowercase() == wanted)
        else {
            return Err(
                ErrorCode::NamespaceNotFound.with(format!("Namespace not found: {ns_name}"))
            );
        };
        let Some(sid) = self
            .store()
            .get(&keys::service_name(&ns.id, &svc_name))
            .await
            .map_err(crate::error::store)?
        else {
            return Err(ErrorCode::ServiceNotFound.with(format!("Service not found: {svc_name}")));
        };
        let (service, srev) = self.service(&String::from_utf8_lossy(&sid.value)).await?;
        let instances =
            list::<model::InstanceRecord>(self.store(), &keys::instances(&service.id)).await?;
        let revision = instances.iter().map(|(_, _, r)| *r).chain([srev]).max().unwrap_or(srev);
        let recs: Vec<model::InstanceRecord> = instances.into_iter().map(|(_, i, _)| i).collect();
        let found = discover(
            &recs,
            &input.query_parameters.unwrap_or_default(),
            &input.optional_parameters.unwrap_or_default(),
            input.health_status.unwrap_or(wire::HealthStatusFilter::Healthy),
            service.custom_health.is_some(),
        );
        Ok(wire::DiscoverInstancesResponse {
            instances: Some(
                found
                    .into_iter()
                    .take(max)
                    .map(|i| wire::HttpInstanceSummary {
                        instance_id: Some(i.id.clone()),
                        namespace_name: Some(ns.http_name.clone()),
                        service_name: Some(service.name.clone()),
                        health_status: Some(wire_health(i.health)),
                        attributes: Some(i.attributes.clone()),
                    })
                    .collect(),
            ),
            instances_revision: Some(revision as i64),
        })
    }

    async fn update_instance_custom_health_status(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateInstanceCustomHealthStatusRequest,
    ) -> Result<wire::Empty, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        let id = input.instance_id.unwrap_or_default();
        let health = match input.status {
            Some(wire::CustomHealthStatus::Unhealthy) => Health::Unhealthy,
            _ => Health::Healthy,
        };
        let (service, _) = self.service(&service_id).await?;
        if service.custom_health.is_none() {
            return Err(ErrorCode::CustomHealthNotFound.with(format!(
                "Service {service_id} has no HealthCheckCustomConfig: its instances' health cannot be set."
            )));
        }
        let key = keys::instance(&service_id, &id);
        let updated = records::update::<model::InstanceRecord, _>(
            self.store(),
            &key,
            &format!("instance {id}"),
            |i| {
                i.health = health;
                Ok(())
            },
        )
        .await?;
        match updated {
            Some(_) => Ok(wire::Empty::default()),
            None => Err(codes::instance_not_found(&id)),
        }
    }

    async fn get_instances_health_status(
        &self,
        _ctx: &RequestContext,
        input: wire::GetInstancesHealthStatusRequest,
    ) -> Result<wire::GetInstancesHealthStatusResponse, AwsError> {
        let service_id = input.service_id.unwrap_or_default();
        self.service(&service_id).await?;
        let all =
            list::<model::InstanceRecord>(self.store(), &keys::instances(&service_id)).await?;
        let mut items: Vec<(String, model::InstanceRecord)> =
            all.into_iter().map(|(k, i, _)| (k, i)).collect();
        if let Some(wanted) = input.instances.filter(|w| !w.is_empty()) {
            for w in &wanted {
                if !items.iter().any(|(_, i)| i.id == *w) {
                    return Err(codes::instance_not_found(w));
                }
            }
            items.retain(|(_, i)| wanted.contains(&i.id));
        }
        let (items, next) = page(items, input.next_token.as_deref(), input.max_results)?;
        Ok(wire::GetInstancesHealthStatusResponse {
            status: Some(items.into_iter().map(|i| (i.id, wire_health(i.health))).collect()),
            next_token: next,
        })
    }
}
