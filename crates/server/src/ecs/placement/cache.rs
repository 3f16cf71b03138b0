//! Each cluster's placement state kept in memory: its live instance records with their
//! revisions, and the scheduler's indexed [`ClusterState`] over them, so a placement costs a
//! decision and a commit rather than a read of every instance.
//!
//! ```text
//!  store commit ──change feed──> listener: instance record puts/deletes (values, revisions),
//!                                 heartbeats (last poll), instance task index (RUNNING counts)
//!                                        │ (std mutex, never held across an await)
//!  placement ── lock cluster ──> sync: apply the cluster's pending changes, refresh each
//!                                 slot's agentConnected / runningTasksCount
//!                              ─> decide on the ClusterState ─> commit ─> record new revisions
//! ```
//!
//! Contract:
//! * Correctness never rests on the cache: every plan is committed with compare-and-set on
//!   the revisions of the instance records it was computed from. A stale entry makes the
//!   commit fail; the executor then re-reads the instances it touched ([`ClusterCache::refresh`])
//!   and decides again. A stale cache costs a retry, never an overcommit.
//! * Level-triggered: the first use of a cluster, and any use after the change feed lagged,
//!   reloads it from the store; changes are applied only when newer than the cached
//!   revision, so a change that arrives after a reload that already saw it is ignored.
//! * One placement at a time per cluster (the cluster's async mutex), so decisions never
//!   race each other on the same state; the state reflects a plan once it is decided and is
//!   discarded (rebuilt from the records) when its commit fails.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use berth_model::keys;
use berth_model::lifecycle::InstanceStatus;
use berth_model::lifecycle::TaskStatus;
use berth_model::records::{ContainerInstanceRecord, HeartbeatRecord};
use berth_scheduler::{ClusterState, InstanceSnapshot};
use berth_store::{Op, RecvError, Revision, Store};
use berth_wire::AwsError;
use bytes::Bytes;

use super::InstanceSummary;
use crate::ecs::container_instances::snapshot_of;
use crate::error;

/// What the change feed has told about instances since each cluster last synced.
#[derive(Default)]
struct Live {
    /// Bumped when the feed lagged: every cluster reloads.
    epoch: u64,
    /// Instance id -> epoch seconds of its agent's last poll.
    last_seen: HashMap<String, f64>,
    /// Instance id -> its tasks whose last status is RUNNING.
    running: HashMap<String, HashSet<String>>,
    /// Cluster -> instance id -> the newest write of its record (`None`: deleted).
    pending: HashMap<String, HashMap<String, (Option<Bytes>, Revision)>>,
    /// Instance id -> its cluster, for every instance the feed or a load has shown.
    cluster_of: HashMap<String, String>,
    /// Cluster -> instances whose heartbeat or RUNNING tasks changed since it last synced
    /// (a sync refreshes only these, plus every slot once per [`FULL_REFRESH_SECS`]).
    dirty: HashMap<String, HashSet<String>>,
}

/// How often a sync re-derives every slot's agentConnected, which also changes with time
/// alone (an agent going silent past the timeout), in seconds. Between two, only instances the
/// change feed touched are refreshed: per placement, work in what changed, not in the size of
/// the cluster.
const FULL_REFRESH_SECS: f64 = 1.0;

/// The cache of every cluster (see the module header).
pub struct PlacementCache {
    store: Arc<dyn Store>,
    agent_timeout_secs: f64,
    live: Arc<Mutex<Live>>,
    clusters: Mutex<HashMap<String, Arc<tokio::sync::Mutex<ClusterCache>>>>,
}

/// One cluster's cached records and scheduler state.
#[derive(Default)]
pub struct ClusterCache {
    /// The `Live::epoch` it was loaded at; `None` until loaded.
    loaded: Option<u64>,
    /// Live instances by id.
    instances: BTreeMap<String, CachedInstance>,
    /// Built from `instances` on demand; `None` after a structural change.
    state: Option<ClusterState>,
    /// Instance id -> its slot in `state` (valid while `state` is `Some`).
    slots: HashMap<String, usize>,
    /// When the next sync refreshes every slot (epoch seconds).
    next_full_refresh: f64,
    /// The distinct attribute sets of the cluster's instances (see [`AttributeSets`]).
    attribute_sets: AttributeSets,
}

/// One live instance as the cache holds it. Memory is the point (5,000 instances with a
/// few dozen attributes each): the record stays in its stored encoding, decoded only when a
/// placement writes it, and the scheduler's view shares its attribute map with every
/// instance that has the same attributes.
pub struct CachedInstance {
    /// The record as stored.
    raw: Bytes,
    /// The record's mod revision: the compare of a commit that writes it.
    pub revision: Revision,
    /// The scheduler's view of the record. Its `agent_connected` and
    /// `running_tasks_count` are those of when it was made; the slot in the state is kept
    /// current.
    snapshot: InstanceSnapshot,
    /// The record's status (the snapshot's folds every other status into INACTIVE).
    status: InstanceStatus,
    /// Epoch seconds.
    registered_at: f64,
}

impl CachedInstance {
    /// The stored record.
    pub fn record(&self, key: &str) -> Result<ContainerInstanceRecord, AwsError> {
        serde_json::from_slice(&self.raw).map_err(|e| error::corrupt(key, e))
    }

    /// The instance's ARN.
    pub fn arn(&self) -> &str {
        &self.snapshot.arn
    }

    /// The scheduler's view of the record (liveness as of when it was made).
    pub fn snapshot(&self) -> &InstanceSnapshot {
        &self.snapshot
    }
}

/// Interned attribute maps: one per distinct set of attributes, shared by the snapshots of
/// every instance that has it (a fleet of alike hosts has a handful). Sets no snapshot holds
/// any more are dropped once the table has doubled since it was last pruned.
#[derive(Default)]
struct AttributeSets {
    sets: HashSet<Arc<BTreeMap<String, Option<String>>>>,
    prune_at: usize,
}

impl AttributeSets {
    fn intern(
        &mut self,
        attrs: Arc<BTreeMap<String, Option<String>>>,
    ) -> Arc<BTreeMap<String, Option<String>>> {
        if let Some(shared) = self.sets.get(&attrs) {
            return shared.clone();
        }
        if self.sets.len() >= self.prune_at {
            self.sets.retain(|s| Arc::strong_count(s) > 1);
            self.prune_at = (self.sets.len() * 2).max(64);
        }
        self.sets.insert(attrs.clone());
        attrs
    }
}

impl PlacementCache {
    /// A cache following `store`'s change feed until the store is dropped.
    pub fn follow(store: Arc<dyn Store>, agent_timeout_secs: f64) -> Arc<Self> {
        let live = Arc::new(Mutex::new(Live::default()));
        let mut changes = store.changes();
        let weak = Arc::downgrade(&live);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                loop {
                    let change = changes.recv().await;
                    let Some(live) = weak.upgrade() else { return };
                    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
                    match change {
                        Ok(c) => live.apply(&c.ops, c.revision),
                        Err(RecvError::Lagged(n)) => {
                            tracing::debug!(skipped = n, "placement cache lagged; reloading");
                            live.epoch += 1;
                            live.pending.clear();
                            live.dirty.clear();
                        }
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Arc::new(Self { store, agent_timeout_secs, live, clusters: Mutex::new(HashMap::new()) })
    }

    /// The cluster's cache, locked for one placement, synced with the store's changes.
    pub async fn lock(
        &self,
        cluster: &str,
        now: f64,
    ) -> Result<tokio::sync::OwnedMutexGuard<ClusterCache>, AwsError> {
        let entry = {
            let mut all = self.clusters.lock().unwrap_or_else(PoisonError::into_inner);
            all.entry(cluster.to_string()).or_default().clone()
        };
        let mut guard = entry.lock_owned().await;
        if let Err(e) = self.sync(&mut guard, cluster, now).await {
            // The changes it drained are lost to it: the next use reloads from the store.
            guard.loaded = None;
            return Err(e);
        }
        Ok(guard)
    }

    /// Brings `c` up to date: a reload when never loaded or after a lag, else the pending
    /// record changes; then every slot's connection and RUNNING count.
    async fn sync(&self, c: &mut ClusterCache, cluster: &str, now: f64) -> Result<(), AwsError> {
        let (epoch, pending, dirty) = {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            (
                live.epoch,
                live.pending.remove(cluster).unwrap_or_default(),
                live.dirty.remove(cluster).unwrap_or_default(),
            )
        };
        if c.loaded != Some(epoch) {
            self.load(c, cluster, epoch).await?;
        } else {
            for (id, (value, revision)) in pending {
                let cached = c.instances.get(&id).map(|i| i.revision);
                if cached.is_some_and(|r| r >= revision) {
                    continue; // already seen (our own commit, or a reload after it)
                }
                match value {
                    Some(v) => {
                        let key = keys::container_instance(cluster, &id);
                        let rec: ContainerInstanceRecord =
                            serde_json::from_slice(&v).map_err(|e| error::corrupt(&key, e))?;
                        c.put(id, v, &rec, revision);
                    }
                    None => c.remove(&id),
                }
            }
        }
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if now >= c.next_full_refresh {
            c.refresh_liveness(&live, None, now, self.agent_timeout_secs);
            c.next_full_refresh = now + FULL_REFRESH_SECS;
        } else {
            c.refresh_liveness(&live, Some(&dirty), now, self.agent_timeout_secs);
        }
        Ok(())
    }

    /// Reads the cluster's instances, their heartbeats and RUNNING tasks from the store.
    async fn load(&self, c: &mut ClusterCache, cluster: &str, epoch: u64) -> Result<(), AwsError> {
        let recs = self
            .store
            .range(berth_store::Range::prefix(&keys::cluster_instances_prefix(cluster)))
            .await
            .map_err(error::store)?;
        let mut instances: Vec<(ContainerInstanceRecord, Bytes, Revision)> =
            Vec::with_capacity(recs.len());
        for r in recs {
            let rec = serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            instances.push((rec, r.value, r.mod_revision));
        }
        let hb_keys: Vec<String> =
            instances.iter().map(|(r, _, _)| keys::instance_heartbeat(&r.id)).collect();
        let beats = self.store.get_many(&hb_keys).await.map_err(error::store)?;
        let mut running: HashMap<String, HashSet<String>> = HashMap::new();
        for (r, _, _) in &instances {
            let idx = self
                .store
                .range(berth_store::Range::prefix(&keys::instance_tasks_prefix(&r.id)))
                .await
                .map_err(error::store)?;
            let ids = idx
                .iter()
                .filter(|e| TaskStatus::from_bytes(&e.value) == Some(TaskStatus::Running))
                .filter_map(|e| keys::parse_instance_task_key(&e.key).map(|(_, t)| t.to_string()))
                .collect();
            running.insert(r.id.clone(), ids);
        }
        {
            let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            for b in beats {
                let Some(id) = keys::parse_instance_heartbeat_key(&b.key) else { continue };
                if let Ok(h) = serde_json::from_slice::<HeartbeatRecord>(&b.value) {
                    let seen = live.last_seen.entry(id.to_string()).or_insert(h.last_seen);
                    *seen = seen.max(h.last_seen);
                }
            }
            for (id, tasks) in running {
                live.running.insert(id, tasks);
            }
            for (r, _, _) in &instances {
                live.cluster_of.insert(r.id.clone(), cluster.to_string());
            }
        }
        *c = ClusterCache {
            loaded: Some(epoch),
            next_full_refresh: f64::NEG_INFINITY,
            attribute_sets: std::mem::take(&mut c.attribute_sets),
            ..ClusterCache::default()
        };
        for (rec, raw, rev) in instances {
            c.put(rec.id.clone(), raw, &rec, rev);
        }
        Ok(())
    }

    /// Re-reads some instances of the cluster (after a commit that lost a compare on them).
    pub async fn refresh(
        &self,
        c: &mut ClusterCache,
        cluster: &str,
        ids: &[String],
    ) -> Result<(), AwsError> {
        let wanted: Vec<String> =
            ids.iter().map(|id| keys::container_instance(cluster, id)).collect();
        let found = self.store.get_many(&wanted).await.map_err(error::store)?;
        let mut present = HashSet::new();
        for r in found {
            let rec: ContainerInstanceRecord =
                serde_json::from_slice(&r.value).map_err(|e| error::corrupt(&r.key, e))?;
            present.insert(rec.id.clone());
            c.put(rec.id.clone(), r.value, &rec, r.mod_revision);
        }
        for id in ids {
            if !present.contains(id) {
                c.remove(id);
            }
        }
        // The decided plan consumed the state; it must not outlive a failed commit.
        c.state = None;
        Ok(())
    }
}

impl Live {
    /// Marks an instance's liveness as changed for its cluster's next sync.
    fn touch(&mut self, id: &str) {
        if let Some(cluster) = self.cluster_of.get(id) {
            self.dirty.entry(cluster.clone()).or_default().insert(id.to_string());
        }
    }

    fn apply(&mut self, ops: &[Op], revision: Revision) {
        for op in ops {
            let (key, value) = match op {
                Op::Put { key, value } => (key, Some(value)),
                Op::Delete { key } => (key, None),
            };
            if let Some((cluster, id)) = keys::parse_container_instance_key(key) {
                self.pending
                    .entry(cluster.to_string())
                    .or_default()
                    .insert(id.to_string(), (value.cloned(), revision));
                if value.is_some() {
                    self.cluster_of.insert(id.to_string(), cluster.to_string());
                } else {
                    self.cluster_of.remove(id);
                }
            } else if let Some(id) = keys::parse_instance_heartbeat_key(key) {
                self.touch(id);
                match value.and_then(|v| serde_json::from_slice::<HeartbeatRecord>(v).ok()) {
                    Some(h) => {
                        self.last_seen.insert(id.to_string(), h.last_seen);
                    }
                    None => {
                        self.last_seen.remove(id);
                    }
                }
            } else if let Some((instance, task)) = keys::parse_instance_task_key(key) {
                self.touch(instance);
                let set = self.running.entry(instance.to_string()).or_default();
                if value.is_some_and(|v| TaskStatus::from_bytes(v) == Some(TaskStatus::Running)) {
                    set.insert(task.to_string());
                } else {
                    set.remove(task);
                }
            }
        }
    }
}

impl ClusterCache {
    /// The live instances, by id.
    pub fn instances(&self) -> &BTreeMap<String, CachedInstance> {
        &self.instances
    }

    /// One live instance by id.
    pub fn instance(&self, id: &str) -> Option<&CachedInstance> {
        self.instances.get(id)
    }

    /// The scheduler state over the live instances, built if needed; `liveness` gives an
    /// instance's agentConnected and runningTasksCount by id.
    pub fn state(&mut self, liveness: impl Fn(&str) -> (bool, u32)) -> &mut ClusterState {
        if self.state.is_none() {
            self.slots.clear();
            let mut snaps = Vec::with_capacity(self.instances.len());
            for (i, (id, cached)) in self.instances.iter().enumerate() {
                self.slots.insert(id.clone(), i);
                let mut snap = cached.snapshot.clone();
                (snap.agent_connected, snap.running_tasks_count) = liveness(id);
                snaps.push(snap);
            }
            self.state = Some(ClusterState::new(snaps));
        }
        self.state.as_mut().expect("state just built")
    }

    /// Every live instance as the service controller sees it; `silent` gives how long an
    /// instance's agent has been silent from its id and registration time.
    pub fn summaries(
        &mut self,
        liveness: impl Fn(&str) -> (bool, u32),
        silent: impl Fn(&str, f64) -> f64,
    ) -> Vec<InstanceSummary> {
        self.state(liveness);
        let state = self.state.as_ref().expect("state just built");
        self.instances
            .iter()
            .map(|(id, cached)| InstanceSummary {
                id: id.clone(),
                arn: cached.snapshot.arn.clone(),
                status: cached.status,
                snapshot: state.instances()[self.slots[id]].clone(),
                silent_secs: silent(id, cached.registered_at),
            })
            .collect()
    }

    /// Records what a committed placement wrote: the instances' new records (and their
    /// encoding) and the revision. (The state already reflects a plan it decided, so this
    /// changes no slot then.)
    pub fn committed(
        &mut self,
        written: Vec<(ContainerInstanceRecord, Bytes)>,
        revision: Revision,
    ) {
        for (rec, raw) in written {
            self.put(rec.id.clone(), raw, &rec, revision);
        }
    }

    /// Forgets the state (after a decision whose commit failed).
    pub fn discard_state(&mut self) {
        self.state = None;
    }

    fn put(&mut self, id: String, raw: Bytes, rec: &ContainerInstanceRecord, revision: Revision) {
        let slot = self.slots.get(&id).copied();
        let current = match (&self.state, slot) {
            (Some(state), Some(slot)) => {
                let s = &state.instances()[slot];
                (s.agent_connected, s.running_tasks_count)
            }
            _ => (false, 0),
        };
        let mut snapshot = snapshot_of(rec, current.0, current.1);
        snapshot.attributes = self.attribute_sets.intern(snapshot.attributes);
        let in_state = snapshot.clone();
        let cached = CachedInstance {
            raw,
            revision,
            snapshot,
            status: rec.status,
            registered_at: rec.registered_at,
        };
        let old = self.instances.insert(id, cached);
        match (&mut self.state, slot, old) {
            (Some(state), Some(slot), Some(_)) => state.set_instance(slot, in_state),
            _ => self.state = None,
        }
    }

    fn remove(&mut self, id: &str) {
        if self.instances.remove(id).is_some() {
            self.state = None;
        }
    }

    /// Brings the agentConnected and runningTasksCount of the slots of `only` (every slot
    /// when `None`) up to date.
    fn refresh_liveness(
        &mut self,
        live: &Live,
        only: Option<&HashSet<String>>,
        now: f64,
        timeout: f64,
    ) {
        let Some(state) = self.state.as_mut() else { return };
        let mut refresh = |id: &str, slot: usize| {
            let connected = live.last_seen.get(id).is_some_and(|seen| now - seen <= timeout);
            let running = live.running.get(id).map_or(0, |s| s.len()) as u32;
            let current = &state.instances()[slot];
            if current.agent_connected != connected || current.running_tasks_count != running {
                let mut snap = current.clone();
                snap.agent_connected = connected;
                snap.running_tasks_count = running;
                state.set_instance(slot, snap);
            }
        };
        match only {
            None => self.slots.iter().for_each(|(id, &slot)| refresh(id, slot)),
            Some(ids) => {
                for id in ids {
                    if let Some(&slot) = self.slots.get(id) {
                        refresh(id, slot);
                    }
                }
            }
        }
    }
}

impl PlacementCache {
    /// Seconds since the instance's agent last polled (since it registered, if never).
    pub fn silent_secs(&self, id: &str, registered_at: f64, now: f64) -> f64 {
        let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = live.last_seen.get(id).copied().unwrap_or(registered_at);
        (now - seen).max(0.0)
    }

    /// An instance's agentConnected and runningTasksCount by id, from the change feed, for
    /// [`ClusterCache::state`].
    pub fn liveness_fn(&self, now: f64) -> impl Fn(&str) -> (bool, u32) + '_ {
        move |id| {
            let live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
            let connected =
                live.last_seen.get(id).is_some_and(|seen| now - seen <= self.agent_timeout_secs);
            let running = live.running.get(id).map_or(0, |s| s.len()) as u32;
            (connected, running)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records;
    use berth_store::Txn;
    use std::time::Duration;

    fn instance(id: &str, used_cpu: i64) -> ContainerInstanceRecord {
        serde_json::from_value(serde_json::json!({
            "id": id, "arn": format!("arn:aws:ecs:us-east-1:000000000000:container-instance/c/{id}"),
            "cluster": "c", "ec2InstanceId": format!("i-{id}"), "status": "ACTIVE",
            "registeredResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 4096}
            ],
            "usedCpu": used_cpu, "usedMemoryMib": 0, "usedPortsTcp": [], "usedPortsUdp": [],
            "attributes": [{"name": "ecs.availability-zone", "value": "us-east-1a"}],
            "tags": [], "registeredAt": 0.0, "epoch": 1, "version": 1
        }))
        .expect("an instance record")
    }

    async fn put(store: &dyn Store, txn: Txn) -> Revision {
        match store.txn(txn).await.unwrap() {
            berth_store::TxnOutcome::Committed { revision } => revision,
            other => panic!("{other:?}"),
        }
    }

    /// The snapshots a fresh read of the store gives, by instance id.
    async fn fresh(
        store: &dyn Store,
        now: f64,
        timeout: f64,
    ) -> BTreeMap<String, InstanceSnapshot> {
        let recs = store.range(berth_store::Range::prefix("ecs/instances/c/")).await.unwrap();
        let mut out = BTreeMap::new();
        for (rec, _) in records::decode_all::<ContainerInstanceRecord>(recs).unwrap() {
            let hb = records::get::<HeartbeatRecord>(store, &keys::instance_heartbeat(&rec.id))
                .await
                .unwrap();
            let connected = hb.is_some_and(|(h, _)| now - h.last_seen <= timeout);
            let idx = store
                .range(berth_store::Range::prefix(&keys::instance_tasks_prefix(&rec.id)))
                .await
                .unwrap();
            let running = idx
                .iter()
                .filter(|e| TaskStatus::from_bytes(&e.value) == Some(TaskStatus::Running))
                .count() as u32;
            out.insert(rec.id.clone(), snapshot_of(&rec, connected, running));
        }
        out
    }

    /// What the cache holds, by instance id.
    async fn cached(cache: &PlacementCache, now: f64) -> BTreeMap<String, InstanceSnapshot> {
        let mut guard = cache.lock("c", now).await.unwrap();
        let c = &mut *guard;
        c.state(cache.liveness_fn(now));
        c.slots
            .iter()
            .map(|(id, &i)| (id.clone(), c.state.as_ref().unwrap().instances()[i].clone()))
            .collect()
    }

    async fn converges(cache: &PlacementCache, store: &dyn Store, now: f64) {
        let want = fresh(store, now, 45.0).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = cached(cache, now).await;
            if got == want {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "cache {got:#?}\n!= store {want:#?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn the_cache_matches_a_fresh_read_through_every_kind_of_change() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let now = 1_000.0;
        let beat = |t: f64| records::encode(&HeartbeatRecord { last_seen: t });
        let mut txn = Txn::new();
        for id in ["a", "b", "c"] {
            txn = txn
                .put(keys::container_instance("c", id), records::encode(&instance(id, 0)))
                .put(keys::instance_heartbeat(id), beat(now - 1.0));
        }
        let running = keys::instance_task_value(TaskStatus::Running);
        put(&*store, txn.put(keys::instance_task("a", "t1"), running.clone())).await;
        let cache = PlacementCache::follow(store.clone(), 45.0);
        converges(&cache, &*store, now).await;

        // Another writer: a release on a, b deregistered, d registered, a task RUNNING on
        // c and t1 stopped, c's agent silent past the timeout.
        put(
            &*store,
            Txn::new()
                .put(keys::container_instance("c", "a"), records::encode(&instance("a", 512)))
                .delete(keys::container_instance("c", "b"))
                .put(keys::container_instance("c", "d"), records::encode(&instance("d", 0)))
                .put(keys::instance_heartbeat("d"), beat(now))
                .put(keys::instance_task("c", "t2"), running)
                .delete(keys::instance_task("a", "t1"))
                .put(keys::instance_heartbeat("c"), beat(now - 100.0)),
        )
        .await;
        converges(&cache, &*store, now).await;

        // Our own commit recorded at its revision is not applied twice, and a later write
        // by someone else still is.
        let rev = put(
            &*store,
            Txn::new()
                .put(keys::container_instance("c", "a"), records::encode(&instance("a", 1024))),
        )
        .await;
        {
            let mut g = cache.lock("c", now).await.unwrap();
            g.committed(
                vec![(instance("a", 1024), records::encode(&instance("a", 1024)).into())],
                rev,
            );
        }
        converges(&cache, &*store, now).await;
        put(
            &*store,
            Txn::new().put(keys::container_instance("c", "a"), records::encode(&instance("a", 0))),
        )
        .await;
        converges(&cache, &*store, now).await;
    }

    #[test]
    fn alike_instances_share_one_attribute_map() {
        let mut c = ClusterCache::default();
        for id in ["a", "b", "c"] {
            let rec = instance(id, 0);
            c.put(id.into(), records::encode(&rec).into(), &rec, 1);
        }
        let mut other = instance("d", 0);
        other.attributes[0].value = Some("us-east-1b".into());
        c.put("d".into(), records::encode(&other).into(), &other, 1);
        let attrs = |id: &str| c.instance(id).unwrap().snapshot().attributes.clone();
        assert!(Arc::ptr_eq(&attrs("a"), &attrs("b")) && Arc::ptr_eq(&attrs("a"), &attrs("c")));
        assert!(!Arc::ptr_eq(&attrs("a"), &attrs("d")));
        assert_eq!(attrs("d").get("ecs.availability-zone"), Some(&Some("us-east-1b".into())));
        // A record decoded from the cache is the one stored.
        assert_eq!(c.instance("d").unwrap().record("k").unwrap(), other);
    }
}
