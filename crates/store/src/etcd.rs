//! The etcd backend of [`Store`]: Berth's records in an etcd cluster (v3 API), so that several
//! servers can share one store (issue #18).
//!
//! Mapping of the contract (see the crate header) onto etcd, and where they differ:
//! * **Keys.** Berth's key `k` is etcd's `PREFIX + k` ([`EtcdConfig::prefix`], `berth/` by
//!   default), so Berth can share a cluster with others; nothing outside the prefix is ever read,
//!   written or watched. Ordering is bytewise in both.
//! * **Revision.** Berth's revision is etcd's cluster revision (the response header's), and a
//!   record's `create_revision`/`mod_revision` are etcd's. etcd bumps it by exactly one per
//!   transaction that changes something, like SQLite. Differences: a fresh etcd starts at
//!   revision 1, not 0 (so the first write gets 2); a transaction that changes nothing (no
//!   operations, or deletes of absent keys only) commits at the current revision without
//!   bumping it (SQLite gives it a revision of its own) and its change is not in the feed;
//!   writes by other users of the same cluster (outside the prefix) bump it too. Revisions stay
//!   strictly increasing per key and across commits, which is what compare-and-set needs.
//! * **Compare-and-set.** [`Compare::ModRevision`] is etcd's `mod_revision == r` compare, and
//!   `0` ("absent") is `create_revision == 0`. The failure branch reads the compared keys in
//!   the same etcd transaction, so a [`TxnOutcome::Conflict`] names the first failing compare
//!   with the key's actual revision at that instant.
//! * **Several writes of one key in one transaction** (refused by etcd as duplicates) are
//!   folded to the last one, which leaves the same state as applying them in order.
//! * **Durability.** etcd answers a transaction after the raft quorum has it in their fsync'd
//!   WAL: an acknowledged write survives `kill -9` of any minority of members.
//! * **Reads** are linearizable (etcd's default). [`Store::get_many`] reads every key at one
//!   revision (one etcd transaction per [`EtcdConfig::max_txn_ops`] keys, all at the first's
//!   revision). A reversed range with a limit makes etcd read the whole range (it sorts before
//!   it truncates): fine for Berth's per-family ranges, not for huge ones.
//! * **Limits.** etcd refuses a transaction larger than its `--max-request-bytes` (1.5 MiB by
//!   default) or with more operations or compares than its `--max-txn-ops` (128 by default);
//!   nothing of it is applied, and Berth reports [`StoreError::TooLarge`] naming the biggest key
//!   and its size, or [`StoreError::TooManyOps`]. Values are never split: run etcd with limits
//!   that fit Berth's largest records (`--max-txn-ops=1024` is ample). The limits are etcd's own
//!   (whatever it runs with); only reads are split, by [`EtcdConfig::max_txn_ops`] keys.
//! * **Space.** When etcd's NOSPACE alarm is raised (its backend quota is exhausted) writes fail
//!   with [`StoreError::EtcdNoSpace`], nothing applied; reads keep working.
//! * **Watch and change feed.** One background task holds an etcd watch over the prefix and
//!   turns each revision's events into one [`Change`] (etcd never splits a revision across
//!   responses), published on the [`Store::changes`] feed and the [`Store::watch`] revision.
//!   When the watch breaks (a member dies, the connection drops) it resumes from the next
//!   revision it has not delivered, so nothing is missed or repeated. When that revision has
//!   been compacted away the missed changes cannot be had: every [`crate::ChangeFeed`]
//!   receiver gets `RecvError::Lagged` and must re-list (as for a lagging receiver), and
//!   the watch restarts from the current revision.
//! * **Read-your-writes through the feed.** Like SQLite (which publishes before it replies),
//!   [`Store::txn`] returns once the feed has delivered its change, so a cache that follows the
//!   feed has it; should the watch be broken, it returns after [`DELIVERY_WAIT`] anyway.
//!
//! A `txn()` whose answer is lost (the connection dropped, a timeout) may or may not have been
//! applied: it returns [`StoreError::Etcd`], and the caller re-reads, exactly as after a
//! dropped SQLite `txn()` future.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare as EtcdCompare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue,
    SortOrder, SortTarget, Txn as EtcdTxn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::sync::{broadcast, watch};

use crate::etcd_tls::EtcdTls;
use crate::view::ChangeFeed;
use crate::{Change, Compare, Op, Range, Record, Revision, Store, StoreError, Txn, TxnOutcome};

/// How long [`Store::txn`] waits for the watch to deliver its own change before returning.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(5);
/// etcd's default `--max-txn-ops`.
pub const ETCD_DEFAULT_MAX_TXN_OPS: usize = 128;
/// How long one KV request may take before it fails (its outcome then unknown).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between attempts to re-establish a broken watch.
const WATCH_RETRY: Duration = Duration::from_millis(200);

/// Where the etcd store is and how it is used: parsed from
/// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, or `etcds://...` for TLS ([`crate::etcd_tls`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://HOST:PORT` of each member (any of them will do; the client balances).
    pub endpoints: Vec<String>,
    /// Prepended to every key: Berth's records live under it (default `berth/`).
    pub prefix: String,
    /// Most keys one [`Store::get_many`] etcd transaction reads (at most etcd's
    /// `--max-txn-ops`; longer lists are read in several, at one revision).
    pub max_txn_ops: usize,
    /// How long to try to reach a member at connect.
    pub connect_timeout: Duration,
    /// TLS to the members (`etcds://`): the CA and an optional client certificate.
    pub tls: Option<EtcdTls>,
}

impl EtcdConfig {
    /// The URL scheme of etcd stores.
    pub const SCHEME: &'static str = "etcd://";
    /// The URL scheme of etcd stores reached over TLS.
    pub const SCHEME_TLS: &'static str = "etcds://";

    /// Whether `url` names an etcd store (`etcd://` or `etcds://`).
    pub fn is_etcd_url(url: &str) -> bool {
        url.starts_with(Self::SCHEME) || url.starts_with(Self::SCHEME_TLS)
    }
    /// The key prefix when the URL names none.
    pub const DEFAULT_PREFIX: &'static str = "berth/";

    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (a `/PREFIX` path sets the key prefix,
    /// a trailing `/` added when missing); `etcds://` for TLS, whose files
    /// [`Self::with_tls_files`] adds.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad = |reason: &str| StoreError::BadUrl { url: url.to_string(), reason: reason.into() };
        let (rest, tls) = match url.strip_prefix(Self::SCHEME_TLS) {
            Some(rest) => (rest, true),
            None => (
                url.strip_prefix(Self::SCHEME).ok_or_else(|| {
                    bad("an etcd store URL starts with etcd:// or, for TLS, etcds:// (etcd://HOST:2379[,HOST:2379...])")
                })?,
                false,
            ),
        };
        let (hosts, path) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let mut endpoints = Vec::new();
        for host in hosts.split(',') {
            let host = host.trim();
            let Some((name, port)) = host.rsplit_once(':') else {
                return Err(bad(&format!(
                    "endpoint {host:?} must be HOST:PORT (etcd's client port is usually 2379)"
                )));
            };
            if name.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(bad(&format!(
                    "endpoint {host:?} must be HOST:PORT with a port from 1 to 65535"
                )));
            }
            endpoints.push(format!("{}://{host}", if tls { "https" } else { "http" }));
        }
        let prefix = match path {
            None | Some("") => Self::DEFAULT_PREFIX.to_string(),
            Some(p) if p.ends_with('/') => p.to_string(),
            Some(p) => format!("{p}/"),
        };
        if prefix.contains('\0') {
            return Err(bad("the key prefix may not contain NUL"));
        }
        Ok(Self {
            endpoints,
            prefix,
            max_txn_ops: ETCD_DEFAULT_MAX_TXN_OPS,
            connect_timeout: Duration::from_secs(5),
            tls: tls.then(EtcdTls::default),
        })
    }

    /// Adds the TLS files of an `etcds://` store: the CA that issued the members'
    /// certificates, and a client certificate with its key (both or neither). Files given for
    /// a plain `etcd://` store, or an incomplete set, are refused ([`EtcdTls::check`]).
    pub fn with_tls_files(
        mut self,
        url: &str,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, StoreError> {
        match &mut self.tls {
            None if ca.is_some() || cert.is_some() || key.is_some() => {
                return Err(StoreError::BadUrl {
                    url: url.to_string(),
                    reason: "TLS files (--etcd-ca, --etcd-cert, --etcd-key) are given but the store URL is plain etcd://: use etcds:// for TLS".into(),
                });
            }
            None => {}
            Some(tls) => {
                *tls = EtcdTls { ca, cert, key };
                tls.check(url)?;
            }
        }
        Ok(self)
    }

    /// The endpoints as one string, for messages.
    pub fn describe(&self) -> String {
        self.endpoints.join(",")
    }

    /// The name of the servers' leader election ([`crate::leadership`]): beside the prefix,
    /// never under it (`berth/` -> `berth.leader`), so that the election's keys are neither in
    /// Berth's records, its watch, nor `berth store copy`.
    pub fn election_name(&self) -> String {
        format!("{}.leader", self.prefix.trim_end_matches('/'))
    }
}

/// Where the watcher stands, shared with the store's handles.
struct Feed {
    changes: broadcast::Sender<Arc<Change>>,
    /// Newest revision known committed (watch events, progress, own commits).
    revisions: watch::Sender<Revision>,
    /// Newest revision whose change the feed has published.
    delivered: watch::Sender<Revision>,
    /// Bumped when changes were lost to a compaction: every feed receiver must re-list.
    resets: watch::Sender<u64>,
}

/// The etcd-backed [`Store`] (see the module header). Dropping it stops its watch.
pub struct EtcdStore {
    client: Client,
    config: EtcdConfig,
    feed: Arc<Feed>,
    watcher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// The smallest byte string greater than every one starting with `prefix` (etcd's prefix end);
/// `\0` ("to the end of the key space") when there is none.
fn etcd_prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn rev(r: i64) -> Revision {
    Revision::try_from(r).unwrap_or(0)
}

fn etcd_rev(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// Folds several writes of one key into the last (etcd refuses duplicates in a transaction);
/// the result leaves the same state as applying `ops` in order.
pub(crate) fn fold_ops(ops: Vec<Op>) -> Vec<Op> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let (Op::Put { key, .. } | Op::Delete { key }) = op;
        last.insert(key.as_str(), i);
    }
    if last.len() == ops.len() {
        return ops;
    }
    let keep: Vec<bool> = (0..ops.len())
        .map(|i| {
            let (Op::Put { key, .. } | Op::Delete { key }) = &ops[i];
            last[key.as_str()] == i
        })
        .collect();
    ops.into_iter().zip(keep).filter_map(|(op, k)| k.then_some(op)).collect()
}

/// The error for a transaction etcd refused as too large: its biggest write, and the total.
pub(crate) fn too_large(txn: &Txn, prefix: &str) -> StoreError {
    let mut total = 0usize;
    let mut biggest: Option<(&str, usize)> = None;
    for op in &txn.ops {
        let (key, size) = match op {
            Op::Put { key, value } => (key, prefix.len() + key.len() + value.len()),
            Op::Delete { key } => (key, prefix.len() + key.len()),
        };
        total += size;
        if biggest.is_none_or(|(_, s)| size > s) {
            biggest = Some((key, size));
        }
    }
    let (key, size) = biggest.unwrap_or(("", 0));
    StoreError::TooLarge { key: key.to_string(), size, total }
}

/// What etcd's refusal of a transaction means, given the transaction.
fn refused(e: StoreError, txn: &Txn, prefix: &str) -> StoreError {
    match e {
        StoreError::TooLarge { .. } => too_large(txn, prefix),
        StoreError::TooManyOps { .. } => {
            StoreError::TooManyOps { ops: txn.ops.len().max(txn.compares.len()) }
        }
        other => other,
    }
}

impl EtcdStore {
    /// Connects to the cluster at `url` (`etcd://HOST:PORT[,...][/PREFIX]`).
    pub async fn connect_url(url: &str) -> Result<Self, StoreError> {
        Self::connect(EtcdConfig::parse(url)?).await
    }

    /// Connects to the cluster, reads its revision and starts following its changes from there.
    pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(tls) = &config.tls {
            options = options.with_tls(tls.options()?);
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| etcd_error(&config, "connect", e))?;
        let (changes, _) = broadcast::channel(crate::CHANGE_BUFFER);
        let mut store = Self {
            client,
            feed: Arc::new(Feed {
                changes,
                revisions: watch::channel(0).0,
                delivered: watch::channel(0).0,
                resets: watch::channel(0).0,
            }),
            config,
            watcher: tokio::spawn(async {}),
        };
        let current = tokio::time::timeout(store.config.connect_timeout, store.current_revision())
            .await
            .map_err(|_| {
                store.error(
                    "connect",
                    etcd_client::Error::Internal(format!(
                        "no member answered within {:?}",
                        store.config.connect_timeout
                    )),
                )
            })?
            .map_err(|e| refused_at_connect(&store.config, e))?;
        store.feed.revisions.send_replace(current);
        store.feed.delivered.send_replace(current);
        store.watcher = tokio::spawn(follow(
            store.client.clone(),
            store.config.clone(),
            Arc::downgrade(&store.feed),
            current + 1,
        ));
        tracing::info!(endpoints = %store.config.describe(), prefix = %store.config.prefix, revision = current, "etcd store connected");
        Ok(store)
    }

    /// A KV client with no message size limits of its own: etcd's are the ones that count
    /// (a range read may well exceed gRPC's default 4 MiB).
    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The etcd client (for [`crate::EtcdLeadership`]).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn error(&self, what: &str, e: etcd_client::Error) -> StoreError {
        etcd_error(&self.config, what, e)
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.config.prefix.len() + key.len());
        k.extend_from_slice(self.config.prefix.as_bytes());
        k.extend_from_slice(key.as_bytes());
        k
    }

    fn record(&self, kv: &KeyValue) -> Result<Record, StoreError> {
        let key = kv.key().strip_prefix(self.config.prefix.as_bytes()).unwrap_or(kv.key());
        let key = std::str::from_utf8(key)
            .map_err(|_| StoreError::NotUtf8 { key: String::from_utf8_lossy(key).into_owned() })?;
        Ok(Record {
            key: key.to_string(),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: rev(kv.create_revision()),
            mod_revision: rev(kv.mod_revision()),
        })
    }

    /// `[start, end)` of Berth's keys as etcd's bounds; `None` when empty.
    fn bounds(&self, start: &str, end: &str) -> Option<(Vec<u8>, Vec<u8>)> {
        if end <= start {
            return None;
        }
        let mut s = self.key(start);
        if s.is_empty() {
            // etcd has no empty key; "\0" is the smallest it has.
            s.push(0);
        }
        Some((s, self.key(end)))
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let read = async {
            let mut attempt = 0;
            loop {
                match current_revision(&self.client, &self.config).await {
                    Err(StoreError::Etcd { source, .. })
                        if never_sent(&source) && attempt < UNSENT_RETRIES =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(self.error(
                "read the revision",
                etcd_client::Error::Internal(format!("no answer within {REQUEST_TIMEOUT:?}")),
            )),
        }
    }

    /// One request with the request timeout; a request that never reached a member (a dead
    /// member's refused connection: the client balances over every endpoint, and may pick it)
    /// is sent again, to another member as the client picks, up to [`UNSENT_RETRIES`] times;
    /// a `read` (no effect) is also sent again after any UNAVAILABLE answer, such as etcd's
    /// "leader changed" while its members elect a new leader.
    async fn call<T, Fut>(
        &self,
        what: &str,
        read: bool,
        mut request: impl FnMut() -> Fut,
    ) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0;
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, request()).await {
                // A write is sent again only if it never left; a read (no effect) also when
                // a member answered UNAVAILABLE (e.g. "leader changed" during an election).
                Ok(Err(e))
                    if (never_sent(&e) || (read && unavailable(&e)))
                        && attempt < UNSENT_RETRIES =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "etcd store: a member is unreachable; sending again");
                    tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                }
                Ok(r) => return r.map_err(|e| self.error(what, e)),
                Err(_) => {
                    return Err(self.error(
                        what,
                        etcd_client::Error::Internal(format!(
                            "no answer within {REQUEST_TIMEOUT:?}"
                        )),
                    ));
                }
            }
        }
    }

    /// Reads `keys` in one etcd transaction, at `at` when given; also returns its revision.
    async fn get_chunk(
        &self,
        keys: &[String],
        at: Option<i64>,
    ) -> Result<(Vec<Record>, i64), StoreError> {
        let ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| {
                let opts = at.map(|r| GetOptions::new().with_revision(r));
                TxnOp::get(self.key(k), opts)
            })
            .collect();
        let txn = EtcdTxn::new().and_then(ops);
        let resp = self
            .call("read keys", true, || {
                let (mut kv, txn) = (self.kv(), txn.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut out = Vec::with_capacity(keys.len());
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                for kv in g.kvs() {
                    out.push(self.record(kv)?);
                }
            }
        }
        Ok((out, at.unwrap_or(revision)))
    }
}

/// How many times a request that never reached a member is sent again ([`EtcdStore::call`]).
const UNSENT_RETRIES: u32 = 12;

/// Whether the request failed before any member got it (its connection was refused), so
/// sending it again cannot apply it twice.
/// gRPC's UNAVAILABLE (14), for whatever reason: retrying is safe only for reads.
fn unavailable(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.code() as i32 == 14)
}

fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            // gRPC's UNAVAILABLE (14), from a connection that could not be made.
            s.code() as i32 == 14 && s.message().contains("connect error")
        }
        _ => false,
    }
}

fn etcd_error(config: &EtcdConfig, what: &str, e: etcd_client::Error) -> StoreError {
    let endpoints = config.describe();
    if let etcd_client::Error::GRpcStatus(status) = &e {
        let m = status.message();
        if m.contains("database space exceeded") || m.contains("NOSPACE") {
            return StoreError::EtcdNoSpace { endpoints, message: m.to_string() };
        }
        if m.contains("too many operations in txn request") {
            return StoreError::TooManyOps { ops: 0 };
        }
        // etcd's own check, or gRPC's (a message over --max-request-bytes plus its margin).
        if m.contains("request is too large") || m.contains("received message larger than max") {
            return StoreError::TooLarge { key: String::new(), size: 0, total: 0 };
        }
    }
    if let Some(tls) = &config.tls {
        let text = error_chain(&e);
        if let Some(hint) = crate::etcd_tls::refusal_hint(&text, tls.has_identity()) {
            return StoreError::EtcdTlsRefused {
                endpoints,
                what: what.to_string(),
                hint,
                detail: text,
            };
        }
    }
    StoreError::Etcd { endpoints, what: what.to_string(), source: Box::new(e) }
}

/// The error of the first request at connect: over TLS, a connection the member closed then
/// is its refusal of the client's certificate ([`crate::etcd_tls::closed_at_connect_hint`]).
fn refused_at_connect(config: &EtcdConfig, e: StoreError) -> StoreError {
    let (Some(tls), StoreError::Etcd { endpoints, what, source }) = (&config.tls, &e) else {
        return e;
    };
    let text = error_chain(source.as_ref());
    match crate::etcd_tls::closed_at_connect_hint(&text, tls.has_identity()) {
        Some(hint) => StoreError::EtcdTlsRefused {
            endpoints: endpoints.clone(),
            what: what.clone(),
            hint,
            detail: text,
        },
        None => e,
    }
}

/// An error and its sources, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let resp = self
            .call("read a key", true, || {
                let (mut kv, key) = (self.kv(), self.key(key));
                async move { kv.get(key, None).await }
            })
            .await?;
        resp.kvs().first().map(|kv| self.record(kv)).transpose()
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        let mut at = None;
        for chunk in keys.chunks(self.config.max_txn_ops.max(1)) {
            let (got, revision) = self.get_chunk(chunk, at).await?;
            at = Some(revision);
            out.extend(got);
        }
        Ok(out)
    }

    async fn range(&self, range: Range) -> Result<Vec<Record>, StoreError> {
        let Some((start, end)) = self.bounds(&range.start, &range.end) else {
            return Ok(Vec::new());
        };
        if range.limit == 0 {
            return Ok(Vec::new());
        }
        let mut opts = GetOptions::new().with_range(end);
        if range.limit != usize::MAX {
            opts = opts.with_limit(i64::try_from(range.limit).unwrap_or(i64::MAX));
        }
        if range.reverse {
            opts = opts.with_sort(SortTarget::Key, SortOrder::Descend);
        }
        let resp = self
            .call("read a range", true, || {
                let (mut kv, start, opts) = (self.kv(), start.clone(), opts.clone());
                async move { kv.get(start, Some(opts)).await }
            })
            .await?;
        resp.kvs().iter().map(|kv| self.record(kv)).collect()
    }

    async fn count(&self, start: &str, end: &str) -> Result<u64, StoreError> {
        let Some((s, e)) = self.bounds(start, end) else { return Ok(0) };
        let opts = GetOptions::new().with_range(e).with_count_only();
        let resp = self
            .call("count a range", true, || {
                let (mut kv, s, opts) = (self.kv(), s.clone(), opts.clone());
                async move { kv.get(s, Some(opts)).await }
            })
            .await?;
        Ok(u64::try_from(resp.count()).unwrap_or(0))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let (fence, term) = crate::leadership::effective_fence(&txn);
        let txn = Txn { compares: txn.compares, ops: fold_ops(txn.ops), fence: None };
        let mut compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|Compare::ModRevision { key, revision }| match revision {
                0 => EtcdCompare::create_revision(self.key(key), CompareOp::Equal, 0),
                r => EtcdCompare::mod_revision(self.key(key), CompareOp::Equal, etcd_rev(*r)),
            })
            .collect();
        // The fence's key is etcd's own (the election's, beside the prefix): not prefixed.
        if let Some(f) = &fence {
            compares.push(EtcdCompare::create_revision(
                f.key.as_bytes(),
                CompareOp::Equal,
                etcd_rev(f.create_revision),
            ));
        }
        let ops: Vec<TxnOp> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value } => TxnOp::put(self.key(key), value.to_vec(), None),
                Op::Delete { key } => TxnOp::delete(self.key(key), None),
            })
            .collect();
        let mut reads: Vec<TxnOp> = txn
            .compares
            .iter()
            .map(|Compare::ModRevision { key, .. }| {
                TxnOp::get(self.key(key), Some(GetOptions::new().with_keys_only()))
            })
            .collect();
        if let Some(f) = &fence {
            reads.push(TxnOp::get(f.key.as_bytes(), Some(GetOptions::new().with_keys_only())));
        }
        let request = EtcdTxn::new().when(compares).and_then(ops).or_else(reads);
        let resp = self
            .call("write", false, || {
                let (mut kv, request) = (self.kv(), request.clone());
                async move { kv.txn(request).await }
            })
            .await
            .map_err(|e| refused(e, &txn, &self.config.prefix))?;
        let revision = resp.header().map_or(0, |h| rev(h.revision()));
        if !resp.succeeded() {
            let responses = resp.op_responses();
            if let Some(f) = &fence {
                let actual = match responses.get(txn.compares.len()) {
                    Some(TxnOpResponse::Get(g)) => {
                        g.kvs().first().map_or(0, |kv| rev(kv.create_revision()))
                    }
                    _ => 0,
                };
                if actual != f.create_revision {
                    return Err(crate::leadership::refused(f, term.as_ref()));
                }
            }
            for (i, Compare::ModRevision { key, revision: expected }) in
                txn.compares.iter().enumerate()
            {
                let actual = match responses.get(i) {
                    Some(TxnOpResponse::Get(g)) => {
                        g.kvs().first().map_or(0, |kv| rev(kv.mod_revision()))
                    }
                    _ => 0,
                };
                if actual != *expected {
                    return Ok(TxnOutcome::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        actual,
                    });
                }
            }
            // Every compare holds by now (a write in between could not make that happen
            // inside one etcd transaction); report the first as failed rather than lie.
            let Compare::ModRevision { key, revision: expected } = txn
                .compares
                .first()
                .cloned()
                .unwrap_or(Compare::ModRevision { key: String::new(), revision: 0 });
            return Ok(TxnOutcome::Conflict { key, expected, actual: expected });
        }
        let changed = resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Put(_) => true,
            TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        });
        if changed {
            self.feed.revisions.send_if_modified(|r| {
                let newer = revision > *r;
                *r = (*r).max(revision);
                newer
            });
            // Return once the feed has published this write (see the module header).
            let mut delivered = self.feed.delivered.subscribe();
            let waited =
                tokio::time::timeout(DELIVERY_WAIT, delivered.wait_for(|d| *d >= revision)).await;
            if waited.is_err() {
                tracing::warn!(
                    revision,
                    "etcd store: the watch has not delivered a committed write yet"
                );
            }
        }
        Ok(TxnOutcome::Committed { revision })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.current_revision().await
    }

    fn watch(&self) -> watch::Receiver<Revision> {
        self.feed.revisions.subscribe()
    }

    fn changes(&self) -> ChangeFeed {
        ChangeFeed::with_resets(self.feed.changes.subscribe(), self.feed.resets.subscribe())
    }
}

/// The changes of one watch response, one per revision, in order, keys without the prefix.
pub(crate) fn changes_of(
    prefix: &str,
    events: impl IntoIterator<Item = (EventType, Vec<u8>, Vec<u8>, i64)>,
) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for (kind, key, value, revision) in events {
        let revision = rev(revision);
        let key = key.strip_prefix(prefix.as_bytes()).unwrap_or(&key);
        let Ok(key) = std::str::from_utf8(key) else {
            tracing::warn!(key = %String::from_utf8_lossy(key), "etcd store: skipping a non-UTF-8 key in the watch");
            continue;
        };
        let op = match kind {
            EventType::Put => Op::Put { key: key.to_string(), value: Bytes::from(value) },
            EventType::Delete => Op::Delete { key: key.to_string() },
        };
        match out.last_mut() {
            Some(c) if c.revision == revision => c.ops.push(op),
            _ => out.push(Change { revision, ops: vec![op] }),
        }
    }
    out
}

/// The watcher: follows every change under the prefix from revision `next`, forever (until the
/// store is dropped), resuming after disconnects and re-listing after compactions.
async fn follow(
    client: Client,
    config: EtcdConfig,
    feed: std::sync::Weak<Feed>,
    mut next: Revision,
) {
    let start = if config.prefix.is_empty() { vec![0] } else { config.prefix.as_bytes().to_vec() };
    let end = etcd_prefix_end(config.prefix.as_bytes());
    let mut failures = 0u32;
    loop {
        let opts = WatchOptions::new()
            .with_range(end.clone())
            .with_start_revision(etcd_rev(next))
            .with_progress_notify();
        let mut stream = match client
            .watch_client()
            .max_decoding_message_size(usize::MAX)
            .watch(start.clone(), Some(opts))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(50) {
                    tracing::warn!(error = %e, endpoints = %config.describe(), "etcd store: cannot watch; retrying");
                }
                tokio::time::sleep(WATCH_RETRY).await;
                continue;
            }
        };
        loop {
            let msg = stream.message().await;
            let Some(feed) = feed.upgrade() else { return };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    tracing::debug!("etcd store: watch stream ended; resuming");
                    break;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "etcd store: watch broke; resuming");
                    break;
                }
            };
            failures = 0;
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    // The changes from `next` are gone: restart from now, tell receivers to
                    // re-list. Take the new start before telling them, so a re-list they make
                    // after the reset is at or after it.
                    let current = match current_revision(&client, &config).await {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(error = %e, "etcd store: cannot read the revision after a compaction");
                            break;
                        }
                    };
                    tracing::warn!(
                        missed_from = next,
                        compacted_to = resp.compact_revision(),
                        resume_at = current + 1,
                        "etcd store: the watch fell behind etcd's compaction; followers re-list"
                    );
                    next = current + 1;
                    feed.resets.send_modify(|n| *n += 1);
                    feed.revisions.send_if_modified(|r| {
                        let newer = current > *r;
                        *r = (*r).max(current);
                        newer
                    });
                    feed.delivered.send_if_modified(|r| {
                        let newer = current > *r;
                        *r = (*r).max(current);
                        newer
                    });
                } else {
                    tracing::warn!(reason = %resp.cancel_reason(), "etcd store: watch canceled; resuming");
                }
                break;
            }
            let events = resp.events().iter().filter_map(|e| {
                let kv = e.kv()?;
                Some((e.event_type(), kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            });
            let mut newest = None;
            for change in changes_of(&config.prefix, events) {
                if change.revision < next {
                    continue; // Already delivered before a resume.
                }
                next = change.revision + 1;
                newest = Some(change.revision);
                // No receiver is not an error: nobody follows.
                let _ = feed.changes.send(Arc::new(change));
            }
            // A progress notification: every revision up to the header's is delivered.
            let through = match (newest, resp.events().is_empty(), resp.header()) {
                (Some(r), _, _) => Some(r),
                (None, true, Some(h)) if !resp.created() => Some(rev(h.revision())),
                _ => None,
            };
            if let Some(r) = through {
                next = next.max(r + 1);
                for tx in [&feed.revisions, &feed.delivered] {
                    tx.send_if_modified(|v| {
                        let newer = r > *v;
                        *v = (*v).max(r);
                        newer
                    });
                }
            }
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

async fn current_revision(client: &Client, config: &EtcdConfig) -> Result<Revision, StoreError> {
    let key = if config.prefix.is_empty() { vec![0] } else { config.prefix.as_bytes().to_vec() };
    let opts = GetOptions::new().with_count_only();
    let resp = client
        .kv_client()
        .get(key, Some(opts))
        .await
        .map_err(|e| etcd_error(config, "read the revision", e))?;
    Ok(resp.header().map_or(0, |h| rev(h.revision())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_parse_or_name_the_problem() {
        let c = EtcdConfig::parse("etcd://10.0.0.1:2379,etcd2:2380").unwrap();
        assert_eq!(c.endpoints, ["http://10.0.0.1:2379", "http://etcd2:2380"]);
        assert_eq!(c.prefix, "berth/");
        assert_eq!(EtcdConfig::parse("etcd://h:1/prod").unwrap().prefix, "prod/");
        assert_eq!(EtcdConfig::parse("etcd://h:1/a/b/").unwrap().prefix, "a/b/");
        assert_eq!(EtcdConfig::parse("etcd://h:1/").unwrap().prefix, "berth/");
        for (bad, says) in [
            ("http://h:2379", "etcd://"),
            ("etcd://h", "HOST:PORT"),
            ("etcd://h:0", "port"),
            ("etcd://h:x", "port"),
            ("etcd://:2379", "port"),
            ("etcd://h:1,,h:2", "HOST:PORT"),
        ] {
            let e = EtcdConfig::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn prefix_ends_are_etcds() {
        assert_eq!(etcd_prefix_end(b"berth/"), b"berth0");
        assert_eq!(etcd_prefix_end(b"a\xff"), b"b");
        assert_eq!(etcd_prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(etcd_prefix_end(b""), b"\0");
    }

    #[test]
    fn several_writes_of_a_key_fold_to_the_last() {
        let put = |k: &str, v: &str| Op::Put { key: k.into(), value: Bytes::from(v.to_string()) };
        let del = |k: &str| Op::Delete { key: k.into() };
        let cases: Vec<(Vec<Op>, Vec<Op>)> = vec![
            (vec![put("a", "1"), put("b", "2")], vec![put("a", "1"), put("b", "2")]),
            (vec![put("a", "1"), put("a", "2")], vec![put("a", "2")]),
            (vec![put("a", "1"), del("a"), put("b", "1")], vec![del("a"), put("b", "1")]),
            (vec![del("a"), put("b", "1"), put("a", "3")], vec![put("b", "1"), put("a", "3")]),
        ];
        for (ops, want) in cases {
            assert_eq!(fold_ops(ops.clone()), want, "{ops:?}");
        }
    }

    #[test]
    fn refused_transactions_name_the_biggest_key() {
        let big = Txn::new().put("small", "x").put("ecs/big", vec![0u8; 2 << 20]).delete("gone");
        let e =
            refused(StoreError::TooLarge { key: String::new(), size: 0, total: 0 }, &big, "berth/");
        let m = e.to_string();
        assert!(m.contains("\"ecs/big\" (2097165 bytes") && m.contains("2097187 bytes in"), "{m}");
        let e = refused(StoreError::TooManyOps { ops: 0 }, &big, "");
        assert!(matches!(e, StoreError::TooManyOps { ops: 3 }), "{e:?}");
        let other = StoreError::NotUtf8 { key: "k".into() };
        assert!(matches!(refused(other, &big, ""), StoreError::NotUtf8 { .. }));
    }

    #[test]
    fn watch_events_group_by_revision_and_lose_the_prefix() {
        let ev = |t, k: &str, v: &str, r| (t, k.as_bytes().to_vec(), v.as_bytes().to_vec(), r);
        let got = changes_of(
            "p/",
            [
                ev(EventType::Put, "p/a", "1", 5),
                ev(EventType::Delete, "p/b", "", 5),
                ev(EventType::Put, "p/c", "2", 6),
            ],
        );
        assert_eq!(
            got,
            [
                Change {
                    revision: 5,
                    ops: vec![
                        Op::Put { key: "a".into(), value: Bytes::from_static(b"1") },
                        Op::Delete { key: "b".into() }
                    ]
                },
                Change {
                    revision: 6,
                    ops: vec![Op::Put { key: "c".into(), value: Bytes::from_static(b"2") }]
                },
            ]
        );
    }
}
