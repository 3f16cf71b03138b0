//! `berth spot interrupt`: fault injection for FARGATE_SPOT, through the running server's admin
//! API (`/berth/admin/v1/spot/interrupt`, signed with the administrator key read from the
//! server's data directory, as `berth token` does). The server stops the chosen Spot tasks as
//! AWS stops an interrupted one (`stopCode` SpotInterruption, SIGTERM then SIGKILL after the
//! container's stopTimeout); their services replace them. `berth spot capacity
//! --unavailable|--available` takes Spot capacity away or gives it back
//! (`/berth/admin/v1/spot/capacity`).

use super::token::{Admin, AdminTarget};

/// Flags of `berth spot`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Interrupt RUNNING FARGATE_SPOT tasks (oldest first) in the server's default region.
    Interrupt(InterruptArgs),
    /// Take FARGATE_SPOT capacity away (`--unavailable`: Spot tasks wait in PROVISIONING, and
    /// services of clusters tagged `berth:fargate-spot-fallback=enabled` fall back to
    /// FARGATE) or give it back (`--available`), in the server's default region.
    Capacity(CapacityArgs),
}

#[derive(clap::Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub struct CapacityArgs {
    /// Spot has capacity again.
    #[arg(long)]
    pub available: bool,
    /// Spot has no capacity.
    #[arg(long)]
    pub unavailable: bool,
}

#[derive(clap::Args, Clone, Debug)]
pub struct InterruptArgs {
    /// Only tasks of this cluster (name or ARN); default: every cluster.
    #[arg(long)]
    pub cluster: Option<String>,
    /// Exactly this task (id or ARN).
    #[arg(long)]
    pub task: Option<String>,
    /// How many tasks to interrupt at most.
    #[arg(long, default_value_t = 1)]
    pub count: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let admin = Admin::open(&args.target)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match args.command {
            Command::Capacity(a) => {
                let input = serde_json::json!({"available": a.available && !a.unavailable});
                let out = admin.call(berth_server::admin_paths::SPOT_CAPACITY_PATH, input).await?;
                let available = out["available"].as_bool().unwrap_or_default();
                println!(
                    "FARGATE_SPOT capacity {}",
                    if available { "available" } else { "unavailable" }
                );
                Ok(())
            }
            Command::Interrupt(a) => {
                let mut input = serde_json::json!({"count": a.count});
                if let Some(c) = a.cluster {
                    input["cluster"] = c.into();
                }
                if let Some(t) = a.task {
                    input["task"] = t.into();
                }
                let out = admin.call(berth_server::admin_paths::SPOT_INTERRUPT_PATH, input).await?;
                let tasks = out["tasks"].as_array().cloned().unwrap_or_default();
                if tasks.is_empty() {
                    eprintln!("no RUNNING FARGATE_SPOT task to interrupt");
                }
                for t in tasks {
                    println!("{}", t["taskArn"].as_str().unwrap_or_default());
                }
                Ok(())
            }
        }
    })
}
