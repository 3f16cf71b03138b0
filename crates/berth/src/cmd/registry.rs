//! `berth registry gc`: runs the image registry's housekeeping now, through the running
//! server's admin API (`/berth/admin/v1/registry/gc`, signed with the administrator key read
//! from the server's data directory, as `berth token` does): applies every repository's
//! lifecycle policy, then deletes the blobs no image references that were written more than
//! `--grace-secs` ago. Prints what it freed.

use super::token::{Admin, AdminTarget};

/// Flags of `berth registry`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub target: AdminTarget,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Collect unreferenced blobs (and apply lifecycle policies) now.
    Gc(GcArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct GcArgs {
    /// Keep blobs written this recently (default: the server's --registry-gc-grace-secs).
    /// 0 is safe only while nothing is being pushed.
    #[arg(long)]
    pub grace_secs: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let admin = Admin::open(&args.target)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match args.command {
            Command::Gc(a) => {
                let mut input = serde_json::json!({});
                if let Some(g) = a.grace_secs {
                    input["graceSeconds"] = g.into();
                }
                let out = admin.call(berth_server::admin_paths::REGISTRY_GC_PATH, input).await?;
                println!("{out}");
                Ok(())
            }
        }
    })
}
