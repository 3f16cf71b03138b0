//! Key-space views of a store: one [`Store`] that sees part of another's keys, under names of
//! its own. Berth keeps each AWS region's records apart this way: the default region's under
//! the keys it always had, every other region's under `regions/<region>/`.
//!
//! A view is a [`KeySpace`]: a `prefix` added to every key on the way in and stripped on the
//! way out, and `hidden` prefixes (of the view's own names) it never sees. The invariants:
//! * a view reads, counts, writes, compares and is told of exactly the inner keys
//!   `prefix + k` where `k` starts with none of `hidden`; nothing it does can reach another
//!   key (a write naming a hidden key is refused with [`StoreError::KeyOutsideView`], a read
//!   of one finds nothing);
//! * its change feed ([`Store::changes`]) carries only its own keys, stripped; a transaction
//!   that wrote none of them is not delivered; lag is the inner feed's, so the contract of
//!   [`Store::changes`] holds unchanged;
//! * revisions are the inner store's (one global revision; a view's records keep theirs);
//!   its [`Store::watch`] moves only when a transaction touching the view commits.
//!
//! [`child_segments`] lists which views hold data (the regions in use) with one bounded read
//! per segment, so no separate index has to be kept in step.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{broadcast, watch};

use crate::{
    Change, Compare, Op, Range, Record, RecvError, Revision, Store, StoreError, Txn, TxnOutcome,
    prefix_end,
};

/// Which of the inner store's keys a view sees, and under which names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    prefix: String,
    hidden: Vec<String>,
}

impl KeySpace {
    /// The keys under `prefix`, named without it (`prefix` should end with `/`).
    pub fn prefixed(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into(), hidden: vec![] }
    }

    /// Every key except those under each of `hidden`, under their own names.
    pub fn excluding(hidden: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut hidden: Vec<String> = hidden.into_iter().map(Into::into).collect();
        hidden.sort();
        hidden.dedup();
        Self { prefix: String::new(), hidden }
    }

    /// The inner key of the view's `key`; `None` when the view cannot see it.
    pub fn to_inner(&self, key: &str) -> Option<String> {
        self.visible(key).then(|| format!("{}{key}", self.prefix))
    }

    /// The view's name of an inner key; `None` when the view cannot see it.
    pub fn to_view<'a>(&self, inner: &'a str) -> Option<&'a str> {
        inner.strip_prefix(self.prefix.as_str()).filter(|k| self.visible(k))
    }

    fn visible(&self, key: &str) -> bool {
        !self.hidden.iter().any(|h| key.starts_with(h.as_str()))
    }

    /// `[start, end)` of the view's names less the hidden ranges, in key order, as inner
    /// bounds.
    fn intervals(&self, start: &str, end: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut from = start.to_string();
        for h in &self.hidden {
            let h_end = prefix_end(h);
            if h.as_str() >= end {
                break;
            }
            if from.as_str() < h.as_str() {
                out.push((from.clone(), h.clone()));
            }
            if from < h_end {
                from = h_end;
            }
        }
        if from.as_str() < end {
            out.push((from, end.to_string()));
        }
        out.into_iter()
            .map(|(s, e)| (format!("{}{s}", self.prefix), format!("{}{e}", self.prefix)))
            .collect()
    }

    /// The view's part of one committed transaction: `None` when it wrote none of its keys.
    pub fn change(&self, c: &Arc<Change>) -> Option<Arc<Change>> {
        if self.prefix.is_empty() && self.hidden.is_empty() {
            return Some(c.clone());
        }
        let key_of = |op: &Op| match op {
            Op::Put { key, .. } | Op::Delete { key } => self.to_view(key).is_some(),
        };
        if self.prefix.is_empty() && c.ops.iter().all(key_of) {
            // Nothing hidden and nothing to strip: the change as it is.
            return Some(c.clone());
        }
        let ops: Vec<Op> = c
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Put { key, value } => {
                    self.to_view(key).map(|k| Op::Put { key: k.to_string(), value: value.clone() })
                }
                Op::Delete { key } => self.to_view(key).map(|k| Op::Delete { key: k.to_string() }),
            })
            .collect();
        (!ops.is_empty()).then(|| Arc::new(Change { revision: c.revision, ops }))
    }
}

/// A [`Store`] over a [`KeySpace`] of another store (see the module header).
pub struct View {
    inner: Arc<dyn Store>,
    space: Arc<KeySpace>,
    /// The newest revision of a transaction that touched the view.
    revisions: Arc<watch::Sender<Revision>>,
}

impl View {
    /// A view of `inner`'s `space`. Inside a Tokio runtime, its watch also follows writes made
    /// to its keys through other handles (another view of the same space), until the view
    /// is dropped.
    pub fn new(inner: Arc<dyn Store>, space: KeySpace) -> Self {
        let start = *inner.watch().borrow();
        let revisions = Arc::new(watch::channel(start).0);
        let space = Arc::new(space);
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut changes = inner.changes();
            let space = space.clone();
            let weak = Arc::downgrade(&revisions);
            let inner_watch = inner.watch();
            tokio::spawn(async move {
                loop {
                    let change = changes.recv().await;
                    let Some(tx) = weak.upgrade() else { return };
                    match change {
                        Ok(c) => {
                            if let Some(c) = space.change(&c) {
                                bump(&tx, c.revision);
                            }
                        }
                        // Missed changes may have been the view's: wake its watchers.
                        Err(RecvError::Lagged(_)) => bump(&tx, *inner_watch.borrow()),
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        Self { inner, space, revisions }
    }

    /// The key space this view sees.
    pub fn space(&self) -> &KeySpace {
        &self.space
    }

    fn inner_key(&self, key: &str) -> Result<String, StoreError> {
        self.space.to_inner(key).ok_or_else(|| StoreError::KeyOutsideView { key: key.into() })
    }

    fn outer(&self, mut r: Record) -> Option<Record> {
        let key = self.space.to_view(&r.key)?.to_string();
        r.key = key;
        Some(r)
    }
}

fn bump(tx: &watch::Sender<Revision>, rev: Revision) {
    tx.send_if_modified(|r| {
        let newer = rev > *r;
        if newer {
            *r = rev;
        }
        newer
    });
}

#[async_trait]
impl Store for View {
    async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let Some(inner) = self.space.to_inner(key) else { return Ok(None) };
        Ok(self.inner.get(&inner).await?.and_then(|r| self.outer(r)))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Record>, StoreError> {
        let inner: Vec<String> = keys.iter().filter_map(|k| self.space.to_inner(k)).collect();
        Ok(self.inner.get_many(&inner).await?.into_iter().filter_map(|r| self.outer(r)).collect())
    }

    async fn range(&self, range: Range) -> Result<Vec<Record>, StoreError> {
        let mut parts = self.space.intervals(&range.start, &range.end);
        if range.reverse {
            parts.reverse();
        }
        let mut out = Vec::new();
        for (start, end) in parts {
            let left = range.limit.saturating_sub(out.len());
            if left == 0 {
                break;
            }
            let got =
                self.inner.range(Range { start, end, limit: left, reverse: range.reverse }).await?;
            out.extend(got.into_iter().filter_map(|r| self.outer(r)));
        }
        Ok(out)
    }

    async fn count(&self, start: &str, end: &str) -> Result<u64, StoreError> {
        let mut n = 0;
        for (s, e) in self.space.intervals(start, end) {
            n += self.inner.count(&s, &e).await?;
        }
        Ok(n)
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let mut inner = Txn::new();
        // The fence names a key of the backend itself: passed through untranslated.
        inner.fence = txn.fence;
        for Compare::ModRevision { key, revision } in txn.compares {
            inner.compares.push(Compare::ModRevision { key: self.inner_key(&key)?, revision });
        }
        for op in txn.ops {
            inner.ops.push(match op {
                Op::Put { key, value } => Op::Put { key: self.inner_key(&key)?, value },
                Op::Delete { key } => Op::Delete { key: self.inner_key(&key)? },
            });
        }
        let touches = !inner.ops.is_empty();
        let outcome = self.inner.txn(inner).await?;
        Ok(match outcome {
            TxnOutcome::Committed { revision } => {
                if touches {
                    bump(&self.revisions, revision);
                }
                TxnOutcome::Committed { revision }
            }
            TxnOutcome::Conflict { key, expected, actual } => {
                let key = self.space.to_view(&key).map(str::to_string).unwrap_or(key);
                TxnOutcome::Conflict { key, expected, actual }
            }
        })
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }

    fn watch(&self) -> watch::Receiver<Revision> {
        self.revisions.subscribe()
    }

    fn changes(&self) -> ChangeFeed {
        self.inner.changes().within(self.space.clone())
    }
}

/// The distinct first segments of the keys under `parent` (`regions/` → `["eu-west-1",
/// ...]`), with one read of at most one key per segment found.
pub async fn child_segments(store: &dyn Store, parent: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let end = prefix_end(parent);
    let mut from = parent.to_string();
    loop {
        let got = store.range(Range { start: from, end: end.clone(), limit: 1, reverse: false });
        let Some(r) = got.await?.into_iter().next() else { return Ok(out) };
        let rest = &r.key[parent.len()..];
        let segment = rest.split_once('/').map_or(rest, |(s, _)| s).to_string();
        from = prefix_end(&format!("{parent}{segment}/"));
        if !rest.contains('/') {
            // A key right under `parent` (no segment of its own): skip just it.
            from = format!("{}\0", r.key);
        } else {
            out.push(segment);
        }
    }
}

/// Receives the change feed of a store or view ([`Store::changes`]).
pub struct ChangeFeed {
    rx: broadcast::Receiver<Arc<Change>>,
    /// The views it is seen through, innermost first.
    spaces: Vec<Arc<KeySpace>>,
    /// Moves when the store lost changes it cannot deliver (etcd: a compaction overtook its
    /// watch): the receiver then gets `Lagged` and must rebuild, like a lagging receiver.
    resets: Option<watch::Receiver<u64>>,
}

impl ChangeFeed {
    pub(crate) fn new(rx: broadcast::Receiver<Arc<Change>>) -> Self {
        Self { rx, spaces: Vec::new(), resets: None }
    }

    /// A feed whose store may lose changes: each move of `resets` is a `Lagged` to the
    /// receiver, and what was queued before it is dropped (the rebuild's read covers it).
    pub(crate) fn with_resets(
        rx: broadcast::Receiver<Arc<Change>>,
        mut resets: watch::Receiver<u64>,
    ) -> Self {
        resets.mark_unchanged();
        Self { rx, spaces: Vec::new(), resets: Some(resets) }
    }

    /// True (once per move) when the store reset the feed; the queue is then dropped.
    fn was_reset(&mut self) -> bool {
        let Some(r) = &mut self.resets else { return false };
        match r.has_changed() {
            Ok(true) => {
                r.mark_unchanged();
                self.rx = self.rx.resubscribe();
                true
            }
            Ok(false) => false,
            Err(_) => {
                self.resets = None;
                false
            }
        }
    }

    /// The same feed seen through `space` (a key space of the store this feed is of).
    pub(crate) fn within(mut self, space: Arc<KeySpace>) -> Self {
        self.spaces.push(space);
        self
    }

    fn filter(&self, mut c: Arc<Change>) -> Option<Arc<Change>> {
        for s in &self.spaces {
            c = s.change(&c)?;
        }
        Some(c)
    }

    /// The next committed transaction that wrote keys of this store, in revision order.
    /// `Lagged`: this receiver fell behind and must rebuild from a fresh read.
    pub async fn recv(&mut self) -> Result<Arc<Change>, RecvError> {
        loop {
            if self.was_reset() {
                return Err(RecvError::Lagged(0));
            }
            let c = match &mut self.resets {
                None => self.rx.recv().await?,
                Some(resets) => {
                    let reset = tokio::select! {
                        c = self.rx.recv() => Ok(c?),
                        changed = resets.changed() => Err(changed.is_ok()),
                    };
                    match reset {
                        Ok(c) => c,
                        Err(true) => {
                            self.rx = self.rx.resubscribe();
                            return Err(RecvError::Lagged(0));
                        }
                        Err(false) => {
                            // The store is gone; what is queued is still delivered.
                            self.resets = None;
                            continue;
                        }
                    }
                }
            };
            if let Some(c) = self.filter(c) {
                return Ok(c);
            }
        }
    }

    /// [`Self::recv`] without waiting.
    pub fn try_recv(&mut self) -> Result<Arc<Change>, broadcast::error::TryRecvError> {
        loop {
            if self.was_reset() {
                return Err(broadcast::error::TryRecvError::Lagged(0));
            }
            let c = self.rx.try_recv()?;
            if let Some(c) = self.filter(c) {
                return Ok(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        base: Arc<dyn Store>,
        default: View,
        eu: View,
        ap: View,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        Fixture {
            default: View::new(base.clone(), KeySpace::excluding(["regions/"])),
            eu: View::new(base.clone(), KeySpace::prefixed("regions/eu-west-1/")),
            ap: View::new(base.clone(), KeySpace::prefixed("regions/ap-southeast-1/")),
            base,
            _dir: dir,
        }
    }

    async fn put(s: &dyn Store, key: &str, value: &str) -> Revision {
        match s.txn(Txn::new().put(key, value.to_string())).await.unwrap() {
            TxnOutcome::Committed { revision } => revision,
            other => panic!("{other:?}"),
        }
    }

    fn keys(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.key.as_str()).collect()
    }

    #[tokio::test]
    async fn views_read_and_count_only_their_own_keys() {
        let f = fixture();
        put(&f.default, "ecs/clusters/a", "default").await;
        put(&f.eu, "ecs/clusters/a", "eu").await;
        put(&f.eu, "ecs/clusters/b", "eu").await;
        put(&f.ap, "ecs/clusters/c", "ap").await;
        put(&*f.base, "iam/access-keys/K", "global").await;
        let all = f.base.range(Range::prefix("")).await.unwrap();
        assert_eq!(
            keys(&all),
            [
                "ecs/clusters/a",
                "iam/access-keys/K",
                "regions/ap-southeast-1/ecs/clusters/c",
                "regions/eu-west-1/ecs/clusters/a",
                "regions/eu-west-1/ecs/clusters/b",
            ]
        );
        let cases: [(&View, &[&str]); 3] = [
            (&f.default, &["ecs/clusters/a"]),
            (&f.eu, &["ecs/clusters/a", "ecs/clusters/b"]),
            (&f.ap, &["ecs/clusters/c"]),
        ];
        for (view, want) in cases {
            let got = view.range(Range::prefix("ecs/clusters/")).await.unwrap();
            assert_eq!(keys(&got), want, "{:?}", view.space());
            let n = view.count("ecs/clusters/", &prefix_end("ecs/clusters/")).await.unwrap();
            assert_eq!(n, want.len() as u64);
            let many = ["ecs/clusters/a", "ecs/clusters/b", "ecs/clusters/c"].map(String::from);
            assert_eq!(keys(&view.get_many(&many).await.unwrap()), want);
        }
        assert_eq!(f.eu.get("ecs/clusters/a").await.unwrap().unwrap().value, "eu");
        assert_eq!(f.default.get("ecs/clusters/a").await.unwrap().unwrap().value, "default");
        assert!(f.ap.get("ecs/clusters/a").await.unwrap().is_none());
        // The default view reads past the other regions' keys, in both directions and with
        // limits, and never finds one by name.
        let whole = f.default.range(Range::prefix("")).await.unwrap();
        assert_eq!(keys(&whole), ["ecs/clusters/a", "iam/access-keys/K"]);
        let last = f.default.range(Range::prefix("").reversed().limit(1)).await.unwrap();
        assert_eq!(keys(&last), ["iam/access-keys/K"]);
        assert_eq!(f.default.count("", &prefix_end("")).await.unwrap(), 2);
        assert!(f.default.get("regions/eu-west-1/ecs/clusters/a").await.unwrap().is_none());
        let prefixed = ["regions/eu-west-1/ecs/clusters/a".to_string()];
        assert!(f.default.get_many(&prefixed).await.unwrap().is_empty());
        // A region view has no way out of its prefix: its names are all under it.
        assert!(f.eu.get("iam/access-keys/K").await.unwrap().is_none());
        assert!(f.eu.range(Range::prefix("")).await.unwrap().len() == 2);
    }

    #[tokio::test]
    async fn transactions_compare_and_write_inside_the_view_only() {
        let f = fixture();
        let r = put(&f.eu, "ecs/clusters/a", "1").await;
        // The same name in the default view is another key: absent there.
        let created =
            f.default.txn(Txn::new().when("ecs/clusters/a", 0).put("ecs/clusters/a", "d"));
        assert!(created.await.unwrap().committed());
        let stale = f.eu.txn(Txn::new().when("ecs/clusters/a", r - 1).put("ecs/clusters/a", "2"));
        match stale.await.unwrap() {
            TxnOutcome::Conflict { key, expected, actual } => {
                assert_eq!((key.as_str(), expected, actual), ("ecs/clusters/a", r - 1, r));
            }
            other => panic!("{other:?}"),
        }
        let ok = f.eu.txn(Txn::new().when("ecs/clusters/a", r).delete("ecs/clusters/a"));
        assert!(ok.await.unwrap().committed());
        assert!(f.eu.get("ecs/clusters/a").await.unwrap().is_none());
        assert_eq!(f.default.get("ecs/clusters/a").await.unwrap().unwrap().value, "d");
        // The default view cannot write, compare or delete another region's key.
        let hidden = "regions/eu-west-1/ecs/clusters/x";
        for txn in [
            Txn::new().put(hidden, "x"),
            Txn::new().delete(hidden),
            Txn::new().when(hidden, 0).put("ecs/ok", "x"),
        ] {
            let err = f.default.txn(txn).await.unwrap_err();
            assert!(matches!(err, StoreError::KeyOutsideView { .. }), "{err}");
        }
        assert!(f.base.get(hidden).await.unwrap().is_none());
        assert!(f.base.get("ecs/ok").await.unwrap().is_none(), "nothing of a refused txn");
    }

    #[tokio::test]
    async fn change_feeds_carry_only_the_views_own_keys_stripped() {
        let f = fixture();
        let mut d = f.default.changes();
        let mut eu = f.eu.changes();
        let mut ap = f.ap.changes();
        let r1 = put(&f.eu, "ecs/tasks/t1", "eu").await;
        let r2 = put(&f.default, "ecs/tasks/t2", "d").await;
        let r3 = put(&*f.base, "iam/access-keys/K", "global").await;
        // One transaction over two spaces (only the base store can write it).
        let both = Txn::new().put("regions/ap-southeast-1/ecs/x", "ap").put("ecs/y", "d");
        let TxnOutcome::Committed { revision: r4 } = f.base.txn(both).await.unwrap() else {
            panic!()
        };
        let got = eu.recv().await.unwrap();
        assert_eq!(got.revision, r1);
        assert_eq!(got.ops, vec![Op::Put { key: "ecs/tasks/t1".into(), value: "eu".into() }]);
        assert!(eu.try_recv().is_err(), "nothing else was eu-west-1's");
        let got = d.recv().await.unwrap();
        assert_eq!(
            (got.revision, &got.ops[..]),
            (r2, &[Op::Put { key: "ecs/tasks/t2".into(), value: "d".into() }][..])
        );
        assert_eq!(
            d.recv().await.unwrap().revision,
            r3,
            "global keys are outside no view of the default's"
        );
        let got = d.recv().await.unwrap();
        assert_eq!(
            (got.revision, &got.ops[..]),
            (r4, &[Op::Put { key: "ecs/y".into(), value: "d".into() }][..])
        );
        assert!(d.try_recv().is_err());
        let got = ap.recv().await.unwrap();
        assert_eq!(
            (got.revision, &got.ops[..]),
            (r4, &[Op::Put { key: "ecs/x".into(), value: "ap".into() }][..])
        );
        assert!(ap.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_views_watch_moves_only_for_its_own_commits() {
        let f = fixture();
        let mut eu = f.eu.watch();
        let mut d = f.default.watch();
        let r = put(&f.eu, "ecs/a", "1").await;
        tokio::time::timeout(std::time::Duration::from_secs(5), eu.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*eu.borrow_and_update(), r);
        assert!(!d.has_changed().unwrap(), "the default region saw nothing of eu-west-1's");
        // A write to eu-west-1's keys made through another handle wakes it too.
        let other = View::new(f.base.clone(), KeySpace::prefixed("regions/eu-west-1/"));
        let r2 = put(&other, "ecs/b", "2").await;
        tokio::time::timeout(std::time::Duration::from_secs(5), eu.wait_for(|v| *v == r2))
            .await
            .unwrap()
            .unwrap();
        let r3 = put(&f.default, "ecs/c", "3").await;
        tokio::time::timeout(std::time::Duration::from_secs(5), d.wait_for(|v| *v == r3))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*f.eu.watch().borrow(), r2);
    }

    #[tokio::test]
    async fn child_segments_list_the_regions_in_use() {
        let f = fixture();
        assert!(child_segments(&*f.base, "regions/").await.unwrap().is_empty());
        put(&f.default, "ecs/clusters/a", "d").await;
        put(&f.eu, "ecs/clusters/a", "1").await;
        put(&f.eu, "ecs/clusters/b", "1").await;
        put(&f.ap, "ecs/tasks/t", "1").await;
        put(&*f.base, "regions/stray", "no segment").await;
        let got = child_segments(&*f.base, "regions/").await.unwrap();
        assert_eq!(got, ["ap-southeast-1", "eu-west-1"]);
    }

    #[tokio::test]
    async fn a_reset_feed_lags_once_and_drops_what_was_queued() {
        let (tx, _) = broadcast::channel(16);
        let (resets, _) = watch::channel(0u64);
        let change =
            |r| Arc::new(Change { revision: r, ops: vec![Op::Delete { key: "k".into() }] });
        let mut feed = ChangeFeed::with_resets(tx.subscribe(), resets.subscribe());
        tx.send(change(1)).unwrap();
        assert_eq!(feed.recv().await.unwrap().revision, 1);
        tx.send(change(2)).unwrap();
        resets.send_modify(|n| *n += 1);
        assert!(matches!(feed.recv().await, Err(RecvError::Lagged(_))));
        assert!(feed.try_recv().is_err(), "what was queued before the reset is dropped");
        tx.send(change(3)).unwrap();
        assert_eq!(feed.recv().await.unwrap().revision, 3);
        // A reset while waiting wakes the receiver.
        let waiting = tokio::spawn(async move { feed.recv().await.map(|c| c.revision) });
        tokio::task::yield_now().await;
        resets.send_modify(|n| *n += 1);
        assert!(matches!(waiting.await.unwrap(), Err(RecvError::Lagged(_))));
        // try_recv sees resets too; a feed whose store is gone still drains its queue.
        let mut feed = ChangeFeed::with_resets(tx.subscribe(), resets.subscribe());
        resets.send_modify(|n| *n += 1);
        assert!(matches!(feed.try_recv(), Err(broadcast::error::TryRecvError::Lagged(_))));
        tx.send(change(4)).unwrap();
        drop(resets);
        assert_eq!(feed.recv().await.unwrap().revision, 4);
    }

    #[test]
    fn key_spaces_map_names_both_ways() {
        let d = KeySpace::excluding(["regions/"]);
        let eu = KeySpace::prefixed("regions/eu-west-1/");
        assert_eq!(d.to_inner("ecs/a").as_deref(), Some("ecs/a"));
        assert_eq!(d.to_inner("regions/x/ecs/a"), None);
        assert_eq!(d.to_view("regions/eu-west-1/ecs/a"), None);
        assert_eq!(eu.to_inner("ecs/a").as_deref(), Some("regions/eu-west-1/ecs/a"));
        assert_eq!(eu.to_view("regions/eu-west-1/ecs/a"), Some("ecs/a"));
        assert_eq!(eu.to_view("regions/eu-west-10/ecs/a"), None);
        assert_eq!(eu.to_view("ecs/a"), None);
        // Ranges are cut around what is hidden.
        type Bounds<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(&str, &str, Bounds)] = &[
            ("a", "b", &[("a", "b")]),
            ("ecs/", "z", &[("ecs/", "regions/"), ("regions/\u{10FFFF}", "z")]),
            ("regions/a", "regions/b", &[]),
            ("regions/a", "s", &[("regions/\u{10FFFF}", "s")]),
            ("s", "t", &[("s", "t")]),
        ];
        for (start, end, want) in cases {
            let got = d.intervals(start, end);
            let want: Vec<_> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
            assert_eq!(got, want, "[{start}, {end})");
        }
        assert_eq!(
            eu.intervals("ecs/", "ecs/\u{10FFFF}"),
            [(
                "regions/eu-west-1/ecs/".to_string(),
                "regions/eu-west-1/ecs/\u{10FFFF}".to_string()
            )]
        );
    }
}
