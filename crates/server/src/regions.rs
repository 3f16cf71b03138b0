//! Every region from one endpoint: one bundle of services ([`Services`]: its [`Ecs`] and its
//! [`Ec2`]) per AWS region, each over its own view of the store.
//!
//! A request's region is the one in its SigV4 credential scope, checked against the regions
//! botocore lists ([`berth_model::regions`]) by [`crate::auth`]; its ECS is [`Regions::ecs`],
//! its EC2 [`Regions::ec2`] (both over the same view, so ECS placement and the EC2 API share
//! the region's VPCs, subnets, security groups and network interfaces).
//! Contract and invariants:
//! * each region's `Ecs` has its own [`berth_model::arn::Scope`] (its region and partition:
//!   the ARNs it mints and the only ARNs it resolves) and its own [`berth_store::View`]: the
//!   configured default region (`--region`) keeps the keys it always had, minus everything
//!   under [`keys::REGIONS`], so data directories of earlier versions need no migration;
//!   every other region lives under `regions/<region>/`. No region can read, count, write or
//!   be told of another's records; the account's records (access keys, join tokens) stay
//!   global, outside every region's ECS.
//! * a region's `Ecs` is built on the first request for it, and at start for the default
//!   region and every region that holds data (found with [`berth_store::view::child_segments`]:
//!   the key space is its own index of the regions in use, nothing to keep in step);
//! * once serving, each region runs its own supervised service controller and retention
//!   reaper, started with the region and stopped with the server; a region built while the
//!   server stops gets none.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use berth_model::arn::Scope;
use berth_model::keys;
use berth_model::regions::{self, Region};
use berth_store::view::child_segments;
use berth_store::{KeySpace, Store, StoreError, View};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::autoscaling::AutoScaling;
use crate::clock::Clock;
use crate::ec2::Ec2;
use crate::ecs::Ecs;
use crate::ecs::core::Timing;
use crate::elbv2::Elbv2;
use crate::instances::InstanceAgents;
use crate::servicediscovery::CloudMap;

/// The regions served, each with its ECS.
pub(crate) struct Regions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    account_id: String,
    timing: Timing,
    default: Region,
    served: Mutex<HashMap<&'static str, Arc<Services>>>,
    loops: Mutex<Loops>,
    /// The DNS data plane every region's Cloud Map feeds (one listener for all regions).
    dns: Arc<crate::servicediscovery::dns::DnsFeed>,
    /// CloudWatch as Application Auto Scaling reads it (linked once built).
    cloudwatch: Arc<crate::appautoscaling::CloudWatchLink>,
}

/// The services of one region, over one view of the store.
pub(crate) struct Services {
    pub ecs: Arc<Ecs>,
    pub ec2: Arc<Ec2>,
    pub autoscaling: Arc<AutoScaling>,
    /// The region's ELBv2 API and load balancer data plane.
    pub elbv2: Arc<Elbv2>,
    /// The region's Cloud Map (its DNS namespaces feed [`Regions::dns`]).
    pub servicediscovery: Arc<CloudMap>,
    /// The region's Application Auto Scaling (it scales `ecs`'s services).
    pub appautoscaling: Arc<crate::appautoscaling::AppAutoScaling>,
    /// The region's view of the store (what both read and write).
    pub view: Arc<dyn Store>,
}

/// The background loops of the regions, by server phase.
enum Loops {
    /// Not serving yet: regions built now get their loops when serving starts.
    Idle,
    Running {
        stop: watch::Sender<bool>,
        started: HashSet<&'static str>,
        handles: Vec<JoinHandle<()>>,
        /// The agents of EC2 instances, when this server runs them.
        agents: Option<Arc<InstanceAgents>>,
        /// The term this server leads under, while it does.
        leading: crate::Leading,
    },
    /// Stopping or stopped: no new loops.
    Stopped,
}

/// The key space of `region`'s records when `default` is the configured default region.
pub(crate) fn key_space(region: Region, default: Region) -> KeySpace {
    if region == default {
        KeySpace::excluding([keys::REGIONS])
    } else {
        KeySpace::prefixed(keys::region_prefix(region.name))
    }
}

impl Regions {
    /// The default region's ECS and that of every region that holds data, their records
    /// brought up to date ([`Ecs::upgrade_records`]).
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        account_id: &str,
        timing: Timing,
        default: Region,
    ) -> Result<Self, OpenError> {
        let me = Self {
            store,
            clock,
            account_id: account_id.to_string(),
            timing,
            default,
            served: Mutex::new(HashMap::new()),
            loops: Mutex::new(Loops::Idle),
            dns: Arc::new(crate::servicediscovery::dns::DnsFeed::new()),
            cloudwatch: Arc::default(),
        };
        let mut in_use = vec![default];
        for name in child_segments(&*me.store, keys::REGIONS).await? {
            match regions::lookup(&name) {
                Some(r) if r != default => in_use.push(r),
                Some(_) => {}
                None => tracing::warn!(
                    region = name,
                    "the store holds records of a region this berth does not know (from a newer botocore?): they are not served"
                ),
            }
        }
        for region in in_use {
            let ecs = me.ecs(region);
            ecs.upgrade_records().await.map_err(|e| OpenError::Upgrade(e.message))?;
        }
        Ok(me)
    }

    /// Links CloudWatch, where every region's Application Auto Scaling reads metrics and keeps
    /// target tracking's alarms.
    pub fn link_cloudwatch(&self, cloudwatch: Arc<crate::cloudwatch::CloudWatch>) {
        let _ = self.cloudwatch.metrics.set(cloudwatch.clone());
        let _ = self.cloudwatch.alarms.set(cloudwatch.clone());
        let _ = self.cloudwatch.samples.set(cloudwatch);
    }

    /// The DNS data plane of Cloud Map's namespaces (served by [`crate::Server`]).
    pub fn dns(&self) -> &berth_dns::Dns {
        self.dns.dns()
    }

    /// The configured default region (`--region`).
    pub fn default_region(&self) -> Region {
        self.default
    }

    /// `region`'s ECS, built on first use (and its loops started when serving).
    pub fn ecs(&self, region: Region) -> Arc<Ecs> {
        self.services(region).ecs.clone()
    }

    /// `region`'s EC2, built on first use.
    pub fn ec2(&self, region: Region) -> Arc<Ec2> {
        self.services(region).ec2.clone()
    }

    /// `region`'s services, built on first use (and their loops started when serving).
    pub fn services(&self, region: Region) -> Arc<Services> {
        let built = {
            let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = served.get(region.name) {
                return e.clone();
            }
            let view: Arc<dyn Store> =
                Arc::new(View::new(self.store.clone(), key_space(region, self.default)));
            let ecs = Arc::new(Ecs::new(
                view.clone(),
                self.clock.clone(),
                Scope::new(region.name, self.account_id.clone()),
                self.timing.clone(),
            ));
            let ec2 = Arc::new(Ec2::new(view.clone(), region, &self.account_id));
            let autoscaling =
                Arc::new(AutoScaling::new(view.clone(), region, &self.account_id, ec2.clone()));
            autoscaling.set_ecs(ecs.clone(), self.timing.scale_in_after_secs);
            let elbv2 = Arc::new(Elbv2::new(
                view.clone(),
                region,
                &self.account_id,
                self.timing.lb_bind_address,
            ));
            // Services register their tasks in the region's target groups.
            let _ = ecs.core().load_balancing.set(elbv2.clone());
            let servicediscovery =
                Arc::new(CloudMap::new(view.clone(), region, &self.account_id, self.dns.clone()));
            let appautoscaling = Arc::new(crate::appautoscaling::AppAutoScaling::new(
                view.clone(),
                region,
                &self.account_id,
                ecs.clone(),
                self.clock.clone(),
                self.cloudwatch.clone(),
                self.timing.app_autoscaling_period,
            ));
            let services = Arc::new(Services {
                ecs,
                ec2,
                autoscaling,
                elbv2,
                servicediscovery,
                appautoscaling,
                view,
            });
            served.insert(region.name, services.clone());
            services
        };
        tracing::debug!(region = region.name, "serving region");
        let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        loops.start(region.name, &built);
        built
    }

    /// Starts the loops of every region built so far, and of every region built from now
    /// until [`Self::stop`], under `stop`; their controllers while `leading` holds a term.
    pub fn start(
        &self,
        stop: &watch::Sender<bool>,
        agents: Option<Arc<InstanceAgents>>,
        leading: crate::Leading,
    ) {
        let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*loops, Loops::Idle) {
            return;
        }
        *loops = Loops::Running {
            stop: stop.clone(),
            started: HashSet::new(),
            handles: Vec::new(),
            agents,
            leading,
        };
        let served: Vec<_> = self
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(r, e)| (*r, e.clone()))
            .collect();
        for (region, services) in served {
            loops.start(region, &services);
        }
    }

    /// Waits for every region's loops to end (after `stop` was set); no loop starts after.
    pub async fn stop(&self) {
        let handles = {
            let mut loops = self.loops.lock().unwrap_or_else(PoisonError::into_inner);
            match std::mem::replace(&mut *loops, Loops::Stopped) {
                Loops::Running { handles, .. } => handles,
                _ => Vec::new(),
            }
        };
        for h in handles {
            let _ = h.await;
        }
    }

    /// The regions built so far, sorted.
    #[cfg(test)]
    pub fn served(&self) -> Vec<&'static str> {
        let mut v: Vec<_> =
            self.served.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect();
        v.sort();
        v
    }
}

impl Loops {
    fn start(&mut self, region: &'static str, services: &Arc<Services>) {
        // Controllers run only while this server leads (`supervise_leading`); the data planes,
        // which only read, on every server (the list: the crate's header).
        let Loops::Running { stop, started, handles, agents, leading } = self else { return };
        if *stop.borrow() || !started.insert(region) {
            return;
        }
        let ecs = &services.ecs;
        if let Some(agents) = agents {
            handles.push(crate::supervise_leading(
                format!("instance controller ({region})"),
                stop,
                leading.clone(),
                {
                    let (agents, view, ecs) = (agents.clone(), services.view.clone(), ecs.clone());
                    move |stop| {
                        let (agents, view, ecs) = (agents.clone(), view.clone(), ecs.clone());
                        async move { crate::instances::run(agents, view, ecs, region, stop).await }
                    }
                },
            ));
            // Auto Scaling launches agent-backed instances: only where agents run.
            handles.push(crate::supervise_leading(
                format!("Auto Scaling controller ({region})"),
                stop,
                leading.clone(),
                {
                    let asg = services.autoscaling.clone();
                    move |stop| {
                        let asg = asg.clone();
                        async move { crate::autoscaling::controller::run(asg, stop).await }
                    }
                },
            ));
        }
        handles.push(crate::supervise_leading(
            format!("service controller ({region})"),
            stop,
            leading.clone(),
            {
                let ecs = ecs.clone();
                move |stop| {
                    let ecs = ecs.clone();
                    async move { ecs.service_controller.run(stop).await }
                }
            },
        ));
        handles.push(crate::supervise_leading(
            format!("Application Auto Scaling controller ({region})"),
            stop,
            leading.clone(),
            {
                let aas = services.appautoscaling.clone();
                move |stop| crate::appautoscaling::controller::run(aas.clone(), stop)
            },
        ));
        handles.push(crate::supervise(format!("DNS view ({region})"), stop, {
            let cloudmap = services.servicediscovery.clone();
            move |stop| crate::servicediscovery::dns::run(cloudmap.clone(), stop)
        }));
        handles.push(crate::supervise_leading(
            format!("ECS service discovery ({region})"),
            stop,
            leading.clone(),
            {
                let cloudmap = services.servicediscovery.clone();
                move |stop| crate::servicediscovery::ecs_registrations::run(cloudmap.clone(), stop)
            },
        ));
        handles.push(crate::supervise(format!("Service Connect proxy ({region})"), stop, {
            let store = services.view.clone();
            let address = ecs.core().timing.service_connect_address;
            move |stop| {
                crate::servicediscovery::service_connect::run(store.clone(), region, address, stop)
            }
        }));
        handles.push(crate::supervise(format!("load balancer data plane ({region})"), stop, {
            let elbv2 = services.elbv2.clone();
            move |stop| crate::elbv2::run(elbv2.clone(), stop)
        }));
        handles.push(crate::supervise(format!("load balancer metrics ({region})"), stop, {
            let (elbv2, cloudwatch) =
                (services.elbv2.clone(), services.appautoscaling.cloudwatch.clone());
            move |stop| crate::elbv2::metrics::run(elbv2.clone(), cloudwatch.clone(), stop)
        }));
        handles.push(crate::supervise_leading(
            format!("retention reaper ({region})"),
            stop,
            leading.clone(),
            {
                let ecs = ecs.clone();
                move |stop| {
                    let ecs = ecs.clone();
                    async move { ecs.retention.run(stop).await }
                }
            },
        ));
        let rate = ecs.spot_interruption_rate();
        if rate > 0.0 {
            handles.push(crate::supervise_leading(
                format!("random Spot interruptions ({region})"),
                stop,
                leading.clone(),
                {
                    let ecs = ecs.clone();
                    move |stop| {
                        let ecs = ecs.clone();
                        async move { ecs.run_random_spot(rate, stop).await }
                    }
                },
            ));
        }
    }
}

/// Why the regions could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Upgrade(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_store::SqliteStore;

    fn region(name: &str) -> Region {
        regions::lookup(name).unwrap()
    }

    #[test]
    fn the_default_region_keeps_the_unprefixed_keys() {
        let d = region("us-east-1");
        let cases = [
            ("us-east-1", "us-east-1", Some("ecs/clusters/a")),
            ("eu-west-1", "us-east-1", Some("regions/eu-west-1/ecs/clusters/a")),
            ("us-east-1", "eu-west-1", Some("regions/us-east-1/ecs/clusters/a")),
            ("cn-north-1", "us-east-1", Some("regions/cn-north-1/ecs/clusters/a")),
        ];
        for (r, default, want) in cases {
            let space = key_space(region(r), region(default));
            assert_eq!(space.to_inner("ecs/clusters/a").as_deref(), want, "{r} / {default}");
        }
        assert_eq!(key_space(d, d).to_inner("regions/eu-west-1/ecs/clusters/a"), None);
    }

    #[tokio::test]
    async fn regions_holding_data_are_served_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("berth.db")).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::SystemClock);
        let open = || {
            Regions::open(
                store.clone(),
                clock.clone(),
                "000000000000",
                Timing::default(),
                region("us-east-1"),
            )
        };
        let regions = open().await.unwrap();
        assert_eq!(regions.served(), ["us-east-1"]);
        let eu = regions.ecs(region("eu-west-1"));
        assert!(Arc::ptr_eq(&eu, &regions.ecs(region("eu-west-1"))), "built once");
        assert_eq!(regions.served(), ["eu-west-1", "us-east-1"]);
        // Only a region that wrote something is served again after a restart.
        let none = berth_store::Txn::new().put("regions/ap-southeast-1/ecs/clusters/a", "{}");
        store.txn(none).await.unwrap();
        drop(regions);
        let again = open().await.unwrap();
        assert_eq!(again.served(), ["ap-southeast-1", "us-east-1"]);
        // Loops start for every region served, and stop with the server.
        let (stop, _) = watch::channel(false);
        let term = berth_store::Term::new("test", None);
        again.start(&stop, None, watch::channel(Some(term)).1);
        again.ecs(region("cn-north-1"));
        let count = |r: &Regions| match &*r.loops.lock().unwrap() {
            Loops::Running { handles, .. } => handles.len(),
            _ => 0,
        };
        // Service controller, Application Auto Scaling, DNS view, ECS service discovery,
        // Service Connect proxy, load balancer data plane, load balancer metrics, retention
        // reaper.
        assert_eq!(count(&again), 24, "eight loops in each of three regions");
        stop.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), again.stop()).await.unwrap();
        again.ecs(region("eu-west-2"));
        assert_eq!(count(&again), 0, "no loops start once stopping");
    }
}
