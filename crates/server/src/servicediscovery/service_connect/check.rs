//! CreateService's and UpdateService's checks of an enabled `serviceConnectConfiguration`
//! against this server, the task definition and Cloud Map ([`prepare`]), after the
//! request-only rules of [`berth_model::service_connect::check`].
//!
//! * The server must run the proxy (`--service-connect-address`), else
//!   `UnsupportedFeatureException`.
//! * The namespace (name, id or ARN) exists in the region, else ECS's
//!   `NamespaceNotFoundException`.
//! * The task definition's network mode is `bridge` or `host` (`awsvpc` is unsupported: its
//!   containers share a pause container's `/etc/hosts`, which Berth does not give the aliases
//!   yet).
//! * Each `portName` names a `portMappings` entry of a container (ECS's
//!   `InvalidParameterException`); its `appProtocol` is absent (TCP) or `http`; `http2` and
//!   `grpc` are unsupported (the proxy speaks HTTP/1.1 to endpoints).
//! * Each `discoveryName` becomes a Cloud Map service of the namespace (created, without DNS
//!   records, when missing, as ECS creates it): the deployment's `serviceConnectResources`.

use std::net::IpAddr;

use berth_model::servicediscovery::{self as model, keys};
use berth_store::{Store, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::{
    ApplicationProtocol, ErrorCode, NetworkMode, PortMapping, ServiceConnectConfiguration,
    ServiceConnectServiceResource, TaskDefinition,
};

use crate::servicediscovery::list;
use crate::{error, records};

/// The port mapping named `name` in `td`.
pub(crate) fn port_mapping<'a>(td: &'a TaskDefinition, name: &str) -> Option<&'a PortMapping> {
    td.container_definitions
        .iter()
        .flatten()
        .flat_map(|c| c.port_mappings.iter().flatten())
        .find(|m| m.name.as_deref() == Some(name))
}

/// The namespace `given` names (its name, id or ARN).
pub(crate) async fn find_namespace(
    store: &dyn Store,
    given: &str,
) -> Result<Option<model::NamespaceRecord>, AwsError> {
    let id = given.rsplit_once(":namespace/").map_or(given, |(_, id)| id);
    let name = given.trim_end_matches('.');
    Ok(list::<model::NamespaceRecord>(store, keys::NAMESPACES)
        .await?
        .into_iter()
        .map(|(_, n, _)| n)
        .find(|n| {
            n.id == id || n.arn == given || n.name.trim_end_matches('.').eq_ignore_ascii_case(name)
        }))
}

/// Checks `sc` (see the module header) and answers what the new deployment records: the
/// resolved configuration and its resources; `None` when Service Connect is off.
pub(crate) async fn prepare(
    store: &dyn Store,
    address: Option<IpAddr>,
    td: &TaskDefinition,
    sc: &ServiceConnectConfiguration,
) -> Result<Option<(ServiceConnectConfiguration, Vec<ServiceConnectServiceResource>)>, AwsError> {
    if !berth_model::service_connect::enabled(sc) {
        return Ok(None);
    }
    const F: &str = "serviceConnectConfiguration";
    if address.is_none() {
        return Err(ErrorCode::UnsupportedFeatureException.with(format!(
            "{F}: this server runs no Service Connect proxy. Start it with --service-connect-address ADDRESS, an address of this host that task containers reach (such as the Docker bridge gateway, 172.17.0.1)."
        )));
    }
    let given = sc.namespace.as_deref().unwrap_or_default();
    let Some(ns) = find_namespace(store, given).await? else {
        return Err(ErrorCode::NamespaceNotFoundException
            .with(format!("{F}.namespace: the namespace '{given}' was not found.")));
    };
    match td.network_mode.unwrap_or(NetworkMode::Bridge) {
        NetworkMode::Bridge | NetworkMode::Host => {}
        other => {
            return Err(ErrorCode::UnsupportedFeatureException.with(format!(
                "{F}: Service Connect with the '{other}' network mode is not implemented by Berth yet; use bridge or host."
            )));
        }
    }
    let family = td.family.as_deref().unwrap_or_default();
    let revision = td.revision.unwrap_or_default();
    let mut resources = Vec::new();
    for (i, s) in sc.services.iter().flatten().enumerate() {
        let port_name = s.port_name.as_deref().unwrap_or_default();
        let Some(m) = port_mapping(td, port_name) else {
            return Err(error::invalid(format!(
                "{F}.services[{i}].portName: the port name '{port_name}' is not defined by any portMappings 'name' of the task definition '{family}:{revision}'."
            )));
        };
        if matches!(m.app_protocol, Some(ApplicationProtocol::Http2 | ApplicationProtocol::Grpc)) {
            return Err(ErrorCode::UnsupportedFeatureException.with(format!(
                "{F}.services[{i}].portName: the port '{port_name}' has appProtocol {}; Berth's Service Connect proxy speaks HTTP/1.1 (appProtocol http) or plain TCP (no appProtocol) to endpoints.",
                m.app_protocol.map(|p| p.to_string()).unwrap_or_default()
            )));
        }
        let name = berth_model::service_connect::discovery_name(s);
        let arn = ensure_cloud_map_service(store, &ns, &name).await?;
        resources.push(ServiceConnectServiceResource {
            discovery_name: Some(name),
            discovery_arn: Some(arn),
        });
    }
    let resolved = berth_model::service_connect::resolved(sc, &ns.arn, &ns.name);
    Ok(Some((resolved, resources)))
}

/// The ARN of the Cloud Map service `name` of `ns`, created (no DNS records, as ECS creates
/// Service Connect's) when missing.
async fn ensure_cloud_map_service(
    store: &dyn Store,
    ns: &model::NamespaceRecord,
    name: &str,
) -> Result<String, AwsError> {
    let name_key = keys::service_name(&ns.id, name);
    let prefix = ns.arn.rsplit_once(":namespace/").map_or("", |(p, _)| p);
    for _ in 0..8 {
        if let Some(r) = store.get(&name_key).await.map_err(error::store)? {
            let id = String::from_utf8_lossy(&r.value).to_string();
            return Ok(format!("{prefix}:service/{id}"));
        }
        let Some((ns_now, ns_rev)) =
            records::get::<model::NamespaceRecord>(store, &keys::namespace(&ns.id)).await?
        else {
            return Err(ErrorCode::NamespaceNotFoundException
                .with(format!("The namespace '{}' was not found.", ns.name)));
        };
        let id = model::new_id("srv-");
        let arn = format!("{prefix}:service/{id}");
        let rec = model::ServiceRecord {
            id: id.clone(),
            arn: arn.clone(),
            name: name.to_string(),
            namespace_id: ns.id.clone(),
            description: Some("Managed by Amazon ECS (Service Connect)".into()),
            service_type: "HTTP".into(),
            dns_config: None,
            custom_health: None,
            creator_request_id: None,
            create_date: time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9,
            tags: vec![],
        };
        let ns_key = keys::namespace(&ns.id);
        // Rewriting the namespace moves its revision, as CreateService does (DeleteNamespace
        // then sees the service).
        let txn = Txn::new()
            .when(&ns_key, ns_rev)
            .put(&ns_key, records::encode(&ns_now))
            .when(&name_key, 0)
            .put(&name_key, id.into_bytes())
            .put(keys::service(&rec.id), records::encode(&rec));
        if records::commit(store, txn).await? {
            return Ok(arn);
        }
    }
    Err(ErrorCode::ServerException.with(format!(
        "serviceConnectConfiguration: could not create the Cloud Map service '{name}' (concurrent changes); retry."
    )))
}
