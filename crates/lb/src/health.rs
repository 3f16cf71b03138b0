//! Target health as ELB reports it: the per-target state machine (pure, driven by probe
//! outcomes and an instant from the caller), the probe itself ([`Prober`], HTTP GET with a
//! code matcher or TCP connect) and the report DescribeTargetHealth answers.
//!
//! State machine (ELB's documented behaviour):
//! * A registered target starts `initial` (`Elb.RegistrationInProgress`, then
//!   `Elb.InitialHealthChecking` once a check ran) and becomes `healthy` after
//!   `healthy_threshold` consecutive passes, or `unhealthy` after `unhealthy_threshold`
//!   consecutive failures.
//! * `healthy` -> `unhealthy` after `unhealthy_threshold` consecutive failures; `unhealthy` ->
//!   `healthy` after `healthy_threshold` consecutive passes. The reason of an unhealthy target
//!   is its latest failure: `Target.ResponseCodeMismatch`, `Target.Timeout` or
//!   `Target.FailedHealthChecks` (connection refused or reset).
//! * Passive ejection ([`HealthStatus::eject`]): a target whose proxied request could not
//!   connect is taken out of rotation at once, shown `unhealthy` / `Target.FailedHealthChecks`,
//!   and put back by its next passing check (one pass is enough: it was healthy before).
//! * `draining` (`Target.DeregistrationInProgress`), `unused` (`Target.NotRegistered`,
//!   `Target.NotInUse`) and `unavailable` (`Target.HealthCheckDisabled`) are set by the group,
//!   not by probes.
//!
//! Time comes in as `tokio::time::Instant` from the caller, so tests drive it with tokio's
//! paused clock.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{CodeMatcher, HealthCheck, HealthProtocol};

/// ELB's `TargetHealth.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Initial => "initial",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::Unused => "unused",
            HealthState::Draining => "draining",
            HealthState::Unavailable => "unavailable",
        }
    }
}

/// ELB's `TargetHealth.Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    #[serde(rename = "Elb.RegistrationInProgress")]
    RegistrationInProgress,
    #[serde(rename = "Elb.InitialHealthChecking")]
    InitialHealthChecking,
    #[serde(rename = "Target.ResponseCodeMismatch")]
    ResponseCodeMismatch,
    #[serde(rename = "Target.Timeout")]
    Timeout,
    #[serde(rename = "Target.FailedHealthChecks")]
    FailedHealthChecks,
    #[serde(rename = "Target.NotRegistered")]
    NotRegistered,
    #[serde(rename = "Target.NotInUse")]
    NotInUse,
    #[serde(rename = "Target.DeregistrationInProgress")]
    DeregistrationInProgress,
    #[serde(rename = "Target.HealthCheckDisabled")]
    HealthCheckDisabled,
}

impl Reason {
    /// The code as the API spells it.
    pub fn code(self) -> &'static str {
        match self {
            Reason::RegistrationInProgress => "Elb.RegistrationInProgress",
            Reason::InitialHealthChecking => "Elb.InitialHealthChecking",
            Reason::ResponseCodeMismatch => "Target.ResponseCodeMismatch",
            Reason::Timeout => "Target.Timeout",
            Reason::FailedHealthChecks => "Target.FailedHealthChecks",
            Reason::NotRegistered => "Target.NotRegistered",
            Reason::NotInUse => "Target.NotInUse",
            Reason::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Reason::HealthCheckDisabled => "Target.HealthCheckDisabled",
        }
    }
}

/// What one health check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Pass,
    /// The HTTP status the matcher refused.
    CodeMismatch(u16),
    Timeout,
    /// Refused, reset, or a malformed answer.
    Failed,
}

/// One target's health, as the group keeps it.
#[derive(Debug, Clone)]
pub struct HealthStatus {
    pub state: HealthState,
    pub reason: Option<Reason>,
    pub description: Option<String>,
    ok_streak: u32,
    fail_streak: u32,
    checked: bool,
    /// When the target last became healthy, and whether slow start applies from then.
    pub healthy_since: Option<(Instant, bool)>,
    pub ejected: bool,
}

impl Default for HealthStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthStatus {
    pub fn new() -> Self {
        HealthStatus {
            state: HealthState::Initial,
            reason: Some(Reason::RegistrationInProgress),
            description: Some("Target registration is in progress".into()),
            ok_streak: 0,
            fail_streak: 0,
            checked: false,
            healthy_since: None,
            ejected: false,
        }
    }

    /// Feeds one probe outcome. `others_healthy` says whether another target of the group is
    /// healthy (slow start applies only then, as ELB does).
    pub fn observe(&mut self, probe: &Probe, hc: &HealthCheck, now: Instant, others_healthy: bool) {
        self.checked = true;
        if *probe == Probe::Pass {
            self.ok_streak = self.ok_streak.saturating_add(1);
            self.fail_streak = 0;
            if self.ejected {
                // Back from passive ejection: it was healthy before, one pass restores it.
                self.ejected = false;
                if self.state == HealthState::Healthy {
                    return;
                }
            }
            if self.state == HealthState::Healthy {
                return;
            }
            if self.ok_streak >= hc.healthy_threshold {
                self.state = HealthState::Healthy;
                self.reason = None;
                self.description = None;
                self.healthy_since = Some((now, others_healthy));
            } else if self.state == HealthState::Initial {
                self.reason = Some(Reason::InitialHealthChecking);
                self.description = Some("Initial health checks in progress".into());
            }
            return;
        }
        self.fail_streak = self.fail_streak.saturating_add(1);
        self.ok_streak = 0;
        let (reason, description) = match probe {
            Probe::CodeMismatch(code) => (
                Reason::ResponseCodeMismatch,
                format!("Health checks failed with these codes: [{code}]"),
            ),
            Probe::Timeout => (Reason::Timeout, "Request timed out".to_string()),
            _ => (Reason::FailedHealthChecks, "Health checks failed".to_string()),
        };
        if self.state == HealthState::Unhealthy || self.fail_streak >= hc.unhealthy_threshold {
            self.state = HealthState::Unhealthy;
            self.reason = Some(reason);
            self.description = Some(description);
            self.healthy_since = None;
        } else if self.state == HealthState::Initial {
            self.reason = Some(Reason::InitialHealthChecking);
            self.description = Some("Initial health checks in progress".into());
        }
    }

    /// Passive ejection after a failed connection from the proxy.
    pub fn eject(&mut self) {
        self.ejected = true;
        self.ok_streak = 0;
    }

    /// Whether the target takes new requests when the group has healthy targets.
    pub fn in_rotation(&self) -> bool {
        self.state == HealthState::Healthy && !self.ejected
    }

    /// State and reason as DescribeTargetHealth shows them.
    pub fn reported(&self) -> (HealthState, Option<Reason>, Option<String>) {
        if self.ejected {
            return (
                HealthState::Unhealthy,
                Some(Reason::FailedHealthChecks),
                Some("Requests to the target failed to connect; out of rotation until its next passing health check".into()),
            );
        }
        (self.state, self.reason, self.description.clone())
    }

    /// Slow-start weight in thousandths: ramps linearly from 1 to 1000 over `slow_start`
    /// after the target became healthy.
    pub fn weight(&self, slow_start: Duration, now: Instant) -> u64 {
        match self.healthy_since {
            Some((since, true)) if !slow_start.is_zero() => {
                let elapsed = now.saturating_duration_since(since);
                if elapsed >= slow_start {
                    1000
                } else {
                    ((elapsed.as_millis() * 1000 / slow_start.as_millis().max(1)) as u64).max(1)
                }
            }
            _ => 1000,
        }
    }
}

/// One health check of one target, with the timeout applied by the caller.
pub trait Prober: Send + Sync + 'static {
    fn probe(
        &self,
        addr: SocketAddr,
        hc: &HealthCheck,
    ) -> Pin<Box<dyn Future<Output = Probe> + Send>>;
}

/// The real prober: TCP connect, or an HTTP/1.1 GET of the path on a fresh connection (as ELB
/// does), `Host: ip:port`, `User-Agent: ELB-HealthChecker/2.0`, the status checked against the
/// matcher.
pub struct NetProber;

impl Prober for NetProber {
    fn probe(
        &self,
        addr: SocketAddr,
        hc: &HealthCheck,
    ) -> Pin<Box<dyn Future<Output = Probe> + Send>> {
        let http = hc.protocol == HealthProtocol::Http;
        let path = hc.path.clone();
        let matcher = CodeMatcher::parse(&hc.matcher)
            .unwrap_or_else(|_| CodeMatcher::parse("200").expect("literal"));
        Box::pin(async move {
            let Ok(stream) = TcpStream::connect(addr).await else { return Probe::Failed };
            if !http {
                return Probe::Pass;
            }
            let _ = stream.set_nodelay(true);
            let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
            else {
                return Probe::Failed;
            };
            let conn = tokio::spawn(conn);
            let req = http::Request::get(path)
                .header(http::header::HOST, addr.to_string())
                .header(http::header::USER_AGENT, "ELB-HealthChecker/2.0")
                .header(http::header::CONNECTION, "close")
                .body(Empty::<Bytes>::new());
            let Ok(req) = req else { return Probe::Failed };
            let outcome = match send.send_request(req).await {
                Ok(resp) if matcher.matches(resp.status().as_u16()) => Probe::Pass,
                Ok(resp) => Probe::CodeMismatch(resp.status().as_u16()),
                Err(_) => Probe::Failed,
            };
            conn.abort();
            outcome
        })
    }
}

/// One target's line in [`crate::Lb::health`]: what DescribeTargetHealth answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetHealthReport {
    pub target_group_arn: String,
    pub id: String,
    pub ip: std::net::IpAddr,
    pub port: u16,
    pub state: HealthState,
    pub reason: Option<Reason>,
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheck::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_follow_thresholds_and_reasons() {
        let hc = hc(3, 2);
        let t0 = Instant::now();
        let mut s = HealthStatus::new();
        assert_eq!(
            (s.state, s.reason),
            (HealthState::Initial, Some(Reason::RegistrationInProgress))
        );
        s.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!(
            (s.state, s.reason),
            (HealthState::Initial, Some(Reason::InitialHealthChecking))
        );
        s.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!(s.state, HealthState::Initial);
        s.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!((s.state, s.reason), (HealthState::Healthy, None));
        assert!(s.in_rotation());
        // One failure is below the unhealthy threshold.
        s.observe(&Probe::CodeMismatch(503), &hc, t0, false);
        assert_eq!(s.state, HealthState::Healthy);
        s.observe(&Probe::CodeMismatch(503), &hc, t0, false);
        assert_eq!(
            (s.state, s.reason),
            (HealthState::Unhealthy, Some(Reason::ResponseCodeMismatch))
        );
        assert_eq!(s.description.as_deref(), Some("Health checks failed with these codes: [503]"));
        s.observe(&Probe::Timeout, &hc, t0, false);
        assert_eq!(s.reason, Some(Reason::Timeout));
        s.observe(&Probe::Failed, &hc, t0, false);
        assert_eq!(s.reason, Some(Reason::FailedHealthChecks));
        // A pass between failures resets the streak: needs 3 in a row to come back.
        s.observe(&Probe::Pass, &hc, t0, false);
        s.observe(&Probe::Pass, &hc, t0, false);
        s.observe(&Probe::Failed, &hc, t0, false);
        s.observe(&Probe::Pass, &hc, t0, false);
        s.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!(s.state, HealthState::Unhealthy);
        s.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!(s.state, HealthState::Healthy);
        // Initial straight to unhealthy.
        let mut s = HealthStatus::new();
        s.observe(&Probe::Timeout, &hc, t0, false);
        assert_eq!(
            (s.state, s.reason),
            (HealthState::Initial, Some(Reason::InitialHealthChecking))
        );
        s.observe(&Probe::Timeout, &hc, t0, false);
        assert_eq!((s.state, s.reason), (HealthState::Unhealthy, Some(Reason::Timeout)));
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_lasts_until_the_next_pass() {
        let hc = hc(5, 2);
        let now = Instant::now();
        let mut s = HealthStatus::new();
        for _ in 0..5 {
            s.observe(&Probe::Pass, &hc, now, false);
        }
        assert!(s.in_rotation());
        s.eject();
        assert!(!s.in_rotation());
        assert_eq!(s.reported().0, HealthState::Unhealthy);
        assert_eq!(s.reported().1, Some(Reason::FailedHealthChecks));
        s.observe(&Probe::Pass, &hc, now, false);
        assert!(s.in_rotation(), "one pass restores an ejected healthy target");
        assert_eq!(s.reported().0, HealthState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_weight_ramps_linearly() {
        let hc = hc(1, 2);
        let t0 = Instant::now();
        let ramp = Duration::from_secs(100);
        let mut s = HealthStatus::new();
        s.observe(&Probe::Pass, &hc, t0, true);
        assert_eq!(s.weight(ramp, t0), 1);
        assert_eq!(s.weight(ramp, t0 + Duration::from_secs(25)), 250);
        assert_eq!(s.weight(ramp, t0 + Duration::from_secs(50)), 500);
        assert_eq!(s.weight(ramp, t0 + Duration::from_secs(100)), 1000);
        assert_eq!(s.weight(ramp, t0 + Duration::from_secs(500)), 1000);
        assert_eq!(s.weight(Duration::ZERO, t0), 1000, "slow start off");
        // The first healthy target of a group does not ramp (ELB: no other healthy target).
        let mut alone = HealthStatus::new();
        alone.observe(&Probe::Pass, &hc, t0, false);
        assert_eq!(alone.weight(ramp, t0), 1000);
    }
}
