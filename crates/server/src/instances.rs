//! The instance controller: runs one `berth agent` per agent-backed EC2 instance (issue #12)
//! and moves instances through their lifecycle as their agents come and go.
//!
//! ```text
//!  ec2/instances/* ──desired_specs──▶ reconcile(desired, launcher.running() of this region)
//!        ▲                                   │ start / stop
//!        │ pending → running (agent registered: heartbeat after launch)
//!        │ shutting-down: force-deregister the container instance, then the agent exits
//!        │ stopping → stopped, shutting-down → terminated (agent gone)
//! ```
//!
//! Contract and invariants:
//! * One [`InstanceAgents`] per server (one [`ProcessLauncher`]), one supervised loop per
//!   region ([`run`]); a region's pass only ever looks at the agents whose spec names that
//!   region, so regions never stop each other's agents.
//! * Level-triggered: a pass reads every instance record and the launcher's list, and acts on
//!   the difference; it runs on any store change (at most every [`MIN_GAP`]) and at least
//!   every [`PERIOD`]. A pass that fails is logged and retried by the next.
//! * `pending` becomes `running` once the instance's agent registered in its cluster: the
//!   container instance indexed under its EC2 id (`ecs/instances-by-ec2/<cluster>/<id>`) is
//!   ACTIVE and its agent polled after the instance's launch time. The record then carries
//!   the container instance ARN.
//! * Termination deregisters the container instance (force) first: its agent stops every
//!   task and exits, as an ECS agent does; an agent still there [`DRAIN_GRACE`] after the
//!   termination is stopped (SIGTERM, then SIGKILL after the launcher's grace). The instance
//!   becomes `terminated` (its address released) only once the deregistration is done and
//!   the agent is gone.
//! * Agents reach the server on loopback and sign with the data directory's administrator
//!   key, passed in their environment (never on the command line), so they register with
//!   RegisterContainerInstance under their instance's id and the container instance's
//!   `ec2InstanceId` is the instance id. (A join token would not do: a join gets a
//!   server-assigned EC2 id, since a token holder may not pick its identity.) Each agent
//!   keeps its identity in its data directory `DATA_DIR/instances/<id>`.
//! * Agents exit with the server (the launcher's parent-death signal); the first pass after
//!   a restart starts the agents of `pending`/`running` instances again, which re-register as
//!   the same container instances.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_instances::launcher::process::{JoinCredential, ProcessConfig, ProcessLauncher};
use berth_instances::launcher::{self, Action, HostLauncher, RunningAgent};
use berth_instances::record::{self as irec, InstanceRecord, InstanceState};
use berth_model::keys;
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord};
use berth_store::{Store, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::{Api as _, ContainerInstancesApi as _, DeregisterContainerInstanceRequest};
use tokio::sync::watch;

use crate::ecs::{Ecs, RequestContext};
use crate::records;

/// Longest wait between passes.
pub const PERIOD: Duration = Duration::from_secs(2);
/// Shortest gap between two passes (store changes come in bursts).
pub const MIN_GAP: Duration = Duration::from_millis(200);
/// How long a terminated instance's agent may take to stop its tasks and exit by itself.
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);

/// The server's instance agents: the launcher and how agents join.
pub(crate) struct InstanceAgents {
    launcher: ProcessLauncher,
}

impl InstanceAgents {
    /// Agents of `program`, reaching the server at `endpoint`, under `data_dir/instances`.
    pub fn new(
        program: PathBuf,
        endpoint: String,
        data_dir: &std::path::Path,
        ca_file: Option<PathBuf>,
        credential: JoinCredential,
    ) -> std::io::Result<Self> {
        let mut config = ProcessConfig::new(endpoint, data_dir, credential)?;
        config.program = program;
        config.ca_file = ca_file;
        if let Ok(filter) = std::env::var("BERTH_INSTANCE_AGENT_LOG") {
            config.log_filter = filter;
        }
        Ok(Self { launcher: ProcessLauncher::new(config)? })
    }

    /// Stops every agent and waits for them (server shutdown).
    pub fn shutdown(&self) {
        self.launcher.shutdown();
    }

    fn running_in(&self, region: &str) -> Vec<RunningAgent> {
        self.launcher.running().into_iter().filter(|a| a.spec.region == region).collect()
    }
}

/// One region's controller loop, until `stop` is set.
pub(crate) async fn run(
    agents: Arc<InstanceAgents>,
    store: Arc<dyn Store>,
    ecs: Arc<Ecs>,
    region: &'static str,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = store.watch();
    let deregistered: Mutex<std::collections::HashSet<String>> = Mutex::default();
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = pass(&agents, &*store, &ecs, region, &deregistered).await {
            tracing::warn!(region, error = %e.message, "instance controller pass failed");
        }
        tokio::time::sleep(MIN_GAP).await;
        tokio::select! {
            _ = stop.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(PERIOD) => {}
        }
    }
}

fn now() -> f64 {
    crate::clock::epoch_seconds(time::OffsetDateTime::now_utc())
}

/// One pass over `region`'s instances (see the module docs).
async fn pass(
    agents: &InstanceAgents,
    store: &dyn Store,
    ecs: &Ecs,
    region: &'static str,
    deregistered: &Mutex<std::collections::HashSet<String>>,
) -> Result<(), AwsError> {
    let recs: Vec<(InstanceRecord, berth_store::Revision)> = records::decode_all(
        store
            .range(berth_store::Range::prefix(irec::INSTANCES))
            .await
            .map_err(crate::error::store)?,
    )?;
    let live: Vec<&InstanceRecord> =
        recs.iter().map(|(r, _)| r).filter(|r| r.state != InstanceState::Terminated).collect();
    if live.is_empty() && agents.running_in(region).is_empty() {
        return Ok(());
    }
    let t = now();
    // Terminating instances: deregister their container instances first.
    for r in live.iter().filter(|r| r.state == InstanceState::ShuttingDown) {
        if deregistered.lock().unwrap_or_else(PoisonError::into_inner).contains(&r.id) {
            continue;
        }
        deregister(store, ecs, r).await?;
        deregistered.lock().unwrap_or_else(PoisonError::into_inner).insert(r.id.clone());
    }
    let (desired, bad) = launcher::desired_specs(live.iter().copied(), region);
    for (id, e) in bad {
        tracing::warn!(instance = %id, error = %e, "instance cannot run an agent");
    }
    let running = agents.running_in(region);
    let actions: Vec<Action> = launcher::reconcile(&desired, &running)
        .into_iter()
        .filter(|a| match a {
            // A terminated instance's agent gets DRAIN_GRACE to stop its tasks and exit.
            Action::Stop(id) => !live.iter().any(|r| {
                &r.id == id
                    && r.state == InstanceState::ShuttingDown
                    && t - r.state_changed_at < DRAIN_GRACE.as_secs_f64()
            }),
            Action::Start(_) => true,
        })
        .collect();
    for a in &actions {
        tracing::info!(region, action = ?a, "instance agent");
    }
    launcher::apply(&agents.launcher, &actions);
    let running = agents.running_in(region);
    // Agents gone: stopping -> stopped, shutting-down -> terminated.
    for (id, next) in launcher::gone(live.iter().copied(), &running) {
        let Some((rec, rev)) = recs.iter().find(|(r, _)| r.id == id) else { continue };
        let mut rec = rec.clone();
        rec.transition(next, t, &rec.state_reason.clone())
            .map_err(|e| AwsError::new("InternalError", 500, e))?;
        let txn = if next == InstanceState::Terminated {
            deregistered.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
            irec::terminated_txn(&rec, *rev)
        } else {
            let k = irec::key(&id);
            Txn::new().when(&k, *rev).put(&k, records::encode(&rec))
        };
        records::commit(store, txn).await?;
    }
    // Agents registered: pending -> running.
    for (rec, rev) in recs.iter().filter(|(r, _)| r.state == InstanceState::Pending) {
        let Some(arn) = registered(store, rec).await? else { continue };
        let mut rec = rec.clone();
        rec.transition(InstanceState::Running, t, "")
            .map_err(|e| AwsError::new("InternalError", 500, e))?;
        rec.container_instance_arn = Some(arn);
        let k = irec::key(&rec.id);
        records::commit(store, Txn::new().when(&k, *rev).put(&k, records::encode(&rec))).await?;
    }
    Ok(())
}

/// The live container instance registered for `rec` in its cluster, if any.
async fn live_container_instance(
    store: &dyn Store,
    rec: &InstanceRecord,
) -> Result<Option<ContainerInstanceRecord>, AwsError> {
    let index = keys::instance_by_ec2(&rec.ecs_cluster, &rec.id);
    let Some(entry) = store.get(&index).await.map_err(crate::error::store)? else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&entry.value).to_string();
    Ok(records::get::<ContainerInstanceRecord>(
        store,
        &keys::container_instance(&rec.ecs_cluster, &id),
    )
    .await?
    .map(|(r, _)| r))
}

/// The ARN of `rec`'s container instance once its agent registered after the launch.
async fn registered(store: &dyn Store, rec: &InstanceRecord) -> Result<Option<String>, AwsError> {
    let Some(ci) = live_container_instance(store, rec).await? else { return Ok(None) };
    if ci.status != berth_model::lifecycle::InstanceStatus::Active {
        return Ok(None);
    }
    let seen = records::get::<HeartbeatRecord>(store, &keys::instance_heartbeat(&ci.id))
        .await?
        .map(|(h, _)| h.last_seen)
        .unwrap_or(0.0);
    Ok((seen >= rec.launch_time.floor()).then_some(ci.arn))
}

/// Force-deregisters `rec`'s container instance, if it has one.
async fn deregister(store: &dyn Store, ecs: &Ecs, rec: &InstanceRecord) -> Result<(), AwsError> {
    let Some(ci) = live_container_instance(store, rec).await? else { return Ok(()) };
    let ctx = RequestContext {
        principal: Arc::new(crate::auth::Principal {
            arn: "arn:aws:iam::000000000000:berth-instance-controller".into(),
            account_id: String::new(),
            access_key_id: String::new(),
            instance: None,
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let req = DeregisterContainerInstanceRequest {
        cluster: Some(rec.ecs_cluster.clone()),
        container_instance: Some(ci.arn.clone()),
        force: Some(true),
    };
    match ecs.container_instances().deregister_container_instance(&ctx, req).await {
        Ok(_) => {
            tracing::info!(instance = %rec.id, container_instance = %ci.arn, "deregistered a terminated instance");
            Ok(())
        }
        Err(e) if e.code.contains("NotFound") || e.message.contains("not registered") => Ok(()),
        Err(e) => Err(e),
    }
}
