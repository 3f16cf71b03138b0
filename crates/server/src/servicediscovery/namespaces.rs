//! CreatePrivateDnsNamespace, CreatePublicDnsNamespace, CreateHttpNamespace, GetNamespace,
//! ListNamespaces, DeleteNamespace.

use berth_model::network;
use berth_model::servicediscovery::{self as model, NamespaceKind, keys};
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::servicediscovery as wire;
use wire::ErrorCode;

use super::{CloudMap, codes, list, now, page};
use crate::ecs::RequestContext;
use crate::records::{self, Cas};

/// SOA TTL of a DNS namespace created without one (Cloud Map's console default).
const DEFAULT_SOA_TTL: i64 = 15;

/// What a create call asks for.
struct NewNamespace {
    name: Option<String>,
    kind: NamespaceKind,
    vpc: Option<String>,
    description: Option<String>,
    creator_request_id: Option<String>,
    soa_ttl: Option<i64>,
    tags: Option<Vec<wire::Tag>>,
}

impl CloudMap {
    async fn create_namespace(&self, n: NewNamespace) -> Result<String, AwsError> {
        let name = n.name.unwrap_or_default();
        if n.kind.is_dns() {
            if !model::valid_dns_name(&name) {
                return Err(codes::invalid(format!(
                    "Name: '{name}' is not a valid DNS name: labels of 1 to 63 letters, digits and hyphens, at most 253 characters."
                )));
            }
        } else if name.is_empty()
            || name.len() > 1024
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(codes::invalid(format!(
                "Name: '{name}' must be 1 to 1024 letters, digits, '.', '_' and '-'."
            )));
        }
        let name = name.trim_end_matches('.').to_string();
        if let Some(ttl) = n.soa_ttl
            && !(0..=2_147_483_647).contains(&ttl)
        {
            return Err(codes::invalid(format!(
                "Properties.DnsProperties.SOA.TTL: {ttl} is not between 0 and 2147483647."
            )));
        }
        let tags = super::tags::merge(Vec::new(), n.tags.unwrap_or_default())?;
        if let Some(vpc) = &n.vpc {
            // The default VPC exists before anything names it.
            crate::ec2::ensure_default_vpc(self.store(), self.region.name, &self.account_id)
                .await?;
            if records::get::<network::VpcRecord>(self.store(), &network::keys::vpc(vpc))
                .await?
                .is_none()
            {
                return Err(codes::invalid(format!("Vpc: the VPC '{vpc}' does not exist.")));
            }
        }
        let name_key = keys::namespace_name(&name, n.vpc.as_deref());
        let id = model::new_id("ns-");
        let mut cas = Cas::new(self.store(), format!("namespace {name}"));
        loop {
            cas.attempt().await?;
            if let Some(existing) =
                self.store().get(&name_key).await.map_err(crate::error::store)?
            {
                let existing_id = String::from_utf8_lossy(&existing.value).to_string();
                let ns = records::get::<model::NamespaceRecord>(
                    self.store(),
                    &keys::namespace(&existing_id),
                )
                .await?;
                if let Some((ns, _)) = &ns
                    && n.creator_request_id.is_some()
                    && ns.creator_request_id == n.creator_request_id
                    && ns.kind == n.kind
                {
                    return Ok(ns.operation_id.clone().unwrap_or_default());
                }
                let mut e = ErrorCode::NamespaceAlreadyExists
                    .with(format!("Namespace already exists with ID {existing_id}: {name}"))
                    .with_member("NamespaceId", existing_id);
                if let Some(r) = ns.and_then(|(ns, _)| ns.creator_request_id) {
                    e = e.with_member("CreatorRequestId", r);
                }
                return Err(e);
            }
            let rec = model::NamespaceRecord {
                id: id.clone(),
                arn: self.arn(&format!("namespace/{id}")),
                name: name.clone(),
                kind: n.kind,
                description: n.description.clone(),
                vpc: n.vpc.clone(),
                hosted_zone_id: n.kind.is_dns().then(model::new_hosted_zone_id),
                soa_ttl: n.kind.is_dns().then_some(n.soa_ttl.unwrap_or(DEFAULT_SOA_TTL)),
                http_name: name.clone(),
                creator_request_id: n.creator_request_id.clone(),
                operation_id: None,
                create_date: now(),
                tags: tags.clone(),
            };
            let (txn, op) = self.operation(
                Txn::new().when(&name_key, 0),
                wire::OperationType::CreateNamespace,
                &[("NAMESPACE", &id)],
            );
            let rec = model::NamespaceRecord { operation_id: Some(op.clone()), ..rec };
            let txn = txn
                .put(&name_key, id.clone().into_bytes())
                .put(keys::namespace(&id), records::encode(&rec));
            if cas.commit(txn).await? {
                return Ok(op);
            }
        }
    }

    /// A namespace record as the wire shows it, with its service count.
    async fn wire_namespace(
        &self,
        ns: &model::NamespaceRecord,
    ) -> Result<wire::Namespace, AwsError> {
        let count = self
            .store()
            .range(Range::prefix(&keys::service_names(&ns.id)))
            .await
            .map_err(crate::error::store)?
            .len();
        Ok(wire::Namespace {
            id: Some(ns.id.clone()),
            arn: Some(ns.arn.clone()),
            resource_owner: Some(self.account_id.clone()),
            name: Some(ns.name.clone()),
            r#type: Some(kind(ns.kind)),
            description: ns.description.clone(),
            service_count: Some(count as i32),
            properties: Some(properties(ns)),
            create_date: Some(ns.create_date),
            creator_request_id: ns.creator_request_id.clone(),
        })
    }
}

fn kind(k: NamespaceKind) -> wire::NamespaceType {
    match k {
        NamespaceKind::DnsPrivate => wire::NamespaceType::DnsPrivate,
        NamespaceKind::DnsPublic => wire::NamespaceType::DnsPublic,
        NamespaceKind::Http => wire::NamespaceType::Http,
    }
}

fn properties(ns: &model::NamespaceRecord) -> wire::NamespaceProperties {
    wire::NamespaceProperties {
        dns_properties: ns.kind.is_dns().then(|| wire::DnsProperties {
            hosted_zone_id: ns.hosted_zone_id.clone(),
            soa: ns.soa_ttl.map(|ttl| wire::SOA { ttl: Some(ttl) }),
        }),
        http_properties: Some(wire::HttpProperties { http_name: Some(ns.http_name.clone()) }),
    }
}

/// Whether `ns` passes every filter of a ListNamespaces call.
fn matches(
    ns: &model::NamespaceRecord,
    filters: &[wire::NamespaceFilter],
) -> Result<bool, AwsError> {
    for (i, f) in filters.iter().enumerate() {
        let values = f.values.clone().unwrap_or_default();
        let field = |n: &str| format!("Filters[{i}].{n}");
        let cond = f.condition.unwrap_or(wire::FilterCondition::Eq);
        let (value, allowed): (String, &[wire::FilterCondition]) = match f.name {
            Some(wire::NamespaceFilterName::Type) => (
                ns.kind.as_str().to_string(),
                &[wire::FilterCondition::Eq, wire::FilterCondition::In],
            ),
            Some(wire::NamespaceFilterName::Name) => {
                (ns.name.clone(), &[wire::FilterCondition::Eq, wire::FilterCondition::BeginsWith])
            }
            Some(wire::NamespaceFilterName::HttpName) => (
                ns.http_name.clone(),
                &[wire::FilterCondition::Eq, wire::FilterCondition::BeginsWith],
            ),
            Some(wire::NamespaceFilterName::ResourceOwner) => {
                ("SELF".to_string(), &[wire::FilterCondition::Eq])
            }
            None => {
                return Err(codes::invalid(format!("{}: a filter needs a name.", field("Name"))));
            }
        };
        if !allowed.contains(&cond) {
            return Err(codes::invalid(format!(
                "{}: {} is not supported for this filter.",
                field("Condition"),
                cond.as_str()
            )));
        }
        if values.is_empty() || (cond != wire::FilterCondition::In && values.len() != 1) {
            return Err(codes::invalid(format!(
                "{}: {} takes {} value.",
                field("Values"),
                cond.as_str(),
                if cond == wire::FilterCondition::In { "at least one" } else { "exactly one" }
            )));
        }
        let ok = match cond {
            wire::FilterCondition::BeginsWith => value.starts_with(&values[0]),
            _ => values.contains(&value),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl wire::NamespacesApi<RequestContext> for CloudMap {
    async fn create_private_dns_namespace(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePrivateDnsNamespaceRequest,
    ) -> Result<wire::CreatePrivateDnsNamespaceResponse, AwsError> {
        let vpc = input.vpc.clone().filter(|v| !v.is_empty());
        if vpc.is_none() {
            return Err(codes::invalid("Vpc: a private DNS namespace needs a VPC."));
        }
        let op = self
            .create_namespace(NewNamespace {
                name: input.name,
                kind: NamespaceKind::DnsPrivate,
                vpc,
                description: input.description,
                creator_request_id: input.creator_request_id,
                soa_ttl: input
                    .properties
                    .and_then(|p| p.dns_properties)
                    .and_then(|d| d.soa)
                    .and_then(|s| s.ttl),
                tags: input.tags,
            })
            .await?;
        Ok(wire::CreatePrivateDnsNamespaceResponse { operation_id: Some(op) })
    }

    async fn create_public_dns_namespace(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePublicDnsNamespaceRequest,
    ) -> Result<wire::CreatePublicDnsNamespaceResponse, AwsError> {
        let op = self
            .create_namespace(NewNamespace {
                name: input.name,
                kind: NamespaceKind::DnsPublic,
                vpc: None,
                description: input.description,
                creator_request_id: input.creator_request_id,
                soa_ttl: input
                    .properties
                    .and_then(|p| p.dns_properties)
                    .and_then(|d| d.soa)
                    .and_then(|s| s.ttl),
                tags: input.tags,
            })
            .await?;
        Ok(wire::CreatePublicDnsNamespaceResponse { operation_id: Some(op) })
    }

    async fn create_http_namespace(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateHttpNamespaceRequest,
    ) -> Result<wire::CreateHttpNamespaceResponse, AwsError> {
        let op = self
            .create_namespace(NewNamespace {
                name: input.name,
                kind: NamespaceKind::Http,
                vpc: None,
                description: input.description,
                creator_request_id: input.creator_request_id,
                soa_ttl: None,
                tags: input.tags,
            })
            .await?;
        Ok(wire::CreateHttpNamespaceResponse { operation_id: Some(op) })
    }

    async fn get_namespace(
        &self,
        _ctx: &RequestContext,
        input: wire::GetNamespaceRequest,
    ) -> Result<wire::GetNamespaceResponse, AwsError> {
        let (ns, _) = self.namespace(&input.id.unwrap_or_default()).await?;
        Ok(wire::GetNamespaceResponse { namespace: Some(self.wire_namespace(&ns).await?) })
    }

    async fn list_namespaces(
        &self,
        _ctx: &RequestContext,
        input: wire::ListNamespacesRequest,
    ) -> Result<wire::ListNamespacesResponse, AwsError> {
        let filters = input.filters.unwrap_or_default();
        let mut kept = vec![];
        for (key, ns, _) in list::<model::NamespaceRecord>(self.store(), keys::NAMESPACES).await? {
            if matches(&ns, &filters)? {
                kept.push((key, ns));
            }
        }
        let (items, next) = page(kept, input.next_token.as_deref(), input.max_results)?;
        let mut out = vec![];
        for ns in items {
            let n = self.wire_namespace(&ns).await?;
            out.push(wire::NamespaceSummary {
                id: n.id,
                arn: n.arn,
                resource_owner: n.resource_owner,
                name: n.name,
                r#type: n.r#type,
                description: n.description,
                service_count: n.service_count,
                properties: n.properties,
                create_date: n.create_date,
            });
        }
        Ok(wire::ListNamespacesResponse { namespaces: Some(out), next_token: next })
    }

    async fn delete_namespace(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteNamespaceRequest,
    ) -> Result<wire::DeleteNamespaceResponse, AwsError> {
        let id = input.id.unwrap_or_default();
        let mut cas = Cas::new(self.store(), format!("namespace {id}"));
        loop {
            cas.attempt().await?;
            let (ns, rev) = self.namespace(&id).await?;
            let services = self
                .store()
                .range(Range::prefix(&keys::service_names(&id)).limit(1))
                .await
                .map_err(crate::error::store)?;
            if !services.is_empty() {
                return Err(ErrorCode::ResourceInUse.with(format!(
                    "Namespace {id} has services: delete them first (DeleteService)."
                )));
            }
            let name_key = keys::namespace_name(&ns.name, ns.vpc.as_deref());
            let (txn, op) = self.operation(
                Txn::new()
                    .when(keys::namespace(&id), rev)
                    .delete(keys::namespace(&id))
                    .delete(name_key),
                wire::OperationType::DeleteNamespace,
                &[("NAMESPACE", &id)],
            );
            if cas.commit(txn).await? {
                return Ok(wire::DeleteNamespaceResponse { operation_id: Some(op) });
            }
        }
    }
}
