//! `berth server`: the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use berth_server::{Server, ServerConfig};

/// Flags of `berth server` (shared later by `berth up`).
#[derive(clap::Args, Clone, Debug)]
#[group(id = "server-flags")]
pub struct Args {
    /// Where the store, the administrator credentials and the AWS CLI config are kept.
    /// Default: $XDG_DATA_HOME/berth or ~/.local/share/berth.
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to serve the AWS APIs on (port 0 picks a free port).
    #[arg(long, env = "BERTH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The AWS region this server answers as.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The 12-digit account id in every ARN.
    #[arg(long, env = "BERTH_ACCOUNT_ID", default_value = berth_server::DEFAULT_ACCOUNT_ID)]
    pub account_id: String,
    /// Largest accepted difference between a request's signing time and the server clock.
    #[arg(long, default_value_t = 300)]
    pub max_clock_skew_secs: i64,
    /// An instance whose agent has been silent this long shows agentConnected=false.
    #[arg(long, default_value_t = 45)]
    pub agent_timeout_secs: u64,
    /// After this many seconds without a heartbeat, a container instance's service tasks are
    /// replaced on other instances (ECS never replaces them); they are stopped if it returns.
    #[arg(long, default_value_t = 120)]
    pub instance_lost_after_secs: u64,
    /// A service task without container health checks counts as healthy after running this
    /// many seconds (ECS waits 40).
    #[arg(long, default_value_t = 40)]
    pub service_settle_secs: u64,
    /// A STOPPED task stays describable this many seconds, then is removed (ECS keeps them
    /// at least an hour).
    #[arg(long, default_value_t = 3600)]
    pub stopped_task_retention_secs: u64,
}

pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("berth"));
    }
    let home = std::env::var_os("HOME").context("set --data-dir (HOME is not set)")?;
    Ok(PathBuf::from(home).join(".local/share/berth"))
}

impl Args {
    /// The server configuration these flags describe.
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        let data_dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => default_data_dir()?,
        };
        let mut config = ServerConfig::new(data_dir, self.listen);
        config.region = self.region.clone();
        config.account_id = self.account_id.clone();
        config.max_clock_skew = time_secs(self.max_clock_skew_secs);
        config.agent_timeout = std::time::Duration::from_secs(self.agent_timeout_secs);
        config.instance_lost_after = std::time::Duration::from_secs(self.instance_lost_after_secs);
        config.service_settle = std::time::Duration::from_secs(self.service_settle_secs);
        config.stopped_task_retention =
            std::time::Duration::from_secs(self.stopped_task_retention_secs);
        Ok(config)
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let server = Server::start(config).await?;
        let addr = server.local_addr();
        let key = server.admin_key();
        let cfg = server.config();
        eprintln!(
            "berth server: serving Amazon ECS on http://{addr} (region {}, account {}, data in {})",
            cfg.region,
            cfg.account_id,
            cfg.data_dir.display()
        );
        eprintln!(
            "  {} administrator key {} in {}",
            if key.created { "created" } else { "using" },
            key.access_key_id,
            key.credentials_path.display()
        );
        eprintln!("  use it with:");
        eprintln!(
            "    export AWS_SHARED_CREDENTIALS_FILE={} AWS_CONFIG_FILE={}",
            key.credentials_path.display(),
            key.config_path.display()
        );
        eprintln!("    aws --endpoint-url http://{addr} ecs list-clusters");
        // A machine-readable line for scripts and tests that start the server on port 0.
        println!("listening on {addr}");
        server.serve(super::shutdown_signal()).await.context("serving")?;
        eprintln!("berth server: stopped");
        anyhow::Ok(())
    })
}

fn time_secs(s: i64) -> berth_server::Duration {
    berth_server::Duration::seconds(s)
}
