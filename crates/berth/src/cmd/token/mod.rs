//! `berth token create | list | revoke`: join tokens, through the running server's admin API
//! (`/berth/admin/v1/join-tokens/*`, signed with the administrator key). Run on the server's
//! machine: the endpoint, the administrator key and the CA are read from its data directory
//! (`endpoint`, `credentials`, `config`, `tls/ca.pem`).

pub mod create;
pub mod list;
pub mod revoke;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Flags of `berth token`.
#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub target: AdminTarget,
}

/// Which running server an admin command talks to (`berth token`, `berth spot`).
#[derive(clap::Args, Clone, Debug)]
pub struct AdminTarget {
    /// The server's data directory (default: as `berth server`'s).
    #[arg(long, env = "BERTH_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's endpoint (default: DATA_DIR/endpoint, written by the running server).
    #[arg(long, global = true)]
    pub server: Option<String>,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Create a join token; prints it once (it is stored only as a hash).
    Create(create::Args),
    /// List join tokens (never their secrets).
    List,
    /// Revoke a join token (agents that already joined keep their keys).
    Revoke(revoke::Args),
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let admin = Admin::open(&args.target)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        match args.command {
            Command::Create(a) => create::run(&admin, a).await,
            Command::List => list::run(&admin).await,
            Command::Revoke(a) => revoke::run(&admin, a).await,
        }
    })
}

/// The admin API of the server of a data directory.
pub struct Admin {
    client: berth_agent::client::Client,
    pub endpoint: String,
    /// The CA agents must pin, when the server generated one.
    pub ca_file: Option<PathBuf>,
}

impl Admin {
    /// The admin API of the server of `target.data_dir` (default: `berth server`'s), at
    /// `target.server` or the endpoint the running server wrote there.
    pub fn open(target: &AdminTarget) -> anyhow::Result<Self> {
        let server = target.server.as_deref();
        let data_dir = match &target.data_dir {
            Some(d) => d.clone(),
            None => super::server::default_data_dir()?,
        };
        let read = |name: &str| {
            let p = data_dir.join(name);
            std::fs::read_to_string(&p).with_context(|| {
                format!("cannot read {} (is this the server's data directory, and has the server started?)", p.display())
            })
        };
        let endpoint = match server {
            Some(s) => s.to_string(),
            None => read("endpoint")?.trim().to_string(),
        };
        let ini = |text: &str, key: &str| {
            text.lines().find_map(|l| {
                l.split_once('=')
                    .filter(|(k, _)| k.trim() == key)
                    .map(|(_, v)| v.trim().to_string())
            })
        };
        let creds_text = read("credentials")?;
        let credentials = berth_sigv4::Credentials {
            access_key_id: ini(&creds_text, "aws_access_key_id")
                .context("no key in credentials")?,
            secret_access_key: ini(&creds_text, "aws_secret_access_key")
                .context("no secret in credentials")?,
            session_token: None,
        };
        let region = ini(&read("config")?, "region").unwrap_or_else(|| "us-east-1".into());
        let ca = data_dir.join("tls/ca.pem");
        let ca_file = ca.exists().then_some(ca);
        let ca_pem = match (&ca_file, endpoint.starts_with("https://")) {
            (Some(p), true) => Some(std::fs::read(p)?),
            _ => None,
        };
        let client = berth_agent::client::Client::with_ca(
            &endpoint,
            credentials,
            &region,
            ca_pem.as_deref(),
        )?;
        Ok(Self { client, endpoint, ca_file })
    }

    /// Calls an admin endpoint.
    pub async fn call(
        &self,
        path: &str,
        input: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.agent(path, &input, Duration::from_secs(30)).await?)
    }
}

/// Epoch seconds as RFC 3339 (UTC, whole seconds).
pub fn when(epoch: &serde_json::Value) -> String {
    let secs = epoch.as_f64().unwrap_or(0.0) as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}
