//! The [`HostLauncher`] that runs each instance's agent as a child process: `berth agent`
//! (the server's own executable by default) with the instance's data directory, cluster,
//! capacity, zone and attributes.
//!
//! Contract:
//! * **One child per instance**, with data directory `<data_root>/<instance id>` (mode 0700;
//!   the agent keeps its identity and its instance key there, so a restarted agent is the
//!   same container instance and adopts its containers) and its stdout and stderr appended
//!   to `agent.log` in it.
//! * **Flags** ([`agent_args`]): `--server`, `--region`, `--cluster` (from the UserData),
//!   `--data-dir`, `--instance-type`, `--availability-zone`, `--cpu` / `--memory` (the
//!   type's capacity), `--ec2-instance-id` (the agent registers with the instance's id),
//!   `--attribute ecs.instance-id=<id>` and the UserData's attributes, `--ca-file` when the
//!   server speaks TLS, and `--exit-with-parent`.
//! * **Credentials** go in the environment, never on the command line (where `ps` shows
//!   them): a join token as `BERTH_JOIN_TOKEN` (the agent exchanges it once for its own
//!   instance key and keeps that; [`crate::identity::JOIN_TOKEN`] when the instance's signed
//!   identity document is the credential), or, for a server on loopback, an access key as
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`. The caller's AWS environment is not passed
//!   on.
//! * **Children die with the server.** Every child is spawned from one dedicated thread that
//!   lives as long as the launcher, and runs with `--exit-with-parent`: the agent asks the
//!   kernel for SIGTERM when that thread dies (Linux's parent-death signal, set through
//!   rustix) and exits at once if its parent is already gone (`BERTH_PARENT_PID` differs from
//!   its parent). So a server that exits, even by SIGKILL, leaves no agents behind; their
//!   task containers keep running, and the server's first reconcile after it starts again
//!   spawns the agents of running instances, which re-register as the same container
//!   instances and adopt their containers. Nothing is adopted by pid, so a reused pid can
//!   never be mistaken for an agent.
//! * **Stopping** sends SIGTERM and returns; the agent is listed as stopping until it exits,
//!   and gets SIGKILL if it is still there after the grace period. Dropping the launcher
//!   stops every agent the same way and waits for them (at most the grace period and a
//!   little more).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{AgentSpec, HostLauncher, Phase, RunningAgent};
use crate::InstanceError;

/// How the agents prove themselves to the server (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub enum JoinCredential {
    /// A join token (`berth-join.<id>.<secret>`).
    JoinToken(String),
    /// An access key: only for a server on loopback (the administrator's key never leaves
    /// the server's machine).
    AccessKey { access_key_id: String, secret_access_key: String },
    /// The instance's signed identity document, which the server writes into the agent's
    /// data directory before starting it ([`crate::identity::write_files`]): the agent joins
    /// with [`crate::identity::JOIN_TOKEN`] and the document, and gets a key of its own.
    IdentityDocument,
}

impl std::fmt::Debug for JoinCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::JoinToken(_) => f.write_str("JoinToken(<redacted>)"),
            Self::IdentityDocument => f.write_str("IdentityDocument"),
            Self::AccessKey { access_key_id, .. } => {
                write!(f, "AccessKey({access_key_id}, <redacted>)")
            }
        }
    }
}

/// How the process launcher runs agents.
#[derive(Clone, Debug)]
pub struct ProcessConfig {
    /// The `berth` executable.
    pub program: PathBuf,
    /// The server's endpoint as agents reach it (`http://127.0.0.1:PORT`).
    pub server: String,
    /// `<server data dir>/instances`: each instance's data directory is under it.
    pub data_root: PathBuf,
    /// The server's CA, for an `https://` endpoint.
    pub ca_file: Option<PathBuf>,
    pub credential: JoinCredential,
    /// SIGTERM to SIGKILL.
    pub grace: Duration,
    /// The agents' `BERTH_LOG` filter.
    pub log_filter: String,
}

impl ProcessConfig {
    /// Agents of this executable, under `<server_data_dir>/instances`, stopped within 30 s.
    pub fn new(
        server: impl Into<String>,
        server_data_dir: &Path,
        credential: JoinCredential,
    ) -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            server: server.into(),
            data_root: server_data_dir.join("instances"),
            ca_file: None,
            credential,
            grace: Duration::from_secs(30),
            log_filter: "info".into(),
        })
    }

    /// The data directory of `instance_id`'s agent.
    pub fn data_dir(&self, instance_id: &str) -> PathBuf {
        self.data_root.join(instance_id)
    }
}

/// The arguments `berth` gets for `spec`'s agent.
pub fn agent_args(config: &ProcessConfig, spec: &AgentSpec) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["agent".into()];
    let mut flag = |k: &str, v: OsString| {
        a.push(k.into());
        a.push(v);
    };
    flag("--server", config.server.clone().into());
    flag("--region", spec.region.clone().into());
    flag("--cluster", spec.cluster.clone().into());
    flag("--data-dir", config.data_dir(&spec.instance_id).into());
    flag("--instance-type", spec.instance_type.clone().into());
    flag("--availability-zone", spec.availability_zone.clone().into());
    flag("--cpu", spec.capacity.cpu.to_string().into());
    flag("--memory", spec.capacity.memory_mib.to_string().into());
    flag("--ec2-instance-id", spec.instance_id.clone().into());
    for (k, v) in &spec.attributes {
        flag("--attribute", format!("{k}={v}").into());
    }
    if let Some(ca) = &config.ca_file {
        flag("--ca-file", ca.clone().into());
    }
    a.push("--exit-with-parent".into());
    a
}

/// The environment changes for an agent: `(name, Some(value))` to set, `(name, None)` to
/// remove.
pub fn agent_env(config: &ProcessConfig) -> Vec<(&'static str, Option<String>)> {
    let mut env: Vec<(&'static str, Option<String>)> = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "BERTH_JOIN_TOKEN",
        "BERTH_SERVER",
        "BERTH_AGENT_DATA_DIR",
        "BERTH_CA_FILE",
    ]
    .into_iter()
    .map(|k| (k, None))
    .collect();
    // The shared credentials file would be read only without a key; point it nowhere.
    env.push(("AWS_SHARED_CREDENTIALS_FILE", Some("/nonexistent".into())));
    env.push(("AWS_CONFIG_FILE", Some("/nonexistent".into())));
    match &config.credential {
        JoinCredential::JoinToken(t) => env.push(("BERTH_JOIN_TOKEN", Some(t.clone()))),
        JoinCredential::IdentityDocument => {
            env.push(("BERTH_JOIN_TOKEN", Some(crate::identity::JOIN_TOKEN.into())))
        }
        JoinCredential::AccessKey { access_key_id, secret_access_key } => {
            env.push(("AWS_ACCESS_KEY_ID", Some(access_key_id.clone())));
            env.push(("AWS_SECRET_ACCESS_KEY", Some(secret_access_key.clone())));
        }
    }
    env.push(("BERTH_PARENT_PID", Some(std::process::id().to_string())));
    env.push(("BERTH_LOG", Some(config.log_filter.clone())));
    env
}

enum Cmd {
    Start(Box<(AgentSpec, ProcessConfig)>, mpsc::Sender<Result<(), InstanceError>>),
    Stop(String),
    List(mpsc::Sender<Vec<RunningAgent>>),
}

struct Kid {
    child: Child,
    spec: AgentSpec,
    phase: Phase,
    /// SIGKILL after this.
    kill_at: Option<Instant>,
}

/// The process launcher (see the module docs).
pub struct ProcessLauncher {
    config: Mutex<ProcessConfig>,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ProcessLauncher {
    /// Starts the launcher's thread; no agent runs until [`HostLauncher::start`].
    pub fn new(config: ProcessConfig) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let grace = config.grace;
        let thread = std::thread::Builder::new()
            .name("instance-agents".into())
            .spawn(move || supervise(rx, grace))?;
        Ok(Self {
            config: Mutex::new(config),
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Replaces the credential new agents get (agents that already joined keep their own
    /// key).
    pub fn set_credential(&self, credential: JoinCredential) {
        self.config.lock().expect("launcher lock").credential = credential;
    }

    fn send(&self, cmd: Cmd) -> Result<(), InstanceError> {
        let tx = self.tx.lock().expect("launcher lock");
        tx.as_ref()
            .and_then(|t| t.send(cmd).ok())
            .ok_or_else(|| InstanceError::Launch("the instance launcher has stopped".into()))
    }

    /// Stops every agent (SIGTERM, SIGKILL after the grace period) and waits for them.
    pub fn shutdown(&self) {
        self.tx.lock().expect("launcher lock").take();
        if let Some(t) = self.thread.lock().expect("launcher lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProcessLauncher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl HostLauncher for ProcessLauncher {
    fn start(&self, spec: &AgentSpec) -> Result<(), InstanceError> {
        let (reply, answer) = mpsc::channel();
        let config = self.config.lock().expect("launcher lock").clone();
        self.send(Cmd::Start(Box::new((spec.clone(), config)), reply))?;
        answer.recv().map_err(|_| InstanceError::Launch("the instance launcher stopped".into()))?
    }

    fn stop(&self, instance_id: &str) -> Result<(), InstanceError> {
        self.send(Cmd::Stop(instance_id.to_string()))
    }

    fn running(&self) -> Vec<RunningAgent> {
        let (reply, answer) = mpsc::channel();
        if self.send(Cmd::List(reply)).is_err() {
            return vec![];
        }
        answer.recv().unwrap_or_default()
    }
}

fn spawn(spec: &AgentSpec, config: &ProcessConfig) -> Result<Child, InstanceError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |what: &str, e: std::io::Error| {
        InstanceError::Launch(format!("instance {}: {what}: {e}", spec.instance_id))
    };
    let dir = config.data_dir(&spec.instance_id);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail(&format!("cannot create {}", dir.display()), e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("agent.log"))
        .map_err(|e| fail("cannot open agent.log", e))?;
    let log2 = log.try_clone().map_err(|e| fail("cannot open agent.log", e))?;
    let mut cmd = Command::new(&config.program);
    cmd.args(agent_args(config, spec));
    for (k, v) in agent_env(config) {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let child =
        cmd.spawn().map_err(|e| fail(&format!("cannot run {}", config.program.display()), e))?;
    tracing::info!(instance = %spec.instance_id, pid = child.id(), cluster = %spec.cluster, "started the instance's agent");
    Ok(child)
}

fn terminate(kid: &mut Kid, grace: Duration) {
    if kid.phase == Phase::Running {
        let pid = rustix::process::Pid::from_child(&kid.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        kid.phase = Phase::Stopping;
        kid.kill_at = Some(Instant::now() + grace);
    }
}

/// Forgets children that exited; SIGKILLs those past their grace.
fn reap(kids: &mut BTreeMap<String, Kid>) {
    kids.retain(|id, k| match k.child.try_wait() {
        Ok(Some(status)) => {
            tracing::info!(instance = %id, %status, "the instance's agent exited");
            false
        }
        Ok(None) => {
            if k.kill_at.is_some_and(|t| Instant::now() >= t) {
                tracing::warn!(instance = %id, "the instance's agent outlived its grace period: SIGKILL");
                let _ = k.child.kill();
                k.kill_at = None;
            }
            true
        }
        Err(e) => {
            tracing::warn!(instance = %id, error = %e, "cannot wait for the instance's agent");
            true
        }
    });
}

/// The launcher's thread: owns every child (so the parent-death signal is tied to it).
fn supervise(rx: mpsc::Receiver<Cmd>, grace: Duration) {
    let mut kids: BTreeMap<String, Kid> = BTreeMap::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Cmd::Start(start, reply)) => {
                let (spec, config) = *start;
                reap(&mut kids);
                let r = if kids.contains_key(&spec.instance_id) {
                    Err(InstanceError::Launch(format!(
                        "an agent of {} is already running",
                        spec.instance_id
                    )))
                } else {
                    spawn(&spec, &config).map(|child| {
                        kids.insert(
                            spec.instance_id.clone(),
                            Kid { child, spec, phase: Phase::Running, kill_at: None },
                        );
                    })
                };
                let _ = reply.send(r);
            }
            Ok(Cmd::Stop(id)) => {
                if let Some(k) = kids.get_mut(&id) {
                    terminate(k, grace);
                }
            }
            Ok(Cmd::List(reply)) => {
                reap(&mut kids);
                let list = kids
                    .values()
                    .map(|k| RunningAgent {
                        spec: k.spec.clone(),
                        phase: k.phase,
                        pid: Some(k.child.id()),
                    })
                    .collect();
                let _ = reply.send(list);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => reap(&mut kids),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Shutting down: stop everything, wait out the grace period, kill what is left.
    for k in kids.values_mut() {
        terminate(k, grace);
    }
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    while !kids.is_empty() && Instant::now() < deadline {
        reap(&mut kids);
        if !kids.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for (_, mut k) in kids {
        let _ = k.child.kill();
        let _ = k.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Capacity;

    fn config(credential: JoinCredential) -> ProcessConfig {
        ProcessConfig {
            program: "/bin/true".into(),
            server: "http://127.0.0.1:9".into(),
            data_root: "/data/instances".into(),
            ca_file: None,
            credential,
            grace: Duration::from_secs(1),
            log_filter: "info".into(),
        }
    }

    fn spec() -> AgentSpec {
        AgentSpec {
            instance_id: "i-0123456789abcdef0".into(),
            cluster: "web".into(),
            region: "eu-west-1".into(),
            instance_type: "c5.large".into(),
            availability_zone: "eu-west-1b".into(),
            capacity: Capacity { cpu: 2048, memory_mib: 3840 },
            attributes: vec![
                ("ecs.instance-id".into(), "i-0123456789abcdef0".into()),
                ("stack".into(), "a=b".into()),
            ],
        }
    }

    #[test]
    fn flags_name_everything_the_agent_registers_with() {
        let args: Vec<String> = agent_args(&config(JoinCredential::JoinToken("t".into())), &spec())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert_eq!(
            joined,
            "agent --server http://127.0.0.1:9 --region eu-west-1 --cluster web \
             --data-dir /data/instances/i-0123456789abcdef0 --instance-type c5.large \
             --availability-zone eu-west-1b --cpu 2048 --memory 3840 \
             --ec2-instance-id i-0123456789abcdef0 \
             --attribute ecs.instance-id=i-0123456789abcdef0 --attribute stack=a=b \
             --exit-with-parent"
        );
        assert!(!joined.contains("berth-join"), "no secret on the command line");
    }

    #[test]
    fn credentials_travel_in_the_environment_only() {
        let env = agent_env(&config(JoinCredential::JoinToken("berth-join.x.y".into())));
        let get = |k: &str| env.iter().rev().find(|(n, _)| *n == k).and_then(|(_, v)| v.clone());
        assert_eq!(get("BERTH_JOIN_TOKEN").as_deref(), Some("berth-join.x.y"));
        assert_eq!(get("AWS_ACCESS_KEY_ID"), None);
        assert_eq!(get("BERTH_PARENT_PID"), Some(std::process::id().to_string()));
        let env = agent_env(&config(JoinCredential::AccessKey {
            access_key_id: "AKIA1".into(),
            secret_access_key: "s".into(),
        }));
        let get = |k: &str| env.iter().rev().find(|(n, _)| *n == k).and_then(|(_, v)| v.clone());
        assert_eq!(get("AWS_ACCESS_KEY_ID").as_deref(), Some("AKIA1"));
        assert_eq!(get("BERTH_JOIN_TOKEN"), None);
        let shown = format!(
            "{:?}",
            JoinCredential::AccessKey {
                access_key_id: "AKIA1".into(),
                secret_access_key: "s3cret".into()
            }
        );
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
        // `sh -c 'trap "" TERM; ...'` stands in for an agent that will not stop.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("stubborn.sh");
        let ready = dir.path().join("ready");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ntrap '' TERM\ntouch {}\nwhile :; do sleep 1; done\n",
                ready.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut c = config(JoinCredential::JoinToken("t".into()));
        c.program = script;
        c.data_root = dir.path().join("instances");
        c.grace = Duration::from_millis(300);
        let l = ProcessLauncher::new(c).unwrap();
        l.start(&spec()).unwrap();
        assert!(l.start(&spec()).is_err(), "one agent per instance");
        let listed = l.running();
        assert_eq!((listed.len(), listed[0].phase), (1, Phase::Running));
        assert!(dir.path().join("instances/i-0123456789abcdef0/agent.log").exists());
        // Stop only once it ignores SIGTERM.
        let started = Instant::now();
        while !ready.exists() {
            assert!(started.elapsed() < Duration::from_secs(10), "the stub never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = Instant::now();
        l.stop("i-0123456789abcdef0").unwrap();
        assert_eq!(l.running()[0].phase, Phase::Stopping);
        while !l.running().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(10), "never killed");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(started.elapsed() >= Duration::from_millis(300), "killed before its grace");
    }
}
