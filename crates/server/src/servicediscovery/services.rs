//! CreateService, GetService, ListServices, UpdateService, DeleteService.

use berth_model::servicediscovery::{
    self as model, DnsConfigRecord, DnsRecordConfig, DnsRecordKind, RoutingPolicy, keys,
};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use wire::ErrorCode;

use super::{CloudMap, codes, list, now, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

fn kind_of(t: wire::RecordType) -> DnsRecordKind {
    match t {
        wire::RecordType::A => DnsRecordKind::A,
        wire::RecordType::Aaaa => DnsRecordKind::Aaaa,
        wire::RecordType::Srv => DnsRecordKind::Srv,
        wire::RecordType::Cname => DnsRecordKind::Cname,
    }
}

fn wire_kind(k: DnsRecordKind) -> wire::RecordType {
    match k {
        DnsRecordKind::A => wire::RecordType::A,
        DnsRecordKind::Aaaa => wire::RecordType::Aaaa,
        DnsRecordKind::Srv => wire::RecordType::Srv,
        DnsRecordKind::Cname => wire::RecordType::Cname,
    }
}

/// The record configurations of `records` (field `DnsConfig.DnsRecords`), checked: at least
/// one, each type once, TTLs in range, CNAME alone and with WEIGHTED routing.
pub(super) fn dns_records(
    records: &[wire::DnsRecord],
    routing: RoutingPolicy,
) -> Result<Vec<DnsRecordConfig>, AwsError> {
    if records.is_empty() {
        return Err(codes::invalid("DnsConfig.DnsRecords: give at least one record type."));
    }
    let mut out: Vec<DnsRecordConfig> = vec![];
    for (i, r) in records.iter().enumerate() {
        let Some(t) = r.r#type else {
            return Err(codes::invalid(format!("DnsConfig.DnsRecords[{i}].Type: required.")));
        };
        let ttl = r.ttl.unwrap_or(0);
        if !(0..=2_147_483_647).contains(&ttl) {
            return Err(codes::invalid(format!(
                "DnsConfig.DnsRecords[{i}].TTL: {ttl} is not between 0 and 2147483647."
            )));
        }
        let kind = kind_of(t);
        if out.iter().any(|c| c.kind == kind) {
            return Err(codes::invalid(format!(
                "DnsConfig.DnsRecords[{i}].Type: {} is given twice.",
                t.as_str()
            )));
        }
        out.push(DnsRecordConfig { kind, ttl });
    }
    if out.iter().any(|c| c.kind == DnsRecordKind::Cname) {
        if out.len() > 1 {
            return Err(codes::invalid(
                "DnsConfig.DnsRecords: a CNAME record cannot be combined with other types.",
            ));
        }
        if routing != RoutingPolicy::Weighted {
            return Err(codes::invalid(
                "DnsConfig.RoutingPolicy: a CNAME record needs WEIGHTED routing.",
            ));
        }
    }
    Ok(out)
}

impl CloudMap {
    /// A service record as the wire shows it, with its instance count.
    async fn wire_service(&self, s: &model::ServiceRecord) -> Result<wire::Service, AwsError> {
        let count = self
            .store()
            .range(Range::prefix(&keys::instances(&s.id)))
            .await
            .map_err(crate::error::store)?
            .len();
        Ok(wire::Service {
            id: Some(s.id.clone()),
            arn: Some(s.arn.clone()),
            resource_owner: Some(self.account_id.clone()),
            name: Some(s.name.clone()),
            namespace_id: Some(s.namespace_id.clone()),
            description: s.description.clone(),
            instance_count: Some(count as i32),
            dns_config: s.dns_config.as_ref().map(|d| wire::DnsConfig {
                namespace_id: Some(s.namespace_id.clone()),
                routing_policy: Some(match d.routing_policy {
                    RoutingPolicy::Multivalue => wire::RoutingPolicy::Multivalue,
                    RoutingPolicy::Weighted => wire::RoutingPolicy::Weighted,
                }),
                dns_records: Some(
                    d.records
                        .iter()
                        .map(|r| wire::DnsRecord {
                            r#type: Some(wire_kind(r.kind)),
                            ttl: Some(r.ttl),
                        })
                        .collect(),
                ),
            }),
            r#type: Some(match s.service_type.as_str() {
                "DNS" => wire::ServiceType::Dns,
                "DNS_HTTP" => wire::ServiceType::DnsHttp,
                _ => wire::ServiceType::Http,
            }),
            health_check_config: None,
            health_check_custom_config: s
                .custom_health
                .map(|t| wire::HealthCheckCustomConfig { failure_threshold: Some(t) }),
            create_date: Some(s.create_date),
            creator_request_id: s.creator_request_id.clone(),
            created_by_account: Some(self.account_id.clone()),
        })
    }
}

fn refuse_route53_health_checks(h: &Option<wire::HealthCheckConfig>) -> Result<(), AwsError> {
    if h.is_some() {
        return Err(codes::invalid(
            "HealthCheckConfig: Berth runs no Route 53 health checks; use HealthCheckCustomConfig and UpdateInstanceCustomHealthStatus.",
        ));
    }
    Ok(())
}

impl wire::ServicesApi<RequestContext> for CloudMap {
    async fn create_service(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateServiceRequest,
    ) -> Result<wire::CreateServiceResponse, AwsError> {
        let name = input.name.clone().unwrap_or_default();
        refuse_route53_health_checks(&input.health_check_config)?;
        let ns_id = input
            .namespace_id
            .clone()
            .or_else(|| input.dns_config.as_ref().and_then(|d| d.namespace_id.clone()))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| codes::invalid("NamespaceId: name the namespace of the service."))?;
        let (ns, _) = self.namespace(&ns_id).await?;
        let http_only = input.r#type == Some(wire::ServiceTypeOption::Http);
        let dns_config = match (&input.dns_config, ns.kind.is_dns(), http_only) {
            (Some(_), false, _) => {
                return Err(codes::invalid(format!(
                    "DnsConfig: namespace {ns_id} is an HTTP namespace; its services have no DNS records."
                )));
            }
            (Some(_), true, true) => {
                return Err(codes::invalid("Type: an HTTP service has no DnsConfig."));
            }
            (Some(d), true, false) => {
                let routing = match d.routing_policy {
                    Some(wire::RoutingPolicy::Weighted) => RoutingPolicy::Weighted,
                    _ => RoutingPolicy::Multivalue,
                };
                let records = dns_records(d.dns_records.as_deref().unwrap_or_default(), routing)?;
                Some(DnsConfigRecord { routing_policy: routing, records })
            }
            (None, _, _) => None,
        };
        let valid = if dns_config.is_some() {
            model::valid_service_name(&name)
        } else {
            !name.is_empty() && name.len() <= 127 && !name.ends_with('.')
        };
        if !valid {
            return Err(codes::invalid(format!(
                "Name: '{name}' is not a valid service name (DNS labels of letters, digits, '-' and '_', at most 63 characters)."
            )));
        }
        let tags = super::tags::merge(Vec::new(), input.tags.clone().unwrap_or_default())?;
        let name_key = keys::service_name(&ns_id, &name);
        let id = model::new_id("srv-");
        let mut cas = Cas::new(self.store(), format!("service {name}"));
        loop {
            cas.attempt().await?;
            let (ns, ns_rev) = self.namespace(&ns_id).await?;
            if let Some(existing) =
                self.store().get(&name_key).await.map_err(crate::error::store)?
            {
                let existing_id = String::from_utf8_lossy(&existing.value).to_string();
                let found = records::get::<model::ServiceRecord>(
                    self.store(),
                    &keys::service(&existing_id),
                )
                .await?;
                if let Some((s, _)) = &found
                    && input.creator_request_id.is_some()
                    && s.creator_request_id == input.creator_request_id
                {
                    return Ok(wire::CreateServiceResponse {
                        service: Some(self.wire_service(s).await?),
                    });
                }
                let mut e = ErrorCode::ServiceAlreadyExists
                    .with(format!("Service already exists with ID {existing_id}: {name}"))
                    .with_member("ServiceId", existing_id.clone());
                if let Some((s, _)) = found {
                    e = e.with_member("ServiceArn", s.arn);
                    if let Some(r) = s.creator_request_id {
                        e = e.with_member("CreatorRequestId", r);
                    }
                }
                return Err(e);
            }
            let rec = model::ServiceRecord {
                id: id.clone(),
                arn: self.arn(&format!("service/{id}")),
                name: name.clone(),
                namespace_id: ns_id.clone(),
                description: input.description.clone(),
                service_type: if dns_config.is_some() { "DNS_HTTP" } else { "HTTP" }.into(),
                dns_config: dns_config.clone(),
                custom_health: input
                    .health_check_custom_config
                    .as_ref()
                    .map(|h| h.failure_threshold.unwrap_or(1)),
                creator_request_id: input.creator_request_id.clone(),
                create_date: now(),
                tags: tags.clone(),
            };
            let ns_key = keys::namespace(&ns_id);
            // Rewriting the namespace moves its revision: a DeleteNamespace that checked for
            // services before this commit fails its compare.
            let txn = Txn::new()
                .when(&ns_key, ns_rev)
                .put(&ns_key, records::encode(&ns))
                .when(&name_key, 0)
                .put(&name_key, id.clone().into_bytes())
                .put(keys::service(&id), records::encode(&rec));
            if cas.commit(txn).await? {
                return Ok(wire::CreateServiceResponse {
                    service: Some(self.wire_service(&rec).await?),
                });
            }
        }
    }

    async fn get_service(
        &self,
        _ctx: &RequestContext,
        input: wire::GetServiceRequest,
    ) -> Result<wire::GetServiceResponse, AwsError> {
        let (s, _) = self.service(&input.id.unwrap_or_default()).await?;
        Ok(wire::GetServiceResponse { service: Some(self.wire_service(&s).await?) })
    }

    async fn list_services(
        &self,
        _ctx: &RequestContext,
        input: wire::ListServicesRequest,
    ) -> Result<wire::ListServicesResponse, AwsError> {
        let mut namespaces: Option<Vec<String>> = None;
        for (i, f) in input.filters.unwrap_or_default().into_iter().enumerate() {
            let cond = f.condition.unwrap_or(wire::FilterCondition::Eq);
            let values = f.values.unwrap_or_default();
            match (f.name, cond) {
                (Some(wire::ServiceFilterName::NamespaceId), wire::FilterCondition::Eq)
                    if values.len() == 1 =>
                {
                    namespaces = Some(values)
                }
                (Some(wire::ServiceFilterName::NamespaceId), wire::FilterCondition::In)
                    if !values.is_empty() =>
                {
                    namespaces = Some(values)
                }
                (Some(wire::ServiceFilterName::ResourceOwner), wire::FilterCondition::Eq)
                    if values.len() == 1 =>
                {
                    if values[0] != "SELF" {
                        namespaces = Some(vec![]);
                    }
                }
                _ => {
                    return Err(codes::invalid(format!(
                        "Filters[{i}]: NAMESPACE_ID takes EQ with one value or IN with several; RESOURCE_OWNER takes EQ with one value."
                    )));
                }
            }
        }
        let all = list::<model::ServiceRecord>(self.store(), keys::SERVICES).await?;
        let kept: Vec<(String, model::ServiceRecord)> = all
            .into_iter()
            .filter(|(_, s, _)| namespaces.as_ref().is_none_or(|n| n.contains(&s.namespace_id)))
            .map(|(k, s, _)| (k, s))
            .collect();
        let (items, next) = page(kept, input.next_token.as_deref(), input.max_results)?;
        let mut out = vec![];
        for s in items {
            let w = self.wire_service(&s).await?;
            out.push(wire::ServiceSummary {
                id: w.id,
                arn: w.arn,
                resource_owner: w.resource_owner,
                name: w.name,
                r#type: w.r#type,
                description: w.description,
                instance_count: w.instance_count,
                dns_config: w.dns_config,
                health_check_config: None,
                health_check_custom_config: w.health_check_custom_config,
                create_date: w.create_date,
                created_by_account: w.created_by_account,
            });
        }
        Ok(wire::ListServicesResponse { services: Some(out), next_token: next })
    }

    async fn update_service(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateServiceRequest,
    ) -> Result<wire::UpdateServiceResponse, AwsError> {
        let id = input.id.unwrap_or_default();
        let change = input.service.unwrap_or_default();
        refuse_route53_health_checks(&change.health_check_config)?;
        let mut cas = Cas::new(self.store(), format!("service {id}"));
        loop {
            cas.attempt().await?;
            let (mut s, rev) = self.service(&id).await?;
            if let Some(d) = &change.description {
                s.description = Some(d.clone());
            }
            if let Some(dc) = &change.dns_config {
                let Some(current) = s.dns_config.as_mut() else {
                    return Err(codes::invalid(format!(
                        "Service.DnsConfig: service {id} has no DNS configuration to update."
                    )));
                };
                let records = dns_records(
                    dc.dns_records.as_deref().unwrap_or_default(),
                    current.routing_policy,
                )?;
                let mut old: Vec<_> = current.records.iter().map(|r| r.kind as u8).collect();
                let mut new: Vec<_> = records.iter().map(|r| r.kind as u8).collect();
                old.sort();
                new.sort();
                if old != new {
                    return Err(codes::invalid(
                        "Service.DnsConfig.DnsRecords: the record types of a service cannot change; only their TTL.",
                    ));
                }
                current.records = records;
            }
            let key = keys::service(&id);
            let (txn, op) = self.operation(
                Txn::new().when(&key, rev).put(&key, records::encode(&s)),
                wire::OperationType::UpdateService,
                &[("SERVICE", &id)],
            );
            if cas.commit(txn).await? {
                return Ok(wire::UpdateServiceResponse { operation_id: Some(op) });
            }
        }
    }

    async fn delete_service(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteServiceRequest,
    ) -> Result<wire::DeleteServiceResponse, AwsError> {
        let id = input.id.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("service {id}"));
        loop {
            cas.attempt().await?;
            let (s, rev) = self.service(&id).await?;
            let instances = self
                .store()
                .range(Range::prefix(&keys::instances(&id)).limit(1))
                .await
                .map_err(crate::error::store)?;
            if !instances.is_empty() {
                return Err(ErrorCode::ResourceInUse.with(format!(
                    "Service {id} has registered instances: deregister them first (DeregisterInstance)."
                )));
            }
            let key = keys::service(&id);
            let txn = Txn::new()
                .when(&key, rev)
                .delete(&key)
                .delete(keys::service_name(&s.namespace_id, &s.name));
            if cas.commit(txn).await? {
                return Ok(wire::DeleteServiceResponse {});
            }
        }
    }
}
