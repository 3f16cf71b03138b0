//! The DNS view of Cloud Map: every region's DNS namespaces, compiled into one
//! [`berth_dns::Snapshot`] for the server's one DNS listener.
//!
//! Contract: one supervised loop per region ([`run`]) reads the region's namespaces, services
//! and instances, turns them into zones ([`zones`], pure) and hands them to the server's
//! [`DnsFeed`], which applies the union of every region's zones whenever one region's change.
//! Level-triggered: a pass runs when a transaction writes Cloud Map's records (the region's
//! change feed, filtered on `servicediscovery/`; a lagging feed counts as a change), at most
//! every [`MIN_GAP`], and at least every [`PERIOD`]; a failed pass is logged and the next one
//! starts over. ECS heartbeats and the like never wake it.
//!
//! What DNS shows: DNS namespaces (private and public: Berth is authoritative for both; the
//! private ones answer every client of the listener, whatever its VPC), their services with a
//! `DnsConfig`, and of their instances those not marked `UNHEALTHY`
//! ([`model::InstanceRecord::serves`]): addresses from `AWS_INSTANCE_IPV4` / `_IPV6`, SRV
//! ports from `AWS_INSTANCE_PORT`, CNAME targets from `AWS_INSTANCE_CNAME`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_model::servicediscovery::{
    self as model, DnsRecordKind, RoutingPolicy, attributes, keys,
};
use berth_wire::AwsError;
use tokio::sync::watch;

use super::{CloudMap, list};

/// Longest wait between passes.
pub const PERIOD: Duration = Duration::from_secs(5);
/// Shortest gap between two passes (store changes come in bursts).
pub const MIN_GAP: Duration = Duration::from_millis(100);

/// The server's DNS data plane and the zones each region last published.
pub(crate) struct DnsFeed {
    dns: berth_dns::Dns,
    parts: Mutex<BTreeMap<&'static str, Vec<berth_dns::Zone>>>,
}

impl DnsFeed {
    /// A data plane forwarding to the host's resolvers.
    pub fn new() -> Self {
        Self::with(berth_dns::Dns::new(berth_dns::system_upstreams()))
    }

    pub fn with(dns: berth_dns::Dns) -> Self {
        Self { dns, parts: Mutex::new(BTreeMap::new()) }
    }

    /// The data plane (to serve it on a listener).
    pub fn dns(&self) -> &berth_dns::Dns {
        &self.dns
    }

    /// Replaces `region`'s zones; applies the union when they changed.
    pub fn publish(&self, region: &'static str, zones: Vec<berth_dns::Zone>) {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        if parts.get(region) == Some(&zones) {
            return;
        }
        parts.insert(region, zones);
        let snapshot = berth_dns::Snapshot { zones: parts.values().flatten().cloned().collect() };
        let applied = self.dns.apply(&snapshot);
        for s in &applied.skipped {
            tracing::warn!(region, skipped = %s, "DNS: not served");
        }
        tracing::debug!(zones = applied.zones, records = applied.records, "DNS table applied");
    }
}

/// The zones of one region's records (pure).
pub(crate) fn zones(
    namespaces: &[model::NamespaceRecord],
    services: &[model::ServiceRecord],
    instances: &[model::InstanceRecord],
) -> Vec<berth_dns::Zone> {
    let mut by_service: HashMap<&str, Vec<&model::InstanceRecord>> = HashMap::new();
    for i in instances.iter().filter(|i| i.serves()) {
        by_service.entry(i.service_id.as_str()).or_default().push(i);
    }
    namespaces
        .iter()
        .filter(|ns| ns.kind.is_dns())
        .map(|ns| berth_dns::Zone {
            name: ns.name.clone(),
            services: services
                .iter()
                .filter(|s| s.namespace_id == ns.id)
                .filter_map(|s| {
                    let dns = s.dns_config.as_ref()?;
                    Some(berth_dns::Service {
                        name: s.name.clone(),
                        routing: match dns.routing_policy {
                            RoutingPolicy::Multivalue => berth_dns::Routing::Multivalue,
                            RoutingPolicy::Weighted => berth_dns::Routing::Weighted,
                        },
                        records: dns
                            .records
                            .iter()
                            .map(|r| berth_dns::RecordConfig {
                                kind: match r.kind {
                                    DnsRecordKind::A => berth_dns::RecordKind::A,
                                    DnsRecordKind::Aaaa => berth_dns::RecordKind::Aaaa,
                                    DnsRecordKind::Srv => berth_dns::RecordKind::Srv,
                                    DnsRecordKind::Cname => berth_dns::RecordKind::Cname,
                                },
                                ttl: r.ttl.clamp(0, i64::from(u32::MAX)) as u32,
                            })
                            .collect(),
                        instances: by_service
                            .get(s.id.as_str())
                            .map(|v| v.as_slice())
                            .unwrap_or_default()
                            .iter()
                            .map(|i| {
                                let a = &i.attributes;
                                berth_dns::Instance {
                                    id: i.id.clone(),
                                    ipv4: a.get(attributes::IPV4).and_then(|v| v.parse().ok()),
                                    ipv6: a.get(attributes::IPV6).and_then(|v| v.parse().ok()),
                                    port: a.get(attributes::PORT).and_then(|v| v.parse().ok()),
                                    cname: a.get(attributes::CNAME).cloned(),
                                }
                            })
                            .collect(),
                    })
                })
                .collect(),
        })
        .collect()
}

impl CloudMap {
    /// The region's zones, read from the store.
    pub(super) async fn dns_zones(&self) -> Result<Vec<berth_dns::Zone>, AwsError> {
        let ns: Vec<_> = list::<model::NamespaceRecord>(self.store(), keys::NAMESPACES)
            .await?
            .into_iter()
            .map(|(_, v, _)| v)
            .collect();
        let svc: Vec<_> = list::<model::ServiceRecord>(self.store(), keys::SERVICES)
            .await?
            .into_iter()
            .map(|(_, v, _)| v)
            .collect();
        let inst: Vec<_> = list::<model::InstanceRecord>(self.store(), keys::INSTANCES)
            .await?
            .into_iter()
            .map(|(_, v, _)| v)
            .collect();
        Ok(zones(&ns, &svc, &inst))
    }
}

/// Returns once a transaction wrote a key under `servicediscovery/` (or the feed lagged, or
/// ended: then after a [`PERIOD`]).
async fn next_change(feed: &mut berth_store::ChangeFeed) {
    super::next_relevant_change(feed, |key| key.starts_with(keys::ROOT), PERIOD).await
}

/// One region's DNS loop, until `stop` is set.
pub(crate) async fn run(cloudmap: Arc<CloudMap>, mut stop: watch::Receiver<bool>) {
    let feed = cloudmap.dns.clone();
    let mut changes = cloudmap.store.changes();
    let region = cloudmap.region.name;
    loop {
        if *stop.borrow() {
            return;
        }
        match cloudmap.dns_zones().await {
            Ok(z) => feed.publish(region, z),
            Err(e) => tracing::warn!(region, error = %e.message, "DNS pass failed"),
        }
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = next_change(&mut changes) => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}
