//! Security groups in the kernel firewall, for Berth's awsvpc tasks.
//!
//! ```text
//!  SecurityGroupRules (from the poll) ──compile()──▶ Ruleset (the namespace's whole filter table)
//!      ──Firewall::apply(pid of the task's pause container, ruleset)──▶ nsenter -n iptables-restore
//! ```
//! Design: the rules live INSIDE the task's own network namespace (the pause container's),
//! on its INPUT and OUTPUT chains. So they govern traffic from the host, from other tasks and
//! from anywhere alike; Docker's own host rules are never touched (nothing here can break
//! another task or the host's networking); and they go away with the namespace when the
//! pause container is removed, so nothing is left behind even after a crash.
//!
//! Contract:
//! * [`compile`] is pure and deterministic (see [`compile`](mod@compile) for the semantics);
//! * [`Firewall::apply`] replaces the namespace's `filter` table atomically
//!   (`iptables-restore` commits the table in one transaction: there is never a moment with
//!   everything open or everything closed); applying the same ruleset again is harmless;
//! * a failure names the namespace and carries the tool's message ([`FirewallError`]).
//!
//! One exception to "inside the namespace": [`host`], the host's rules that let the subnet
//! bridges of one VPC reach each other (Berth's own two chains, see there), applied with
//! [`Firewall::apply_vpc_links`].
#![forbid(unsafe_code)]

pub mod compile;
pub mod host;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

pub use compile::{Options, Ruleset, compile};
pub use host::{Bridge, VpcLinks, vpc_links};

/// Why a ruleset could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirewallError {
    /// The tool could not be run (missing, not permitted).
    #[error("cannot run {tool} in the network namespace of pid {pid}: {message}")]
    Spawn { tool: String, pid: u32, message: String },
    /// The tool ran and refused the ruleset, or the namespace is gone.
    #[error("{tool} failed in the network namespace of pid {pid}: {message}")]
    Failed { tool: String, pid: u32, message: String },
    /// The tool did not finish in time.
    #[error("{tool} in the network namespace of pid {pid} timed out after {after:?}")]
    Timeout { tool: String, pid: u32, after: Duration },
}

/// Loads rulesets into network namespaces.
#[async_trait]
pub trait Firewall: Send + Sync + 'static {
    /// Replaces the `filter` table of the network namespace of process `pid` with `ruleset`,
    /// atomically.
    async fn apply(&self, pid: u32, ruleset: &Ruleset) -> Result<(), FirewallError>;

    /// Replaces the host's VPC links ([`host`]) with `links`. The default does nothing (a
    /// firewall without host rules).
    async fn apply_vpc_links(&self, links: &VpcLinks) -> Result<(), FirewallError> {
        let _ = links;
        Ok(())
    }
}

/// How long one `iptables-restore` may take.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The real firewall: `nsenter --target PID --net iptables-restore` (the system's iptables,
/// `iptables-nft` or legacy alike; needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN).
#[derive(Clone, Debug)]
pub struct Iptables {
    nsenter: String,
    restore: String,
    iptables: String,
}

impl Default for Iptables {
    fn default() -> Self {
        Self {
            nsenter: "nsenter".into(),
            restore: "iptables-restore".into(),
            iptables: "iptables".into(),
        }
    }
}

impl Iptables {
    /// The system's `nsenter` and `iptables-restore`, found on `PATH`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the tools run here (for a clear error at agent start, and for tests).
    pub async fn available(&self) -> Result<(), String> {
        for (tool, arg) in [(&self.nsenter, "--version"), (&self.restore, "--version")] {
            let out = tokio::process::Command::new(tool)
                .arg(arg)
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|e| format!("{tool}: {e}"))?;
            if !out.status.success() {
                return Err(format!("{tool} {arg}: {}", String::from_utf8_lossy(&out.stderr)));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Firewall for Iptables {
    async fn apply(&self, pid: u32, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let tool = self.restore.clone();
        let spawn_err = |message: String| FirewallError::Spawn { tool: tool.clone(), pid, message };
        let mut child = tokio::process::Command::new(&self.nsenter)
            .args(["--target", &pid.to_string(), "--net", "--", &self.restore, "--wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_err(e.to_string()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| spawn_err("no stdin".into()))?;
        let text = ruleset.text().as_bytes().to_vec();
        let run = async move {
            stdin.write_all(&text).await?;
            drop(stdin);
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(APPLY_TIMEOUT, run).await {
            Err(_) => return Err(FirewallError::Timeout { tool, pid, after: APPLY_TIMEOUT }),
            Ok(Err(e)) => return Err(spawn_err(e.to_string())),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            return Err(FirewallError::Failed {
                tool,
                pid,
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        tracing::debug!(pid, rules = ruleset.rules().len(), "firewall applied");
        Ok(())
    }

    async fn apply_vpc_links(&self, links: &VpcLinks) -> Result<(), FirewallError> {
        // The host's own namespace: pid 0 in errors.
        run(&self.restore, &["--noflush", "--wait"], Some(links.text())).await?;
        // filter: one jump from DOCKER-USER (FORWARD when Docker manages no iptables).
        let jump = ["-j", host::FILTER_CHAIN];
        let has = |chain: &'static str| {
            let args: Vec<&str> = ["-w", "-C", chain].iter().chain(&jump).copied().collect();
            async move { run(&self.iptables, &args, None).await.is_ok() }
        };
        if !has("DOCKER-USER").await && !has("FORWARD").await {
            let insert = |chain: &'static str| {
                let args: Vec<&str> =
                    ["-w", "-I", chain, "1"].iter().chain(&jump).copied().collect();
                async move { run(&self.iptables, &args, None).await }
            };
            if insert("DOCKER-USER").await.is_err() {
                insert("FORWARD").await?;
            }
        }
        // nat: the first rule of POSTROUTING, above Docker's MASQUERADE rules.
        let listed = run(&self.iptables, &["-w", "-t", "nat", "-S", "POSTROUTING"], None).await?;
        let ours = format!("-A POSTROUTING -j {}", host::NAT_CHAIN);
        if listed.lines().find(|l| l.starts_with("-A ")) != Some(ours.as_str()) {
            let del = ["-w", "-t", "nat", "-D", "POSTROUTING", "-j", host::NAT_CHAIN];
            for _ in 0..listed.lines().filter(|l| *l == ours).count() {
                run(&self.iptables, &del, None).await?;
            }
            let ins = ["-w", "-t", "nat", "-I", "POSTROUTING", "1", "-j", host::NAT_CHAIN];
            run(&self.iptables, &ins, None).await?;
        }
        tracing::debug!(rules = links.filter.len(), "VPC links applied");
        Ok(())
    }
}

/// Runs `tool args` in the host's namespace with `input` on stdin; its stdout, or the error
/// (pid 0: the host).
async fn run(tool: &str, args: &[&str], input: Option<String>) -> Result<String, FirewallError> {
    let spawn_err = |message: String| FirewallError::Spawn { tool: tool.into(), pid: 0, message };
    let mut child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_err(e.to_string()))?;
    let stdin = child.stdin.take();
    let go = async move {
        if let (Some(mut stdin), Some(text)) = (stdin, input) {
            stdin.write_all(text.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(APPLY_TIMEOUT, go).await {
        Err(_) => {
            return Err(FirewallError::Timeout { tool: tool.into(), pid: 0, after: APPLY_TIMEOUT });
        }
        Ok(Err(e)) => return Err(spawn_err(e.to_string())),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(FirewallError::Failed {
            tool: format!("{tool} {}", args.join(" ")),
            pid: 0,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A [`Firewall`] that records what it was asked to apply (for unit tests of the agent).
#[derive(Clone, Default)]
pub struct RecordingFirewall {
    applied: Arc<Mutex<Vec<(u32, Ruleset)>>>,
    links: Arc<Mutex<Vec<VpcLinks>>>,
    fail: Arc<Mutex<Option<FirewallError>>>,
}

impl RecordingFirewall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every `(pid, ruleset)` applied, in order.
    pub fn applied(&self) -> Vec<(u32, Ruleset)> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every [`VpcLinks`] applied, in order.
    pub fn vpc_links(&self) -> Vec<VpcLinks> {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The next apply fails with `e` (and records nothing).
    pub fn fail_next(&self, e: FirewallError) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
    }
}

#[async_trait]
impl Firewall for RecordingFirewall {
    async fn apply(&self, pid: u32, ruleset: &Ruleset) -> Result<(), FirewallError> {
        if let Some(e) = self.fail.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Err(e);
        }
        self.applied.lock().unwrap_or_else(|e| e.into_inner()).push((pid, ruleset.clone()));
        Ok(())
    }

    async fn apply_vpc_links(&self, links: &VpcLinks) -> Result<(), FirewallError> {
        self.links.lock().unwrap_or_else(|e| e.into_inner()).push(links.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_recording_fake_records_and_fails_on_demand() {
        let f = RecordingFirewall::new();
        let rs = compile(&[], &Options::default());
        f.apply(7, &rs).await.unwrap();
        f.fail_next(FirewallError::Failed { tool: "t".into(), pid: 8, message: "m".into() });
        assert!(f.apply(8, &rs).await.is_err());
        assert_eq!(f.applied(), vec![(7, rs)]);
    }

    #[tokio::test]
    async fn a_missing_namespace_is_an_error_naming_it() {
        let fw = Iptables::new();
        if fw.available().await.is_err() {
            eprintln!("skipped: nsenter/iptables-restore not available");
            return;
        }
        // pid 0 never has a namespace to enter.
        let err = fw.apply(0, &compile(&[], &Options::default())).await.unwrap_err();
        assert!(err.to_string().contains("pid 0"), "{err}");
    }
}
