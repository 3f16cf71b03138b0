//! Task role credentials served to a task's own containers, as ECS's agent serves them.
//!
//! A task whose definition (or RunTask override) names a `taskRoleArn` gets, in every
//! container, `AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2:PORT/v2/credentials/ID`
//! and `AWS_CONTAINER_AUTHORIZATION_TOKEN=TOKEN`, the form the SDKs (botocore's
//! `ContainerMetadataFetcher`, which takes only loopback or 169.254.170.2/.23 over http) pick
//! up with no configuration. `ID` and `TOKEN` are 128 random bits each, minted per task; the
//! token is never logged. PORT is the task metadata endpoint's port (several agents on one
//! host each keep their own); the agent's [`Dnat`] rules send 169.254.170.2:PORT to that
//! endpoint (`nat` PREROUTING for bridge and awsvpc containers, OUTPUT for host-mode ones).
//!
//! The credentials come from the server ([`berth_agent_protocol::CREDENTIALS_PATH`]): an STS
//! session of the role named after the task id, asked for before the first container is
//! created and again [`REFRESH_BEFORE`] before they expire, held in memory only.
//!
//! `GET /v2/credentials/ID` on the metadata endpoint answers them ([`Store::answer`]) only
//! when ALL hold, else a JSON error and nothing about the task:
//! * `ID` is a task this agent runs and has not stopped (404 otherwise);
//! * the `Authorization` header is that task's token (401 missing, 403 wrong);
//! * the request comes from one of that task's containers' addresses, or, for a host-mode
//!   task, from an address of this host (403 otherwise: another container, another host);
//! * the credentials were fetched (503 until then).
//!
//! A stopped task's entry is removed, so every later request is a 404, and the server
//! refuses to mint more for a STOPPED task.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use berth_agent_protocol::TaskCredentialsResponse;
use serde_json::{Value, json};

/// The link-local address the SDKs accept for container credentials.
pub const CREDENTIALS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

/// Label: the task's credentials id and token (`ID TOKEN`), on each of its containers, so a
/// restarted agent serves the URI and token they already hold.
pub const LABEL_CREDENTIALS: &str = "berth.task-credentials";

/// How long before expiry credentials are fetched again.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(15 * 60);

/// Who may ask for a task's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sources {
    /// The addresses of the task's containers (bridge, awsvpc).
    Addresses(Vec<IpAddr>),
    /// Any address of this host (a host-mode task).
    Host,
}

#[derive(Clone)]
struct Entry {
    token: String,
    sources: Sources,
    creds: Option<TaskCredentialsResponse>,
}

/// Credentials id → the task's entry. Each task actor writes its own entry only.
#[derive(Clone, Default)]
pub struct Store {
    inner: Arc<RwLock<HashMap<String, Entry>>>,
}

/// A refusal: status and message.
pub type Refusal = (StatusCode, &'static str);

impl Store {
    /// Makes (or keeps) the entry of `id`, answering only to `token`.
    pub fn register(&self, id: &str, token: &str) {
        let mut m = self.inner.write().expect("credentials store");
        m.entry(id.to_string()).or_insert_with(|| Entry {
            token: token.to_string(),
            sources: Sources::Addresses(vec![]),
            creds: None,
        });
    }

    /// Sets the credentials of `id`.
    pub fn set_credentials(&self, id: &str, creds: TaskCredentialsResponse) {
        if let Some(e) = self.inner.write().expect("credentials store").get_mut(id) {
            e.creds = Some(creds);
        }
    }

    /// Sets who may ask for `id`'s credentials.
    pub fn set_sources(&self, id: &str, sources: Sources) {
        if let Some(e) = self.inner.write().expect("credentials store").get_mut(id) {
            e.sources = sources;
        }
    }

    /// Forgets a stopped task: every later request for `id` is refused.
    pub fn remove(&self, id: &str) {
        self.inner.write().expect("credentials store").remove(id);
    }

    /// The answer to `GET /v2/credentials/{id}` with `authorization` from `peer` (see the
    /// module header); `is_local` tells whether an address is this host's.
    pub fn answer(
        &self,
        id: &str,
        authorization: Option<&str>,
        peer: IpAddr,
        is_local: impl Fn(IpAddr) -> bool,
    ) -> Result<Value, Refusal> {
        let entry = self.inner.read().expect("credentials store").get(id).cloned();
        let Some(entry) = entry else {
            return Err((StatusCode::NOT_FOUND, "no such credentials"));
        };
        let Some(given) = authorization.filter(|a| !a.is_empty()) else {
            return Err((StatusCode::UNAUTHORIZED, "missing authorization token"));
        };
        if !same(given.as_bytes(), entry.token.as_bytes()) {
            return Err((StatusCode::FORBIDDEN, "invalid authorization token"));
        }
        let peer = canonical(peer);
        let allowed = match &entry.sources {
            Sources::Addresses(ips) => ips.iter().any(|ip| canonical(*ip) == peer),
            Sources::Host => is_local(peer),
        };
        if !allowed {
            return Err((StatusCode::FORBIDDEN, "request not from the task's containers"));
        }
        let Some(c) = entry.creds else {
            return Err((StatusCode::SERVICE_UNAVAILABLE, "credentials not available yet"));
        };
        Ok(json!({
            "RoleArn": c.role_arn,
            "AccessKeyId": c.access_key_id,
            "SecretAccessKey": c.secret_access_key,
            "Token": c.session_token,
            "Expiration": rfc3339(c.expiration),
        }))
    }
}

/// Constant-time comparison of two tokens.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn rfc3339(epoch: f64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Whether `ip` is an address of this host (binding it succeeds only then).
pub fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// `AWS_CONTAINER_CREDENTIALS_FULL_URI` for credentials `id` behind an endpoint on `port`.
pub fn full_uri(port: u16, id: &str) -> String {
    if port == 80 {
        format!("http://{CREDENTIALS_IP}/v2/credentials/{id}")
    } else {
        format!("http://{CREDENTIALS_IP}:{port}/v2/credentials/{id}")
    }
}

/// A fresh `(id, token)` for a task.
pub fn mint() -> (String, String) {
    (uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string())
}

/// `(id, token)` from a container's [`LABEL_CREDENTIALS`] value.
pub fn parse_label(v: &str) -> Option<(String, String)> {
    let (id, token) = v.split_once(' ')?;
    (!id.is_empty() && !token.is_empty()).then(|| (id.to_string(), token.to_string()))
}

/// How long to wait before fetching credentials expiring at `expiration` (epoch seconds)
/// again, at `now`: [`REFRESH_BEFORE`] ahead, at least 10 s from now.
pub fn refresh_delay(expiration: f64, now: f64) -> Duration {
    let secs = expiration - now - REFRESH_BEFORE.as_secs_f64();
    Duration::from_secs_f64(secs.max(10.0))
}

/// The `nat` rules sending 169.254.170.2:PORT to the metadata endpoint at `target`, one in
/// PREROUTING (containers on the host's bridges) and one in OUTPUT (host-mode containers),
/// added when missing and deleted when dropped (the agent stopping). Only for an endpoint on
/// a non-loopback IPv4 address (Docker's bridge gateway).
pub struct Dnat {
    target: SocketAddr,
    installed: Vec<&'static str>,
}

impl Dnat {
    fn rule(chain: &'static str, target: SocketAddr) -> Vec<String> {
        [
            "-t",
            "nat",
            "CHAIN",
            chain,
            "-d",
            "169.254.170.2/32",
            "-p",
            "tcp",
            "--dport",
            &target.port().to_string(),
            "-m",
            "comment",
            "--comment",
            "berth task credentials",
            "-j",
            "DNAT",
            "--to-destination",
            &target.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn iptables(op: &str, chain: &'static str, target: SocketAddr) -> Result<(), String> {
        let mut args = Self::rule(chain, target);
        args[2] = op.to_string();
        let out = std::process::Command::new("iptables")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run iptables: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The targets of this host's credential rules in `chain` (`iptables -S` lines carrying
    /// the rule's comment, whose port is the target's, as [`Dnat::rule`] writes them).
    fn listed(chain: &'static str) -> Vec<SocketAddr> {
        let Ok(out) =
            std::process::Command::new("iptables").args(["-t", "nat", "-S", chain]).output()
        else {
            return vec![];
        };
        String::from_utf8_lossy(&out.stdout).lines().filter_map(parse_rule_target).collect()
    }

    /// Deletes the rules of agents that are gone: an agent killed with SIGKILL never drops its
    /// [`Dnat`], so the next agent to start on the host removes every credential rule whose
    /// target no longer accepts connections (a live agent binds its endpoint before it adds
    /// its rules, so a live agent's rules are never taken for stale).
    fn sweep_stale(own: SocketAddr) {
        for chain in ["PREROUTING", "OUTPUT"] {
            for target in Self::listed(chain) {
                if target == own
                    || std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200))
                        .is_ok()
                {
                    continue;
                }
                match Self::iptables("-D", chain, target) {
                    Ok(()) => {
                        tracing::info!(%target, chain, "removed a stale task credentials rule")
                    }
                    Err(e) => tracing::debug!(%target, chain, error = %e, "stale rule not removed"),
                }
            }
        }
    }

    /// Installs the rules for `target`; `None` (logged) when it cannot.
    pub fn install(target: SocketAddr) -> Option<Self> {
        if !matches!(target.ip(), IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified()) {
            return None;
        }
        Self::sweep_stale(target);
        let mut d = Self { target, installed: vec![] };
        for chain in ["PREROUTING", "OUTPUT"] {
            if Self::iptables("-C", chain, target).is_ok() {
                d.installed.push(chain);
                continue;
            }
            match Self::iptables("-I", chain, target) {
                Ok(()) => d.installed.push(chain),
                Err(e) => {
                    tracing::warn!(%target, chain, error = %e, "cannot route 169.254.170.2 to the task credentials endpoint: task roles are unavailable to containers");
                    return None;
                }
            }
        }
        Some(d)
    }
}

/// The target of one `iptables -S` line if it is a task credentials rule as
/// [`Dnat::rule`] writes it (comment, `--dport` equal to the target's port).
fn parse_rule_target(line: &str) -> Option<SocketAddr> {
    if !line.contains("berth task credentials") || !line.contains("169.254.170.2/32") {
        return None;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1));
    let target: SocketAddr = after("--to-destination")?.parse().ok()?;
    let port: u16 = after("--dport")?.parse().ok()?;
    (port == target.port()).then_some(target)
}

impl Drop for Dnat {
    fn drop(&mut self) {
        for chain in self.installed.drain(..) {
            if let Err(e) = Self::iptables("-D", chain, self.target) {
                tracing::warn!(chain, error = %e, "cannot remove the task credentials rule");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_rules_are_read_back_from_iptables_listings() {
        let ours = r#"-A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 40457 -m comment --comment "berth task credentials" -j DNAT --to-destination 172.17.0.1:40457"#;
        assert_eq!(parse_rule_target(ours), Some("172.17.0.1:40457".parse().unwrap()));
        let other_port = ours.replace("--dport 40457", "--dport 80");
        assert_eq!(parse_rule_target(&other_port), None);
        let not_ours = ours.replace("berth task credentials", "someone else");
        assert_eq!(parse_rule_target(&not_ours), None);
        assert_eq!(parse_rule_target("-P PREROUTING ACCEPT"), None);
    }

    fn creds() -> TaskCredentialsResponse {
        TaskCredentialsResponse {
            role_arn: "arn:aws:iam::123456789012:role/app".into(),
            access_key_id: "ASIAX".into(),
            secret_access_key: "s3cret".into(),
            session_token: "tok".into(),
            expiration: 1_800_000_000.0,
        }
    }

    #[test]
    fn only_the_task_with_its_token_from_its_containers_gets_its_credentials() {
        let s = Store::default();
        let own: IpAddr = "172.17.0.5".parse().unwrap();
        let other: IpAddr = "172.17.0.6".parse().unwrap();
        let host: IpAddr = "172.17.0.1".parse().unwrap();
        s.register("a", "tokA");
        s.register("b", "tokB");
        s.set_sources("a", Sources::Addresses(vec![own]));
        s.set_sources("b", Sources::Addresses(vec![other]));
        // Not fetched yet.
        assert_eq!(s.answer("a", Some("tokA"), own, |_| false).unwrap_err().0, 503);
        s.set_credentials("a", creds());
        s.set_credentials("b", creds());
        s.register("h", "tokH");
        s.set_sources("h", Sources::Host);
        s.set_credentials("h", creds());
        let local = |ip: IpAddr| ip == host;
        let mapped: IpAddr = "::ffff:172.17.0.5".parse().unwrap();
        let cases: &[(&str, Option<&str>, IpAddr, Option<u16>)] = &[
            ("a", Some("tokA"), own, None),
            ("a", Some("tokA"), mapped, None),
            ("a", None, own, Some(401)),
            ("a", Some(""), own, Some(401)),
            ("a", Some("tokB"), own, Some(403)), // another task's token
            ("b", Some("tokA"), own, Some(403)), // another task's id with this token
            ("b", Some("tokB"), own, Some(403)), // another task's id and token, wrong source
            ("a", Some("tokA"), other, Some(403)), // another container
            ("a", Some("tokA"), host, Some(403)), // the host itself
            ("nope", Some("tokA"), own, Some(404)),
            ("h", Some("tokH"), host, None),
            ("h", Some("tokH"), own, Some(403)), // a container is not the host
        ];
        for (id, auth, peer, want) in cases {
            let got = s.answer(id, *auth, *peer, local);
            match want {
                None => {
                    let v = got.unwrap_or_else(|e| panic!("{id} {auth:?} {peer}: {e:?}"));
                    assert_eq!(v["AccessKeyId"], "ASIAX");
                    assert_eq!(v["Token"], "tok");
                    assert_eq!(v["Expiration"], "2027-01-15T08:00:00Z");
                }
                Some(code) => {
                    assert_eq!(got.unwrap_err().0.as_u16(), *code, "{id} {auth:?} {peer}")
                }
            }
        }
        // A stopped task: refused from then on.
        s.remove("a");
        assert_eq!(s.answer("a", Some("tokA"), own, |_| false).unwrap_err().0, 404);
    }

    #[test]
    fn uri_label_and_refresh() {
        assert_eq!(full_uri(80, "x"), "http://169.254.170.2/v2/credentials/x");
        assert_eq!(full_uri(51679, "x"), "http://169.254.170.2:51679/v2/credentials/x");
        assert_eq!(parse_label("id tok"), Some(("id".into(), "tok".into())));
        assert_eq!(parse_label("idtok"), None);
        assert_eq!(parse_label(" tok"), None);
        let (a, b) = mint();
        assert_eq!((a.len(), b.len()), (32, 32));
        assert_ne!(a, b);
        assert_eq!(refresh_delay(1000.0 + 3600.0, 1000.0), Duration::from_secs(2700));
        assert_eq!(refresh_delay(1000.0 + 60.0, 1000.0), Duration::from_secs(10));
        assert!(is_local_address("127.0.0.1".parse().unwrap()));
        assert!(!is_local_address("192.0.2.77".parse().unwrap()));
    }
}
