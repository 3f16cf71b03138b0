//! `berth agent`: registers this host as a container instance and runs its tasks on Docker.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig};

/// Flags of `berth agent`.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "agent-flags")]
pub struct Args {
    /// The control plane, e.g. http://127.0.0.1:8080, or several servers sharing one etcd
    /// store, separated by commas (http://a:8080,http://b:8080): the agent moves to the next
    /// when one stops answering, resuming its held poll there, its reports kept queued.
    #[arg(long, env = "BERTH_SERVER")]
    pub server: String,
    /// The cluster to join (`default` is created on first use, as ECS does).
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Where the agent keeps its identity (default: $XDG_DATA_HOME/berth/agent).
    #[arg(long, env = "BERTH_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The region this instance belongs to: its tasks, services and cluster are that
    /// region's. Default: the server's default region (its --region).
    #[arg(long, env = "BERTH_REGION")]
    pub region: Option<String>,
    /// Reported as the `ecs.instance-type` attribute.
    #[arg(long, default_value = "berth.local")]
    pub instance_type: String,
    /// Reported as the `ecs.availability-zone` attribute.
    #[arg(long, default_value = "local-1a")]
    pub availability_zone: String,
    /// An extra attribute, KEY=VALUE (repeatable).
    #[arg(long = "attribute", value_parser = parse_kv)]
    pub attributes: Vec<(String, String)>,
    /// Makes this instance capacity of the capacity provider NAME: registers the attribute
    /// `ecs.capacity-provider=NAME`, so tasks placed with a capacity provider strategy
    /// naming NAME may land here.
    #[arg(long, value_name = "NAME", value_parser = parse_provider)]
    pub capacity_provider: Option<String>,
    /// Serves the Fargate pool instead of a cluster: the host joins Berth's hidden pool
    /// cluster, runs the FARGATE tasks of every cluster, and is never listed as anyone's
    /// container instance (so it takes no --cluster or --capacity-provider).
    #[arg(long, conflicts_with_all = ["cluster", "capacity_provider"])]
    pub fargate: bool,
    /// CPU units to register instead of cores x 1024.
    #[arg(long)]
    pub cpu: Option<i64>,
    /// Memory (MiB) to register instead of the host's less 256 MiB.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Where the task metadata endpoint listens: PORT (on the Docker bridge gateway) or
    /// IP:PORT; 0 picks a free port once. Default: the address used last time, else the bridge
    /// gateway on port 51679. Kept in the agent's data directory, so the URIs running
    /// containers hold stay valid across restarts.
    #[arg(long, value_name = "[IP:]PORT")]
    pub metadata_listen: Option<berth_agent::metadata::ListenSpec>,
    #[command(flatten)]
    pub host_access: super::host_access::Args,
    /// Keeps N started pause containers ready for awsvpc tasks (0: none): an awsvpc task
    /// starts about 15-20% sooner, but its containers' hostname is then the pause container's
    /// id instead of the ENI's DNS name that ECS sets.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub awsvpc_warm_pool: usize,
    /// The server's CA certificate (its DATA_DIR/tls/ca.pem) to pin for an https:// server:
    /// only this CA is trusted. Default: DATA_DIR/ca.pem when present.
    #[arg(long, env = "BERTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A join token from `berth token create`, exchanged once for this instance's own key
    /// (kept in DATA_DIR/instance-credentials.json and reused at restart).
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// The EC2 instance this agent stands for (an agent-backed instance, issue #12): it
    /// registers the attribute `ecs.instance-id=ID`, and on its first start in DATA_DIR takes
    /// ID as its identity (the container instance's ec2InstanceId, unless a join token's
    /// server assigns one).
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub ec2_instance_id: Option<String>,
    /// Exit when the process that started this agent exits (Linux's parent-death signal):
    /// how the server runs the agents of its EC2 instances.
    #[arg(long, hide = true)]
    pub exit_with_parent: bool,
}

/// An EC2 instance id: `i-` and 8 or 17 lowercase hex digits.
fn parse_instance_id(s: &str) -> Result<String, String> {
    let ok = s.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("'{s}' is not an EC2 instance id (i- and 17 hex digits)"))
}

/// `--exit-with-parent`: SIGTERM when the starting process's thread exits, and an immediate
/// exit if it already has (`BERTH_PARENT_PID` names the parent it expects).
fn exit_with_parent() -> anyhow::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
        .context("cannot ask for the parent-death signal")?;
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    let expected = std::env::var("BERTH_PARENT_PID").ok().and_then(|p| p.parse::<i32>().ok());
    if let Some(want) = expected
        && parent != Some(want)
    {
        anyhow::bail!("the process that started this agent ({want}) has exited");
    }
    Ok(())
}

/// `--ec2-instance-id` on a data directory's first start: the agent's identity is that id.
fn seed_identity(config: &AgentConfig, id: &str) -> anyhow::Result<()> {
    if berth_agent::state::load(&config.data_dir)?.is_none() {
        berth_agent::state::save(
            &config.data_dir,
            &berth_agent::state::AgentState {
                cluster: config.cluster.clone(),
                ec2_instance_id: id.to_string(),
                container_instance_arn: None,
            },
        )?;
    }
    Ok(())
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{s}'"))
}

/// A capacity provider name: 1-255 letters, digits, `-` and `_`.
fn parse_provider(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| s.to_string()).ok_or_else(|| {
        format!("'{s}' is not a capacity provider name (1-255 letters, digits, '-' and '_')")
    })
}

impl Args {
    /// The agent configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<AgentConfig> {
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => super::server::default_data_dir()?.join("agent"),
        };
        Ok(AgentConfig {
            server: self.server.clone(),
            cluster: if self.fargate {
                berth_server::FARGATE_POOL_CLUSTER.to_string()
            } else {
                self.cluster.clone()
            },
            data_dir,
            // Empty: the server's default, asked of it at connect.
            region: self.region.clone().unwrap_or_default(),
            instance_type: self.instance_type.clone(),
            availability_zone: self.availability_zone.clone(),
            attributes: self
                .attributes
                .iter()
                .cloned()
                .chain(
                    self.capacity_provider
                        .iter()
                        .map(|p| ("ecs.capacity-provider".to_string(), p.clone())),
                )
                .chain(
                    self.ec2_instance_id
                        .iter()
                        .map(|id| ("ecs.instance-id".to_string(), id.clone())),
                )
                .collect(),
            cpu: self.cpu,
            memory_mib: self.memory,
            credentials: None,
            metadata_listen: self.metadata_listen,
            host_access: self.host_access.policy()?,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.exit_with_parent {
        exit_with_parent()?;
    }
    let config = args.config()?;
    if let Some(id) = &args.ec2_instance_id {
        seed_identity(&config, id)?;
    }
    let host_access = args.host_access.summary()?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let runtime =
            Arc::new(berth_runtime_docker::DockerRuntime::connect().context(
                "cannot connect to Docker Engine (is it running? is DOCKER_HOST right?)",
            )?);
        let access = berth_agent::Access {
            ca_file: args.ca_file.clone(),
            join_token: args.join_token.clone(),
        };
        let agent =
            Agent::connect(config, runtime, access).await?.with_warm_pool(args.awsvpc_warm_pool);
        eprintln!("berth agent: registered as {}", agent.instance_arn());
        if let Some(allowed) = host_access {
            eprintln!("berth agent: {allowed}");
        }
        // A machine-readable line for scripts and tests.
        println!("registered {}", agent.instance_arn());
        agent.run(super::shutdown_signal()).await
    })
}
