//! AWS Cloud Map as the store keeps it: namespaces, services, instances and operations
//! (issue #17).
//!
//! This module is the contract between the Cloud Map API (`berth_server::servicediscovery`,
//! which writes these records) and the DNS data plane (which turns them into a
//! `berth_dns::Snapshot`).
//!
//! Invariants:
//! * every record lives in its region's view of the store under `servicediscovery/` ([`keys`]);
//! * a namespace name is unique per region, except that private DNS namespaces of different
//!   VPCs may share one: the name key ([`keys::namespace_name`]) is created with
//!   compare-and-set on absence in the namespace's own transaction and deleted with it;
//! * a service name is unique per namespace ([`keys::service_name`], the same way);
//! * a service's namespace exists: CreateService rewrites the namespace record in its
//!   transaction (compare-and-set on the revision it read), and DeleteNamespace deletes with
//!   compare-and-set on the revision it checked for services, so a service and the delete of
//!   its namespace cannot both commit (the same holds for instances and DeleteService);
//! * an instance is keyed by its service (`instances/<service-id>/<instance-id>`); registering
//!   an id again replaces its attributes (Cloud Map's upsert);
//! * operations are kept and answered as `SUCCESS` at once (the API is synchronous in Berth).
//!
//! ARNs are AWS's: `arn:aws:servicediscovery:REGION:ACCOUNT:namespace/ns-ID`,
//! `.../service/srv-ID`; ids are `ns-` / `srv-` and 16 lowercase letters and digits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `DNS_PRIVATE`, `DNS_PUBLIC` or `HTTP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NamespaceKind {
    DnsPrivate,
    DnsPublic,
    Http,
}

impl NamespaceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NamespaceKind::DnsPrivate => "DNS_PRIVATE",
            NamespaceKind::DnsPublic => "DNS_PUBLIC",
            NamespaceKind::Http => "HTTP",
        }
    }
    /// Whether its services get DNS names.
    pub fn is_dns(self) -> bool {
        !matches!(self, NamespaceKind::Http)
    }
}

/// A tag (value may be empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// `servicediscovery/namespaces/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRecord {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub kind: NamespaceKind,
    #[serde(default)]
    pub description: Option<String>,
    /// Private DNS namespaces: the VPC.
    #[serde(default)]
    pub vpc: Option<String>,
    /// DNS namespaces: the (Berth-made) Route 53 hosted zone id.
    #[serde(default)]
    pub hosted_zone_id: Option<String>,
    /// DNS namespaces: the SOA record's TTL.
    #[serde(default)]
    pub soa_ttl: Option<i64>,
    /// The name for HTTP discovery (every namespace has one: its name).
    pub http_name: String,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    /// The CREATE_NAMESPACE operation (answered again to a retry with the same request id).
    #[serde(default)]
    pub operation_id: Option<String>,
    pub create_date: f64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// `MULTIVALUE` or `WEIGHTED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoutingPolicy {
    Multivalue,
    Weighted,
}

/// `A`, `AAAA`, `SRV` or `CNAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DnsRecordKind {
    A,
    Aaaa,
    Srv,
    Cname,
}

/// One record type a service publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordConfig {
    pub kind: DnsRecordKind,
    pub ttl: i64,
}

/// A service's DNS configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfigRecord {
    pub routing_policy: RoutingPolicy,
    pub records: Vec<DnsRecordConfig>,
}

/// `servicediscovery/services/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub id: String,
    pub arn: String,
    pub name: String,
    pub namespace_id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// `HTTP` (discoverable by API only), `DNS_HTTP` or `DNS`.
    pub service_type: String,
    #[serde(default)]
    pub dns_config: Option<DnsConfigRecord>,
    /// `HealthCheckCustomConfig` given: its failure threshold (AWS always reports 1).
    #[serde(default)]
    pub custom_health: Option<i32>,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    pub create_date: f64,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// An instance's health, as Cloud Map reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    Healthy,
    Unhealthy,
    /// The service has no health check.
    Unknown,
}

/// `servicediscovery/instances/<service-id>/<instance-id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub service_id: String,
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub creator_request_id: Option<String>,
    pub health: Health,
    pub create_date: f64,
}

impl InstanceRecord {
    /// Whether DNS and a `HEALTHY` discovery show it (only an explicit `UNHEALTHY` hides it).
    pub fn serves(&self) -> bool {
        self.health != Health::Unhealthy
    }
}

/// `servicediscovery/operations/<id>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    /// `CREATE_NAMESPACE`, `REGISTER_INSTANCE`... (the wire's `OperationType`).
    pub op_type: String,
    /// `SUCCESS` (operations complete within their request).
    pub status: String,
    /// `NAMESPACE` / `SERVICE` / `INSTANCE` -> id.
    pub targets: BTreeMap<String, String>,
    pub create_date: f64,
    pub update_date: f64,
}

/// The well-known instance attributes.
pub mod attributes {
    pub const IPV4: &str = "AWS_INSTANCE_IPV4";
    pub const IPV6: &str = "AWS_INSTANCE_IPV6";
    pub const PORT: &str = "AWS_INSTANCE_PORT";
    pub const CNAME: &str = "AWS_INSTANCE_CNAME";
    pub const ALIAS_DNS_NAME: &str = "AWS_ALIAS_DNS_NAME";
    pub const INIT_HEALTH_STATUS: &str = "AWS_INIT_HEALTH_STATUS";
    /// Set by ECS when it registers a task (kept as given).
    pub const EC2_INSTANCE_ID: &str = "AWS_EC2_INSTANCE_ID";
}

/// Store keys, relative to a region's view.
pub mod keys {
    pub const ROOT: &str = "servicediscovery/";
    pub const NAMESPACES: &str = "servicediscovery/namespaces/";
    pub fn namespace(id: &str) -> String {
        format!("{NAMESPACES}{id}")
    }
    /// The uniqueness key of a namespace name (lower-cased; private DNS ones per VPC).
    pub fn namespace_name(name: &str, vpc: Option<&str>) -> String {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match vpc {
            Some(v) => format!("servicediscovery/namespace-names/{name}@{v}"),
            None => format!("servicediscovery/namespace-names/{name}"),
        }
    }
    pub const SERVICES: &str = "servicediscovery/services/";
    pub fn service(id: &str) -> String {
        format!("{SERVICES}{id}")
    }
    /// The names of a namespace's services.
    pub fn service_names(namespace_id: &str) -> String {
        format!("servicediscovery/service-names/{namespace_id}/")
    }
    pub fn service_name(namespace_id: &str, name: &str) -> String {
        format!("{}{}", service_names(namespace_id), name.to_ascii_lowercase())
    }
    pub const INSTANCES: &str = "servicediscovery/instances/";
    pub fn instances(service_id: &str) -> String {
        format!("{INSTANCES}{service_id}/")
    }
    pub fn instance(service_id: &str, id: &str) -> String {
        format!("{}{id}", instances(service_id))
    }
    pub const OPERATIONS: &str = "servicediscovery/operations/";
    pub fn operation(id: &str) -> String {
        format!("{OPERATIONS}{id}")
    }
}

/// `PREFIX` and 16 random lowercase letters and digits (`ns-`, `srv-`).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_chars(16, b"abcdefghijklmnopqrstuvwxyz0123456789"))
}

/// A Route 53 hosted zone id: `Z` and 20 uppercase letters and digits.
pub fn new_hosted_zone_id() -> String {
    format!("Z{}", random_chars(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
}

/// An operation id, shaped as Cloud Map's (`32 chars-8 chars`).
pub fn new_operation_id() -> String {
    let a = b"abcdefghijklmnopqrstuvwxyz0123456789";
    format!("{}-{}", random_chars(32, a), random_chars(8, a))
}

fn random_chars(n: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in uuid::Uuid::new_v4().into_bytes() {
            if out.len() < n {
                out.push(alphabet[b as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

/// Whether `name` is a DNS namespace name Cloud Map accepts: 1-253 characters of labels of
/// letters, digits and hyphens (1-63 each, not starting or ending with a hyphen), an optional
/// trailing dot.
pub fn valid_dns_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether `name` can name a service of a DNS namespace: one or more labels (`web`, or
/// `_web._tcp` as SRV-minded clients want), without a trailing dot, at most 63 characters.
pub fn valid_service_name(name: &str) -> bool {
    name.len() <= 63 && !name.ends_with('.') && valid_dns_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cloud_maps_rules() {
        let cases = [
            ("example.local", true),
            ("example.local.", true),
            ("a", true),
            ("my-ns.internal", true),
            ("", false),
            (".", false),
            ("a..b", false),
            ("-a.b", false),
            ("a-.b", false),
            ("a b", false),
            ("a/b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(valid_dns_name(name), ok, "{name}");
        }
        assert!(!valid_dns_name(&format!("{}.x", "a".repeat(64))));
        for (name, ok) in
            [("web", true), ("_web._tcp", true), ("web.", false), ("", false), ("a b", false)]
        {
            assert_eq!(valid_service_name(name), ok, "{name}");
        }
    }

    #[test]
    fn ids_have_aws_shapes() {
        let ns = new_id("ns-");
        assert!(ns.starts_with("ns-") && ns.len() == 19, "{ns}");
        let z = new_hosted_zone_id();
        assert!(
            z.starts_with('Z')
                && z.len() == 21
                && z.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "{z}"
        );
        let op = new_operation_id();
        assert_eq!(op.len(), 41, "{op}");
        assert_ne!(new_id("srv-"), new_id("srv-"));
        assert_eq!(
            keys::namespace_name("Example.Local.", Some("vpc-1")),
            "servicediscovery/namespace-names/example.local@vpc-1"
        );
        assert_eq!(keys::service_name("ns-1", "Web"), "servicediscovery/service-names/ns-1/web");
    }
}
