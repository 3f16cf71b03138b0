//! The placement executor: the one path by which tasks come to exist. RunTask, StartTask and
//! the service controller each describe what to place ([`Job`]); this module decides it with
//! `berth_scheduler` against the cluster's cached state ([`cache`]) and commits the plan.
//!
//! ```text
//! Job ─> lock the cluster's cache (synced from the store's change feed)
//!     ─> ClusterState::place (pure, indexed; StartTask's named instances are its `targets`)
//!     ─> one transaction:
//!          compare: the cluster record, every instance touched (and the client token)
//!          put: task records + indexes, instances with the tasks reserved, desired markers
//!     ─> committed: the cache records the new revisions
//!        conflict:  re-read the instances touched, decide again (records::Cas)
//! ```
//!
//! A Fargate job is decided on the Fargate pool's instances (`crate::ecs::fargate`) and
//! committed in the job's own cluster; what the pool cannot take now is created PROVISIONING
//! (placed later by [`provision`]); so is what an Auto Scaling group capacity provider with
//! managed scaling cannot take now, on its own cluster's instances. An awsvpc job allocates one interface per task in the
//! same transaction (`crate::ecs::awsvpc`): an address taken meanwhile fails the compare on
//! its key and the job is decided again.
//!
//! Invariant: a plan is committed only against the instance revisions it was computed from,
//! so whatever the concurrency (other servers, the controller, agents' reports releasing
//! resources) no instance is ever overcommitted; a stale cache costs a retry, never an
//! overcommit.

pub mod cache;
mod provision;

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;

use berth_model::keys;
use berth_model::records::{ContainerInstanceRecord, RunTokenRecord, TaskRecord};
use berth_scheduler::{InstanceSnapshot, PlacementRequest};
use berth_store::Txn;
use berth_wire::AwsError;
use berth_wire::ecs::*;

use self::cache::{CachedInstance, PlacementCache};
use super::clusters::Clusters;
use super::core::{Core, cluster_not_found};
use super::reservations;
use super::tasks::records::{NewTask, TaskRecords};
use super::{awsvpc, fargate};
use crate::error;
use crate::records;
use bytes::Bytes;

/// The failure reason of a capacity provider with no container instance able to take its
/// share of a RunTask (Berth's own: ECS would wait for its Auto Scaling group to scale out).
pub const CAPACITY_PROVIDER_FAILURE: &str = "CAPACITY_PROVIDER";

/// What to place.
pub struct Job<'a> {
    pub spec: NewTask<'a>,
    pub request: &'a PlacementRequest,
    /// StartTask: one task on each of these instances (ids or ARNs), in order; an instance
    /// named twice gets two, the second placed against what the first left.
    pub only: Option<&'a [String]>,
    /// RunTask's idempotency token: stored with the tasks in the same transaction.
    pub client_token: Option<ClientToken<'a>>,
}

/// RunTask's `clientToken` and the digest of the parameters it came with: a later RunTask
/// with the token and the same digest answers the tasks the first one started; with another
/// digest, it is a `ConflictException`.
#[derive(Clone, Copy, Debug)]
pub struct ClientToken<'a> {
    pub token: &'a str,
    pub request_hash: &'a str,
}

/// One capacity provider's share of a job placed with a capacity provider strategy: its
/// request carries the `memberOf` constraint that keeps it on the provider's instances
/// (`berth_scheduler::capacity::provider_constraint`).
pub struct ProviderPart<'a> {
    pub capacity_provider: &'a str,
    pub request: PlacementRequest,
}

/// What became of a job: the tasks created, and ECS's failures for what could not be placed.
pub struct Placed {
    pub tasks: Vec<Task>,
    pub failures: Vec<Failure>,
}

/// See the module header.
pub struct Placement {
    core: Arc<Core>,
    clusters: Arc<Clusters>,
    task_records: Arc<TaskRecords>,
    cache: Arc<PlacementCache>,
}

/// One live instance as [`Placement::instances_view`] shows it.
pub struct InstanceSummary {
    pub id: String,
    pub arn: String,
    pub status: berth_model::lifecycle::InstanceStatus,
    /// The scheduler's view of it (attributes, resources, liveness).
    pub snapshot: InstanceSnapshot,
    /// How long its agent has been silent, in seconds.
    pub silent_secs: f64,
}

impl Placement {
    pub fn new(core: Arc<Core>, clusters: Arc<Clusters>, task_records: Arc<TaskRecords>) -> Self {
        let cache = PlacementCache::follow(core.store.clone(), core.timing.agent_timeout_secs);
        Self { core, clusters, task_records, cache }
    }

    /// The cluster's live instances as the placement cache sees them: what the service
    /// controller needs of each (not the whole record: one pass covers every instance).
    pub async fn instances_view(&self, cluster: &str) -> Result<Vec<InstanceSummary>, AwsError> {
        let now = self.core.now();
        let mut guard = self.cache.lock(cluster, now).await?;
        Ok(guard.summaries(self.cache.liveness_fn(now), |id, registered_at| {
            self.cache.silent_secs(id, registered_at, now)
        }))
    }

    /// Places and commits `job` (see the module header). With a client token that an earlier
    /// call already used, answers with that call's tasks (or the conflict, when that call
    /// asked something else).
    pub async fn place(&self, job: &Job<'_>) -> Result<Placed, AwsError> {
        self.place_parts(job, &[]).await
    }

    /// [`Self::place`] for a job split across capacity providers: each part is decided in
    /// turn against what the earlier ones took, and all are committed in one transaction
    /// (with the job's client token, if any). Empty `parts`: the job's own request.
    pub async fn place_parts(
        &self,
        job: &Job<'_>,
        parts: &[ProviderPart<'_>],
    ) -> Result<Placed, AwsError> {
        let started = std::time::Instant::now();
        let out = self.decide_and_commit(job, parts).await;
        crate::cloudwatch::prometheus::observe_placement(
            out.as_ref().ok().map(|p| (p.tasks.len(), p.failures.len())),
            started.elapsed().as_secs_f64(),
        );
        out
    }

    async fn decide_and_commit(
        &self,
        job: &Job<'_>,
        parts: &[ProviderPart<'_>],
    ) -> Result<Placed, AwsError> {
        let cluster = job.spec.cluster;
        let long_arn = match job.spec.long_arn {
            Some(l) => l,
            None => {
                super::account_settings::long_arn_format(
                    &self.core,
                    None,
                    SettingName::TaskLongArnFormat,
                )
                .await?
            }
        };
        let own = [ProviderPart {
            capacity_provider: job.spec.capacity_provider.unwrap_or_default(),
            request: PlacementRequest::default(),
        }];
        let (parts, own_request) = if parts.is_empty() { (&own[..], true) } else { (parts, false) };
        let now = self.core.now();
        // A Fargate job is decided on the pool's instances (crate::ecs::fargate).
        let fargate_job = job.spec.fargate;
        let pool = if fargate_job { fargate::POOL_CLUSTER } else { cluster };
        // Auto Scaling group providers with managed scaling: what they cannot take now waits
        // in PROVISIONING for the group to scale out, as with ECS.
        let mut scaling = std::collections::BTreeSet::new();
        if !fargate_job && !own_request {
            for part in parts {
                let name = part.capacity_provider;
                if super::capacity_providers::scales(&*self.core.store, name).await? {
                    scaling.insert(name);
                }
            }
        }
        // FARGATE_SPOT without Spot capacity (`fargate::spot_available`): its share waits.
        let spot_off = fargate_job
            && parts.iter().any(|p| p.capacity_provider == fargate::SPOT)
            && !fargate::spot_available(&*self.core.store).await?;
        let mut cas = records::Cas::new(&*self.core.store, format!("cluster {cluster}"));
        let mut cached = self.cache.lock(pool, now).await?;
        let mut lost_once = false;
        loop {
            cas.attempt().await?;
            if let Some(token) = job.client_token
                && lost_once
                && let Some(tasks) = self.tasks_for_token(cluster, token).await?
            {
                return Ok(Placed { tasks, failures: vec![] });
            }
            lost_once = true;
            let Some((_, cluster_rev)) = self.clusters.live_cluster(cluster).await? else {
                return Err(cluster_not_found());
            };
            let mut failures = Vec::new();
            let mut plans = Vec::with_capacity(parts.len());
            for part in parts {
                let base = if own_request { job.request } else { &part.request };
                // StartTask names its instances: the scheduler's `targets` request kind.
                let mut targeted;
                let request = match job.only {
                    Some(only) => {
                        targeted = job.request.clone();
                        targeted.targets.clear();
                        for given in only {
                            let id = self.core.scope.child_id("container-instance", cluster, given);
                            match id.and_then(|id| cached.instance(id)) {
                                Some(inst) => targeted.targets.push(inst.arn().to_string()),
                                None => failures.push(Failure {
                                    arn: Some(given.clone()),
                                    reason: Some("MISSING".into()),
                                    detail: None,
                                }),
                            }
                        }
                        if targeted.targets.is_empty() {
                            return Ok(Placed { tasks: vec![], failures });
                        }
                        &targeted
                    }
                    None => base,
                };
                let spot_waits = spot_off && part.capacity_provider == fargate::SPOT;
                let placed = if spot_waits {
                    Err(berth_scheduler::PlacementError::NoContainerInstances)
                } else {
                    cached.state(self.cache.liveness_fn(now)).place(request)
                };
                let plan = match placed {
                    Ok(plan) => plan,
                    // An empty pool (or an empty cluster whose group scales): every task
                    // waits for capacity.
                    Err(berth_scheduler::PlacementError::NoContainerInstances)
                        if fargate_job || scaling.contains(part.capacity_provider) =>
                    {
                        berth_scheduler::Plan {
                            placements: vec![],
                            failures: vec![],
                            unplaced: request.count,
                        }
                    }
                    Err(e) => {
                        if !plans.is_empty() {
                            // Earlier parts' decisions are in the state but will not be committed.
                            cached.discard_state();
                        }
                        return Err(error::invalid(e.to_string()));
                    }
                };
                plans.push((part, request.requirements.clone(), plan));
            }
            let mut placements = Vec::new();
            // Fargate tasks no pool instance can take now: they wait in PROVISIONING.
            let mut waiting: Vec<Option<&str>> = Vec::new();
            for (part, requirements, plan) in plans {
                let provider = (!own_request).then_some(part.capacity_provider);
                let plan_failures = match provider {
                    _ if fargate_job => {
                        waiting.extend(std::iter::repeat_n(provider, plan.unplaced as usize));
                        Vec::new()
                    }
                    Some(name) if scaling.contains(name) => {
                        waiting.extend(std::iter::repeat_n(provider, plan.unplaced as usize));
                        Vec::new()
                    }
                    Some(name) => {
                        self.provider_failures(&cached, name, plan.failures, plan.unplaced)
                    }
                    None => plan.failures,
                };
                placements.extend(plan.placements.into_iter().map(|p| (p, provider)));
                failures.extend(plan_failures.into_iter().map(|f| {
                    // ATTRIBUTE names what the instance lacks and the settings that need it.
                    let detail = (f.reason == berth_scheduler::reason::ATTRIBUTE)
                        .then(|| {
                            let inst = cached
                                .instances()
                                .values()
                                .find(|i| Some(i.arn()) == f.arn.as_deref())?;
                            let missing =
                                berth_scheduler::missing_attributes(inst.snapshot(), &requirements);
                            (!missing.is_empty()).then(|| {
                                berth_model::host_access::explain_missing(job.spec.td, &missing)
                            })
                        })
                        .flatten();
                    Failure { arn: f.arn, reason: Some(f.reason), detail }
                }));
            }

            // awsvpc: one interface per task, placed or waiting; what finds no address is not
            // created (ECS fails a task whose subnets are exhausted).
            let mut enis = Vec::new();
            if let Some(plan) = job.spec.network {
                let wanted = placements.len() + waiting.len();
                enis = awsvpc::allocate(
                    &*self.core.store,
                    plan,
                    wanted,
                    &self.core.scope.region,
                    &self.core.scope.account_id,
                )
                .await?;
                let mut short = wanted - enis.len();
                if short > 0 {
                    let subnets: Vec<&str> =
                        plan.subnets.iter().map(|(s, _)| s.id.as_str()).collect();
                    for _ in 0..short {
                        failures.push(Failure {
                            arn: None,
                            reason: Some(awsvpc::ENI_FAILURE.into()),
                            detail: Some(format!(
                                "No free IPv4 address in subnets {} (InsufficientFreeAddressesInSubnet).",
                                subnets.join(", ")
                            )),
                        });
                    }
                    let from_waiting = short.min(waiting.len());
                    waiting.truncate(waiting.len() - from_waiting);
                    short -= from_waiting;
                    if short > 0 {
                        placements.truncate(placements.len() - short);
                        // The state holds the dropped placements: rebuild it from the records.
                        cached.discard_state();
                    }
                }
            }
            let by_arn: BTreeMap<&str, (&String, &CachedInstance)> =
                cached.instances().iter().map(|(id, i)| (i.arn(), (id, i))).collect();
            let mut txn = Txn::new().when(keys::cluster(cluster), cluster_rev);
            let mut touched: BTreeMap<String, (ContainerInstanceRecord, u64)> = BTreeMap::new();
            let mut created: Vec<TaskRecord> = Vec::new();
            for (p, provider) in &placements {
                let Some((id, inst)) = by_arn.get(p.instance_arn.as_str()) else { continue };
                let entry = match touched.entry((*id).clone()) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        let rec = inst.record(&keys::container_instance(pool, id))?;
                        e.insert((rec, inst.revision))
                    }
                };
                let spec = NewTask {
                    capacity_provider: provider.or(job.spec.capacity_provider),
                    long_arn: Some(long_arn),
                    ..job.spec
                };
                let task = self.task_records.build(Some(&entry.0), &spec);
                reservations::reserve(&mut entry.0, &task);
                created.push(task);
            }
            for provider in &waiting {
                let spec = NewTask {
                    capacity_provider: provider.or(job.spec.capacity_provider),
                    long_arn: Some(long_arn),
                    ..job.spec
                };
                created.push(self.task_records.build(None, &spec));
            }
            for (task, eni) in created.iter_mut().zip(enis.iter_mut()) {
                awsvpc::attach(eni, &mut task.task);
                txn = awsvpc::write(txn, &eni.eni);
            }
            let mut written: Vec<(ContainerInstanceRecord, Bytes)> = Vec::new();
            for (id, (rec, rev)) in touched {
                let key = keys::container_instance(pool, &id);
                let raw = Bytes::from(records::encode(&rec));
                txn = txn
                    .when(key.clone(), rev)
                    .put(key, raw.clone())
                    .put(keys::instance_desired(&id), Vec::new());
                written.push((rec, raw));
            }
            for t in &created {
                txn = TaskRecords::insert(txn, t, &job.spec);
            }
            if let Some(token) = job.client_token {
                let rec = RunTokenRecord {
                    task_arns: created.iter().filter_map(|t| t.task.task_arn.clone()).collect(),
                    request_hash: Some(token.request_hash.to_string()),
                };
                let key = keys::run_token(cluster, token.token);
                txn = txn.when(key.clone(), 0).put(key, records::encode(&rec));
            }
            let ids: Vec<String> = written.iter().map(|(r, _)| r.id.clone()).collect();
            drop(by_arn);
            match cas.commit_at(txn).await {
                Ok(Some(revision)) => {
                    cached.committed(written, revision);
                    if created.iter().any(|t| t.instance_id.is_empty()) {
                        self.core.services_changed();
                    }
                    let tasks = created.into_iter().map(|t| t.task).collect();
                    return Ok(Placed { tasks, failures });
                }
                // Lost a compare: the instances touched may be stale (or an address was
                // taken meanwhile); the plan is void.
                Ok(None) => self.cache.refresh(&mut cached, pool, &ids).await?,
                Err(e) => {
                    // Outcome unknown: start the next placement from the store.
                    cached.discard_state();
                    self.cache.refresh(&mut cached, pool, &ids).await?;
                    return Err(e);
                }
            }
        }
    }

    /// A provider part's failures: only those of the provider's own instances (every other
    /// instance refuses it by construction), and when the provider has no instance that
    /// explains what was left unplaced, one `CAPACITY_PROVIDER` failure naming it.
    fn provider_failures(
        &self,
        cached: &cache::ClusterCache,
        provider: &str,
        failures: Vec<berth_scheduler::PlacementFailure>,
        unplaced: u32,
    ) -> Vec<berth_scheduler::PlacementFailure> {
        let owned = |arn: &Option<String>| {
            cached.instances().values().any(|i| {
                Some(i.arn()) == arn.as_deref()
                    && i.snapshot()
                        .attributes
                        .get(berth_scheduler::capacity::PROVIDER_ATTRIBUTE)
                        .is_some_and(|v| v.as_deref() == Some(provider))
            })
        };
        let mut out: Vec<_> = failures.into_iter().filter(|f| owned(&f.arn)).collect();
        if out.is_empty() && unplaced > 0 {
            out.push(berth_scheduler::PlacementFailure {
                arn: Some(self.core.scope.ecs_arn(&format!("capacity-provider/{provider}"))),
                reason: CAPACITY_PROVIDER_FAILURE.to_string(),
            });
        }
        out
    }

    /// The tasks an earlier RunTask with this client token started; `ConflictException`
    /// naming them when that RunTask asked something else. (A token stored before requests
    /// were digested matches any parameters, as it did then.)
    pub async fn tasks_for_token(
        &self,
        cluster: &str,
        token: ClientToken<'_>,
    ) -> Result<Option<Vec<Task>>, AwsError> {
        let Some((rec, _)) = records::get::<RunTokenRecord>(
            &*self.core.store,
            &keys::run_token(cluster, token.token),
        )
        .await?
        else {
            return Ok(None);
        };
        if rec.request_hash.as_deref().is_some_and(|h| h != token.request_hash) {
            return Err(error::token_conflict(token.token, rec.task_arns));
        }
        let mut out = Vec::new();
        for arn in rec.task_arns {
            if let Some(id) = self.core.scope.child_id("task", cluster, &arn)
                && let Some((t, _)) = self.task_records.get(cluster, id).await?
            {
                out.push(t.task);
            }
        }
        Ok(Some(out))
    }
}
