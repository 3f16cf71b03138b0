//! The Berth agent: registers this host as an ECS container instance and runs the tasks the
//! control plane places on it, through a [`Runtime`] (Docker in production).
//!
//! ```text
//!  register (RegisterContainerInstance, same ARN across restarts via the state file)
//!     └─ loop: poll (long-held; complete desired state) ─▶ one TaskActor per task (the only
//!              writer of that task's state) ─▶ reports (latest state wins, retried) ─▶ server
//! ```
//! Level-triggered throughout: each poll answer is the complete desired state, each report
//! the complete current state of a task, so a lost message or a restart of either side leaves
//! nothing wrong. Containers of this instance that belong to no desired task are stopped and
//! removed; containers of desired tasks are adopted, never started twice.
//!
//! What the agent stops is decided by what the server *says*, never by what it does not
//! know, as ECS's agent stops a task only when its backend names it to stop:
//! * an instance the server answers `INACTIVE` was deregistered: every task here is stopped
//!   and the agent exits;
//! * an instance the server has no record of at all (`ContainerInstanceUnknownException`: an
//!   older database restored, or the agent pointed at another server) is not deregistered:
//!   the agent logs it, leaves its task actors (their containers keep running), registers as
//!   a new instance (RegisterContainerInstance without the old ARN, so the server's EC2
//!   instance id index finds nothing and issues a new one) and carries on as that instance.
//!   The old instance's containers carry the old ARN in their labels, so the new instance
//!   never counts them as its orphans: nothing is stopped or removed, on re-registration or
//!   after. They run on unmanaged (the log names them); pointed back at the server that
//!   placed them, the agent gets its old instance back by its EC2 instance id and adopts
//!   them; otherwise the operator removes them.
//!
//! The control plane is reached through [`control::ControlPlane`] (the HTTP [`Client`] in
//! production), the engine through [`Runtime`]; the runtime's container events
//! ([`events`]) tell each actor when to re-read its containers, so nothing is polled while
//! nothing changes.
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod credentials;
pub mod events;
pub mod logs;
pub mod metadata;
pub mod registry_auth;
pub mod spec;
pub mod state;
pub mod stats;
pub mod task;
pub mod task_credentials;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_agent_protocol::{DesiredTask, PollRequest, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, InstanceStatus, TaskStatus};
use berth_runtime::Runtime;
use berth_wire::ecs::{
    Attribute, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse, Resource,
    VersionInfo,
};
use tokio::sync::{mpsc, watch};

use crate::client::{Client, ClientError};
use crate::control::ControlPlane;
use crate::spec::{LABEL_INSTANCE, LABEL_TASK_ARN};
use crate::task::{TaskActor, TaskContext};

use berth_agent_protocol::RESERVED_MEMORY_MIB;
/// What an agent lets tasks do to its host ([`AgentConfig::host_access`]).
pub use berth_model::host_access;
/// How long the agent asks the server to hold a poll.
const POLL_WAIT_SECONDS: u32 = 20;

/// How an agent is set up.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The control plane, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub cluster: String,
    /// Holds the agent's state file.
    pub data_dir: PathBuf,
    /// The region the instance belongs to (its registration, polls and reports are signed
    /// for it); empty: the server's default region, asked of the server at connect
    /// ([`berth_agent_protocol::INFO_PATH`]).
    pub region: String,
    pub instance_type: String,
    pub availability_zone: String,
    /// Extra `ecs.*`/custom attributes, `KEY=VALUE` parsed.
    pub attributes: Vec<(String, String)>,
    /// CPU units to register instead of cores x 1024.
    pub cpu: Option<i64>,
    /// Memory MiB to register instead of the host's less a reserve.
    pub memory_mib: Option<i64>,
    /// Credentials to sign with; `None` resolves the standard chain (environment, then the
    /// shared credentials file), as the ECS agent uses its instance's role.
    pub credentials: Option<berth_sigv4::Credentials>,
    /// Where the task metadata endpoint listens (`--metadata-listen`); `None`: the address
    /// bound last time, else the Docker bridge gateway on [`metadata::DEFAULT_PORT`]
    /// ([`metadata::bind_stable`]).
    pub metadata_listen: Option<metadata::ListenSpec>,
    /// The host access it allows (`--allow-*`; nothing by default): advertised as attributes
    /// and checked again before a task starts ([`berth_model::host_access`]).
    pub host_access: berth_model::host_access::HostAccess,
}

/// How the agent reaches and proves itself to the control plane (issue #10), besides
/// [`AgentConfig::credentials`].
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The server's CA (PEM) to pin for an `https://` server; default `DATA_DIR/ca.pem` when
    /// it exists. Only this CA is trusted, never the system roots.
    pub ca_file: Option<PathBuf>,
    /// A join token (`berth token create` on the server's machine), exchanged once for this
    /// instance's own key, which is then kept in `DATA_DIR/instance-credentials.json`.
    pub join_token: Option<String>,
}

/// Whether `endpoint`'s host is a loopback address (or `localhost`).
fn is_loopback_endpoint(endpoint: &str) -> bool {
    // Several servers (`URL,URL,...`): every one must be on this machine.
    if endpoint.contains(',') {
        return endpoint.split(',').all(|e| is_loopback_endpoint(e.trim()));
    }
    let Ok(uri) = endpoint.parse::<http::Uri>() else { return false };
    match uri.host() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Whether `arn` (`arn:aws:ecs:REGION:...`) names a region other than `region` (an ARN that
/// names none is not another region's).
fn in_another_region(arn: &str, region: &str) -> bool {
    let of = arn.split(':').nth(3).unwrap_or_default();
    !of.is_empty() && of != region
}

/// The server's default region, asked of `server` unsigned (retrying while it is not up).
async fn server_region(server: &str, ca_pem: Option<&[u8]>) -> anyhow::Result<String> {
    let anonymous = berth_sigv4::Credentials {
        access_key_id: String::new(),
        secret_access_key: String::new(),
        session_token: None,
    };
    // Unsigned: the region given here signs nothing.
    let client = Client::with_ca(server, anonymous, "us-east-1", ca_pem)?;
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let asked: Result<berth_agent_protocol::ServerInfo, _> = client
            .unsigned(
                berth_agent_protocol::INFO_PATH,
                &serde_json::json!({}),
                Duration::from_secs(10),
            )
            .await;
        match asked {
            Ok(info) if !info.default_region.is_empty() => return Ok(info.default_region),
            Ok(_) => anyhow::bail!("{server} named no default region: pass --region"),
            Err(e) if e.is_transient() && attempt <= 50 => {
                tracing::warn!(error = %e, "cannot ask the server for its region yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(e).context(format!(
                    "cannot ask {server} for its default region (pass --region to skip this)"
                ));
            }
        }
    }
}

/// A registered agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    control: Arc<dyn ControlPlane>,
    runtime: Arc<dyn Runtime>,
    instance_arn: String,
    /// The task metadata endpoint (its address and registry), when it could be served.
    metadata: Option<metadata::Server>,
    /// What this host registered with, to register again as a new instance should the server
    /// forget this one.
    registration: RegisterContainerInstanceRequest,
    /// The firewall and the latest security groups, for awsvpc tasks.
    network: task::network::Networking,
}

/// Why a session (one registration's poll loop) ended.
enum Ended {
    Shutdown,
    /// The instance was deregistered and everything here has stopped.
    Deregistered,
    /// The server has no record of the instance.
    Unknown,
}

/// The attributes an instance registers with: what ECS names, for what Berth supports.
fn attributes(config: &AgentConfig, info: &berth_runtime::RuntimeInfo) -> Vec<Attribute> {
    let attr = |n: &str, v: Option<&str>| Attribute {
        name: Some(n.to_string()),
        value: v.map(str::to_string),
        ..Default::default()
    };
    let mut out = vec![
        attr("ecs.os-type", Some(&info.os)),
        attr("ecs.os-family", Some("LINUX")),
        attr("ecs.cpu-architecture", Some(&info.arch)),
        attr("ecs.instance-type", Some(&config.instance_type)),
        attr("ecs.availability-zone", Some(&config.availability_zone)),
        attr("ecs.ami-id", Some("berth-local")),
        attr("ecs.capability.docker-plugin.local", None),
        attr("ecs.capability.container-health-check", None),
        attr("ecs.capability.container-ordering", None),
        attr("ecs.capability.task-cpu-mem-limit", None),
        attr("ecs.capability.full-sync", None),
        attr("com.amazonaws.ecs.capability.logging-driver.json-file", None),
        attr("com.amazonaws.ecs.capability.logging-driver.none", None),
        attr("com.amazonaws.ecs.capability.logging-driver.syslog", None),
        attr("com.amazonaws.ecs.capability.logging-driver.awslogs", None),
        // Images on the control plane's registry are pulled with an ECR token (issue #14).
        attr("com.amazonaws.ecs.capability.ecr-auth", None),
        attr("ecs.capability.execution-role-ecr-pull", None),
        // Task secrets resolved by the control plane (issue #16).
        attr("ecs.capability.secrets.asm.environment-variables", None),
        attr("ecs.capability.secrets.ssm.environment-variables", None),
        attr("ecs.capability.private-registry-authentication.secretsmanager", None),
        // Task roles: credentials at 169.254.170.2 (task_credentials.rs), host mode included.
        attr("com.amazonaws.ecs.capability.task-iam-role", None),
        attr("com.amazonaws.ecs.capability.task-iam-role-network-host", None),
    ];
    // Docker Remote API versions the engine speaks, as the ECS agent advertises them.
    let api_minor: u32 =
        info.api_version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(24);
    for minor in 17..=api_minor.min(44) {
        out.push(attr(&format!("com.amazonaws.ecs.capability.docker-remote-api.1.{minor}"), None));
    }
    // What the operator allowed (privileged containers, capabilities, host namespaces...).
    for name in config.host_access.attributes() {
        out.push(attr(&name, None));
    }
    // Where this host's bridge tasks are reached (their Cloud Map address, issue #17).
    if let Some(ip) = host_ipv4() {
        out.push(attr("berth.host-ipv4", Some(&ip.to_string())));
    }
    for (k, v) in &config.attributes {
        out.retain(|a| a.name.as_deref() != Some(k));
        out.push(attr(k, Some(v)));
    }
    out
}

/// This host's own IPv4 address: the source address of its default route (a UDP `connect`
/// sends nothing). `None` without a route; `--attribute berth.host-ipv4=IP` overrides it.
fn host_ipv4() -> Option<std::net::Ipv4Addr> {
    let s = std::net::UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((std::net::Ipv4Addr::new(203, 0, 113, 1), 9)).ok()?;
    match s.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() && !ip.is_loopback() => Some(ip),
        _ => None,
    }
}

fn resources(
    config: &AgentConfig,
    info: &berth_runtime::RuntimeInfo,
    own_ports: &[u16],
) -> Vec<Resource> {
    let cpu = config.cpu.unwrap_or(i64::from(info.cpus) * 1024);
    let memory = config
        .memory_mib
        .unwrap_or((info.memory_bytes / (1024 * 1024)) as i64 - RESERVED_MEMORY_MIB)
        .max(1);
    berth_agent_protocol::registered_resources(cpu, memory, own_ports)
}

impl Agent {
    /// Registers (or re-registers, from the state file) this host as a container instance
    /// with the control plane at `config.server`.
    pub async fn register(config: AgentConfig, runtime: Arc<dyn Runtime>) -> anyhow::Result<Self> {
        Self::connect(config, runtime, Access::default()).await
    }

    /// [`Agent::register`] with a pinned CA and a join token. Credentials, first found:
    /// `config.credentials`; the instance key saved by an earlier join (same cluster); a
    /// join with `access.join_token`; the standard AWS chain, only for a loopback server
    /// (a development fallback: the administrator key never leaves the server's machine).
    pub async fn connect(
        mut config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        access: Access,
    ) -> anyhow::Result<Self> {
        let ca_file = access.ca_file.clone().or_else(|| {
            let p = config.data_dir.join("ca.pem");
            p.exists().then_some(p)
        });
        let ca_pem = match &ca_file {
            Some(p) => Some(
                std::fs::read(p)
                    .with_context(|| format!("cannot read the CA file {}", p.display()))?,
            ),
            None => None,
        };
        if config.region.is_empty() {
            config.region = server_region(&config.server, ca_pem.as_deref()).await?;
            tracing::info!(region = %config.region, "joining the server's default region");
        }
        // A key saved for another cluster or region is not this instance's.
        let saved = credentials::load(&config.data_dir)?.filter(|c| {
            c.cluster == config.cluster
                && !in_another_region(&c.container_instance_arn, &config.region)
        });
        let mut join = None;
        let creds = match (config.credentials.clone(), saved, access.join_token) {
            (Some(c), _, _) => c,
            (None, Some(saved), token) => {
                if token.is_some() {
                    tracing::info!(
                        instance = %saved.container_instance_arn,
                        "already joined: using the saved instance key, not the join token"
                    );
                }
                saved.sigv4()
            }
            (None, None, Some(token)) => {
                join = Some(token);
                // Replaced by the instance key the join returns.
                berth_sigv4::Credentials {
                    access_key_id: String::new(),
                    secret_access_key: String::new(),
                    session_token: None,
                }
            }
            (None, None, None) => {
                if !is_loopback_endpoint(&config.server) {
                    anyhow::bail!(
                        "{} is not on this machine: join it with --join-token (run `berth token create` on the server's machine); the administrator's credentials are for a server on loopback only",
                        config.server
                    );
                }
                berth_sigv4::credentials::resolve(|k| std::env::var(k).ok())?
            }
        };
        let client = Client::with_ca(&config.server, creds, &config.region, ca_pem.as_deref())?;
        Self::register_inner(config, runtime, Arc::new(client), join).await
    }

    /// [`Agent::register`] through a given control plane (`config.server` and
    /// `config.credentials` are not used).
    pub async fn register_with(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        control: Arc<dyn ControlPlane>,
    ) -> anyhow::Result<Self> {
        Self::register_inner(config, runtime, control, None).await
    }

    /// Registers, or, with `join_token`, joins as a new instance and saves its key.
    async fn register_inner(
        config: AgentConfig,
        runtime: Arc<dyn Runtime>,
        control: Arc<dyn ControlPlane>,
        join_token: Option<String>,
    ) -> anyhow::Result<Self> {
        let info = runtime
            .info()
            .await
            .context("cannot reach the container runtime (is Docker running?)")?;
        // The task metadata endpoint, on the host's address on Docker's bridge (reachable from
        // the task's containers, not from other hosts), at the same address across restarts.
        // Its port is registered as taken.
        let bind_ip: std::net::IpAddr = info
            .bridge_gateway
            .as_deref()
            .and_then(|g| g.parse().ok())
            .unwrap_or([127, 0, 0, 1].into());
        let metadata = match metadata::bind_stable(
            &config.data_dir,
            config.metadata_listen,
            bind_ip,
            runtime.clone(),
        )
        .await
        {
            Ok(m) => Some(m),
            // Asked for by the operator: not serving it is an error.
            Err(e) if config.metadata_listen.is_some() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, %bind_ip, "task metadata endpoint unavailable");
                None
            }
        };
        let own_ports: Vec<u16> = metadata.iter().map(|m| m.addr.port()).collect();
        let mut st = state::load(&config.data_dir)?.unwrap_or_default();
        if st
            .container_instance_arn
            .as_deref()
            .is_some_and(|a| in_another_region(a, &config.region))
        {
            // Registered in another region: this region knows nothing of that instance.
            st.container_instance_arn = None;
        }
        if st.cluster != config.cluster {
            // Another cluster (or first start): a new identity.
            st = state::AgentState {
                cluster: config.cluster.clone(),
                ec2_instance_id: format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]),
                container_instance_arn: None,
            };
        }
        let doc = serde_json::json!({
            "instanceId": st.ec2_instance_id,
            "instanceType": config.instance_type,
            "availabilityZone": config.availability_zone,
            "region": config.region,
        });
        // An agent-backed EC2 instance's server leaves it a signed identity document (as IMDS
        // serves one): sent verbatim, it proves the instance id and zone (and is the
        // credential of a join with `berth_instances::identity::JOIN_TOKEN`).
        let signed = ["identity-document.json", "identity-document.sig"]
            .map(|f| std::fs::read_to_string(config.data_dir.join(f)).ok());
        let (doc, signature) = match signed {
            [Some(d), Some(s)] => (d, Some(s)),
            _ => (doc.to_string(), None),
        };
        let mut req = RegisterContainerInstanceRequest {
            cluster: Some(config.cluster.clone()),
            instance_identity_document: Some(doc),
            instance_identity_document_signature: signature,
            total_resources: Some(resources(&config, &info, &own_ports)),
            version_info: Some(VersionInfo {
                agent_version: Some(env!("CARGO_PKG_VERSION").into()),
                agent_hash: Some("berth".into()),
                docker_version: Some(format!("DockerVersion: {}", info.engine_version)),
            }),
            container_instance_arn: st.container_instance_arn.clone(),
            attributes: Some(attributes(&config, &info)),
            ..Default::default()
        };
        let mut delay = Duration::from_millis(200);
        if let Some(token) = join_token {
            let join = berth_agent_protocol::JoinRequest {
                token,
                registration: req.clone(),
                region: Some(config.region.clone()),
            };
            let joined = loop {
                match control.join(&join).await {
                    Ok(r) => break r,
                    Err(e) if e.is_transient() => {
                        tracing::warn!(error = %e, "cannot join yet; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                    Err(e) => return Err(e).context("joining with the join token failed"),
                }
            };
            let ci = joined.registration.container_instance.clone().unwrap_or_default();
            let arn = ci.container_instance_arn.context("the join returned no instance ARN")?;
            credentials::save(
                &config.data_dir,
                &credentials::InstanceCredentials {
                    cluster: config.cluster.clone(),
                    container_instance_arn: arn.clone(),
                    access_key_id: joined.access_key_id.clone(),
                    secret_access_key: joined.secret_access_key.clone(),
                },
            )?;
            if let Some(ec2) = ci.ec2_instance_id {
                st.ec2_instance_id = ec2;
            }
            st.container_instance_arn = Some(arn.clone());
            state::save(&config.data_dir, &st)?;
            tracing::info!(instance = %arn, cluster = %config.cluster, "joined");
            return Ok(Self {
                config,
                control,
                runtime,
                instance_arn: arn,
                metadata,
                registration: req,
                network: task::network::Networking::default(),
            });
        }
        let resp: RegisterContainerInstanceResponse = loop {
            match control.register(&req).await {
                Ok(r) => break r,
                Err(ClientError::Aws { code, .. })
                    if code == "ClientException" && req.container_instance_arn.is_some() =>
                {
                    tracing::warn!(
                        "the server no longer knows this instance; registering as a new one"
                    );
                    req.container_instance_arn = None;
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot register yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e).context("RegisterContainerInstance failed"),
            }
        };
        let arn = resp
            .container_instance
            .and_then(|c| c.container_instance_arn)
            .context("RegisterContainerInstance returned no ARN")?;
        st.container_instance_arn = Some(arn.clone());
        state::save(&config.data_dir, &st)?;
        tracing::info!(instance = %arn, cluster = %config.cluster, "registered");
        if let Some(m) = &metadata {
            // Tokens of the containers a restarted agent will adopt: their requests wait for
            // the adopting actor instead of a 404 (metadata::recover_tokens).
            let labels = [(LABEL_INSTANCE.to_string(), arn.clone())];
            m.registry.expect(metadata::recover_tokens(runtime.as_ref(), &labels).await);
        }
        Ok(Self {
            config,
            control,
            runtime,
            instance_arn: arn,
            metadata,
            registration: req,
            network: task::network::Networking::default(),
        })
    }

    /// Keeps `size` started pause containers ready for awsvpc tasks (0: none, the default):
    /// an awsvpc task starts sooner, but its containers' hostname is then the pause
    /// container's id rather than the ENI's DNS name (see [`task::network`]).
    pub fn with_warm_pool(mut self, size: usize) -> Self {
        self.network = self.network.with_pool(size);
        self
    }

    /// Enforces awsvpc tasks' security groups with `firewall` instead of the system's
    /// iptables (tests use [`berth_firewall::RecordingFirewall`]).
    pub fn with_firewall(mut self, firewall: Arc<dyn berth_firewall::Firewall>) -> Self {
        self.network = task::network::Networking::new(firewall);
        self
    }

    /// This instance's ARN.
    pub fn instance_arn(&self) -> &str {
        &self.instance_arn
    }

    /// Runs until `shutdown` resolves. Running tasks are left running: a restarted agent
    /// adopts them.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        loop {
            match self.session(&mut shutdown).await {
                Ended::Shutdown | Ended::Deregistered => {
                    // The warm pause containers no task holds go with the agent.
                    self.network.shutdown(self.runtime.as_ref(), &self.instance_arn).await;
                    return Ok(());
                }
                Ended::Unknown => {
                    if !self.register_as_new(&mut shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The server has no record of this instance: registers as a new one, retrying until it
    /// succeeds (nothing here is stopped meanwhile). `false`: shut down first.
    async fn register_as_new<F: std::future::Future<Output = ()>>(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> bool {
        let old = self.instance_arn.clone();
        let labels = [(LABEL_INSTANCE.to_string(), old.clone())];
        let kept: Vec<String> = match self.runtime.list(&labels).await {
            Ok(found) => found.into_iter().map(|c| c.name).collect(),
            Err(_) => vec![],
        };
        tracing::warn!(
            instance = %old,
            containers = ?kept,
            "the server has no record of this container instance (an older database restored, or another server?): registering as a new instance; the containers of the old one are kept running, unmanaged (pointed back at the server that placed them, the agent adopts them again)"
        );
        let mut req = self.registration.clone();
        req.container_instance_arn = None;
        let mut delay = Duration::from_millis(200);
        let arn = loop {
            let answer = tokio::select! {
                _ = shutdown.as_mut() => return false,
                r = self.control.register(&req) => r,
            };
            match answer.map(|r| r.container_instance.and_then(|c| c.container_instance_arn)) {
                Ok(Some(arn)) => break arn,
                Ok(None) => tracing::warn!("RegisterContainerInstance returned no ARN; retrying"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register as a new instance yet; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.as_mut() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        };
        match state::load(&self.config.data_dir) {
            Ok(Some(mut st)) => {
                st.container_instance_arn = Some(arn.clone());
                if let Err(e) = state::save(&self.config.data_dir, &st) {
                    tracing::warn!(error = %e, "cannot save the new instance ARN");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot update the state file"),
        }
        tracing::info!(instance = %arn, previous = %old, cluster = %self.config.cluster, "registered as a new container instance");
        self.instance_arn = arn;
        true
    }

    /// One registration's poll loop, until shutdown, deregistration, or the server not
    /// knowing the instance.
    async fn session<F: std::future::Future<Output = ()>>(
        &self,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> Ended {
        let (report_tx, report_rx) = mpsc::unbounded_channel::<TaskReport>();
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Set by the reporter when a report was stale: poll again at once, from scratch.
        let repoll = Arc::new(tokio::sync::Notify::new());
        let reporter = tokio::spawn(deliver_reports(
            self.control.clone(),
            report_rx,
            epoch.clone(),
            repoll.clone(),
        ));
        let router = events::Router::new();
        let follower = tokio::spawn(events::follow(
            self.runtime.clone(),
            vec![(LABEL_INSTANCE.to_string(), self.instance_arn.clone())],
            router.clone(),
        ));
        let sampler = tokio::spawn(
            stats::Sampler {
                runtime: self.runtime.clone(),
                control: self.control.clone(),
                cluster: self.config.cluster.clone(),
                instance_arn: self.instance_arn.clone(),
                interval: stats::interval(),
            }
            .run(),
        );
        let ctx = TaskContext {
            runtime: self.runtime.clone(),
            cluster: self.config.cluster.clone(),
            instance_arn: self.instance_arn.clone(),
            reports: report_tx,
            metadata_base: self.metadata.as_ref().map(|m| format!("http://{}/v4", m.addr)),
            metadata: self.metadata.as_ref().map(|m| m.registry.clone()),
            availability_zone: self.config.availability_zone.clone(),
            events: router,
            network: self.network.clone(),
            pull_auth: crate::registry_auth::PullAuth::new(self.control.clone()),
            logs: Some(Arc::new(logs::Shipper {
                control: self.control.clone(),
                cluster: self.config.cluster.clone(),
                instance_arn: self.instance_arn.clone(),
            })),
        };
        let mut actors: HashMap<String, (watch::Sender<DesiredTask>, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        let mut seen = 0u64;
        let mut delay = Duration::from_millis(200);
        let ended = loop {
            let req = PollRequest {
                cluster: self.config.cluster.clone(),
                container_instance_arn: self.instance_arn.clone(),
                seen_version: seen,
                wait_seconds: POLL_WAIT_SECONDS,
            };
            let poll = self.control.poll(&req);
            let resp = tokio::select! {
                _ = shutdown.as_mut() => break Ended::Shutdown,
                _ = repoll.notified() => {
                    seen = 0;
                    continue;
                }
                r = poll => r,
            };
            let resp = match resp {
                Ok(r) => {
                    delay = Duration::from_millis(200);
                    r
                }
                Err(ClientError::Aws { code, .. })
                    if code == berth_agent_protocol::errors::INSTANCE_UNKNOWN =>
                {
                    break Ended::Unknown;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    tokio::select! {
                        _ = shutdown.as_mut() => break Ended::Shutdown,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            seen = resp.version;
            epoch.store(resp.epoch, std::sync::atomic::Ordering::Release);
            // Before any actor looks: new tasks start with their groups' current rules.
            self.network.set_groups(&resp.security_groups);
            actors.retain(|_, (_, handle)| !handle.is_finished());
            let mut desired: HashMap<String, DesiredTask> =
                resp.tasks.into_iter().map(|t| (t.task_arn.clone(), t)).collect();
            if resp.instance_status == InstanceStatus::Inactive {
                // Deregistered: everything here must stop.
                for t in desired.values_mut() {
                    t.desired_status = DesiredTaskStatus::Stopped;
                }
                for (tx, _) in actors.values() {
                    tx.send_modify(|d| d.desired_status = DesiredTaskStatus::Stopped);
                }
            }
            for (arn, t) in &desired {
                match actors.get(arn) {
                    Some((tx, _)) => {
                        tx.send_if_modified(|d| {
                            let changed = d.desired_status != t.desired_status
                                || d.stopped_reason != t.stopped_reason;
                            *d = t.clone();
                            changed
                        });
                    }
                    None => {
                        let (tx, rx) = watch::channel(t.clone());
                        // Defence in depth: a task asking for host access this agent does
                        // not allow never starts (placement should not have sent it).
                        let refused = (t.last_status == TaskStatus::Pending
                            && t.desired_status == DesiredTaskStatus::Running)
                            .then(|| self.config.host_access.refusal(&t.task_definition))
                            .flatten();
                        let actor = TaskActor::new(ctx.clone(), rx).refuse(refused);
                        let handle = tokio::spawn(actor.run());
                        actors.insert(arn.clone(), (tx, handle));
                    }
                }
            }
            self.remove_orphans(&desired, &actors).await;
            if resp.instance_status == InstanceStatus::Inactive && actors.is_empty() {
                tracing::warn!("this container instance was deregistered; the agent stops");
                break Ended::Deregistered;
            }
        };
        // Dropping the actors' senders detaches them: their containers stay as they are.
        drop(actors);
        drop(ctx);
        follower.abort();
        sampler.abort();
        if let Ended::Unknown = ended {
            // The server knows none of these tasks: their reports cannot be delivered.
            reporter.abort();
        } else {
            // Let in-flight reports go out (bounded), then stop.
            let _ = tokio::time::timeout(Duration::from_secs(5), reporter).await;
        }
        ended
    }

    /// Stops and removes containers of this instance that belong to no task the control plane
    /// wants here and that no actor owns (e.g. a task stopped while the agent was down).
    async fn remove_orphans(
        &self,
        desired: &HashMap<String, DesiredTask>,
        actors: &HashMap<String, (watch::Sender<DesiredTask>, tokio::task::JoinHandle<()>)>,
    ) {
        let labels = [(LABEL_INSTANCE.to_string(), self.instance_arn.clone())];
        let Ok(found) = self.runtime.list(&labels).await else { return };
        for c in found {
            let Some(task) = c.labels.get(LABEL_TASK_ARN) else { continue };
            if desired.contains_key(task) || actors.contains_key(task) {
                continue;
            }
            tracing::info!(container = %c.name, task = %task, "removing a container of a task this instance no longer runs");
            if c.state.is_running() {
                let _ = self.runtime.stop(&c.id, Duration::from_secs(10)).await;
            }
            let _ = self.runtime.remove(&c.id).await;
        }
        // Bridges no container uses, cgroups of tasks no longer here (level-triggered).
        let live: Vec<String> = desired
            .keys()
            .chain(actors.keys())
            .map(|arn| arn.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        task::network::cleanup(self.runtime.as_ref(), &self.network, &self.instance_arn, &live)
            .await;
    }
}

/// Delivers reports: per task, the newest state, retried until acknowledged. Each report is
/// stamped, as it arrives, with a sequence number that grows with every report of this
/// process, and at each attempt with the instance's registration epoch as the last poll told
/// it, so that the server can tell a delayed retry from a newer state. Nothing is sent before
/// the first poll has told the epoch. A report the server answers stale changed nothing and
/// is dropped, never retried; `repoll` then asks the poll loop for the current state.
async fn deliver_reports(
    control: Arc<dyn ControlPlane>,
    mut rx: mpsc::UnboundedReceiver<TaskReport>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
    repoll: Arc<tokio::sync::Notify>,
) {
    use std::sync::atomic::Ordering;
    let mut pending: HashMap<String, TaskReport> = HashMap::new();
    let mut delay = Duration::from_millis(100);
    let mut seq: u64 = 0;
    let mut stamp = |mut r: TaskReport| {
        seq += 1;
        r.seq = seq;
        r
    };
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(r) => {
                    pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r));
                }
                None => return,
            }
        }
        while let Ok(r) = rx.try_recv() {
            pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r));
        }
        let current = epoch.load(Ordering::Acquire);
        if current == 0 {
            // Registered but not polled yet: wait for the epoch.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for r in pending.values_mut() {
            r.epoch = current;
        }
        let mut failed = false;
        let tasks: Vec<String> = pending.keys().cloned().collect();
        for t in tasks {
            let Some(report) = pending.get(&t).cloned() else { continue };
            match control.report(&report).await {
                Ok(_) => {
                    // Only forget it if no newer report arrived meanwhile.
                    if pending.get(&t) == Some(&report) {
                        pending.remove(&t);
                    }
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(task = %t, error = %e, "report not delivered; will retry");
                    failed = true;
                }
                Err(ClientError::Aws { code, message, .. })
                    if code == berth_agent_protocol::errors::STALE_REPORT =>
                {
                    tracing::info!(task = %t, %message, "report stale; dropped, polling again");
                    pending.remove(&t);
                    repoll.notify_one();
                }
                Err(e) => {
                    tracing::warn!(task = %t, error = %e, "report refused");
                    pending.remove(&t);
                }
            }
        }
        if failed {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                r = rx.recv() => match r {
                    Some(r) => { pending.insert(r.change.task.clone().unwrap_or_default(), stamp(r)); }
                    None if pending.is_empty() => return,
                    None => {}
                },
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        } else {
            delay = Duration::from_millis(100);
        }
    }
}
