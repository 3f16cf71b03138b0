//! Service Connect (issue #17): the request-only rules of a service's
//! `serviceConnectConfiguration` ([`check`]), run by `service_rules` before the server looks
//! at the task definition or Cloud Map, and the defaults ECS fills in ([`resolved`]).
//!
//! Rules (ECS's API reference: ServiceConnectConfiguration, ServiceConnectService,
//! ServiceConnectClientAlias):
//! * `enabled` false turns Service Connect off: nothing else is looked at.
//! * `namespace` is required when enabled (ECS would take the cluster's
//!   `serviceConnectDefaults`, which Berth does not implement: unsupported).
//! * each of `services` has a `portName` (1-64 characters); `portName`s and `discoveryName`s
//!   are unique within the service; `discoveryName` (default the `portName`) is 1-64 letters,
//!   digits, hyphens and underscores starting with a letter; `ingressPortOverride` and each
//!   client alias `port` are 1-65535; an alias `dnsName` is a DNS name (labels of letters,
//!   digits, hyphens and underscores; at most 253 characters); an alias `dnsName:port` appears
//!   once.
//! * Unsupported (refused naming the member): `tls`, `timeout`, `testTrafficRules` of a client
//!   alias, `accessLogConfiguration`. `logConfiguration` is accepted and kept (the proxy runs
//!   inside the server, so there is no proxy container whose logs it would route).

use berth_wire::ecs::{ServiceConnectConfiguration, ServiceConnectService};

use crate::service_rules::ServiceRuleError;
use crate::servicediscovery::valid_dns_name;

fn invalid(field: String, message: String) -> ServiceRuleError {
    ServiceRuleError::Invalid(crate::ModelError::invalid(field, message))
}

fn unsupported(field: String, message: &str) -> ServiceRuleError {
    let message = format!("{field}: {message}");
    ServiceRuleError::Unsupported { field, message }
}

/// Whether `sc` turns Service Connect on.
pub fn enabled(sc: &ServiceConnectConfiguration) -> bool {
    sc.enabled == Some(true)
}

/// Whether `name` is a `discoveryName` ECS accepts.
fn valid_discovery_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The request-only rules (see the module header).
pub fn check(sc: &ServiceConnectConfiguration) -> Result<(), ServiceRuleError> {
    const F: &str = "serviceConnectConfiguration";
    if !enabled(sc) {
        return Ok(());
    }
    if sc.access_log_configuration.is_some() {
        return Err(unsupported(
            format!("{F}.accessLogConfiguration"),
            "Service Connect access logs are not implemented by Berth yet; omit accessLogConfiguration.",
        ));
    }
    if sc.namespace.as_deref().is_none_or(str::is_empty) {
        return Err(unsupported(
            format!("{F}.namespace"),
            "a namespace is required: Berth does not implement the cluster's serviceConnectDefaults. Give the Cloud Map namespace's name or ARN.",
        ));
    }
    let services = sc.services.as_deref().unwrap_or_default();
    let mut ports: Vec<&str> = Vec::new();
    let mut discovery: Vec<String> = Vec::new();
    let mut aliases: Vec<(String, i32)> = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let f = |m: &str| format!("{F}.services[{i}].{m}");
        let port_name = s.port_name.as_deref().unwrap_or_default();
        if port_name.is_empty() || port_name.len() > 64 {
            return Err(invalid(
                f("portName"),
                "portName is required: the name (1-64 characters) of a portMappings entry of the task definition.".into(),
            ));
        }
        if ports.contains(&port_name) {
            return Err(invalid(
                f("portName"),
                format!(
                    "The portName '{port_name}' is used by more than one Service Connect service; each port can be published once."
                ),
            ));
        }
        ports.push(port_name);
        let name = discovery_name(s);
        if !valid_discovery_name(&name) {
            return Err(invalid(
                f("discoveryName"),
                format!(
                    "Invalid discoveryName '{name}': it must be 1-64 letters, numbers, hyphens and underscores, starting with a letter."
                ),
            ));
        }
        if discovery.contains(&name) {
            return Err(invalid(
                f("discoveryName"),
                format!(
                    "The discoveryName '{name}' is used by more than one Service Connect service of this service."
                ),
            ));
        }
        discovery.push(name);
        if let Some(p) = s.ingress_port_override
            && !(1..=65535).contains(&p)
        {
            return Err(invalid(
                f("ingressPortOverride"),
                format!("ingressPortOverride {p} is not a port: it must be between 1 and 65535."),
            ));
        }
        if s.tls.is_some() {
            return Err(unsupported(
                f("tls"),
                "TLS between Service Connect proxies is not implemented by Berth yet; omit tls.",
            ));
        }
        if s.timeout.is_some() {
            return Err(unsupported(
                f("timeout"),
                "per-service Service Connect timeouts are not implemented by Berth yet (requests may take as long as they need); omit timeout.",
            ));
        }
        for (j, a) in s.client_aliases.iter().flatten().enumerate() {
            let g = |m: &str| format!("{F}.services[{i}].clientAliases[{j}].{m}");
            let port = a.port.unwrap_or(0);
            if !(1..=65535).contains(&port) {
                return Err(invalid(
                    g("port"),
                    format!(
                        "port is required: the port clients call, between 1 and 65535 (got {port})."
                    ),
                ));
            }
            if let Some(d) = &a.dns_name
                && !valid_dns_name(d)
            {
                return Err(invalid(
                    g("dnsName"),
                    format!(
                        "Invalid dnsName '{d}': it must be a DNS name (labels of letters, numbers and hyphens, at most 253 characters)."
                    ),
                ));
            }
            if a.test_traffic_rules.is_some() {
                return Err(unsupported(
                    g("testTrafficRules"),
                    "test traffic rules belong to blue/green deployments, which Berth does not implement yet; omit testTrafficRules.",
                ));
            }
            let key = (a.dns_name.clone().unwrap_or_default().to_ascii_lowercase(), port);
            if aliases.contains(&key) {
                return Err(invalid(
                    g("dnsName"),
                    format!("The client alias '{}:{port}' is given more than once.", key.0),
                ));
            }
            aliases.push(key);
        }
    }
    Ok(())
}

/// A service's `discoveryName`, defaulting to its `portName`.
pub fn discovery_name(s: &ServiceConnectService) -> String {
    s.discovery_name.clone().unwrap_or_else(|| s.port_name.clone().unwrap_or_default())
}

/// `sc` as DescribeServices shows it: `namespace` the namespace's ARN, every `discoveryName`
/// and alias `dnsName` filled in (`DISCOVERY.NAMESPACE`, ECS's default).
pub fn resolved(
    sc: &ServiceConnectConfiguration,
    namespace_arn: &str,
    namespace_name: &str,
) -> ServiceConnectConfiguration {
    let mut out = sc.clone();
    out.namespace = Some(namespace_arn.to_string());
    for s in out.services.iter_mut().flatten() {
        let name = discovery_name(s);
        for a in s.client_aliases.iter_mut().flatten() {
            if a.dns_name.as_deref().is_none_or(str::is_empty) {
                a.dns_name = Some(format!("{name}.{}", namespace_name.trim_end_matches('.')));
            }
        }
        s.discovery_name = Some(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::{
        ServiceConnectClientAlias, ServiceConnectTlsConfiguration, TimeoutConfiguration,
    };

    fn svc(port_name: &str, aliases: &[(&str, i32)]) -> ServiceConnectService {
        ServiceConnectService {
            port_name: Some(port_name.into()),
            client_aliases: Some(
                aliases
                    .iter()
                    .map(|(d, p)| ServiceConnectClientAlias {
                        port: Some(*p),
                        dns_name: (!d.is_empty()).then(|| d.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn conf(services: Vec<ServiceConnectService>) -> ServiceConnectConfiguration {
        ServiceConnectConfiguration {
            enabled: Some(true),
            namespace: Some("shop.local".into()),
            services: Some(services),
            ..Default::default()
        }
    }

    #[test]
    fn rules_table() {
        type Edit = fn(&mut ServiceConnectConfiguration);
        type Case = (&'static str, Edit, Option<(&'static str, bool)>);
        let cases: Vec<Case> = vec![
            ("valid", |_| {}, None),
            (
                "disabled ignores the rest",
                |c| {
                    c.enabled = Some(false);
                    c.namespace = None;
                    c.services.as_mut().unwrap()[0].port_name = None;
                },
                None,
            ),
            (
                "no namespace",
                |c| c.namespace = None,
                Some(("serviceConnectConfiguration.namespace", false)),
            ),
            (
                "no portName",
                |c| c.services.as_mut().unwrap()[0].port_name = None,
                Some(("serviceConnectConfiguration.services[0].portName", true)),
            ),
            (
                "duplicate portName",
                |c| {
                    let s = c.services.as_mut().unwrap();
                    let mut dup = s[0].clone();
                    dup.discovery_name = Some("other".into());
                    dup.client_aliases = None;
                    s.push(dup);
                },
                Some(("serviceConnectConfiguration.services[1].portName", true)),
            ),
            (
                "bad discoveryName",
                |c| c.services.as_mut().unwrap()[0].discovery_name = Some("1x".into()),
                Some(("serviceConnectConfiguration.services[0].discoveryName", true)),
            ),
            (
                "alias port 0",
                |c| {
                    c.services.as_mut().unwrap()[0].client_aliases.as_mut().unwrap()[0].port =
                        Some(0)
                },
                Some(("serviceConnectConfiguration.services[0].clientAliases[0].port", true)),
            ),
            (
                "alias port missing",
                |c| c.services.as_mut().unwrap()[0].client_aliases.as_mut().unwrap()[0].port = None,
                Some(("serviceConnectConfiguration.services[0].clientAliases[0].port", true)),
            ),
            (
                "bad dnsName",
                |c| {
                    c.services.as_mut().unwrap()[0].client_aliases.as_mut().unwrap()[0].dns_name =
                        Some("a..b".into())
                },
                Some(("serviceConnectConfiguration.services[0].clientAliases[0].dnsName", true)),
            ),
            (
                "duplicate alias",
                |c| {
                    let a = c.services.as_mut().unwrap()[0].client_aliases.as_mut().unwrap();
                    a.push(a[0].clone());
                },
                Some(("serviceConnectConfiguration.services[0].clientAliases[1].dnsName", true)),
            ),
            (
                "ingressPortOverride 70000",
                |c| c.services.as_mut().unwrap()[0].ingress_port_override = Some(70000),
                Some(("serviceConnectConfiguration.services[0].ingressPortOverride", true)),
            ),
            (
                "tls",
                |c| {
                    c.services.as_mut().unwrap()[0].tls =
                        Some(ServiceConnectTlsConfiguration::default())
                },
                Some(("serviceConnectConfiguration.services[0].tls", false)),
            ),
            (
                "timeout",
                |c| c.services.as_mut().unwrap()[0].timeout = Some(TimeoutConfiguration::default()),
                Some(("serviceConnectConfiguration.services[0].timeout", false)),
            ),
            (
                "access logs",
                |c| c.access_log_configuration = Some(Default::default()),
                Some(("serviceConnectConfiguration.accessLogConfiguration", false)),
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = conf(vec![svc("api", &[("api.shop", 8080)])]);
            edit(&mut c);
            match (check(&c), want) {
                (Ok(()), None) => {}
                (Err(e), Some((field, invalid))) => {
                    assert_eq!(e.field(), field, "{name}");
                    assert_eq!(matches!(e, ServiceRuleError::Invalid(_)), invalid, "{name}: {e}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn resolved_fills_in_ecs_defaults() {
        let c = conf(vec![svc("api", &[("", 80), ("named", 81)])]);
        let r = resolved(&c, "arn:ns", "shop.local.");
        assert_eq!(r.namespace.as_deref(), Some("arn:ns"));
        let s = &r.services.as_ref().unwrap()[0];
        assert_eq!(s.discovery_name.as_deref(), Some("api"));
        let names: Vec<_> =
            s.client_aliases.iter().flatten().map(|a| a.dns_name.clone().unwrap()).collect();
        assert_eq!(names, ["api.shop.local", "named"]);
    }
}
