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
    /// The default AWS region: written to DATA_DIR/config for clients and the default of
    /// agents. Every region botocore lists is served, each with its own resources.
    #[arg(long, env = "BERTH_REGION", default_value = "us-east-1")]
    pub region: String,
    /// The 12-digit account id in every ARN.
    #[arg(long, env = "BERTH_ACCOUNT_ID", default_value = berth_server::DEFAULT_ACCOUNT_ID)]
    pub account_id: String,
    /// Largest accepted difference between a request's signing time and the server clock,
    /// 1 to 86400 seconds (AWS allows 300).
    #[arg(long, default_value_t = 300, value_parser = parse_clock_skew_secs)]
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
    /// ECS managed scaling lowers an Auto Scaling group capacity provider's group once its
    /// CapacityProviderReservation has stayed below the target this many seconds (ECS: 15
    /// one-minute datapoints, 900).
    #[arg(long, default_value_t = 900)]
    pub scale_in_after_secs: u32,
    /// Application Auto Scaling evaluates its policies and scheduled actions every this many
    /// seconds, which is also the period of target tracking's alarms (AWS: 60; 1 to 3600).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub app_autoscaling_period_secs: u64,
    /// A STOPPED task stays describable this many seconds, then is removed (ECS keeps them
    /// at least an hour).
    #[arg(long, default_value_t = 3600)]
    pub stopped_task_retention_secs: u64,
    /// The audit trail (CloudTrail's LookupEvents) keeps every call's event this many days
    /// (CloudTrail's event history: 90), in DATA_DIR/trail.db.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub trail_retention_days: u64,
    /// Interrupts FARGATE_SPOT tasks at random, this many times per Spot task-hour on
    /// average (0: never), to test that services survive Spot reclaims; `berth spot interrupt`
    /// interrupts on demand.
    #[arg(long, default_value_t = 0.0, value_name = "PER_HOUR")]
    pub spot_interruption_rate: f64,
    /// The master key that seals the access key secrets in the store (created at first start,
    /// mode 0600). Default: DATA_DIR/keys/master.key. Back it up apart from the data.
    #[arg(long, env = "BERTH_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Most API connections open at once; more wait in the listen backlog. Every agent holds
    /// one for its long poll.
    #[arg(long, default_value_t = berth_server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds; also how long a kept-alive
    /// connection may sit idle.
    #[arg(long, default_value_t = berth_serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs())]
    pub header_timeout_secs: u64,
    /// A request's body must arrive within this many seconds once it is read.
    #[arg(long, default_value_t = berth_serve::DEFAULT_BODY_READ_TIMEOUT.as_secs())]
    pub body_timeout_secs: u64,
    /// A client that reads nothing of its response for this many seconds is dropped.
    #[arg(long, default_value_t = berth_serve::DEFAULT_WRITE_STALL_TIMEOUT.as_secs())]
    pub write_timeout_secs: u64,
    /// TLS on the API port: auto (on unless --listen is loopback), on, or off.
    #[arg(long, env = "BERTH_TLS", default_value = "auto")]
    pub tls: berth_server::tls::TlsMode,
    /// The certificate chain to serve (PEM), with --tls-key. Default: one issued by Berth's
    /// own CA, generated at first start into DATA_DIR/tls/ca.pem.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// An extra name (DNS name or IP address) for the generated certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_sans: Vec<String>,
    /// The address ELBv2 load balancer listeners bind, each on its own listener port
    /// (loopback by default; 0.0.0.0 to reach them from other machines).
    #[arg(long, env = "BERTH_LB_BIND_ADDRESS", default_value = "127.0.0.1")]
    pub lb_bind_address: std::net::IpAddr,
    /// Where the image registry (ECR's data plane: `docker push`/`pull`) listens, or `off`
    /// (port 0 picks a free port at each start: give a fixed one to keep repositoryUri stable).
    #[arg(long, env = "BERTH_REGISTRY_LISTEN", default_value = "127.0.0.1:0")]
    pub registry_listen: String,
    /// The HOST:PORT that repositoryUri and GetAuthorizationToken's proxyEndpoint name
    /// (default: the address the registry bound).
    #[arg(long, env = "BERTH_REGISTRY_ADDRESS")]
    pub registry_address: Option<String>,
    /// Where the DNS server of Cloud Map's namespaces listens (UDP and TCP on one port), or
    /// `off`. Port 0 picks a free port at each start; give a fixed one (53 needs root or
    /// CAP_NET_BIND_SERVICE) to point resolvers at it. On port 53 of an address containers
    /// reach (the Docker bridge gateway, e.g. `172.17.0.1:53`), task containers get it as
    /// their resolver, so namespace names resolve inside tasks.
    #[arg(long, env = "BERTH_DNS_LISTEN", default_value = "127.0.0.1:0")]
    pub dns_listen: String,
    /// Where ECS Service Connect's proxy listens, one port per client alias port: an address
    /// of this host that task containers reach, such as the Docker bridge gateway
    /// (`172.17.0.1`). Without it, services with Service Connect are refused.
    #[arg(long, env = "BERTH_SERVICE_CONNECT_ADDRESS")]
    pub service_connect_address: Option<std::net::IpAddr>,
    /// How often the registry applies lifecycle policies and collects unreferenced blobs.
    #[arg(long, default_value_t = 3600)]
    pub registry_gc_interval_secs: u64,
    /// A blob written this recently is never collected (it may belong to a push in progress).
    #[arg(long, default_value_t = 3600)]
    pub registry_gc_grace_secs: u64,
    /// Where the registry keeps its blobs and upload sessions (default: DATA_DIR/registry).
    /// Servers sharing an etcd store give one directory every one of them mounts (NFS...):
    /// then any server serves any image; blobs are written by rename within it and only the
    /// leader collects garbage.
    #[arg(long, env = "BERTH_REGISTRY_BLOB_DIR", value_name = "PATH")]
    pub registry_blob_dir: Option<PathBuf>,
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
        config.scale_in_after_secs = self.scale_in_after_secs;
        config.app_autoscaling_period =
            std::time::Duration::from_secs(self.app_autoscaling_period_secs);
        config.stopped_task_retention =
            std::time::Duration::from_secs(self.stopped_task_retention_secs);
        config.trail_retention = std::time::Duration::from_secs(self.trail_retention_days * 86_400);
        if !(self.spot_interruption_rate.is_finite() && self.spot_interruption_rate >= 0.0) {
            anyhow::bail!(
                "--spot-interruption-rate must be a number of interruptions per Spot task-hour, 0 or more (got {})",
                self.spot_interruption_rate
            );
        }
        config.spot_interruption_rate = self.spot_interruption_rate;
        config.key_file = self.key_file.clone();
        config.lb_bind_address = self.lb_bind_address;
        config.registry = berth_server::RegistryConfig {
            listen: match self.registry_listen.as_str() {
                "off" => None,
                a => Some(a.parse().map_err(|e| {
                    anyhow::anyhow!("--registry-listen must be IP:PORT or off (got '{a}'): {e}")
                })?),
            },
            address: self.registry_address.clone(),
            gc_interval: std::time::Duration::from_secs(self.registry_gc_interval_secs.max(1)),
            gc_grace: std::time::Duration::from_secs(self.registry_gc_grace_secs),
            blob_dir: self.registry_blob_dir.clone(),
        };
        config.service_connect_address = self.service_connect_address;
        config.dns_listen = match self.dns_listen.as_str() {
            "off" => None,
            a => Some(a.parse().map_err(|e| {
                anyhow::anyhow!("--dns-listen must be IP:PORT or off (got '{a}'): {e}")
            })?),
        };
        if self.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        config.http = berth_serve::Limits {
            max_connections: self.max_connections,
            header_read_timeout: positive_secs("--header-timeout-secs", self.header_timeout_secs)?,
            body_read_timeout: positive_secs("--body-timeout-secs", self.body_timeout_secs)?,
            write_stall_timeout: positive_secs("--write-timeout-secs", self.write_timeout_secs)?,
        };
        config.tls = berth_server::tls::TlsSettings {
            mode: self.tls,
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            extra_sans: self.tls_sans.clone(),
        };
        Ok(config)
    }
}

/// Writes `DATA_DIR/endpoint` (the URL this server serves on), which `berth token` reads.
pub fn write_endpoint(data_dir: &std::path::Path, endpoint: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("endpoint");
    let tmp = data_dir.join("endpoint.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    writeln!(f, "{endpoint}")?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Prints where the CA is and how clients use it, when the server speaks TLS.
pub fn print_tls(server: &berth_server::Server) {
    let Some(tls) = server.tls() else { return };
    match &tls.ca_file {
        Some(ca) => {
            eprintln!(
                "  TLS: {} CA {} (copy it to clients; pin it with `berth agent --ca-file`)",
                if tls.ca_created { "created" } else { "using" },
                ca.display()
            );
            eprintln!(
                "    aws --ca-bundle {} ...   (boto3: AWS_CA_BUNDLE={})",
                ca.display(),
                ca.display()
            );
        }
        None => eprintln!("  TLS: serving the certificate {}", tls.cert_file.display()),
    }
}

/// `berth server`'s own flags: the shared ones, and where the records live (`berth up` always
/// keeps them in SQLite).
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    pub server: Args,
    /// Where the records live: `sqlite` (DATA_DIR/berth.db) or an etcd cluster,
    /// `etcd://HOST:2379[,HOST:2379...][/PREFIX]` (keys under PREFIX, default `berth/`), or
    /// `etcds://...` to reach it over TLS (with --etcd-ca, and --etcd-cert and --etcd-key when
    /// etcd runs with --client-cert-auth). With etcd, the data directory still holds the keys,
    /// certificates and logs; servers sharing one etcd store need the same --key-file.
    /// `berth store copy` moves records between them.
    #[arg(long, env = "BERTH_STORE", default_value = "sqlite")]
    pub store: String,
    #[command(flatten)]
    pub etcd_tls: EtcdTlsArgs,
    /// With an etcd store, several servers may share it; the controllers run on the one
    /// elected leader, on a lease of this many seconds (1 to 60): a leader that dies is
    /// replaced within about this long. Unused with SQLite.
    #[arg(long, env = "BERTH_LEADER_LEASE_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub leader_lease_secs: u64,
}

/// TLS to an `etcds://` store (`berth server --store`, `berth store copy`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EtcdTlsArgs {
    /// With an etcds:// store: the CA certificate (PEM) that issued the etcd members'
    /// certificates (etcd's --trusted-ca-file for clients is another matter).
    #[arg(long, env = "BERTH_ETCD_CA", value_name = "FILE")]
    pub etcd_ca: Option<PathBuf>,
    /// With an etcds:// store: this client's certificate (PEM), for an etcd that runs with
    /// --client-cert-auth; needs --etcd-key.
    #[arg(long, env = "BERTH_ETCD_CERT", value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// The private key (PEM) of --etcd-cert.
    #[arg(long, env = "BERTH_ETCD_KEY", value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdTlsArgs {
    /// Whether any TLS file is given.
    pub fn any(&self) -> bool {
        self.etcd_ca.is_some() || self.etcd_cert.is_some() || self.etcd_key.is_some()
    }

    /// The store at `url` (`etcd://` or `etcds://`) with these TLS files.
    pub fn config(&self, flag: &str, url: &str) -> anyhow::Result<berth_store::EtcdConfig> {
        berth_store::EtcdConfig::parse(url)
            .and_then(|c| {
                c.with_tls_files(
                    url,
                    self.etcd_ca.clone(),
                    self.etcd_cert.clone(),
                    self.etcd_key.clone(),
                )
            })
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    }
}

/// The etcd store `--store` names; `None` for SQLite.
pub fn store_flag(
    store: &str,
    tls: &EtcdTlsArgs,
) -> anyhow::Result<Option<berth_store::EtcdConfig>> {
    match store {
        "sqlite" if tls.any() => {
            anyhow::bail!("--etcd-ca, --etcd-cert and --etcd-key are for an etcds:// --store")
        }
        "sqlite" => Ok(None),
        s if berth_store::EtcdConfig::is_etcd_url(s) => Ok(Some(tls.config("--store", s)?)),
        s => anyhow::bail!(
            "--store must be sqlite, etcd://HOST:2379[,HOST:2379...][/PREFIX] or etcds://... for TLS (got '{s}')"
        ),
    }
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut config = args.server.config()?;
    config.etcd = store_flag(&args.store, &args.etcd_tls)?;
    config.leader_lease = std::time::Duration::from_secs(args.leader_lease_secs);
    check_nofile(super::nofile_limit(), config.http.max_connections);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let server = Server::start(config).await?;
        let addr = server.local_addr();
        let endpoint = server.endpoint();
        let key = server.admin_key();
        let cfg = server.config();
        eprintln!(
            "berth server: serving Amazon ECS, EC2 (networking and instances), STS and SSM on {endpoint} (default region {}, every AWS region served; account {}, data in {})",
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
        match server.tls().and_then(|t| t.ca_file.as_ref()) {
            Some(ca) => eprintln!(
                "    aws --endpoint-url {endpoint} --ca-bundle {} ecs list-clusters",
                ca.display()
            ),
            None => eprintln!("    aws --endpoint-url {endpoint} ecs list-clusters"),
        }
        print_tls(&server);
        if server.tls().is_none() && !addr.ip().is_loopback() {
            tracing::warn!(
                "TLS is off on a non-loopback address: join tokens and access keys cross the network in clear text"
            );
        }
        write_endpoint(&cfg.data_dir, &endpoint)?;
        eprintln!(
            "  let agents on other hosts join: berth token create --expires-in 1h --data-dir {}",
            cfg.data_dir.display()
        );
        if let Some(r) = server.registry_address() {
            eprintln!(
                "  image registry (ECR) at {r}: aws ecr get-login-password | docker login --username AWS --password-stdin {r}"
            );
            println!("registry {r}");
        }
        if let Some(d) = server.dns_address() {
            eprintln!("  DNS of Cloud Map namespaces at {d} (UDP and TCP): dig @{} -p {} NAME", d.ip(), d.port());
            println!("dns {d}");
        }
        // A machine-readable line for scripts and tests that start the server on port 0.
        println!("endpoint {endpoint}");
        println!("listening on {addr}");
        server.serve(super::shutdown_signal()).await.context("serving")?;
        eprintln!("berth server: stopped");
        anyhow::Ok(())
    })
}

fn positive_secs(flag: &str, secs: u64) -> anyhow::Result<std::time::Duration> {
    if secs == 0 {
        anyhow::bail!("{flag} must be at least 1");
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Warns when the open-file limit cannot hold `max_connections` API connections besides the
/// store's and the runtime's own descriptors.
pub fn check_nofile(nofile: Option<u64>, max_connections: usize) {
    const HEADROOM: u64 = 256;
    if let Some(limit) = nofile
        && limit < max_connections as u64 + HEADROOM
    {
        tracing::warn!(
            limit,
            max_connections,
            "the open-file limit is below --max-connections + {HEADROOM}: raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower --max-connections"
        );
    }
}

fn time_secs(s: i64) -> berth_server::Duration {
    berth_server::Duration::seconds(s)
}

/// Most clock skew `--max-clock-skew-secs` accepts: a day.
const MAX_CLOCK_SKEW_SECS: i64 = 86_400;

/// `--max-clock-skew-secs`: whole seconds in 1..=[`MAX_CLOCK_SKEW_SECS`].
fn parse_clock_skew_secs(s: &str) -> Result<i64, String> {
    let range = format!("between 1 and {MAX_CLOCK_SKEW_SECS} seconds (AWS allows 300)");
    let secs: i64 = s.trim().parse().map_err(|_| {
        if !s.trim().is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit() || b == b'-') {
            format!("'{s}' is out of range: use a number of seconds {range}")
        } else {
            format!("'{s}' is not a whole number of seconds")
        }
    })?;
    if !(1..=MAX_CLOCK_SKEW_SECS).contains(&secs) {
        return Err(format!("{secs} is out of range: use a number of seconds {range}"));
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: super::Args,
    }

    fn parse(skew: &str) -> Result<super::Args, clap::Error> {
        let flag = format!("--max-clock-skew-secs={skew}");
        Cli::try_parse_from(["berth", "--data-dir", "/tmp/x", &flag]).map(|c| c.args)
    }

    #[test]
    fn max_clock_skew_is_clamped_at_parse() {
        for ok in ["1", "300", "86400"] {
            let args = parse(ok).unwrap();
            let config = args.config().unwrap();
            assert_eq!(config.max_clock_skew.whole_seconds(), ok.parse::<i64>().unwrap());
        }
        for bad in ["0", "-5", "86401", "9223372036854775807", "99999999999999999999", "x"] {
            let err = parse(bad).err().unwrap_or_else(|| panic!("{bad} accepted")).to_string();
            assert!(err.contains("--max-clock-skew-secs"), "{bad}: {err}");
            if bad != "x" {
                assert!(err.contains("between 1 and 86400"), "{bad}: {err}");
            }
        }
    }
}
