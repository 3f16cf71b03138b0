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
//! * Identity: before an agent starts, the pass writes its instance's identity document and
//!   the server's signature over it (HMAC-SHA256 under a key derived from the master key,
//!   [`berth_instances::identity`]) into its data directory `DATA_DIR/instances/<id>`, as
//!   IMDS serves them. The agent joins with them ([`JoinCredential::IdentityDocument`]): a
//!   join whose document verifies keeps the document's instance id and zone, and returns an
//!   access key bound to that container instance, which the agent keeps and signs with from
//!   then on. No agent holds the administrator key. RegisterContainerInstance checks a
//!   signed document the same way ([`verify_identity`]); a forged or altered one is refused
//!   with ECS's ClientException.
//! * Agents exit with the server (the launcher's parent-death signal); the first pass after
//!   a restart starts the agents of `pending`/`running` instances again, which re-register as
//!   the same container instances.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use berth_instances::identity::{self, IdentityDocument, IdentityKey};
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
/// How long a terminated instance's agent may take to stop its tasks and exit by itself
/// (and how long a stopping instance's agent gets to stop its tasks before it is stopped).
pub const DRAIN_GRACE: Duration = Duration::from_secs(30);
/// How long a terminated instance stays describable (EC2 keeps them about an hour).
pub const TERMINATED_RETENTION_SECS: f64 = 3600.0;

/// The stopped reason of the tasks of an instance that stops (ECS's wording).
pub fn host_stopped_reason(instance_id: &str) -> String {
    format!("Host EC2 (instance {instance_id}) stopped/terminated.")
}

/// The terminated records to forget at `now`: terminated more than
/// [`TERMINATED_RETENTION_SECS`] ago (their address is already released).
pub fn forgettable(
    recs: &[(InstanceRecord, berth_store::Revision)],
    now: f64,
) -> Vec<(String, berth_store::Revision)> {
    recs.iter()
        .filter(|(r, _)| {
            r.state == InstanceState::Terminated
                && now - r.state_changed_at >= TERMINATED_RETENTION_SECS
        })
        .map(|(r, rev)| (r.id.clone(), *rev))
        .collect()
}

/// The server's instance agents: the launcher and how agents join.
pub(crate) struct InstanceAgents {
    launcher: ProcessLauncher,
    /// `DATA_DIR/instances`: each agent's data directory is `<data_root>/<instance id>`.
    data_root: PathBuf,
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
        let data_root = config.data_root.clone();
        Ok(Self { launcher: ProcessLauncher::new(config)?, data_root })
    }

    /// Writes `rec`'s signed identity document into its agent's data directory (created
    /// 0700 as the launcher creates it), before the agent starts.
    fn write_identity(
        &self,
        rec: &InstanceRecord,
        scope: &berth_model::arn::Scope,
        key: &IdentityKey,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.data_root.join(&rec.id);
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let doc = IdentityDocument::of(rec, &scope.region, &scope.account_id).to_json();
        identity::write_files(&dir, &doc, &key.sign(doc.as_bytes()))
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
    let t = now();
    // Terminated an hour ago: forgotten, as EC2 forgets them.
    for (id, rev) in forgettable(&recs, t) {
        let k = irec::key(&id);
        records::commit(store, Txn::new().when(&k, rev).delete(&k)).await?;
    }
    let live: Vec<&InstanceRecord> =
        recs.iter().map(|(r, _)| r).filter(|r| r.state != InstanceState::Terminated).collect();
    if live.is_empty() && agents.running_in(region).is_empty() {
        return Ok(());
    }
    // Stopping instances: their tasks stop first (a stopped host runs nothing), then the
    // agent; `busy` are those whose tasks are still stopping.
    let mut busy = std::collections::HashSet::new();
    for r in live.iter().filter(|r| r.state == InstanceState::Stopping) {
        if stop_tasks(store, ecs, r).await? > 0 {
            busy.insert(r.id.clone());
        }
    }
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
            // A terminated instance's agent gets DRAIN_GRACE to stop its tasks and exit; a
            // stopping one's, to stop its tasks.
            Action::Stop(id) => !live.iter().any(|r| {
                &r.id == id
                    && (r.state == InstanceState::ShuttingDown || busy.contains(id))
                    && t - r.state_changed_at < DRAIN_GRACE.as_secs_f64()
            }),
            Action::Start(_) => true,
        })
        .collect();
    for a in &actions {
        tracing::info!(region, action = ?a, "instance agent");
        if let Action::Start(spec) = a
            && let Some(rec) = live.iter().find(|r| r.id == spec.instance_id)
        {
            let core = ecs.core();
            let Some(key) = core.timing.identity_key.as_deref() else { continue };
            if let Err(e) = agents.write_identity(rec, &core.scope, key) {
                tracing::warn!(instance = %rec.id, error = %e, "cannot write the identity document");
            }
        }
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

/// Stops (StopTask, ECS's host-stopped reason) every task of `rec`'s container instance
/// that is not STOPPED yet and not already desired STOPPED; answers how many are not STOPPED.
async fn stop_tasks(store: &dyn Store, ecs: &Ecs, rec: &InstanceRecord) -> Result<usize, AwsError> {
    use berth_wire::ecs::{StopTaskRequest, TasksApi as _};
    let Some(ci) = live_container_instance(store, rec).await? else { return Ok(0) };
    let entries = store
        .range(berth_store::Range::prefix(&keys::instance_tasks_prefix(&ci.id)))
        .await
        .map_err(crate::error::store)?;
    let mut live = 0;
    for e in entries {
        if e.value.as_ref() == berth_model::lifecycle::TaskStatus::Stopped.as_str().as_bytes() {
            continue;
        }
        live += 1;
        let Some(task_id) = e.key.rsplit('/').next() else { continue };
        let task = records::get::<berth_model::records::TaskRecord>(
            store,
            &keys::task(&rec.ecs_cluster, task_id),
        )
        .await?;
        let Some((task, _)) = task else { continue };
        if task.desired_status() == berth_model::lifecycle::DesiredTaskStatus::Stopped {
            continue;
        }
        let req = StopTaskRequest {
            cluster: Some(rec.ecs_cluster.clone()),
            task: task.task.task_arn.clone(),
            reason: Some(host_stopped_reason(&rec.id)),
        };
        if let Err(e) = ecs.tasks().stop_task(&controller_ctx(), req).await {
            tracing::warn!(instance = %rec.id, task = task_id, error = %e.message, "cannot stop a stopped instance's task");
        }
    }
    Ok(live)
}

fn controller_ctx() -> RequestContext {
    RequestContext {
        principal: Arc::new(crate::auth::Principal {
            arn: "arn:aws:iam::000000000000:berth-instance-controller".into(),
            account_id: String::new(),
            access_key_id: String::new(),
            instance: None,
        }),
        request_id: uuid::Uuid::new_v4().to_string(),
    }
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

/// ECS's refusal of a document whose signature does not verify.
pub(crate) fn identity_refused() -> AwsError {
    crate::error::client("The identity document and identity document signature were not valid.")
}

/// Checks a registration's identity document: `Ok(None)` when it carries no signature (an
/// unsigned document is only a claim, as before), `Ok(Some(doc))` when the signature is this
/// server's over exactly these bytes and the document is of this region and account, and
/// ECS's ClientException otherwise (forged, altered, or signed by another server).
pub(crate) fn verify_identity(
    core: &crate::ecs::core::Core,
    document: Option<&str>,
    signature: Option<&str>,
) -> Result<Option<IdentityDocument>, AwsError> {
    let Some(signature) = signature.filter(|s| !s.trim().is_empty()) else { return Ok(None) };
    let doc = core
        .timing
        .identity_key
        .as_deref()
        .and_then(|k| k.verified(document.unwrap_or_default(), signature))
        .filter(|d| d.region == core.scope.region && d.account_id == core.scope.account_id)
        .ok_or_else(identity_refused)?;
    Ok(Some(doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(key: Option<IdentityKey>) -> crate::ecs::core::Core {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("b.db")).unwrap());
        std::mem::forget(dir);
        let timing =
            crate::ecs::core::Timing { identity_key: key.map(Arc::new), ..Default::default() };
        crate::ecs::core::Core::new(
            store,
            Arc::new(crate::clock::SystemClock),
            berth_model::arn::Scope::new("us-east-1", "123456789012"),
            timing,
        )
    }

    fn doc(region: &str) -> String {
        let rec: InstanceRecord = serde_json::from_value(serde_json::json!({
            "id": "i-0123456789abcdef0", "imageId": "ami-0berth", "instanceType": "t3.small",
            "subnetId": "subnet-1", "vpcId": "vpc-1", "availabilityZone": "us-east-1b",
            "privateIp": "172.31.16.4", "state": "pending", "launchTime": 1764590400.0,
            "stateChangedAt": 1764590400.0, "keyName": null, "ecsCluster": "default"
        }))
        .unwrap();
        IdentityDocument::of(&rec, region, "123456789012").to_json()
    }

    #[test]
    fn terminated_instances_are_forgotten_after_an_hour() {
        let rec = |id: &str, state: &str, at: f64| -> InstanceRecord {
            serde_json::from_value(serde_json::json!({
                "id": id, "imageId": "ami-0berth", "instanceType": "t3.small",
                "subnetId": "subnet-1", "vpcId": "vpc-1", "availabilityZone": "us-east-1b",
                "privateIp": "172.31.16.4", "state": state, "launchTime": 0.0,
                "stateChangedAt": at, "keyName": null, "ecsCluster": "default"
            }))
            .unwrap()
        };
        let recs = vec![
            (rec("i-1", "terminated", 1000.0), 7),
            (rec("i-2", "terminated", 1000.5), 8),
            (rec("i-3", "stopped", 0.0), 9),
            (rec("i-4", "running", 0.0), 10),
        ];
        assert!(forgettable(&recs, 1000.0 + TERMINATED_RETENTION_SECS - 0.1).is_empty());
        assert_eq!(
            forgettable(&recs, 1000.0 + TERMINATED_RETENTION_SECS),
            vec![("i-1".to_string(), 7)]
        );
        assert_eq!(forgettable(&recs, 99_999.0).len(), 2, "never a live or stopped instance");
    }

    #[test]
    fn signed_documents_verify_and_forged_ones_are_refused() {
        let key = IdentityKey::new([9; 32]);
        let c = core(Some(key.clone()));
        let d = doc("us-east-1");
        let sig = key.sign(d.as_bytes());
        let ok = verify_identity(&c, Some(&d), Some(&sig)).unwrap().unwrap();
        assert_eq!(
            (ok.instance_id.as_str(), ok.availability_zone.as_str()),
            ("i-0123456789abcdef0", "us-east-1b")
        );
        // Unsigned: no claim is verified, nothing refused.
        assert!(verify_identity(&c, Some(&d), None).unwrap().is_none());
        assert!(verify_identity(&c, Some(&d), Some(" ")).unwrap().is_none());
        // Altered, forged with another key, another region's, or a server without a key.
        let altered = d.replace("i-0123456789abcdef0", "i-0123456789abcdef9");
        let forged = IdentityKey::new([1; 32]).sign(d.as_bytes());
        let other_region = doc("eu-west-1");
        let other_sig = key.sign(other_region.as_bytes());
        for (doc, sig, c) in [
            (altered.as_str(), sig.as_str(), &c),
            (d.as_str(), forged.as_str(), &c),
            (other_region.as_str(), other_sig.as_str(), &c),
            (d.as_str(), sig.as_str(), &core(None)),
        ] {
            let e = verify_identity(c, Some(doc), Some(sig)).unwrap_err();
            assert_eq!(e.code, "ClientException");
            assert!(
                e.message.contains("identity document signature were not valid"),
                "{}",
                e.message
            );
        }
    }
}
