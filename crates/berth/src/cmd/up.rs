//! `berth up`: a control plane and an agent in one process, for a laptop or CI.

use std::sync::Arc;

use anyhow::Context;
use berth_agent::{Agent, AgentConfig};
use berth_server::Server;

/// Flags of `berth up`: the server's, plus the agent's sizing.
#[derive(clap::Args, Clone, Debug)]
#[group(id = "up-flags")]
pub struct Args {
    #[command(flatten)]
    pub server: super::server::Args,
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
    /// The local agent's host access: off by default, as on `berth agent`.
    #[command(flatten)]
    pub host_access: super::host_access::Args,
    /// Runs no Fargate pool host: by default `berth up` starts a second local agent that
    /// serves the Fargate pool (`berth agent --fargate`), so FARGATE tasks run here too.
    #[arg(long)]
    pub no_fargate: bool,
    /// The share (percent, 1-99) of this host's CPU and memory (`--cpu` / `--memory`, else
    /// the host's) that the Fargate pool host registers; the local container instance
    /// registers the rest, so the host's capacity is never counted twice. Ignored with
    /// `--no-fargate` (the instance then registers it all).
    #[arg(long, default_value_t = 50, value_name = "PERCENT",
          value_parser = clap::value_parser!(u8).range(1..=99))]
    pub fargate_share: u8,
    /// Keeps N started pause containers ready for awsvpc tasks (0: none): an awsvpc task
    /// starts about 15-20% sooner, but its containers' hostname is then the pause container's
    /// id instead of the ENI's DNS name that ECS sets.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub awsvpc_warm_pool: usize,
}

/// Splits `cpu` units and `memory` MiB between the local instance and the Fargate pool host
/// (the pool gets `pool_percent`, rounded down, at least 1 of each; the instance the rest,
/// at least 1): `((instance cpu, pool cpu), (instance memory, pool memory))`. The two
/// always add up to the whole, so the host is never counted twice.
pub fn split_capacity(cpu: i64, memory: i64, pool_percent: u8) -> ((i64, i64), (i64, i64)) {
    let split = |total: i64| {
        let total = total.max(2);
        let pool = (total * i64::from(pool_percent) / 100).clamp(1, total - 1);
        (total - pool, pool)
    };
    (split(cpu), split(memory))
}

fn step(msg: &str) {
    eprint!("  {msg} ... ");
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.server.config()?;
    let host_access = args.host_access.policy()?;
    super::server::check_nofile(super::nofile_limit(), config.http.max_connections);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        eprintln!("berth up: starting a control plane and an agent on this machine");
        step("opening the store and the API port");
        let server = Server::start(config).await?;
        let addr = server.local_addr();
        let endpoint = server.endpoint();
        let registry = server.registry_address();
        let dns = server.dns_address();
        // What the agent in this process pins: Berth's CA, or, with the operator's own
        // certificate (--tls-cert), the certificates of that file (its issuers, or the
        // certificate itself when self-signed).
        let ca_file =
            server.tls().map(|t| t.ca_file.clone().unwrap_or_else(|| t.cert_file.clone()));
        let server_tls = server.tls().is_some();
        let key = server.admin_key().clone();
        let region = server.config().region.clone();
        let data_dir = server.config().data_dir.clone();
        super::server::write_endpoint(&data_dir, &endpoint)?;
        eprintln!("ok ({endpoint})");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let serving = tokio::spawn(server.serve(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));

        step("connecting to Docker Engine");
        let runtime = Arc::new(
            berth_runtime_docker::DockerRuntime::connect()
                .context("cannot connect to Docker Engine (is it running?)")?,
        );
        eprintln!("ok");
        step("registering this host as a container instance of cluster default");
        // The agent in this process reaches the server on loopback (plain HTTP unless the
        // server speaks TLS: then over TLS, pinned to its CA).
        let local = std::net::SocketAddr::new(
            if addr.ip().is_unspecified() { [127, 0, 0, 1].into() } else { addr.ip() },
            addr.port(),
        );
        let scheme = if server_tls { "https" } else { "http" };
        // The host's capacity, split between the instance and the Fargate pool host.
        let (cpu, memory, pool_cpu, pool_memory) = if args.no_fargate {
            (args.cpu, args.memory, None, None)
        } else {
            use berth_runtime::Runtime as _;
            let info = runtime.info().await.context("cannot read Docker Engine's host info")?;
            let (c, m) = split_capacity(
                args.cpu.unwrap_or(i64::from(info.cpus) * 1024),
                args.memory.unwrap_or(
                    (info.memory_bytes / (1024 * 1024)) as i64
                        - berth_agent_protocol::RESERVED_MEMORY_MIB,
                ),
                args.fargate_share,
            );
            (Some(c.0), Some(m.0), Some(c.1), Some(m.1))
        };
        let agent_config = AgentConfig {
            server: format!("{scheme}://{local}"),
            cluster: "default".into(),
            data_dir: data_dir.join("agent"),
            region: region.clone(),
            instance_type: "berth.local".into(),
            availability_zone: "local-1a".into(),
            attributes: vec![],
            cpu,
            memory_mib: memory,
            credentials: Some(berth_sigv4::Credentials {
                access_key_id: key.access_key_id.clone(),
                secret_access_key: key.secret_access_key.clone(),
                session_token: None,
            }),
            metadata_listen: args.metadata_listen,
            host_access,
        };
        // The Fargate pool's host: a second agent on the same Docker Engine, in the pool's
        // hidden cluster, with no host access (Fargate allows none).
        let pool_config = (!args.no_fargate).then(|| AgentConfig {
            cluster: berth_server::FARGATE_POOL_CLUSTER.into(),
            data_dir: data_dir.join("fargate-agent"),
            metadata_listen: None,
            host_access: Default::default(),
            cpu: pool_cpu,
            memory_mib: pool_memory,
            ..agent_config.clone()
        });
        let agent = Agent::connect(
            agent_config,
            runtime.clone(),
            berth_agent::Access { ca_file: ca_file.clone(), join_token: None },
        )
        .await?
        .with_warm_pool(args.awsvpc_warm_pool);
        eprintln!("ok ({})", agent.instance_arn());
        let pool_agent = match pool_config {
            Some(config) => {
                step("registering this host in the Fargate pool");
                let a = Agent::connect(
                    config,
                    runtime,
                    berth_agent::Access { ca_file: ca_file.clone(), join_token: None },
                )
                .await?
                .with_warm_pool(args.awsvpc_warm_pool);
                eprintln!("ok ({})", a.instance_arn());
                Some(a)
            }
            None => None,
        };
        eprintln!();
        eprintln!("Berth is up. Use it with:");
        eprintln!(
            "  export AWS_SHARED_CREDENTIALS_FILE={} AWS_CONFIG_FILE={}",
            key.credentials_path.display(),
            key.config_path.display()
        );
        match &ca_file {
            Some(ca) => eprintln!(
                "  aws --endpoint-url {endpoint} --ca-bundle {} ecs list-container-instances",
                ca.display()
            ),
            None => eprintln!("  aws --endpoint-url {endpoint} ecs list-container-instances"),
        }
        if let Some(r) = &registry {
            eprintln!(
                "  image registry (ECR) at {r}: aws --endpoint-url {endpoint} ecr get-login-password | docker login --username AWS --password-stdin {r}"
            );
        }
        if let Some(d) = dns {
            eprintln!(
                "  DNS of Cloud Map namespaces at {d} (UDP and TCP): dig @{} -p {} NAME",
                d.ip(),
                d.port()
            );
        }
        eprintln!(
            "Ctrl-C stops Berth; running tasks keep running and are adopted on the next `berth up`."
        );
        if let Some(r) = &registry {
            println!("registry {r}");
        }
        if let Some(d) = dns {
            println!("dns {d}");
        }
        println!("endpoint {endpoint}");
        println!("listening on {addr}");
        let mut agent_stop = stop_rx.clone();
        let agent_run = tokio::spawn(agent.run(async move {
            let _ = agent_stop.wait_for(|s| *s).await;
        }));
        let pool_run = pool_agent.map(|a| {
            let mut pool_stop = stop_rx.clone();
            tokio::spawn(a.run(async move {
                let _ = pool_stop.wait_for(|s| *s).await;
            }))
        });
        super::shutdown_signal().await;
        eprintln!("berth up: stopping");
        let _ = stop_tx.send(true);
        agent_run.await.context("agent task")??;
        if let Some(run) = pool_run {
            run.await.context("Fargate pool agent task")??;
        }
        serving.await.context("server task")??;
        eprintln!("berth up: stopped");
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pool_and_the_instance_split_the_host() {
        assert_eq!(super::split_capacity(2048, 7936, 50), ((1024, 1024), (3968, 3968)));
        assert_eq!(super::split_capacity(2048, 1000, 25), ((1536, 512), (750, 250)));
        for (c, m, p) in [(1, 1, 50), (3, 5, 99), (1024, 300, 1), (4096, 16_000, 33)] {
            let ((ic, pc), (im, pm)) = super::split_capacity(c, m, p);
            assert!(ic >= 1 && pc >= 1 && im >= 1 && pm >= 1, "{c} {m} {p}");
            assert_eq!((ic + pc, im + pm), (c.max(2), m.max(2)), "never counted twice");
        }
    }
}
