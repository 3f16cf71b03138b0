//! What every ECS resource module shares: the store, the clock, the account and region, the
//! timing settings, and the wake-up of the service controller.
//!
//! Invariant: `Core` holds no resource state of its own. Each resource module owns its
//! records in the store and reaches the others only through their narrow interfaces.

use std::sync::Arc;

use berth_model::arn::Scope;
use berth_store::Store;
use berth_wire::AwsError;
use berth_wire::ecs::ErrorCode;

use crate::clock::Clock;

/// The cluster ECS uses wherever `cluster` is omitted.
pub const DEFAULT_CLUSTER: &str = "default";

/// Number of lock stripes.
const STRIPES: usize = 64;

/// Timing settings of the control plane.
#[derive(Clone, Debug)]
pub struct Timing {
    /// An instance whose agent has not polled for this long (seconds) shows
    /// `agentConnected: false`.
    pub agent_timeout_secs: f64,
    /// How often (seconds) agents are told to poll at the latest.
    pub agent_heartbeat_secs: u32,
    /// After this long without a heartbeat (seconds), an instance's service tasks are
    /// replaced elsewhere.
    pub instance_lost_after_secs: f64,
    /// How long (seconds) a service task without health checks must run to count as healthy.
    pub service_settle_secs: f64,
    /// How long (seconds) a managed-scaling provider's reservation must stay below target
    /// before scale-in.
    pub scale_in_after_secs: u32,
    /// How long (seconds) a STOPPED task stays describable.
    pub stopped_task_retention_secs: f64,
    /// Random FARGATE_SPOT interruptions per Spot task-hour (`0`: none; fault injection).
    pub spot_interruption_rate_per_hour: f64,
    /// This server's API endpoint (`http://ADDR` / `https://ADDR`), set once the server is
    /// bound; shared by every region's copy (DiscoverPollEndpoint answers it).
    pub endpoint: Arc<std::sync::OnceLock<String>>,
    /// Where ELBv2 listeners bind (`--lb-bind-address`): every region's data plane uses it.
    pub lb_bind_address: std::net::IpAddr,
    /// Signs and verifies agent-backed instances' identity documents (derived from the
    /// master key; `None`: no document verifies, so a signed one is refused).
    pub identity_key: Option<Arc<berth_instances::identity::IdentityKey>>,
    /// The resolver task containers get (issue #17): the address of the DNS listener when
    /// containers can reach it (`--dns-listen IP:53` on an address such as the Docker bridge
    /// gateway); sent to agents with each task (`DesiredTask::dns_servers`).
    pub container_dns: Option<std::net::IpAddr>,
    /// Where the Service Connect proxy listens, an address task containers reach
    /// (`--service-connect-address`); `None`: Service Connect is refused (issue #17).
    pub service_connect_address: Option<std::net::IpAddr>,
    /// Application Auto Scaling's evaluation period (`--app-autoscaling-period-secs`).
    pub app_autoscaling_period: std::time::Duration,
    /// Seconds in one minute of a traffic-shifting deployment's bake times (60; Berth's
    /// test knob `BERTH_DEPLOYMENT_MINUTE_SECS` shortens it: [`deployment_minute_secs`]).
    pub deployment_minute_secs: f64,
}

/// The environment variable that scales the minutes of `bakeTimeInMinutes`,
/// `stepBakeTimeInMinutes` and `canaryBakeTimeInMinutes` to that many seconds (a Berth-only
/// test knob; unset or invalid: 60).
pub const DEPLOYMENT_MINUTE_ENV: &str = "BERTH_DEPLOYMENT_MINUTE_SECS";

/// One deployment minute in seconds, from [`DEPLOYMENT_MINUTE_ENV`].
pub fn deployment_minute_secs() -> f64 {
    std::env::var(DEPLOYMENT_MINUTE_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(60.0)
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            agent_timeout_secs: 45.0,
            agent_heartbeat_secs: 15,
            instance_lost_after_secs: 120.0,
            service_settle_secs: 40.0,
            scale_in_after_secs: 900,
            stopped_task_retention_secs: 3600.0,
            spot_interruption_rate_per_hour: 0.0,
            endpoint: Arc::default(),
            lb_bind_address: std::net::Ipv4Addr::LOCALHOST.into(),
            identity_key: None,
            container_dns: None,
            service_connect_address: None,
            app_autoscaling_period: std::time::Duration::from_secs(60),
            deployment_minute_secs: 60.0,
        }
    }
}

/// Shared by every ECS module.
pub struct Core {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub scope: Scope,
    pub timing: Timing,
    /// Striped locks that serialise this server's writers of one record group (a task
    /// definition family, a service), so concurrent requests queue instead of burning
    /// compare-and-set retries against each other. Correctness never depends on them: the
    /// store's compare-and-set still guards against every other writer (other servers).
    stripes: Vec<tokio::sync::Mutex<()>>,
    /// Wakes the service controller after an API change.
    services_wake: tokio::sync::Notify,
    /// The region's load balancing (ELBv2), for services with `loadBalancers`; set once when
    /// the region is built (unset in unit tests without ELBv2).
    pub load_balancing:
        std::sync::OnceLock<Arc<dyn super::services::load_balancers::LoadBalancing>>,
}

impl Core {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, scope: Scope, timing: Timing) -> Self {
        let stripes = (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        Self {
            store,
            clock,
            scope,
            timing,
            stripes,
            services_wake: tokio::sync::Notify::new(),
            load_balancing: std::sync::OnceLock::new(),
        }
    }

    /// Now, in epoch seconds with millisecond precision.
    pub fn now(&self) -> f64 {
        crate::clock::epoch_seconds(self.clock.now())
    }

    /// The stripe lock for a record group, e.g. a family's key.
    pub async fn serialise(&self, group: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group.hash(&mut h);
        self.stripes[(h.finish() as usize) % STRIPES].lock().await
    }

    /// Resolves a `cluster` member (name or ARN, default `default`) to a name.
    pub fn cluster_name(&self, cluster: Option<&str>) -> Result<String, AwsError> {
        let given = cluster.unwrap_or(DEFAULT_CLUSTER);
        self.scope.cluster_name(given).map(str::to_string).ok_or_else(cluster_not_found)
    }

    /// This server's endpoint, once known ([`Timing::endpoint`]).
    pub fn endpoint(&self) -> Option<String> {
        self.timing.endpoint.get().cloned()
    }

    /// Wakes the service controller (after an API change to a service or a task).
    pub fn services_changed(&self) {
        self.services_wake.notify_one();
    }

    /// Resolves when [`Self::services_changed`] was called.
    pub async fn services_woken(&self) {
        self.services_wake.notified().await
    }
}

/// ECS's answer for a cluster that does not exist.
pub fn cluster_not_found() -> AwsError {
    ErrorCode::ClusterNotFoundException.with("Cluster not found.")
}
