//! Leadership: which of several servers sharing a store runs the controllers (issue #18).
//!
//! Contract:
//! * [`Leadership::campaign`] waits until this process leads and returns its [`Term`]; the
//!   term ends (once, with a reason: [`Term::ended`], [`Term::wait_ended`]) when the lease
//!   behind it can no longer be trusted, when a write under it was refused by its fence, or at
//!   [`Leadership::resign`]. An ended term never leads again: campaign anew.
//! * A term carries a fencing token ([`Term::fence`]: the election key and its create
//!   revision). Code that runs [`under`] a term has every store transaction it makes checked
//!   against that fence in the same atomic step as its compares (the base stores read it from
//!   the task-local term, so controllers need no change); a fenced write after the key was
//!   deleted or re-created fails with [`StoreError::Fenced`], applies nothing, counts in
//!   [`fenced_writes`], logs an error and ends the term. So a deposed leader that still
//!   believes it leads (paused past its lease, partitioned) cannot commit.
//! * [`Leadership::observe`] follows who leads (the leader's value, e.g. its endpoint).
//! * [`AlwaysLeader`] is the single-server case (SQLite, `berth up`): it leads at once, for
//!   ever, with no fence. [`EtcdLeadership`] uses etcd's election API on a lease of
//!   [`EtcdLeadership::new`]'s TTL, kept alive every third of it; a lease not renewed for a
//!   whole TTL (this process paused, etcd unreachable) ends the term locally, and the lease is
//!   revoked when a term ends so that another server takes over at once.
//! * Tasks spawned from a task under a term do not inherit it: code under a term that spawns
//!   must wrap the spawned future with [`under`] too.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Fence, StoreError, Txn};

/// One stretch of leadership (see the module header).
#[derive(Debug)]
pub struct Term {
    id: String,
    fence: Option<Fence>,
    ended: Arc<watch::Sender<Option<String>>>,
}

impl Term {
    /// A term with this fence (`None`: nothing to check, the single-server case).
    pub fn new(id: impl Into<String>, fence: Option<Fence>) -> Arc<Self> {
        Arc::new(Self { id: id.into(), fence, ended: Arc::new(watch::channel(None).0) })
    }

    fn with_end(
        id: String,
        fence: Option<Fence>,
        ended: Arc<watch::Sender<Option<String>>>,
    ) -> Arc<Self> {
        Arc::new(Self { id, fence, ended })
    }

    /// What names this term in logs (the lease, the election key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The fencing token every write under this term carries.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_ref()
    }

    /// Ends the term (the first reason is kept).
    pub fn end(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.ended.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason);
            true
        });
    }

    /// Why the term ended, once it has.
    pub fn ended(&self) -> Option<String> {
        self.ended.borrow().clone()
    }

    /// Waits for the term to end; returns why.
    pub async fn wait_ended(&self) -> String {
        let mut rx = self.ended.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "the term's lease keeper stopped".into(),
        }
    }
}

tokio::task_local! {
    static TERM: Arc<Term>;
}

/// Runs `fut` under `term`: every store transaction it makes carries the term's fence.
pub async fn under<F: Future>(term: Arc<Term>, fut: F) -> F::Output {
    TERM.scope(term, fut).await
}

/// The term the calling task runs under, if any.
pub fn current() -> Option<Arc<Term>> {
    TERM.try_with(Arc::clone).ok()
}

static FENCED: AtomicU64 = AtomicU64::new(0);

/// How many writes this process had refused by their fence.
pub fn fenced_writes() -> u64 {
    FENCED.load(Ordering::Relaxed)
}

/// The fence a base store checks for `txn`: its own, else the calling task's term's (with
/// that term, to end it should the fence fail).
pub(crate) fn effective_fence(txn: &Txn) -> (Option<Fence>, Option<Arc<Term>>) {
    if let Some(f) = &txn.fence {
        return (Some(f.clone()), None);
    }
    match current() {
        Some(t) => (t.fence.clone(), Some(t)),
        None => (None, None),
    }
}

/// The error of a write whose fence failed: counted, logged, and the term ended.
pub(crate) fn refused(fence: &Fence, term: Option<&Arc<Term>>) -> StoreError {
    FENCED.fetch_add(1, Ordering::Relaxed);
    let err = StoreError::Fenced { key: fence.key.clone(), expected: fence.create_revision };
    tracing::error!(error = %err, term = term.map(|t| t.id()).unwrap_or(""), "fenced write refused");
    if let Some(t) = term {
        t.end(format!("a write was refused by its fence ({err})"));
    }
    err
}

/// Leader election over the store (see the module header).
#[async_trait]
pub trait Leadership: Send + Sync + 'static {
    /// Waits until this process leads; its term.
    async fn campaign(&self) -> Result<Arc<Term>, StoreError>;
    /// Who leads now (the leader's value), following changes; `None` while nobody does.
    fn observe(&self) -> watch::Receiver<Option<String>>;
    /// Gives the term up (ends it, releases the election key).
    async fn resign(&self, term: &Term) -> Result<(), StoreError>;
}

/// The single-server case: always the leader, no fence.
pub struct AlwaysLeader {
    observed: watch::Sender<Option<String>>,
}

impl AlwaysLeader {
    /// This process, named `value`, leads.
    pub fn new(value: impl Into<String>) -> Self {
        Self { observed: watch::channel(Some(value.into())).0 }
    }
}

#[async_trait]
impl Leadership for AlwaysLeader {
    async fn campaign(&self) -> Result<Arc<Term>, StoreError> {
        Ok(Term::new("single server", None))
    }
    fn observe(&self) -> watch::Receiver<Option<String>> {
        self.observed.subscribe()
    }
    async fn resign(&self, term: &Term) -> Result<(), StoreError> {
        term.end("resigned");
        Ok(())
    }
}

/// Leadership through etcd's election API (see the module header).
pub struct EtcdLeadership {
    client: etcd_client::Client,
    endpoints: String,
    name: String,
    value: String,
    ttl: Duration,
    observed: watch::Sender<Option<String>>,
    observer: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdLeadership {
    fn drop(&mut self) {
        self.observer.abort();
    }
}

impl EtcdLeadership {
    /// Elections among the servers of `store` (its cluster and prefix; the election key lives
    /// beside the prefix, never under it), this one named `value`, on leases of `ttl` (at
    /// least 1 s).
    pub fn new(store: &crate::EtcdStore, value: impl Into<String>, ttl: Duration) -> Self {
        let client = store.client().clone();
        let name = store.config().election_name();
        let observed = watch::channel(None).0;
        let observer = tokio::spawn(observe(client.clone(), name.clone(), observed.clone()));
        Self {
            client,
            endpoints: store.config().describe(),
            name,
            value: value.into(),
            ttl: ttl.max(Duration::from_secs(1)),
            observed,
            observer,
        }
    }

    /// The election's name in etcd (its keys are `NAME/LEASE`).
    pub fn election_name(&self) -> &str {
        &self.name
    }

    fn error(&self, what: &str, e: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            what: what.into(),
            source: Box::new(e),
        }
    }
}

async fn observe(
    client: etcd_client::Client,
    name: String,
    observed: watch::Sender<Option<String>>,
) {
    loop {
        match client.election_client().observe(name.clone()).await {
            Ok(mut stream) => {
                while let Ok(Some(resp)) = stream.message().await {
                    let value =
                        resp.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
                    observed.send_replace(value);
                }
            }
            Err(e) => tracing::debug!(error = %e, "etcd election: cannot observe; retrying"),
        }
        observed.send_replace(None);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Keeps `lease` alive every third of `ttl` until `ended` is set; sets it when the lease was
/// not renewed for a whole `ttl` or etcd says it expired; revokes the lease at the end.
async fn keep_alive(
    client: etcd_client::Client,
    lease: i64,
    ttl: Duration,
    ended: Arc<watch::Sender<Option<String>>>,
) {
    let mut ended_rx = ended.subscribe();
    let interval = (ttl / 3).max(Duration::from_millis(200));
    let mut renewed = Instant::now();
    let mut stream: Option<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream)> = None;
    let end = |why: String| {
        ended.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(why);
            true
        });
    };
    loop {
        if ended.borrow().is_some() {
            break;
        }
        // Checked after every wake, a long pause (SIGSTOP) included: the lease may be gone.
        if renewed.elapsed() >= ttl {
            end(format!(
                "lease {lease:x} not renewed for {:.1} s (its TTL is {:.1} s): it may have expired",
                renewed.elapsed().as_secs_f64(),
                ttl.as_secs_f64()
            ));
            break;
        }
        // A dead member's refused connection fails at once: try the others (the client
        // picks one per attempt).
        for _ in 0..5 {
            if stream.is_some() {
                break;
            }
            stream = client.lease_client().keep_alive(lease).await.ok();
        }
        let sent = Instant::now();
        let mut ok = false;
        if let Some((keeper, answers)) = stream.as_mut() {
            if keeper.keep_alive().await.is_ok() {
                match tokio::time::timeout(interval, answers.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => ok = true,
                    Ok(Ok(Some(_))) => {
                        end(format!("lease {lease:x} expired (etcd says so)"));
                        break;
                    }
                    Ok(_) => stream = None,
                    Err(_) => {}
                }
            } else {
                stream = None;
            }
        }
        if ok && renewed.elapsed() < ttl {
            renewed = sent;
        }
        tokio::select! {
            _ = tokio::time::sleep_until((sent + interval).into()) => {}
            _ = ended_rx.changed() => {}
        }
    }
    // Let another server take over now rather than after the TTL.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_client().revoke(lease)).await;
}

#[async_trait]
impl Leadership for EtcdLeadership {
    async fn campaign(&self) -> Result<Arc<Term>, StoreError> {
        let ttl_secs = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        loop {
            let grant = self
                .client
                .lease_client()
                .grant(ttl_secs, None)
                .await
                .map_err(|e| self.error("grant a leadership lease", e))?;
            let lease = grant.id();
            let ended: Arc<watch::Sender<Option<String>>> = Arc::new(watch::channel(None).0);
            let keeper =
                tokio::spawn(keep_alive(self.client.clone(), lease, self.ttl, ended.clone()));
            let mut ended_rx = ended.subscribe();
            let mut election = self.client.election_client();
            let won = tokio::select! {
                r = election.campaign(self.name.clone(), self.value.clone(), lease) => r,
                _ = ended_rx.wait_for(Option::is_some) => {
                    tracing::warn!(lease = format!("{lease:x}"), "leadership lease lost while campaigning; campaigning again");
                    continue;
                }
            };
            let resp = match won {
                Ok(r) => r,
                Err(e) => {
                    ended.send_replace(Some("campaign failed".into()));
                    let _ = keeper.await;
                    return Err(self.error("campaign for leadership", e));
                }
            };
            let Some(leader) = resp.leader() else {
                ended.send_replace(Some("campaign answered no key".into()));
                continue;
            };
            let key = String::from_utf8_lossy(leader.key()).into_owned();
            let fence = Fence {
                key: key.clone(),
                create_revision: crate::Revision::try_from(leader.rev()).unwrap_or(0),
            };
            let term =
                Term::with_end(format!("{key}@{}", fence.create_revision), Some(fence), ended);
            tracing::info!(term = term.id(), value = %self.value, "this server leads");
            return Ok(term);
        }
    }

    fn observe(&self) -> watch::Receiver<Option<String>> {
        self.observed.subscribe()
    }

    async fn resign(&self, term: &Term) -> Result<(), StoreError> {
        term.end("resigned");
        // The keeper revokes the lease, which deletes the key; deleting it here as well makes
        // the hand-over immediate even when the keeper is slow.
        if let Some(f) = term.fence() {
            let txn = etcd_client::Txn::new()
                .when([etcd_client::Compare::create_revision(
                    f.key.clone(),
                    etcd_client::CompareOp::Equal,
                    i64::try_from(f.create_revision).unwrap_or(0),
                )])
                .and_then([etcd_client::TxnOp::delete(f.key.clone(), None)]);
            self.client
                .kv_client()
                .txn(txn)
                .await
                .map_err(|e| self.error("resign leadership", e))?;
        }
        Ok(())
    }
}
