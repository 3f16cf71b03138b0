//! A target group at run time: its targets with their health, the health-check loops, target
//! selection (smooth weighted round robin, weights from slow start), stickiness and draining.
//!
//! Invariants:
//! * `active` holds the registered targets; a target leaves it the moment it deregisters and
//!   is never picked again. It then sits in `draining` until the deregistration delay passes
//!   (measured on tokio's clock), while requests already sent to it finish: they hold the
//!   target's `Arc`, not a slot in the list.
//! * Selection: targets in rotation (healthy, not ejected); if none, every registered target
//!   not ejected, then every registered target (ELB's fail-open: "if all targets are unhealthy,
//!   route to all of them"); if no target is registered, `None` (the proxy answers 503).
//! * Round robin within a group (ALB's default algorithm), weighted 1..1000 by the slow-start
//!   ramp so a new target's share grows linearly; nginx's smooth weighted round robin keeps
//!   the sequence even.
//! * Each registered target has one health-check loop (first check at registration, then every
//!   interval); it stops when the target drains or the group goes away.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{HealthPort, Registration, TargetGroup};
use crate::health::{HealthState, HealthStatus, Probe, Prober, Reason, TargetHealthReport};

/// One target (ip:port) of one group.
pub struct TargetRt {
    pub id: Mutex<String>,
    pub addr: SocketAddr,
    /// `ip:port`, ready for a request URI.
    pub authority: http::uri::Authority,
    /// The `AWSALB` cookie value naming this target.
    pub cookie: String,
    pub health: Mutex<HealthStatus>,
    pub in_flight: AtomicUsize,
    /// Idle keep-alive connections to this target (see `pool`).
    pub(crate) pool: Mutex<Vec<crate::pool::Sender>>,
    current: AtomicI64,
    checker: Mutex<Option<JoinHandle<()>>>,
}

impl TargetRt {
    fn new(group_arn: &str, id: &str, addr: SocketAddr) -> Arc<Self> {
        let cookie =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{group_arn}|{addr}"));
        Arc::new(TargetRt {
            id: Mutex::new(id.to_string()),
            addr,
            authority: addr.to_string().parse().expect("ip:port is an authority"),
            cookie,
            health: Mutex::new(HealthStatus::new()),
            in_flight: AtomicUsize::new(0),
            pool: Mutex::new(Vec::new()),
            current: AtomicI64::new(0),
            checker: Mutex::new(None),
        })
    }

    fn stop_checks(&self) {
        if let Some(h) = lock(&self.checker).take() {
            h.abort();
        }
    }

    /// Passive ejection: out of rotation until its next passing check.
    pub fn eject(&self) {
        lock(&self.health).eject();
    }
}

/// Counts a request (or TCP connection) against a target while it lives.
pub struct InFlight(pub Arc<TargetRt>);

impl InFlight {
    pub fn new(t: Arc<TargetRt>) -> Self {
        t.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(t)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Draining {
    target: Arc<TargetRt>,
    until: Instant,
}

/// The run-time side of one target group.
pub struct GroupRt {
    pub arn: String,
    config: Arc<ArcSwap<TargetGroup>>,
    active: ArcSwap<Vec<Arc<TargetRt>>>,
    draining: Mutex<Vec<Draining>>,
    pick_lock: Mutex<()>,
    prober: Arc<dyn Prober>,
    me: Weak<GroupRt>,
    /// HTTP requests routed to the group since it was made (ELB's `RequestCount`).
    requests: AtomicU64,
}

impl Drop for GroupRt {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl GroupRt {
    pub fn new(tg: &TargetGroup, prober: Arc<dyn Prober>) -> Arc<Self> {
        let mut cfg = tg.clone();
        cfg.targets.clear();
        let g = Arc::new_cyclic(|me| GroupRt {
            arn: tg.arn.clone(),
            config: Arc::new(ArcSwap::from_pointee(cfg)),
            active: ArcSwap::from_pointee(Vec::new()),
            draining: Mutex::new(Vec::new()),
            pick_lock: Mutex::new(()),
            prober,
            me: me.clone(),
            requests: AtomicU64::new(0),
        });
        g.reconcile(tg);
        g
    }

    pub fn config(&self) -> Arc<TargetGroup> {
        self.config.load_full()
    }

    /// Stops every health-check loop (the group left the snapshot).
    pub fn shutdown(&self) {
        for t in self.active.load().iter() {
            t.stop_checks();
        }
    }

    /// Makes the group match `tg`: new settings, new targets `initial`, removed or
    /// `deregistering` targets draining, re-registered draining targets back to `initial`.
    pub fn reconcile(&self, tg: &TargetGroup) {
        let mut cfg = tg.clone();
        cfg.targets.clear();
        self.config.store(Arc::new(cfg));
        let now = Instant::now();
        let delay = Duration::from_secs(tg.attributes.deregistration_delay_seconds);
        let current = self.active.load_full();
        let mut by_addr: HashMap<SocketAddr, Arc<TargetRt>> =
            current.iter().map(|t| (t.addr, t.clone())).collect();
        let mut next = Vec::new();
        let mut draining = lock(&self.draining);
        for t in tg.targets.iter().filter(|t| t.state == Registration::Registered) {
            let addr = SocketAddr::new(t.ip, t.port);
            if let Some(rt) = by_addr.remove(&addr) {
                *lock(&rt.id) = t.id.clone();
                next.push(rt);
                continue;
            }
            // A draining target registered again starts over as a new registration.
            draining.retain(|d| d.target.addr != addr);
            let rt = TargetRt::new(&tg.arn, &t.id, addr);
            self.start_checks(&rt);
            next.push(rt);
        }
        for (_, gone) in by_addr {
            gone.stop_checks();
            let until = now + delay;
            draining.push(Draining { target: gone, until });
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(async move {
                    tokio::time::sleep_until(until).await;
                    me.expire_draining();
                });
            }
        }
        drop(draining);
        self.active.store(Arc::new(next));
    }

    fn expire_draining(&self) {
        let now = Instant::now();
        lock(&self.draining).retain(|d| d.until > now);
    }

    fn start_checks(&self, t: &Arc<TargetRt>) {
        let target = t.clone();
        let config = self.config.clone();
        let prober = self.prober.clone();
        let me = self.me.clone();
        let handle = tokio::spawn(async move {
            loop {
                let tg = config.load_full();
                let hc = &tg.health_check;
                if hc.enabled {
                    let port = match hc.port {
                        HealthPort::TrafficPort => target.addr.port(),
                        HealthPort::Port(p) => p,
                    };
                    let addr = SocketAddr::new(target.addr.ip(), port);
                    let timeout = Duration::from_secs(hc.timeout_seconds);
                    let outcome = tokio::time::timeout(timeout, prober.probe(addr, hc))
                        .await
                        .unwrap_or(Probe::Timeout);
                    let others = me.upgrade().is_some_and(|g| {
                        g.active
                            .load()
                            .iter()
                            .any(|o| !Arc::ptr_eq(o, &target) && lock(&o.health).in_rotation())
                    });
                    lock(&target.health).observe(&outcome, hc, Instant::now(), others);
                }
                tokio::time::sleep(Duration::from_secs(hc.interval_seconds)).await;
            }
        });
        *lock(&t.checker) = Some(handle);
    }

    /// Every target's state for DescribeTargetHealth. `in_use` is false when no listener
    /// forwards to the group (ELB's `unused` / `Target.NotInUse`).
    pub fn health(&self, in_use: bool) -> Vec<TargetHealthReport> {
        let enabled = self.config.load().health_check.enabled;
        let mut out = Vec::new();
        for t in self.active.load().iter() {
            let (state, reason, description) = if !in_use {
                (
                    HealthState::Unused,
                    Some(Reason::NotInUse),
                    Some(
                        "Target group is not configured to receive traffic from the load balancer"
                            .into(),
                    ),
                )
            } else if !enabled {
                (
                    HealthState::Unavailable,
                    Some(Reason::HealthCheckDisabled),
                    Some("Health checks are disabled".into()),
                )
            } else {
                lock(&t.health).reported()
            };
            out.push(self.report(t, state, reason, description));
        }
        let now = Instant::now();
        for d in lock(&self.draining).iter().filter(|d| d.until > now) {
            out.push(self.report(
                &d.target,
                HealthState::Draining,
                Some(Reason::DeregistrationInProgress),
                Some("Target deregistration is in progress".into()),
            ));
        }
        out
    }

    fn report(
        &self,
        t: &TargetRt,
        state: HealthState,
        reason: Option<Reason>,
        description: Option<String>,
    ) -> TargetHealthReport {
        TargetHealthReport {
            target_group_arn: self.arn.clone(),
            id: lock(&t.id).clone(),
            ip: t.addr.ip(),
            port: t.addr.port(),
            state,
            reason,
            description,
        }
    }

    /// Picks a target for a new request or connection. `sticky` is an `AWSALB` cookie value;
    /// it wins when its target is still registered and usable. `exclude` skips targets a retry
    /// already failed on.
    pub fn pick(&self, sticky: Option<&str>, exclude: &[SocketAddr]) -> Option<Arc<TargetRt>> {
        let active = self.active.load();
        if active.is_empty() {
            return None;
        }
        let usable = |t: &Arc<TargetRt>| !exclude.contains(&t.addr);
        if let Some(cookie) = sticky
            && let Some(t) = active.iter().find(|t| t.cookie == cookie && usable(t))
        {
            let h = lock(&t.health);
            if h.in_rotation()
                || (!h.ejected && !active.iter().any(|o| lock(&o.health).in_rotation()))
            {
                return Some(t.clone());
            }
        }
        let slow_start = Duration::from_secs(self.config.load().attributes.slow_start_seconds);
        let now = Instant::now();
        // Candidates with their weights, by tier: in rotation; else not ejected; else any.
        let mut cands: Vec<(&Arc<TargetRt>, i64)> = Vec::with_capacity(active.len());
        for t in active.iter().filter(|t| usable(t)) {
            let h = lock(&t.health);
            if h.in_rotation() {
                cands.push((t, h.weight(slow_start, now) as i64));
            }
        }
        if cands.is_empty() {
            for t in active.iter().filter(|t| usable(t)) {
                if !lock(&t.health).ejected {
                    cands.push((t, 1000));
                }
            }
        }
        if cands.is_empty() {
            cands = active.iter().filter(|t| usable(t)).map(|t| (t, 1000)).collect();
        }
        match cands.len() {
            0 => None,
            1 => Some(cands[0].0.clone()),
            _ => {
                let _g = lock(&self.pick_lock);
                let total: i64 = cands.iter().map(|c| c.1).sum();
                let mut best: Option<(&Arc<TargetRt>, i64)> = None;
                for (t, w) in &cands {
                    let cur = t.current.fetch_add(*w, Ordering::Relaxed) + w;
                    if best.is_none_or(|(_, b)| cur > b) {
                        best = Some((t, cur));
                    }
                }
                let (t, _) = best.expect("two candidates or more");
                t.current.fetch_sub(total, Ordering::Relaxed);
                Some(t.clone())
            }
        }
    }

    /// One more HTTP request was routed to the group.
    pub fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP requests routed to the group so far (a counter that only grows).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Registered targets (for tests and the TCP listener's retry bound).
    pub fn registered(&self) -> usize {
        self.active.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthCheck, Target, TargetGroupAttributes, TargetProtocol, TargetType};
    use std::collections::HashMap as Map;
    use std::future::Future;
    use std::pin::Pin;

    /// Answers each address from a table the test changes; unknown addresses fail.
    #[derive(Default)]
    pub struct Scripted(pub Mutex<Map<SocketAddr, Probe>>);
    impl Prober for Scripted {
        fn probe(
            &self,
            addr: SocketAddr,
            _hc: &HealthCheck,
        ) -> Pin<Box<dyn Future<Output = Probe> + Send>> {
            let p = lock(&self.0).get(&addr).cloned().unwrap_or(Probe::Failed);
            Box::pin(async move { p })
        }
    }

    fn tg(targets: &[(u16, Registration)], slow: u64) -> TargetGroup {
        TargetGroup {
            arn: "tg".into(),
            name: "tg".into(),
            protocol: TargetProtocol::Http,
            port: 80,
            target_type: TargetType::Ip,
            health_check: HealthCheck {
                interval_seconds: 10,
                timeout_seconds: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 2,
                ..HealthCheck::default()
            },
            attributes: TargetGroupAttributes {
                deregistration_delay_seconds: 30,
                slow_start_seconds: slow,
                ..Default::default()
            },
            targets: targets
                .iter()
                .map(|&(port, state)| Target {
                    id: format!("t{port}"),
                    ip: "127.0.0.1".parse().unwrap(),
                    port,
                    state,
                })
                .collect(),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn states(g: &GroupRt) -> Vec<(u16, HealthState, Option<Reason>)> {
        let mut v: Vec<_> =
            g.health(true).into_iter().map(|r| (r.port, r.state, r.reason)).collect();
        v.sort_by_key(|x| x.0);
        v
    }

    #[tokio::test(start_paused = true)]
    async fn health_checks_drive_states_on_the_paused_clock() {
        let prober = Arc::new(Scripted::default());
        lock(&prober.0).insert(addr(1), Probe::Pass);
        lock(&prober.0).insert(addr(2), Probe::CodeMismatch(500));
        let g = GroupRt::new(
            &tg(&[(1, Registration::Registered), (2, Registration::Registered)], 0),
            prober.clone(),
        );
        assert_eq!(states(&g)[0].1, HealthState::Initial);
        // First check at registration, the second one interval (10 s) later: threshold 2.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            states(&g),
            vec![
                (1, HealthState::Initial, Some(Reason::InitialHealthChecking)),
                (2, HealthState::Initial, Some(Reason::InitialHealthChecking)),
            ]
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            states(&g),
            vec![
                (1, HealthState::Healthy, None),
                (2, HealthState::Unhealthy, Some(Reason::ResponseCodeMismatch)),
            ]
        );
        // Only the healthy one is picked.
        for _ in 0..10 {
            assert_eq!(g.pick(None, &[]).unwrap().addr, addr(1));
        }
        // Target 1 starts timing out: unhealthy after two checks; now both are unhealthy and
        // the group fails open to both.
        lock(&prober.0).insert(addr(1), Probe::Timeout);
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(states(&g)[0], (1, HealthState::Unhealthy, Some(Reason::Timeout)));
        let picked: std::collections::HashSet<_> =
            (0..10).map(|_| g.pick(None, &[]).unwrap().addr).collect();
        assert_eq!(picked.len(), 2, "fail-open routes to every unhealthy target");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_lasts_the_deregistration_delay() {
        let prober = Arc::new(Scripted::default());
        lock(&prober.0).insert(addr(1), Probe::Pass);
        lock(&prober.0).insert(addr(2), Probe::Pass);
        let g = GroupRt::new(
            &tg(&[(1, Registration::Registered), (2, Registration::Registered)], 0),
            prober,
        );
        tokio::time::sleep(Duration::from_secs(11)).await;
        g.reconcile(&tg(&[(1, Registration::Registered), (2, Registration::Deregistering)], 0));
        assert_eq!(
            states(&g)[1],
            (2, HealthState::Draining, Some(Reason::DeregistrationInProgress))
        );
        for _ in 0..10 {
            assert_eq!(
                g.pick(None, &[]).unwrap().addr,
                addr(1),
                "a draining target gets no new request"
            );
        }
        tokio::time::sleep(Duration::from_secs(29)).await;
        assert_eq!(states(&g).len(), 2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(states(&g).len(), 1, "gone after deregistration_delay");
        // Dropped from the snapshot entirely: drains too; no target left -> None (503).
        g.reconcile(&tg(&[], 0));
        assert!(g.pick(None, &[]).is_none());
        assert_eq!(
            states(&g),
            vec![(1, HealthState::Draining, Some(Reason::DeregistrationInProgress))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_the_share_linearly() {
        let prober = Arc::new(Scripted::default());
        lock(&prober.0).insert(addr(1), Probe::Pass);
        lock(&prober.0).insert(addr(2), Probe::Pass);
        let g = GroupRt::new(&tg(&[(1, Registration::Registered)], 100), prober);
        tokio::time::sleep(Duration::from_secs(11)).await;
        g.reconcile(&tg(&[(1, Registration::Registered), (2, Registration::Registered)], 100));
        tokio::time::sleep(Duration::from_millis(10_001)).await; // two passes: healthy now, ramp starts
        assert_eq!(states(&g)[1].1, HealthState::Healthy);
        let share = |g: &GroupRt| {
            let n = 10_000;
            let hits = (0..n).filter(|_| g.pick(None, &[]).unwrap().addr == addr(2)).count();
            hits as f64 / n as f64
        };
        // Weight w/1000 against 1000: share = w / (w + 1000).
        let mut last = share(&g);
        assert!(last < 0.01, "just healthy: {last}");
        for (secs, want) in
            [(25u64, 250.0 / 1250.0), (25, 500.0 / 1500.0), (25, 750.0 / 1750.0), (25, 0.5)]
        {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            let s = share(&g);
            assert!((s - want).abs() < 0.01, "after +{secs}s share {s}, want {want}");
            assert!(s > last);
            last = s;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stickiness_cookie_and_ejection() {
        let prober = Arc::new(Scripted::default());
        lock(&prober.0).insert(addr(1), Probe::Pass);
        lock(&prober.0).insert(addr(2), Probe::Pass);
        let g = GroupRt::new(
            &tg(&[(1, Registration::Registered), (2, Registration::Registered)], 0),
            prober,
        );
        tokio::time::sleep(Duration::from_secs(11)).await;
        let t2 = g.pick(None, &[]).unwrap();
        let cookie = t2.cookie.clone();
        for _ in 0..10 {
            assert_eq!(g.pick(Some(&cookie), &[]).unwrap().addr, t2.addr);
        }
        t2.eject();
        for _ in 0..10 {
            assert_ne!(
                g.pick(Some(&cookie), &[]).unwrap().addr,
                t2.addr,
                "ejected: the cookie no longer wins"
            );
        }
        assert_eq!(states(&g).iter().filter(|s| s.1 == HealthState::Unhealthy).count(), 1);
        tokio::time::sleep(Duration::from_secs(10)).await; // next passing check
        assert_eq!(g.pick(Some(&cookie), &[]).unwrap().addr, t2.addr);
        assert!(g.pick(Some("garbage"), &[]).is_some());
    }
}
