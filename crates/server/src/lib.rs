//! The Berth control plane: the AWS protocol front end, SigV4 authentication and the service
//! handlers, over the state store.
//!
//! ```text
//!  HTTP POST /  ──> protocol (target, body cap, request id, AWS error bodies)
//!                     └─> auth (SigV4 → Principal + region of the scope → authorize)
//!                           └─> regions: that region's ecs::Ecs, over its view of the store
//!                           └─> wire::ecs::dispatch (parse + validate against the model)
//!                                 └─> the resource module that owns the operation's group
//!                                     (ecs::Clusters, ecs::Tasks...: `src/ecs/<resource>`)
//!                                       └─> records::retry / update (typed CAS, backoff)
//!                                             └─> berth_store::Store (CAS transactions)
//! ```
//! Where to find an operation: the generated `berth_wire::ecs::*Api` trait that names it
//! says its group; `src/ecs/<group>` implements it (`clusters.rs` holds CreateCluster,
//! DescribeClusters...). Operations of the model that Berth does not implement yet answer
//! `UnsupportedFeatureException` naming the operation.
//!
//! At start ([`Server::start`]) the data directory is checked private and locked for this
//! process alone ([`data_dir`]); access key secrets are sealed in the store under a master
//! key kept outside the database ([`auth::secrets`]). The port is served by `berth_serve`
//! under [`ServerConfig::http`]: a connection cap and header, body and write timeouts; over
//! TLS unless it listens on loopback ([`tls`], [`ServerConfig::tls`]).
//!
//! Several servers may share one etcd store (issue #18): every one answers every API call and
//! serves the agent channel of the agents connected to it (woken by the store's change feed,
//! which etcd's watch feeds), but the controllers run only on the elected leader
//! ([`berth_store::Leadership`]: etcd's election on a lease of [`ServerConfig::leader_lease`];
//! with SQLite this server always leads). A controller runs [`supervise_leading`]: started
//! when a term begins, under that term (every store write it makes carries the term's fence,
//! so a deposed leader cannot commit), stopped when the term ends, and started again at the
//! next. The background loops, by where they run:
//!
//! | loop | where | started in |
//! |---|---|---|
//! | service controller (deployments, task sets, capacity provider and managed scaling, lost instances, DAEMON) | leader | regions.rs |
//! | instance controller (EC2 instances' agents) | leader | regions.rs |
//! | Auto Scaling group controller | leader | regions.rs |
//! | retention reaper (STOPPED tasks, tokens, task definitions) | leader | regions.rs |
//! | random Spot interruptions | leader | regions.rs |
//! | ECS service discovery registrations (Cloud Map) | leader | regions.rs |
//! | secret deletion sweep (Secrets Manager) | leader | here |
//! | DNS view (records -> this server's DNS listener; reads only) | every server | regions.rs |
//! | load balancer data plane (records -> this server's listeners; reads only) | every server | regions.rs |
//! | log retention sweep (this server's own `logs.db`) | every server | here |
//! | audit trail retention sweep (this server's own `trail.db`) | every server | here |
//! | registry garbage collection and lifecycle policies (the blob store, shared by every server with `--registry-blob-dir`) | leader | ecr/ |
//! | store followers: agent channel wakers, placement and task definition caches, auth cache | every server | their modules |
//!
//! A loop added later that writes to the store belongs with the leader's.
#![forbid(unsafe_code)]

mod appautoscaling;
pub mod auth;
mod autoscaling;
pub mod clock;
mod cloudtrail;
mod cloudwatch;
pub mod data_dir;
mod ec2;
mod ecr;
mod ecs;
mod elbv2;
mod error;
mod iam;
mod instances;
mod logs;
mod pagination;
mod protocol;
mod records;
mod regions;
mod secretsmanager;
mod servicediscovery;
mod ssm;
mod sts;
mod task_role;
pub mod tls;

/// The paths of Berth's administration API (join tokens), for `berth token`.
pub mod admin_paths {
    pub use crate::protocol::admin::{
        CREATE_PATH, LIST_PATH, REGISTRY_GC_PATH, REVOKE_PATH, SPOT_CAPACITY_PATH,
        SPOT_INTERRUPT_PATH,
    };
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_model::arn::Scope;
use berth_store::{SqliteStore, Store, StoreError};
use tokio::net::TcpListener;

pub use auth::BootstrapKey;
use clock::{Clock, SystemClock};
/// The hidden cluster the Fargate pool's hosts register in (`berth agent --fargate`).
pub use ecs::fargate::POOL_CLUSTER as FARGATE_POOL_CLUSTER;
pub use time::Duration;

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Holds `berth.db`, `credentials`, `config`, `LOCK` and (by default) `keys/master.key`;
    /// created 0700, refused when open to group or others ([`data_dir`]).
    pub data_dir: PathBuf,
    /// The master key file that seals the secrets in the store ([`auth::secrets`]); `None`:
    /// `DATA_DIR/keys/master.key`.
    pub key_file: Option<PathBuf>,
    pub listen: SocketAddr,
    pub region: String,
    /// 12 digits.
    pub account_id: String,
    /// Largest accepted clock difference between a signed request and the server (AWS: 5 min).
    pub max_clock_skew: time::Duration,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// An instance whose agent has not polled for this long shows `agentConnected: false`.
    pub agent_timeout: std::time::Duration,
    /// After this long without a heartbeat, an instance's service tasks are replaced elsewhere
    /// (ECS never does).
    pub instance_lost_after: std::time::Duration,
    /// A service task without container health checks counts as healthy after running this
    /// long (ECS: 40 seconds).
    pub service_settle: std::time::Duration,
    /// How long (seconds) a managed-scaling capacity provider's reservation must stay below
    /// its target before its group is scaled in (ECS: 900).
    pub scale_in_after_secs: u32,
    /// A STOPPED task stays describable this long, then is removed (ECS: at least an hour).
    pub stopped_task_retention: std::time::Duration,
    /// Random FARGATE_SPOT interruptions per Spot task-hour (`0`: none), for testing a
    /// service's resilience (see `berth spot`).
    pub spot_interruption_rate: f64,
    /// Connection cap and timeouts of the API port ([`berth_serve`]). The agents' long poll
    /// (up to 60 s) is a request in flight, which none of the timeouts cuts.
    pub http: berth_serve::Limits,
    /// TLS on the API port ([`tls`]): by default on unless `listen` is loopback.
    pub tls: tls::TlsSettings,
    /// The `berth` executable that runs the agents of EC2 instances (RunInstances); `None`:
    /// no instance ever starts (they stay `pending`). Default: this process's executable
    /// when it is `berth` (so `berth server` and `berth up` run them; test binaries do not).
    pub agent_program: Option<PathBuf>,
    /// The address load balancer listeners bind (ELBv2, with each listener's own port).
    pub lb_bind_address: std::net::IpAddr,
    /// The image registry (ECR's data plane, issue #14): [`RegistryConfig`].
    pub registry: RegistryConfig,
    /// Where the records live: `None`, `DATA_DIR/berth.db` (SQLite); `Some`, an etcd cluster
    /// (issue #18). Keys, certificates and the log store stay in the data directory either way;
    /// servers sharing an etcd store need the same master key (`key_file`).
    pub etcd: Option<berth_store::EtcdConfig>,
    /// The TTL of the leadership lease with an etcd store (`--leader-lease-secs`): a leader
    /// that dies is replaced within about this long; a paused one stops leading once it has
    /// not renewed it for this long. Unused with SQLite (this server always leads).
    pub leader_lease: std::time::Duration,
    /// How often Application Auto Scaling evaluates its policies and scheduled actions, and
    /// the period of target tracking's alarms (`--app-autoscaling-period-secs`; AWS: 60 s).
    pub app_autoscaling_period: std::time::Duration,
    /// Where the DNS server of Cloud Map's namespaces listens, UDP and TCP on one port
    /// (`berth_dns`); `None`: no DNS listener (the API still works). Port 0 picks a free port.
    pub dns_listen: Option<SocketAddr>,
    /// Where ECS Service Connect's proxy listens (one port per client alias port): an address
    /// of this host that task containers reach, such as the Docker bridge gateway; `None`:
    /// services with Service Connect are refused (issue #17).
    pub service_connect_address: Option<std::net::IpAddr>,
    /// How long the audit trail keeps events (`--trail-retention-days`; CloudTrail's event
    /// history: 90 days).
    pub trail_retention: std::time::Duration,
}

/// Where and how the image registry runs.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// Where it listens; `None`: no registry (and no ECR API). Port 0 picks a free port at
    /// each start.
    pub listen: Option<SocketAddr>,
    /// The `HOST:PORT` that `repositoryUri` and `proxyEndpoint` name; `None`: the address
    /// bound (loopback when it listens everywhere).
    pub address: Option<String>,
    /// How often unreferenced blobs are collected and lifecycle policies applied.
    pub gc_interval: std::time::Duration,
    /// A blob written this recently is never collected (it may belong to a push in progress).
    pub gc_grace: std::time::Duration,
    /// Where the blobs and upload sessions live; `None`: `DATA_DIR/registry`. Servers sharing
    /// one store point this at one shared directory (NFS...) so that any of them serves any
    /// blob: blobs are written by rename within it, and only the leader collects garbage.
    pub blob_dir: Option<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            address: None,
            gc_interval: std::time::Duration::from_secs(3600),
            gc_grace: std::time::Duration::from_secs(3600),
            blob_dir: None,
        }
    }
}

/// Default cap on the API's open connections: every agent holds one for its long poll, and
/// the fleet targets are thousands of instances. More wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16_384;

impl ServerConfig {
    /// Defaults for everything but where to keep data and listen.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            data_dir,
            listen,
            region: "us-east-1".into(),
            account_id: DEFAULT_ACCOUNT_ID.into(),
            max_clock_skew: time::Duration::minutes(5),
            max_body_bytes: 1024 * 1024,
            agent_timeout: std::time::Duration::from_secs(45),
            instance_lost_after: std::time::Duration::from_secs(120),
            service_settle: std::time::Duration::from_secs(40),
            scale_in_after_secs: 900,
            stopped_task_retention: std::time::Duration::from_secs(3600),
            spot_interruption_rate: 0.0,
            http: berth_serve::Limits::new(DEFAULT_MAX_CONNECTIONS),
            key_file: None,
            tls: tls::TlsSettings::default(),
            agent_program: std::env::current_exe()
                .ok()
                .filter(|p| p.file_stem().is_some_and(|s| s == "berth")),
            lb_bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
            registry: RegistryConfig::default(),
            dns_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            service_connect_address: None,
            etcd: None,
            leader_lease: DEFAULT_LEADER_LEASE,
            app_autoscaling_period: std::time::Duration::from_secs(60),
            trail_retention: std::time::Duration::from_secs(90 * 86_400),
        }
    }
}

/// The default TTL of the leadership lease ([`ServerConfig::leader_lease`]).
pub const DEFAULT_LEADER_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// The term this server leads under, while it does (`None` while it does not).
pub(crate) type Leading = tokio::sync::watch::Receiver<Option<Arc<berth_store::Term>>>;

/// The account id used when none is configured.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    DataDir(#[from] data_dir::DataDirError),
    #[error("cannot set up the master key: {0}")]
    KeyFile(#[from] auth::secrets::KeyFileError),
    #[error("cannot seal the stored access key secrets: {0}")]
    Seal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot set up the administrator key: {0}")]
    Bootstrap(#[from] auth::bootstrap::BootstrapError),
    #[error(
        "cannot listen on {addr}: {source} (is another server using the port? pick another with --listen)"
    )]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error(
        "cannot listen for DNS on {addr}: {source} (pick another address with --dns-listen, or --dns-listen off)"
    )]
    DnsListen { addr: SocketAddr, source: std::io::Error },
    #[error("cannot upgrade the records of the data directory: {0}")]
    Upgrade(String),
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] tls::TlsError),
    /// Any of the above, met while the data directory's filesystem is full.
    #[error(
        "the filesystem holding the data directory {} is full: free space on {}, then start berth again ({source})",
        data_dir.display(),
        filesystem.display()
    )]
    DiskFull { data_dir: PathBuf, filesystem: PathBuf, source: Box<StartError> },
}

impl StartError {
    /// `self` as [`StartError::DiskFull`] when the store ran out of space, or when writing the
    /// data directory failed while its filesystem is full (the lock file, the key file, the
    /// credentials...); else unchanged.
    fn with_disk_full(self, data_dir: &std::path::Path) -> Self {
        use auth::bootstrap::BootstrapError;
        use data_dir::DataDirError;
        let out_of_space = match &self {
            StartError::Store(StoreError::DiskFull { .. }) => true,
            // Failures to write (or to write through the store) that a full disk explains.
            StartError::DataDir(DataDirError::Create { .. } | DataDirError::Lock { .. })
            | StartError::KeyFile(auth::secrets::KeyFileError::Io { .. })
            | StartError::Seal(_)
            | StartError::Store(_)
            | StartError::Bootstrap(BootstrapError::Write { .. } | BootstrapError::Store(_))
            | StartError::Upgrade(_)
            | StartError::Tls(tls::TlsError::Io { .. }) => berth_store::space::is_full(data_dir),
            _ => false,
        };
        if !out_of_space {
            return self;
        }
        StartError::DiskFull {
            data_dir: data_dir.to_path_buf(),
            filesystem: berth_store::space::mount_point(data_dir),
            source: Box::new(self),
        }
    }
}

/// Everything a request handler needs.
pub(crate) struct App {
    pub auth: auth::Authenticator,
    /// Every region's ECS ([`regions`]).
    pub regions: regions::Regions,
    pub max_body_bytes: usize,
    /// Join tokens (issue #10).
    pub tokens: auth::tokens::JoinTokens,
    pub account_id: String,
    /// CloudWatch Logs and its store, `DATA_DIR/logs.db` (issue #15).
    pub logs: Arc<logs::Logs>,
    /// CloudWatch metrics and alarms and their store, `DATA_DIR/metrics.db` (issue #15).
    pub cloudwatch: Arc<cloudwatch::CloudWatch>,
    /// The image registry and the ECR API over it, when the server runs one.
    pub ecr: Option<Arc<ecr::EcrService>>,
    /// The keys that seal Secrets Manager values and SSM SecureStrings (issue #16).
    pub vault: Arc<secretsmanager::Vault>,
    /// IAM's records and the authorization of IAM principals (issue #16).
    pub iam: Arc<iam::Iam>,
    /// The audit trail of every call this server answers, `DATA_DIR/trail.db` (issue #16).
    pub trail: Arc<cloudtrail::CloudTrail>,
}

/// A server that has opened its store and bound its port, ready to serve.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    local_addr: SocketAddr,
    admin_key: BootstrapKey,
    config: ServerConfig,
    /// Held (locked) for as long as the server runs.
    data_dir: data_dir::DataDir,
    tls: Option<tls::Tls>,
    /// The agents of EC2 instances ([`ServerConfig::agent_program`]).
    agents: Option<Arc<instances::InstanceAgents>>,
    /// The registry's port, bound ([`RegistryConfig::listen`]).
    registry: Option<TcpListener>,
    /// The DNS listener of Cloud Map's namespaces ([`ServerConfig::dns_listen`]).
    dns: Option<berth_dns::Listener>,
    /// Who runs the controllers ([`berth_store::Leadership`]).
    leadership: Arc<dyn berth_store::Leadership>,
}

impl Server {
    /// Opens (or creates) the data directory and store, ensures the administrator key exists
    /// and binds the listening socket. On a full disk it fails with [`StartError::DiskFull`],
    /// naming the filesystem to free space on.
    pub async fn start(config: ServerConfig) -> Result<Self, StartError> {
        let data_dir = config.data_dir.clone();
        Self::try_start(config).await.map_err(|e| e.with_disk_full(&data_dir))
    }

    async fn try_start(config: ServerConfig) -> Result<Self, StartError> {
        if config.account_id.len() != 12 || !config.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StartError::Config(format!(
                "--account-id must be 12 digits, got '{}'",
                config.account_id
            )));
        }
        let Some(default_region) = berth_model::regions::lookup(&config.region) else {
            return Err(StartError::Config(format!(
                "--region '{}' is not an AWS region botocore lists (for example {}); it is the default region, and every listed region is served",
                config.region,
                berth_model::regions::EXAMPLES
            )));
        };
        let data_dir = data_dir::DataDir::open(&config.data_dir)?;
        let mut etcd_store = None;
        let (store, sqlite): (Arc<dyn Store>, Option<Arc<SqliteStore>>) = match &config.etcd {
            None => {
                let sqlite = Arc::new(SqliteStore::open(&config.data_dir.join("berth.db"))?);
                (sqlite.clone(), Some(sqlite))
            }
            Some(etcd) => {
                let etcd = Arc::new(berth_store::EtcdStore::connect(etcd.clone()).await?);
                etcd_store = Some(etcd.clone());
                (etcd, None)
            }
        };
        let key_file = match &config.key_file {
            Some(k) => k.clone(),
            None => config.data_dir.join(auth::secrets::DEFAULT_KEY_FILE),
        };
        let (master_key, _) = auth::MasterKey::load_or_create(&key_file)?;
        let master_key = Arc::new(master_key);
        let sealed = auth::secrets::seal_plaintext_keys(&*store, &master_key)
            .await
            .map_err(StartError::Seal)?;
        if sealed > 0 {
            match &sqlite {
                // The plain text must not linger in the file's free pages or in the WAL.
                Some(sqlite) => sqlite.scrub()?,
                None => tracing::warn!(
                    "etcd keeps the plain text of the sealed secrets in its history until it is compacted"
                ),
            }
            tracing::info!(sealed, "sealed access key secrets stored in plain text");
        }
        drop(sqlite);
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let scope = Scope::new(config.region.clone(), config.account_id.clone());
        let admin_key =
            auth::bootstrap_admin_key(&*store, &*clock, &scope, &config.data_dir, &master_key)
                .await?;
        let mut timing = timing(&config);
        timing.identity_key = Some(Arc::new(berth_instances::identity::IdentityKey::new(
            master_key.derive(berth_instances::identity::KEY_LABEL),
        )));
        // Filled in once the listener is bound (DiscoverPollEndpoint answers it).
        let endpoint = timing.endpoint.clone();
        let regions = regions::Regions::open(
            store.clone(),
            clock.clone(),
            &config.account_id,
            timing,
            default_region,
        )
        .await
        .map_err(|e| match e {
            regions::OpenError::Store(e) => StartError::Store(e),
            regions::OpenError::Upgrade(e) => StartError::Upgrade(e),
        })?;
        let iam =
            iam::Iam::new(store.clone(), clock.clone(), master_key.clone(), &config.account_id);
        let (registry, ecr) = ecr::EcrService::start(
            &config,
            regions.services(default_region).view.clone(),
            clock.clone(),
            default_region,
            &master_key,
            iam.clone(),
        )
        .await?;
        let vault = Arc::new(secretsmanager::Vault::new(&master_key, store.clone()));
        let cloudwatch = Arc::new(
            cloudwatch::CloudWatch::open(
                &config.data_dir.join("metrics.db"),
                clock.clone(),
                &config.account_id,
            )
            .map_err(|e| StartError::Config(format!("cannot open the metric store: {e}")))?,
        );
        // Application Auto Scaling reads metrics and keeps its alarms through CloudWatch.
        regions.link_cloudwatch(cloudwatch.clone());
        let app = Arc::new(App {
            cloudwatch,
            ecr,
            vault,
            iam,
            auth: auth::Authenticator::new(
                store.clone(),
                clock.clone(),
                default_region,
                &config.account_id,
                config.max_clock_skew,
                master_key,
            ),
            tokens: auth::tokens::JoinTokens::new(store, clock),
            regions,
            max_body_bytes: config.max_body_bytes,
            account_id: config.account_id.clone(),
            trail: Arc::new(
                cloudtrail::CloudTrail::open(
                    &config.data_dir.join("trail.db"),
                    config.trail_retention,
                )
                .map_err(|e| StartError::Config(format!("cannot open the audit trail: {e}")))?,
            ),
            logs: Arc::new(
                logs::Logs::open(&config.data_dir.join("logs.db"))
                    .map_err(|e| StartError::Config(format!("cannot open the log store: {e}")))?,
            ),
        });
        app.auth.follow_changes();
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        let tls = tls::setup(&config.data_dir, local_addr, &config.tls)?;
        let me = format!("{}://{local_addr}", if tls.is_some() { "https" } else { "http" });
        let _ = endpoint.set(me.clone());
        let leadership: Arc<dyn berth_store::Leadership> = match &etcd_store {
            Some(etcd) => Arc::new(berth_store::EtcdLeadership::new(etcd, me, config.leader_lease)),
            None => Arc::new(berth_store::AlwaysLeader::new(me)),
        };
        drop(etcd_store);
        let agents = match &config.agent_program {
            None => None,
            Some(program) => {
                // The agents reach the server on loopback when it listens everywhere.
                let mut at = local_addr;
                if at.ip().is_unspecified() {
                    at.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if tls.is_some() { "https" } else { "http" };
                let agents = instances::InstanceAgents::new(
                    program.clone(),
                    format!("{scheme}://{at}"),
                    &config.data_dir,
                    tls.as_ref().and_then(|t| t.ca_file.clone()),
                    berth_instances::launcher::process::JoinCredential::IdentityDocument,
                )
                .map_err(|e| {
                    StartError::Config(format!("cannot start the instance launcher: {e}"))
                })?;
                Some(Arc::new(agents))
            }
        };
        let dns = match config.dns_listen {
            Some(addr) => Some(
                app.regions
                    .dns()
                    .serve(addr)
                    .await
                    .map_err(|source| StartError::DnsListen { addr, source })?,
            ),
            None => None,
        };
        Ok(Self {
            app,
            listener,
            local_addr,
            admin_key,
            config,
            data_dir,
            tls,
            agents,
            registry,
            dns,
            leadership,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The administrator key of this data directory.
    pub fn admin_key(&self) -> &BootstrapKey {
        &self.admin_key
    }

    /// TLS in force on the API port (`None`: plain HTTP).
    pub fn tls(&self) -> Option<&tls::Tls> {
        self.tls.as_ref()
    }

    /// `https://ADDR` or `http://ADDR`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The address `docker push` uses for the registry (`HOST:PORT`), when one runs.
    pub fn registry_address(&self) -> Option<String> {
        self.app.ecr.as_ref().map(|e| e.address.clone())
    }

    /// The address of the DNS listener (UDP and TCP), when one runs.
    pub fn dns_address(&self) -> Option<SocketAddr> {
        self.dns.as_ref().map(|d| d.local_addr())
    }

    /// The configuration in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, _) = tokio::sync::watch::channel(false);
        let (leading_tx, leading) = tokio::sync::watch::channel(None);
        let campaign = tokio::spawn(lead(self.leadership.clone(), leading_tx, stop_tx.subscribe()));
        // Each region's controllers (while leading) and data planes, now and as regions appear.
        self.app.regions.start(&stop_tx, self.agents.clone(), leading.clone());
        let logs = self.app.logs.clone();
        supervise("log retention sweep".into(), &stop_tx, move |stop| logs.clone().sweeper(stop));
        let trail = self.app.trail.clone();
        supervise("audit trail retention sweep".into(), &stop_tx, move |stop| {
            trail.clone().sweeper(stop)
        });
        let cloudwatch = self.app.cloudwatch.clone();
        supervise("alarm evaluation".into(), &stop_tx, move |stop| {
            cloudwatch.clone().evaluator(stop)
        });
        let vault = self.app.vault.clone();
        supervise_leading("secret deletion sweep".into(), &stop_tx, leading.clone(), move |stop| {
            vault.clone().sweeper(stop)
        });
        let app = self.app.clone();
        // The registry's port and loops stop with the API's.
        let (down_tx, down_rx) = tokio::sync::watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = down_tx.send(true);
        };
        let registry = match (self.registry, &self.app.ecr) {
            (Some(l), Some(ecr)) => {
                Some(ecr.clone().spawn(l, &stop_tx, leading.clone(), self.config.http, down_rx))
            }
            _ => None,
        };
        let router = protocol::router(self.app);
        let acceptor = self.tls.map(|t| t.acceptor);
        let served =
            berth_serve::serve_tls(self.listener, router, self.config.http, acceptor, shutdown)
                .await;
        let _ = stop_tx.send(true);
        let _ = campaign.await;
        if let Some(r) = registry {
            let _ = r.await;
        }
        app.regions.stop().await;
        if let Some(dns) = self.dns {
            dns.shutdown().await;
        }
        if let Some(agents) = self.agents {
            // The agents exit with the server; their instances' next start brings them back.
            tokio::task::spawn_blocking(move || agents.shutdown()).await.ok();
        }
        // Only now may another server take the directory.
        drop(self.data_dir);
        served
    }
}

/// Runs a background loop until `stop` is set, starting it again (after a second, with an
/// error in the log) should it panic: a bug met on one pass must not end the loop for good
/// while the API keeps answering. The loops are level-triggered from the store, so a restart
/// loses nothing.
pub(crate) fn supervise<F, Fut>(
    what: String,
    stop: &tokio::sync::watch::Sender<bool>,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(tokio::sync::watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut stopped = stop.subscribe();
    let stop = stop.clone();
    tokio::spawn(async move {
        loop {
            // Subscribed after the stop (a loop spawned as the server stops): its `changed()`
            // would never fire, so it must not start at all.
            let rx = stop.subscribe();
            if *rx.borrow() {
                return;
            }
            match tokio::spawn(start(rx)).await {
                Err(e) if e.is_panic() && !*stopped.borrow() => {
                    tracing::error!(
                        what = %what,
                        "panicked; restarting it in 1 s (a bug: please report it)"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                }
                _ => return,
            }
        }
    })
}

/// Campaigns for leadership until `stop`, publishing each term on `leading` while it lasts
/// (`None` in between), and resigns at the stop so that another server takes over at once.
async fn lead(
    leadership: Arc<dyn berth_store::Leadership>,
    leading: tokio::sync::watch::Sender<Option<Arc<berth_store::Term>>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let term = tokio::select! {
            t = leadership.campaign() => t,
            _ = stopped(&mut stop) => return,
        };
        let term = match term {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "cannot campaign for leadership; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    _ = stopped(&mut stop) => return,
                }
            }
        };
        tracing::info!(term = term.id(), "leading: the controllers run on this server");
        leading.send_replace(Some(term.clone()));
        tokio::select! {
            why = term.wait_ended() => {
                leading.send_replace(None);
                tracing::warn!(term = term.id(), reason = %why, "leadership lost: the controllers stop here; campaigning again");
            }
            _ = stopped(&mut stop) => {
                leading.send_replace(None);
                if let Err(e) = leadership.resign(&term).await {
                    tracing::warn!(error = %e, "cannot resign leadership (another server takes over when the lease expires)");
                }
                return;
            }
        }
    }
}

/// Runs a controller (as [`supervise`] does) only while this server leads: started under
/// each term ([`berth_store::leadership::under`]: its writes carry the term's fence), stopped
/// when the term ends or `stop` is set, and started again at the next term. A term's run has
/// wholly ended before the next one's starts.
pub(crate) fn supervise_leading<F, Fut>(
    what: String,
    stop: &tokio::sync::watch::Sender<bool>,
    mut leading: Leading,
    start: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn(tokio::sync::watch::Receiver<bool>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut stopping = stop.subscribe();
    let start = Arc::new(start);
    tokio::spawn(async move {
        loop {
            if *stopping.borrow() {
                return;
            }
            let term = tokio::select! {
                t = next_term(&mut leading) => match t {
                    Some(t) => Some(t),
                    None => return,
                },
                _ = stopped(&mut stopping) => return,
            };
            let Some(term) = term else { continue };
            let (term_stop, _) = tokio::sync::watch::channel(false);
            let run = supervise(what.clone(), &term_stop, {
                let (start, term) = (start.clone(), term.clone());
                move |rx| berth_store::leadership::under(term.clone(), start(rx))
            });
            tokio::select! {
                _ = term.wait_ended() => {}
                _ = stopped(&mut stopping) => {}
            }
            let _ = term_stop.send(true);
            let _ = run.await;
        }
    })
}

/// Waits for `stop` to be set (or its sender gone).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Waits for a term that has not ended; `None` when the campaign is gone.
async fn next_term(leading: &mut Leading) -> Option<Arc<berth_store::Term>> {
    match leading.wait_for(|t| t.as_ref().is_some_and(|t| t.ended().is_none())).await {
        Ok(t) => t.clone(),
        Err(_) => None,
    }
}

/// The ECS timing settings a configuration gives.
fn timing(config: &ServerConfig) -> ecs::core::Timing {
    ecs::core::Timing {
        agent_timeout_secs: config.agent_timeout.as_secs_f64(),
        // Agents are told to poll at least three times per timeout.
        agent_heartbeat_secs: (config.agent_timeout.as_secs() / 3).clamp(1, 60) as u32,
        instance_lost_after_secs: config.instance_lost_after.as_secs_f64(),
        service_settle_secs: config.service_settle.as_secs_f64(),
        scale_in_after_secs: config.scale_in_after_secs,
        stopped_task_retention_secs: config.stopped_task_retention.as_secs_f64(),
        spot_interruption_rate_per_hour: config.spot_interruption_rate,
        endpoint: Default::default(),
        lb_bind_address: config.lb_bind_address,
        identity_key: None,
        container_dns: container_dns(config.dns_listen),
        service_connect_address: config.service_connect_address,
        app_autoscaling_period: config.app_autoscaling_period,
        deployment_minute_secs: ecs::core::deployment_minute_secs(),
    }
}

/// The resolver to give task containers: the DNS listener's address when it is on port 53
/// (Docker's `dns` option names no port) and neither loopback nor unspecified (containers
/// cannot reach the host's loopback), e.g. `--dns-listen 172.17.0.1:53`, the Docker bridge
/// gateway, which bridge tasks and awsvpc tasks (through their subnet's gateway) both reach.
fn container_dns(listen: Option<SocketAddr>) -> Option<std::net::IpAddr> {
    listen
        .filter(|a| a.port() == 53 && !a.ip().is_loopback() && !a.ip().is_unspecified())
        .map(|a| a.ip())
}

#[cfg(test)]
mod supervise_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_is_started_again_until_stopped() {
        let (stop, _) = tokio::sync::watch::channel(false);
        let starts = Arc::new(AtomicU32::new(0));
        let handle = super::supervise("test loop".into(), &stop, {
            let starts = starts.clone();
            move |mut stop_rx| {
                let n = starts.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        panic!("pass {n} met a bug");
                    }
                    let _ = stop_rx.wait_for(|s| *s).await;
                }
            }
        });
        while starts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        stop.send(true).unwrap();
        handle.await.unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 3, "two panics, two restarts, one clean stop");
    }
}
