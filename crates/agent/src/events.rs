//! Container events, routed to the task actors: the agent follows the runtime's event stream
//! ([`Runtime::events`]) for the containers it labelled, and tells the actor that owns a
//! container that something changed about it, so the actor re-reads it instead of polling.
//!
//! Contract:
//! * Routing only marks: a [`Router`] never reads nor writes a task's state. Each actor owns
//!   a [`Watch`] (its inbox), registers the ids of its containers on it, and re-reads the
//!   containers [`Watch::changed`] names; the actor stays the only writer of its task.
//! * Level-triggered across reconnects: [`follow`] subscribes, and on every
//!   [`RuntimeEvent::Subscribed`] (the first and each after a lost stream) marks every
//!   registered container of every actor as changed, so every one is re-read after the
//!   subscription is in effect; nothing that changed while the stream was down is missed.
//! * Marks coalesce: an inbox holds a set of changed ids (or "all"), never a queue, so a burst
//!   of events costs one re-read per container, and a slow actor cannot make the router block
//!   or grow without bound.
//! * Events about containers no actor registered are dropped (their actor re-reads them itself
//!   after creating or adopting them, and orphans are found by listing).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_runtime::{Runtime, RuntimeEvent};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// Reconnect back-off after a lost event stream: from this...
const RECONNECT_MIN: Duration = Duration::from_millis(200);
/// ...doubling up to this.
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// A stream that lived this long resets the back-off.
const STABLE_STREAM: Duration = Duration::from_secs(10);

/// What changed since an actor last looked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    /// Everything may have changed (the event stream (re)subscribed): re-read every container.
    pub all: bool,
    /// Containers an event named.
    pub ids: BTreeSet<String>,
}

impl Changed {
    /// Whether container `id` must be re-read.
    pub fn concerns(&self, id: &str) -> bool {
        self.all || self.ids.contains(id)
    }
}

/// One actor's inbox.
#[derive(Debug, Default)]
struct Inbox {
    changed: Mutex<Changed>,
    notify: Notify,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Changed> {
        self.changed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, id: Option<&str>) {
        {
            let mut c = self.lock();
            match id {
                Some(id) => {
                    c.ids.insert(id.to_string());
                }
                None => c.all = true,
            }
        }
        // Stores a permit when the actor is not waiting: it sees the mark on its next wait.
        self.notify.notify_one();
    }

    fn take(&self) -> Changed {
        std::mem::take(&mut *self.lock())
    }
}

/// Routes container events to the actors' inboxes. Cloning shares the routes.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Arc<Mutex<HashMap<String, Arc<Inbox>>>>,
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Inbox>>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new inbox, for one actor.
    pub fn watch(&self) -> Watch {
        Watch { router: self.clone(), inbox: Arc::new(Inbox::default()), ids: Vec::new() }
    }

    /// Marks container `id` changed for the actor that registered it, if any.
    pub fn route(&self, id: &str) {
        let inbox = self.lock().get(id).cloned();
        if let Some(inbox) = inbox {
            inbox.mark(Some(id));
        }
    }

    /// Marks every registered container changed (after a (re)subscription).
    pub fn resync(&self) {
        let inboxes: Vec<Arc<Inbox>> = self.lock().values().cloned().collect();
        for inbox in inboxes {
            inbox.mark(None);
        }
    }

    /// How many containers are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no container is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An actor's inbox and the containers it registered; dropping it unregisters them.
#[derive(Debug)]
pub struct Watch {
    router: Router,
    inbox: Arc<Inbox>,
    ids: Vec<String>,
}

impl Watch {
    /// Routes events about container `id` to this inbox from now on.
    pub fn follow(&mut self, id: &str) {
        if !self.ids.iter().any(|i| i == id) {
            self.ids.push(id.to_string());
        }
        self.router.lock().insert(id.to_string(), self.inbox.clone());
    }

    /// Waits until something is marked, and takes the marks. Cancel-safe: marks made while
    /// nobody waits are kept for the next call.
    pub async fn changed(&self) -> Changed {
        loop {
            self.inbox.notify.notified().await;
            let c = self.inbox.take();
            if c.all || !c.ids.is_empty() {
                return c;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut routes = self.router.lock();
        for id in &self.ids {
            if routes.get(id).is_some_and(|i| Arc::ptr_eq(i, &self.inbox)) {
                routes.remove(id);
            }
        }
    }
}

/// Follows `runtime`'s events about containers carrying `labels` and routes them through
/// `router`, for ever: a lost stream is re-subscribed (with back-off), and every
/// subscription marks everything changed. Run it as a task and abort it to stop.
pub async fn follow(runtime: Arc<dyn Runtime>, labels: Vec<(String, String)>, router: Router) {
    let mut delay = RECONNECT_MIN;
    let mut first = true;
    loop {
        let started = tokio::time::Instant::now();
        let mut stream = runtime.events(&labels);
        let mut subscribed = false;
        let end = loop {
            match stream.next().await {
                Some(Ok(RuntimeEvent::Subscribed)) => {
                    if !first {
                        tracing::info!(
                            "container events followed again; re-reading every container"
                        );
                    }
                    first = false;
                    subscribed = true;
                    router.resync();
                }
                Some(Ok(RuntimeEvent::Container(e))) => {
                    tracing::trace!(container = %e.id, kind = ?e.kind, "container event");
                    router.route(&e.id);
                }
                Some(Err(e)) => break e.to_string(),
                None => break "the stream ended".to_string(),
            }
        };
        drop(stream);
        if started.elapsed() >= STABLE_STREAM {
            delay = RECONNECT_MIN;
        }
        if subscribed {
            tracing::warn!(error = %end, "container events stream lost; re-subscribing");
        } else {
            tracing::debug!(error = %end, "cannot follow container events yet; retrying");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RECONNECT_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_runtime::ContainerEventKind;
    use berth_runtime::fake::{FakeRuntime, Op};

    #[tokio::test(start_paused = true)]
    async fn marks_coalesce_and_route_to_the_owner_only() {
        let router = Router::new();
        let mut a = router.watch();
        let mut b = router.watch();
        a.follow("x");
        b.follow("y");
        router.route("x");
        router.route("x");
        router.route("nobody");
        let c = a.changed().await;
        assert_eq!(c, Changed { all: false, ids: ["x".to_string()].into() });
        assert!(c.concerns("x") && !c.concerns("y"));
        router.resync();
        assert!(a.changed().await.all);
        assert!(b.changed().await.all);
        drop(b);
        assert_eq!(router.len(), 1, "a dropped watch unregisters its containers");
        // Nothing marked: a wait does not end.
        assert!(tokio::time::timeout(Duration::from_secs(60), a.changed()).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn follow_resyncs_on_every_subscription_and_routes_events() {
        let fake = Arc::new(FakeRuntime::new());
        let router = Router::new();
        let mut w = router.watch();
        w.follow("c1");
        let labels = vec![("k".to_string(), "v".to_string())];
        let task = tokio::spawn(follow(fake.clone(), labels.clone(), router.clone()));
        assert!(w.changed().await.all, "the first subscription re-reads everything");
        fake.push_event("c1", ContainerEventKind::Die);
        assert_eq!(w.changed().await.ids, ["c1".to_string()].into());

        // A lost stream, then a failed attempt: re-subscribed with back-off, then re-read.
        fake.fail_next(
            Op::Events,
            berth_runtime::RuntimeError::Engine { op: "events", message: "down".into() },
        );
        fake.drop_event_streams();
        assert!(w.changed().await.all);
        assert_eq!(fake.calls_of(Op::Events).len(), 3);
        assert_eq!(fake.calls_of(Op::Events)[0], berth_runtime::fake::Call::Events(labels));
        task.abort();
    }
}
