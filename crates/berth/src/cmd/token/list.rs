//! `berth token list`.

use super::Admin;

pub async fn run(admin: &Admin) -> anyhow::Result<()> {
    let out = admin.call(berth_server::admin_paths::LIST_PATH, serde_json::json!({})).await?;
    println!(
        "{:<16}  {:<8}  {:<20}  {:<20}  {:>4}  DESCRIPTION",
        "ID", "STATUS", "CREATED", "EXPIRES", "USES"
    );
    for t in out["joinTokens"].as_array().into_iter().flatten() {
        println!(
            "{:<16}  {:<8}  {:<20}  {:<20}  {:>4}  {}",
            t["id"].as_str().unwrap_or_default(),
            t["status"].as_str().unwrap_or_default(),
            super::when(&t["createdAt"]),
            super::when(&t["expiresAt"]),
            t["uses"].as_u64().unwrap_or(0),
            t["description"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
