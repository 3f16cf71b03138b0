//! The engine: [`Lb::apply`] reconciles running listeners and target groups with a
//! [`Snapshot`]; [`Lb::health`] reports every target's health.
//!
//! Invariants:
//! * `apply` is serialized and idempotent; a snapshot whose version is below the applied one is
//!   ignored (a late watch event cannot roll the data plane back).
//! * A listener whose bind address, requested port and protocol are unchanged keeps its socket
//!   and accept loop; only its routing table pointer is swapped. A request loads the table
//!   once, so in-flight requests finish on the table they started with.
//! * Target groups are updated in place (health state and connection pools survive a
//!   snapshot); a group that left the snapshot stops its health checks, and requests already
//!   routed to it finish (they hold it).
//! * A listener that cannot bind is reported in [`Applied::bind_errors`] and retried by the
//!   next `apply`; the rest of the snapshot still applies.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;

use crate::config::{Action, ConfigError, ListenerProtocol, Snapshot};
use crate::group::{GroupRt, lock};
use crate::health::{NetProber, Prober, TargetHealthReport};
use crate::proxy;
use crate::table::Table;

/// Options of an [`Lb`].
#[derive(Clone)]
pub struct LbOptions {
    /// Seed of the random numbers that split traffic between weighted target groups.
    pub seed: u64,
    /// The health-check prober (tests inject a scripted one).
    pub prober: Arc<dyn Prober>,
    /// Connect timeout to targets (ELB's is 10 s).
    pub connect_timeout: Duration,
}

impl Default for LbOptions {
    fn default() -> Self {
        LbOptions {
            seed: 0x005e_ed1b,
            prober: Arc::new(NetProber),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What one `apply` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The snapshot's version, or the applied one when this snapshot was older (skipped).
    pub version: u64,
    pub skipped: bool,
    /// Listener ARN and the error of each listener that could not bind.
    pub bind_errors: Vec<(String, String)>,
}

/// A target group's request count and the targets it spreads them over
/// ([`Lb::request_counts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRequests {
    pub target_group_arn: String,
    /// HTTP requests routed to the group since the data plane made it (only grows; a group
    /// that leaves the snapshot and comes back starts again from 0).
    pub requests: u64,
    /// Targets `healthy` now (ELB's `RequestCountPerTarget` divides by these).
    pub healthy: usize,
    /// Registered targets (not draining).
    pub registered: usize,
}

/// A splitmix64 stream: lock-free, seeded, deterministic for a single caller.
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub fn next(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub(crate) struct Shared {
    pub rng: Rng,
    pub connect_timeout: Duration,
}

struct RunningListener {
    key: (IpAddr, u16, ListenerProtocol),
    local: SocketAddr,
    table: Arc<ArcSwap<Table>>,
    accept: JoinHandle<()>,
}

impl Drop for RunningListener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

#[derive(Default)]
struct State {
    version: Option<u64>,
    listeners: HashMap<String, RunningListener>,
    groups: HashMap<String, Arc<GroupRt>>,
    in_use: HashSet<String>,
}

/// The load balancer data plane. Cheap to clone; must be used inside a tokio runtime.
#[derive(Clone)]
pub struct Lb {
    shared: Arc<Shared>,
    prober: Arc<dyn Prober>,
    state: Arc<Mutex<State>>,
}

impl Lb {
    pub fn new(opts: LbOptions) -> Lb {
        Lb {
            shared: Arc::new(Shared {
                rng: Rng(AtomicU64::new(opts.seed)),
                connect_timeout: opts.connect_timeout,
            }),
            prober: opts.prober,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Makes the running data plane match `snap` (see the module's invariants).
    pub fn apply(&self, snap: &Snapshot) -> Result<Applied, ConfigError> {
        snap.validate()?;
        let mut st = lock(&self.state);
        if let Some(v) = st.version
            && snap.version < v
        {
            return Ok(Applied { version: v, skipped: true, bind_errors: vec![] });
        }
        // Target groups first, so tables can point at them.
        let mut groups = HashMap::new();
        for tg in &snap.target_groups {
            let g = match st.groups.remove(&tg.arn) {
                Some(g) => {
                    g.reconcile(tg);
                    g
                }
                None => GroupRt::new(tg, self.prober.clone()),
            };
            groups.insert(tg.arn.clone(), g);
        }
        for (_, gone) in st.groups.drain() {
            gone.shutdown();
        }
        st.groups = groups;
        let mut in_use = HashSet::new();
        let mut bind_errors = Vec::new();
        let mut wanted = HashSet::new();
        for lb in &snap.load_balancers {
            for l in &lb.listeners {
                wanted.insert(l.arn.clone());
                for a in
                    l.default_actions.iter().chain(l.rules.iter().flat_map(|r| r.actions.iter()))
                {
                    if let Action::Forward { target_groups, .. } = a {
                        in_use.extend(target_groups.iter().map(|w| w.target_group_arn.clone()));
                    }
                }
                let key = (lb.bind_address, l.port, l.protocol);
                if st.listeners.get(&l.arn).is_some_and(|r| r.key != key) {
                    st.listeners.remove(&l.arn); // closes the old socket before binding anew
                }
                let idle = Duration::from_secs(lb.idle_timeout_seconds.max(1));
                let groups = &st.groups;
                let lookup = |arn: &str| groups.get(arn).cloned();
                if let Some(running) = st.listeners.get(&l.arn) {
                    let table = Table::compile(l, running.local.port(), idle, &lookup);
                    running.table.store(Arc::new(table));
                    continue;
                }
                let std_listener =
                    match std::net::TcpListener::bind(SocketAddr::new(lb.bind_address, l.port))
                        .and_then(|s| s.set_nonblocking(true).map(|_| s))
                    {
                        Ok(s) => s,
                        Err(e) => {
                            bind_errors.push((
                                l.arn.clone(),
                                format!("{}:{}: {e}", lb.bind_address, l.port),
                            ));
                            continue;
                        }
                    };
                let listener = match tokio::net::TcpListener::from_std(std_listener) {
                    Ok(s) => s,
                    Err(e) => {
                        bind_errors.push((l.arn.clone(), e.to_string()));
                        continue;
                    }
                };
                let local =
                    listener.local_addr().unwrap_or(SocketAddr::new(lb.bind_address, l.port));
                let table =
                    Arc::new(ArcSwap::from_pointee(Table::compile(l, local.port(), idle, &lookup)));
                let accept = match l.protocol {
                    ListenerProtocol::Http => {
                        tokio::spawn(proxy::serve(listener, table.clone(), self.shared.clone()))
                    }
                    ListenerProtocol::Tcp => tokio::spawn(crate::tcp::serve(
                        listener,
                        table.clone(),
                        self.shared.clone(),
                    )),
                };
                st.listeners.insert(l.arn.clone(), RunningListener { key, local, table, accept });
            }
        }
        st.listeners.retain(|arn, _| wanted.contains(arn));
        st.in_use = in_use;
        st.version = Some(snap.version);
        Ok(Applied { version: snap.version, skipped: false, bind_errors })
    }

    /// The address a listener is bound to (its port resolved when the snapshot said 0).
    pub fn listener_addr(&self, listener_arn: &str) -> Option<SocketAddr> {
        lock(&self.state).listeners.get(listener_arn).map(|l| l.local)
    }

    /// Every target's health, in every group (what DescribeTargetHealth answers).
    pub fn health(&self) -> Vec<TargetHealthReport> {
        let st = lock(&self.state);
        let mut out: Vec<_> =
            st.groups.values().flat_map(|g| g.health(st.in_use.contains(&g.arn))).collect();
        out.sort_by(|a, b| {
            (&a.target_group_arn, a.ip, a.port).cmp(&(&b.target_group_arn, b.ip, b.port))
        });
        out
    }

    /// The health of one group's targets, `None` when the group is unknown.
    pub fn group_health(&self, target_group_arn: &str) -> Option<Vec<TargetHealthReport>> {
        let st = lock(&self.state);
        st.groups.get(target_group_arn).map(|g| g.health(st.in_use.contains(target_group_arn)))
    }

    /// Every target group's request counter and target counts, by ARN order.
    pub fn request_counts(&self) -> Vec<GroupRequests> {
        let st = lock(&self.state);
        let mut out: Vec<GroupRequests> = st
            .groups
            .values()
            .map(|g| {
                let health = g.health(st.in_use.contains(&g.arn));
                GroupRequests {
                    target_group_arn: g.arn.clone(),
                    requests: g.requests(),
                    healthy: health
                        .iter()
                        .filter(|h| h.state == crate::health::HealthState::Healthy)
                        .count(),
                    registered: g.registered(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.target_group_arn.cmp(&b.target_group_arn));
        out
    }

    /// The version of the snapshot last applied.
    pub fn version(&self) -> Option<u64> {
        lock(&self.state).version
    }

    /// Closes every listener and stops every health check.
    pub fn shutdown(&self) {
        let mut st = lock(&self.state);
        st.listeners.clear();
        for (_, g) in st.groups.drain() {
            g.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_groups_split_within_two_percent_over_10000_picks() {
        use crate::config::{HealthCheck, TargetGroup, TargetProtocol, TargetType};
        use crate::table::weighted;
        let group = |arn: &str| {
            let tg = TargetGroup {
                arn: arn.into(),
                name: arn.into(),
                protocol: TargetProtocol::Http,
                port: 80,
                target_type: TargetType::Ip,
                health_check: HealthCheck::default(),
                attributes: Default::default(),
                targets: vec![],
            };
            GroupRt::new(&tg, Arc::new(NetProber))
        };
        for (seed, weights) in
            [(42u64, [70u32, 20, 10]), (7, [1, 1, 1]), (1, [998, 1, 1]), (99, [50, 0, 50])]
        {
            let rng = Rng(AtomicU64::new(seed));
            let groups: Vec<_> =
                weights.iter().enumerate().map(|(i, w)| (group(&format!("tg{i}")), *w)).collect();
            let total = weights.iter().sum();
            let mut hits = [0u32; 3];
            for _ in 0..10_000 {
                let g = weighted(&groups, total, rng.next()).unwrap();
                hits[groups.iter().position(|(x, _)| Arc::ptr_eq(x, g)).unwrap()] += 1;
            }
            for (h, w) in hits.iter().zip(weights) {
                let share = *h as f64 / 10_000.0;
                let want = w as f64 / total as f64;
                assert!((share - want).abs() <= 0.02, "seed {seed} weights {weights:?}: {hits:?}");
            }
        }
    }
}
