//! An in-memory cache of task definition revisions, of each family's latest ACTIVE
//! revision, and of encoded DescribeTaskDefinition replies by request body, for the hot
//! reads (DescribeTaskDefinition, RunTask, the service controller).
//!
//! Contract: an entry is never newer than the store and never stays older than the store
//! once the write that changed it has been acknowledged by this server or seen on the
//! store's change feed.
//! * This server's own writes of a family call [`RevisionCache::invalidate_family`] after
//!   they commit and before they answer (read-your-writes).
//! * Writes by anyone (another server on a shared store) arrive on the change feed
//!   ([`berth_store::Store::changes`]) and invalidate the revisions and families they touch;
//!   a lagging feed clears everything.
//! * A reader records [`RevisionCache::generation`] before reading the store and inserts only
//!   if no invalidation happened since, so a slow read can never install a stale value after
//!   the invalidation that should have removed it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use berth_model::keys;
use berth_model::records::TaskDefinitionRecord;
use berth_store::{Op, RecvError, Store};

/// At most this many revisions are kept; past it the cache is emptied and refills (task
/// definitions are few and small next to this).
const MAX_REVISIONS: usize = 20_000;

#[derive(Default)]
struct Entries {
    /// Bumped by every invalidation.
    generation: u64,
    revisions: HashMap<(String, i32), Arc<TaskDefinitionRecord>>,
    latest: HashMap<String, i32>,
    /// Request body -> (the family it reads, the encoded reply).
    replies: HashMap<Vec<u8>, (String, Vec<u8>)>,
}

/// See the module header.
#[derive(Default)]
pub struct RevisionCache {
    entries: RwLock<Entries>,
}

impl RevisionCache {
    /// A cache that follows the store's change feed until the store is dropped.
    pub fn follow(store: Arc<dyn Store>) -> Arc<Self> {
        let cache = Arc::new(Self::default());
        let mut changes = store.changes();
        let weak = Arc::downgrade(&cache);
        drop(store);
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(async move {
                loop {
                    let change = changes.recv().await;
                    let Some(cache) = weak.upgrade() else { return };
                    match change {
                        Ok(c) => cache.apply(&c.ops),
                        Err(RecvError::Lagged(_)) => cache.clear(),
                        Err(RecvError::Closed) => return,
                    }
                }
            });
        }
        cache
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current generation, to pass to an insert after a store read.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    pub fn revision(&self, family: &str, revision: i32) -> Option<Arc<TaskDefinitionRecord>> {
        self.read().revisions.get(&(family.to_string(), revision)).cloned()
    }

    pub fn latest(&self, family: &str) -> Option<i32> {
        self.read().latest.get(family).copied()
    }

    /// Caches a revision read from the store when `generation` is still current; returns it.
    pub fn insert_revision(
        &self,
        generation: u64,
        family: &str,
        revision: i32,
        rec: TaskDefinitionRecord,
    ) -> Arc<TaskDefinitionRecord> {
        let rec = Arc::new(rec);
        let mut e = self.write();
        if e.generation == generation {
            if e.revisions.len() >= MAX_REVISIONS {
                e.revisions.clear();
            }
            e.revisions.insert((family.to_string(), revision), rec.clone());
        }
        rec
    }

    /// The encoded reply to a request body, if cached.
    pub fn reply(&self, body: &[u8]) -> Option<Vec<u8>> {
        self.read().replies.get(body).map(|(_, r)| r.clone())
    }

    /// Caches the encoded reply to a request body that reads `family`, when `generation` is
    /// still current.
    pub fn insert_reply(&self, generation: u64, body: &[u8], family: &str, reply: &[u8]) {
        let mut e = self.write();
        if e.generation == generation {
            if e.replies.len() >= MAX_REVISIONS {
                e.replies.clear();
            }
            e.replies.insert(body.to_vec(), (family.to_string(), reply.to_vec()));
        }
    }

    /// Caches a family's latest ACTIVE revision when `generation` is still current.
    pub fn insert_latest(&self, generation: u64, family: &str, revision: i32) {
        let mut e = self.write();
        if e.generation == generation {
            if e.latest.len() >= MAX_REVISIONS {
                e.latest.clear();
            }
            e.latest.insert(family.to_string(), revision);
        }
    }

    /// Forgets everything about one family.
    pub fn invalidate_family(&self, family: &str) {
        let mut e = self.write();
        e.generation += 1;
        e.latest.remove(family);
        e.revisions.retain(|(f, _), _| f != family);
        e.replies.retain(|_, (f, _)| f != family);
    }

    fn clear(&self) {
        let mut e = self.write();
        e.generation += 1;
        e.revisions.clear();
        e.latest.clear();
        e.replies.clear();
    }

    /// Applies one committed transaction's writes.
    fn apply(&self, ops: &[Op]) {
        let families: Vec<&str> = ops
            .iter()
            .filter_map(|op| {
                let key = match op {
                    Op::Put { key, .. } | Op::Delete { key } => key,
                };
                keys::task_definition_family_of(key)
            })
            .collect();
        if families.is_empty() {
            return;
        }
        let mut e = self.write();
        e.generation += 1;
        for f in families {
            e.latest.remove(f);
            e.revisions.retain(|(x, _), _| x != f);
            e.replies.retain(|_, (x, _)| x != f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_wire::ecs::TaskDefinitionStatus;

    fn rec(rev: i32) -> TaskDefinitionRecord {
        TaskDefinitionRecord {
            task_definition: berth_wire::ecs::TaskDefinition {
                revision: Some(rev),
                ..Default::default()
            },
            tags: vec![],
        }
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let c = RevisionCache::default();
        let g = c.generation();
        c.invalidate_family("web");
        c.insert_revision(g, "web", 1, rec(1));
        c.insert_latest(g, "web", 1);
        assert!(c.revision("web", 1).is_none());
        assert!(c.latest("web").is_none());
        let g = c.generation();
        c.insert_revision(g, "web", 1, rec(1));
        c.insert_latest(g, "web", 1);
        assert_eq!(c.revision("web", 1).unwrap().task_definition.revision, Some(1));
        assert_eq!(c.latest("web"), Some(1));
    }

    #[test]
    fn replies_go_with_their_family() {
        let c = RevisionCache::default();
        let g = c.generation();
        c.insert_reply(g, b"{web}", "web", b"reply-web");
        c.insert_reply(g, b"{db}", "db", b"reply-db");
        assert_eq!(c.reply(b"{web}").as_deref(), Some(&b"reply-web"[..]));
        c.invalidate_family("web");
        assert!(c.reply(b"{web}").is_none());
        assert!(c.reply(b"{db}").is_some());
        c.insert_reply(g, b"{web}", "web", b"stale");
        assert!(c.reply(b"{web}").is_none(), "a reply computed before the change is refused");
    }

    #[test]
    fn changes_to_a_family_invalidate_only_that_family() {
        let c = RevisionCache::default();
        let g = c.generation();
        c.insert_revision(g, "web", 1, rec(1));
        c.insert_revision(g, "db", 1, rec(1));
        c.insert_latest(g, "web", 1);
        c.apply(&[Op::Delete {
            key: keys::task_definition_by_status(TaskDefinitionStatus::Active.as_str(), "web", 1),
        }]);
        assert!(c.latest("web").is_none());
        assert!(c.revision("web", 1).is_none());
        assert!(c.revision("db", 1).is_some());
        c.apply(&[Op::Put { key: keys::cluster("x"), value: Default::default() }]);
        assert!(c.revision("db", 1).is_some(), "unrelated writes change nothing");
        c.apply(&[Op::Put { key: keys::task_definition("db", 1), value: Default::default() }]);
        assert!(c.revision("db", 1).is_none());
    }

    #[tokio::test]
    async fn the_change_feed_invalidates() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
        let c = RevisionCache::follow(store.clone());
        let g = c.generation();
        c.insert_latest(g, "web", 1);
        store
            .txn(berth_store::Txn::new().put(
                keys::task_definition_by_status(TaskDefinitionStatus::Active.as_str(), "web", 2),
                Vec::new(),
            ))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while c.latest("web").is_some() {
            assert!(tokio::time::Instant::now() < deadline, "the feed never invalidated");
            tokio::task::yield_now().await;
        }
    }
}
