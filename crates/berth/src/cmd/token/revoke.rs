//! `berth token revoke ID`.

use super::Admin;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The token's id (as `berth token list` shows it), or the whole token.
    pub id: String,
}

pub async fn run(admin: &Admin, args: Args) -> anyhow::Result<()> {
    let out = admin
        .call(berth_server::admin_paths::REVOKE_PATH, serde_json::json!({"id": args.id}))
        .await?;
    println!("revoked {}", out["joinToken"]["id"].as_str().unwrap_or_default());
    Ok(())
}
