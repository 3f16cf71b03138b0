//! The warm pool of pause containers (see [`super`]'s module docs): started ahead on network
//! `none`, each made with the resolvers of the task that last took one (label
//! [`LABEL_POOL_DNS`]), so a task whose resolvers differ gets a pause container made for it
//! instead of one with the wrong DNS.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_runtime::{ContainerSpec, NetworkMode, Runtime, RuntimeError};
use tokio::sync::watch;

use super::{LABEL_PAUSE, LABEL_POOL, pool_name_prefix};
use crate::spec::LABEL_INSTANCE;

/// Label on a warm pool container: the resolvers it was made with, comma-separated (empty:
/// Docker's default).
pub const LABEL_POOL_DNS: &str = "berth.pause-pool.dns";

/// Warm pause containers of one agent (see the module docs). Bounded by its size; the
/// replenisher runs from the first hand-out until [`WarmPool::shutdown`].
pub struct WarmPool {
    size: usize,
    state: std::sync::Mutex<PoolState>,
    /// Wakes the replenisher: a container was taken, or found dead.
    wake: tokio::sync::Notify,
    /// Hand-outs in flight (task start-ups using the engine): the replenisher waits for none.
    busy: watch::Sender<usize>,
    /// Tasks holding a pause container from the pool: with none for [`POOL_LINGER`], the
    /// idle ones are removed and replenishing stops until the next hand-out.
    holders: watch::Sender<usize>,
}

#[derive(Default)]
struct PoolState {
    /// Started, on `none`, waiting (ids).
    idle: Vec<String>,
    /// Every container this pool made or adopted (idle or handed out), so that [`super::cleanup`]
    /// never adopts one twice.
    known: std::collections::BTreeSet<String>,
    /// Names being made (created, not yet known or started): [`super::cleanup`] leaves them alone.
    making: std::collections::BTreeSet<String>,
    /// The resolvers (comma-joined) each known container was made with.
    dns_of: BTreeMap<String, String>,
    /// The resolvers of the latest hand-out: what the replenisher makes.
    dns: String,
    replenisher: Option<tokio::task::JoinHandle<()>>,
    shut: bool,
}

/// A hand-out in flight; dropping it ends it.
pub(crate) struct Busy(Arc<WarmPool>);

impl std::fmt::Debug for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Busy")
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.send_modify(|b| *b = b.saturating_sub(1));
    }
}

/// A task holding a warm pause container; dropping it (the task's end) releases it.
pub(crate) struct Holder(Arc<WarmPool>);

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Holder")
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.0.holders.send_modify(|b| *b = b.saturating_sub(1));
    }
}

/// How long the pool stays warm after the last task holding one of its containers ended.
pub const POOL_LINGER: std::time::Duration = std::time::Duration::from_secs(30);

/// How long the replenisher defers to hand-outs in flight before making one anyway.
const REPLENISH_DEFER: std::time::Duration = std::time::Duration::from_secs(2);

impl WarmPool {
    pub fn new(size: usize) -> Self {
        Self {
            size,
            state: Default::default(),
            wake: tokio::sync::Notify::new(),
            busy: watch::channel(0).0,
            holders: watch::channel(0).0,
        }
    }

    pub(super) fn holder(self: &Arc<Self>) -> Holder {
        self.holders.send_modify(|b| *b += 1);
        Holder(self.clone())
    }

    /// Resolves once no task has held a container for [`POOL_LINGER`].
    async fn unused(&self) {
        let mut holders = self.holders.subscribe();
        loop {
            let _ = holders.wait_for(|h| *h == 0).await;
            if tokio::time::timeout(POOL_LINGER, holders.wait_for(|h| *h > 0)).await.is_err() {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many idle containers it keeps (0: no pool).
    pub fn size(&self) -> usize {
        self.size
    }

    /// How many are idle now.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.busy.send_modify(|b| *b += 1);
        Busy(self.clone())
    }

    /// Makes one with resolvers `dns` (comma-joined): created on `none`, started;
    /// registered as known before it starts.
    async fn make(
        &self,
        rt: &dyn Runtime,
        instance_arn: &str,
        dns: &str,
    ) -> Result<String, RuntimeError> {
        let image = rt.pause_image().await?;
        let labels: BTreeMap<String, String> = [
            (LABEL_INSTANCE, instance_arn),
            (LABEL_PAUSE, "1"),
            (LABEL_POOL, "1"),
            (LABEL_POOL_DNS, dns),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let n = uuid::Uuid::new_v4().simple().to_string();
        let spec = ContainerSpec {
            name: format!("{}{}", pool_name_prefix(instance_arn), &n[..12]),
            image,
            labels,
            network_mode: NetworkMode::None,
            security_opts: vec![crate::spec::NO_NEW_PRIVILEGES.into()],
            // Docker keeps these when the container moves onto the subnet's bridge: its
            // embedded resolver forwards to them, as for a pause container made there.
            dns_servers: dns.split(',').filter(|d| !d.is_empty()).map(str::to_string).collect(),
            ..Default::default()
        };
        self.lock().making.insert(spec.name.clone());
        let made = async {
            let id = rt.create(&spec).await?;
            {
                let mut st = self.lock();
                st.known.insert(id.clone());
                st.dns_of.insert(id.clone(), dns.to_string());
            }
            if let Err(e) = rt.start(&id).await {
                let _ = rt.remove(&id).await;
                return Err(e);
            }
            Ok(id)
        }
        .await;
        self.lock().making.remove(&spec.name);
        made
    }

    /// A started pause container for a task, and its pid: an idle one (checked alive), or
    /// one made now when none is. Starts the replenisher.
    /// Only one made with resolvers `dns` will do: idle ones made with others are removed
    /// and the replenisher makes ones with `dns` from now on.
    pub(super) async fn take(
        self: &Arc<Self>,
        rt: &Arc<dyn Runtime>,
        instance_arn: &str,
        dns: &[String],
    ) -> Result<(String, u32), RuntimeError> {
        let dns = dns.join(",");
        let stale = {
            let mut st = self.lock();
            st.dns.clone_from(&dns);
            let (keep, stale): (Vec<String>, Vec<String>) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|id| st.dns_of.get(id).is_some_and(|d| *d == dns));
            st.idle = keep;
            stale
        };
        if !stale.is_empty() {
            let rt = rt.clone();
            tokio::spawn(async move {
                for id in stale {
                    let _ = rt.remove(&id).await;
                }
            });
        }
        self.ensure_replenisher(rt.clone(), instance_arn.to_string());
        loop {
            let next = self.lock().idle.pop();
            self.wake.notify_one();
            let id = match next {
                Some(id) => id,
                None => self.make(rt.as_ref(), instance_arn, &dns).await?,
            };
            match rt.inspect(&id).await? {
                Some(st) if st.state.is_running() && st.pid.is_some() => {
                    return Ok((id, st.pid.unwrap_or_default()));
                }
                _ => {
                    tracing::info!(container = %id, "a warm pause container is gone; another one");
                    let _ = rt.remove(&id).await;
                }
            }
        }
    }

    fn ensure_replenisher(self: &Arc<Self>, rt: Arc<dyn Runtime>, instance_arn: String) {
        let mut st = self.lock();
        if self.size == 0 || st.shut || st.replenisher.is_some() {
            return;
        }
        st.replenisher = Some(tokio::spawn(self.clone().replenish(rt, instance_arn)));
    }

    /// Keeps `size` idle, making one at a time once no hand-out is in flight (or after
    /// [`REPLENISH_DEFER`]); a failure waits longer each time (at most 30 s).
    async fn replenish(self: Arc<Self>, rt: Arc<dyn Runtime>, instance_arn: String) {
        let mut backoff = std::time::Duration::from_millis(500);
        loop {
            while self.idle() >= self.size {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = self.unused() => {
                        // Cold again: the idle ones go; the next hand-out starts over.
                        let idle = {
                            let mut st = self.lock();
                            st.replenisher = None;
                            std::mem::take(&mut st.idle)
                        };
                        for id in idle {
                            let _ = rt.remove(&id).await;
                        }
                        return;
                    }
                }
            }
            let mut busy = self.busy.subscribe();
            let _ = tokio::time::timeout(REPLENISH_DEFER, busy.wait_for(|b| *b == 0)).await;
            let dns = self.lock().dns.clone();
            match self.make(rt.as_ref(), &instance_arn, &dns).await {
                Ok(id) => {
                    let shut = {
                        let mut st = self.lock();
                        if !st.shut {
                            st.idle.push(id.clone());
                        }
                        st.shut
                    };
                    if shut {
                        let _ = rt.remove(&id).await;
                        return;
                    }
                    backoff = std::time::Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a warm pause container; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(30));
                }
            }
        }
    }

    /// Level-triggered, from [`super::cleanup`]: adopts running idle containers a previous agent
    /// left (up to the size), removes dead and surplus idle ones, and handed-out ones whose
    /// task is not in `live_task_ids`.
    pub(super) async fn reconcile(
        &self,
        rt: &dyn Runtime,
        instance_arn: &str,
        live_task_ids: &[String],
    ) {
        let before = self.lock().known.clone();
        let labels = [
            (LABEL_INSTANCE.to_string(), instance_arn.to_string()),
            (LABEL_POOL.to_string(), "1".to_string()),
        ];
        let Ok(found) = rt.list(&labels).await else { return };
        let prefix = pool_name_prefix(instance_arn);
        let mut remove = Vec::new();
        {
            let mut st = self.lock();
            for c in &found {
                if st.making.contains(&c.name) {
                    continue;
                }
                if c.name.starts_with(&prefix) {
                    let known = st.known.contains(&c.id);
                    let running = c.state.is_running();
                    if !running && (!known || st.idle.contains(&c.id)) {
                        st.idle.retain(|i| *i != c.id);
                        remove.push(c.id.clone());
                    } else if running && !known {
                        st.known.insert(c.id.clone());
                        let dns = c.labels.get(LABEL_POOL_DNS).cloned().unwrap_or_default();
                        st.dns_of.insert(c.id.clone(), dns);
                        if st.shut || st.idle.len() >= self.size {
                            remove.push(c.id.clone());
                        } else {
                            tracing::info!(container = %c.name, "adopted a warm pause container");
                            st.idle.push(c.id.clone());
                        }
                    }
                } else if let Some((_, task)) = c.name.split_once("-internalecspause-")
                    && !live_task_ids.iter().any(|t| t == task)
                {
                    remove.push(c.id.clone());
                }
            }
            while st.idle.len() > self.size {
                if let Some(id) = st.idle.pop() {
                    remove.push(id);
                }
            }
            // Forget what is gone (only what was known before listing: one made meanwhile
            // is not listed yet).
            for id in before.iter().filter(|id| !found.iter().any(|c| &c.id == *id)) {
                st.known.remove(id);
                st.dns_of.remove(id);
                st.idle.retain(|i| i != id);
            }
        }
        for id in remove {
            tracing::info!(container = %id, "removing a stale warm pause container");
            let _ = rt.remove(&id).await;
        }
    }

    /// Stops replenishing and removes every idle container (agent shutdown). Handed-out ones
    /// stay with their tasks.
    pub(super) async fn shutdown(&self, rt: &dyn Runtime, instance_arn: &str) {
        let handle = {
            let mut st = self.lock();
            st.shut = true;
            st.idle.clear();
            st.replenisher.take()
        };
        if let Some(h) = handle {
            h.abort();
            let _ = h.await;
        }
        let labels = [
            (LABEL_INSTANCE.to_string(), instance_arn.to_string()),
            (LABEL_POOL.to_string(), "1".to_string()),
        ];
        let prefix = pool_name_prefix(instance_arn);
        for c in rt.list(&labels).await.unwrap_or_default() {
            if c.name.starts_with(&prefix) {
                let _ = rt.remove(&c.id).await;
            }
        }
    }
}
