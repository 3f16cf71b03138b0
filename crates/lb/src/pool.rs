//! Keep-alive connections to targets: each target keeps a stack of idle HTTP/1.1 connections
//! (hyper's `client::conn::http1`), reused most-recently-idle first. A connection goes back on
//! the stack only once its response body has been read to the end (see `proxy::LbBody`); at
//! checkout the newest connection that is ready is taken, closed ones are dropped, and when
//! none is ready a new connection is made (the stack grows to the concurrency the target
//! sees, at most `MAX_IDLE`). A target's connections close when the target is dropped (after it
//! drained) or when the target closes them.
//!
//! Why not hyper-util's pooled client: it spawns a task per HTTP/1 request to return the
//! connection to its pool, and keys a shared map by authority; a per-target stack has neither
//! cost and the load balancer already knows the target.
//!
//! **Connections driven by the client's own task** ([`Local`]): a connection made for a
//! client connection's request is driven inside that client connection's task (polled next to
//! hyper's server connection) and kept idle there for the client's next request, so a request
//! and its forwarding cost no wake-up of another task and no hop between worker threads: the
//! client's socket, the target's socket and the proxy's work stay on one thread, as in an
//! nginx worker. Checkout takes the client's own idle connection to the target first, then the
//! shared stack, then makes a new one. When the client connection ends, its idle connections
//! move to the shared stack (each then driven by a task of its own), so short-lived clients
//! still reuse connections. A [`Local`] that has closed hands everything to the shared stack.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::group::{TargetRt, lock};

pub(crate) type ReqBody = Either<Incoming, Empty<Bytes>>;
pub(crate) type Sender = SendRequest<ReqBody>;

/// Most idle connections kept per target.
const MAX_IDLE: usize = 1024;

pub(crate) enum SendError {
    /// No connection could be made: the request was not sent (safe to send elsewhere).
    Connect,
    /// A reused connection failed after the request went out (the target may have closed it
    /// while idle): a body-less request may be sent again on a fresh connection.
    Reused(hyper::Error),
    /// A fresh connection failed after the request went out.
    Failed(hyper::Error),
}

/// A connection to a target, checked out for one request.
pub(crate) struct Conn {
    pub(crate) sender: Sender,
    /// Driven by the client connection's task ([`Local`]), and given back to it.
    local: bool,
}

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The target connections one client connection drives in its own task (see the module
/// header). Shared (behind a mutex) only with HTTP/2 streams, which hyper runs as tasks of
/// their own; for HTTP/1 every access is from the one task, so the lock is never contended.
#[derive(Default)]
pub(crate) struct Local {
    inner: Mutex<LocalInner>,
}

#[derive(Default)]
struct LocalInner {
    /// Idle connections, most recently used last.
    idle: Vec<(Weak<TargetRt>, Sender)>,
    /// The connections' futures (hyper's `Connection`s), polled by [`Local::drive`].
    drivers: FuturesUnordered<Driver>,
    /// The client task's waker, to poll a driver just added.
    waker: Option<Waker>,
    /// The client connection has ended: nothing more is driven here.
    closed: bool,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalInner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drives the connections until dropped (never completes): poll it next to the client's
    /// server connection in the client's task.
    pub(crate) fn drive(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            let mut inner = self.lock();
            if !inner.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                inner.waker = Some(cx.waker().clone());
            }
            while let Poll::Ready(Some(())) = inner.drivers.poll_next_unpin(cx) {}
            Poll::Pending
        })
    }

    /// The client connection has ended: its idle connections go to their targets' shared
    /// stacks and every connection still open is driven by a task of its own from now on.
    pub(crate) fn close(&self) {
        let (idle, drivers) = {
            let mut inner = self.lock();
            inner.closed = true;
            inner.waker = None;
            (std::mem::take(&mut inner.idle), std::mem::take(&mut inner.drivers))
        };
        for d in drivers {
            tokio::spawn(d);
        }
        for (target, s) in idle {
            if let Some(t) = target.upgrade() {
                give_back_shared(&t, s);
            }
        }
    }

    /// The newest idle connection of this client to `target` that is ready now.
    fn checkout(&self, target: &Arc<TargetRt>) -> Option<Sender> {
        let mut inner = self.lock();
        let mut i = inner.idle.len();
        while i > 0 {
            i -= 1;
            let (t, s) = &inner.idle[i];
            if s.is_closed() || t.strong_count() == 0 {
                inner.idle.swap_remove(i);
            } else if std::ptr::eq(t.as_ptr(), Arc::as_ptr(target)) && s.is_ready() {
                return Some(inner.idle.swap_remove(i).1);
            }
        }
        None
    }

    /// Drives `conn` here; gives it back once the client connection has ended.
    fn adopt(&self, conn: Driver) -> Result<(), Driver> {
        let inner = self.lock();
        if inner.closed {
            return Err(conn);
        }
        inner.drivers.push(conn);
        if let Some(w) = &inner.waker {
            w.wake_by_ref();
        }
        Ok(())
    }

    fn give_back(&self, target: &Arc<TargetRt>, s: Sender) -> Result<(), Sender> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(s);
        }
        if inner.idle.len() < MAX_IDLE {
            inner.idle.push((Arc::downgrade(target), s));
        }
        Ok(())
    }
}

/// Sends `req` (origin-form URI, `Host` set) to `target`, on an idle connection when one is
/// free (the client's own first), else on a new one, driven by the client's task when `local`
/// is given. Returns the response head and the connection, to be given back with
/// [`give_back`] once the body is done.
pub(crate) async fn send(
    target: &Arc<TargetRt>,
    mut req: Request<ReqBody>,
    connect_timeout: Duration,
    local: Option<&Local>,
) -> Result<(Response<Incoming>, Conn), SendError> {
    loop {
        let (mut s, is_local) = match local.and_then(|l| l.checkout(target)) {
            Some(s) => (s, true),
            None => match checkout(target) {
                Some(s) => (s, false),
                None => break,
            },
        };
        match s.try_send_request(req).await {
            Ok(resp) => return Ok((resp, Conn { sender: s, local: is_local })),
            Err(mut e) => match e.take_message() {
                Some(r) => req = r,
                None => return Err(SendError::Reused(e.into_error())),
            },
        }
    }
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(target.addr)).await
    {
        Ok(Ok(s)) => s,
        _ => return Err(SendError::Connect),
    };
    let _ = stream.set_nodelay(true);
    let (mut s, conn) =
        http1::handshake(TokioIo::new(stream)).await.map_err(|_| SendError::Connect)?;
    let driver: Driver = Box::pin(async move {
        let _ = conn.await;
    });
    let adopted = match local {
        Some(l) => l.adopt(driver),
        None => Err(driver),
    };
    let is_local = match adopted {
        Ok(()) => true,
        Err(driver) => {
            tokio::spawn(driver);
            false
        }
    };
    match s.send_request(req).await {
        Ok(resp) => Ok((resp, Conn { sender: s, local: is_local })),
        Err(e) => Err(SendError::Failed(e)),
    }
}

/// The most recently used connection that is ready for a request now, dropping closed ones on
/// the way. A connection handed back at the end of a body may not be ready yet (its task has
/// not seen the end): it is skipped rather than waited for, so a request never waits on
/// another connection's task; a new connection is made instead.
fn checkout(target: &TargetRt) -> Option<Sender> {
    let mut pool = lock(&target.pool);
    let mut i = pool.len();
    while i > 0 {
        i -= 1;
        if pool[i].is_closed() {
            pool.swap_remove(i);
        } else if pool[i].is_ready() {
            return Some(pool.swap_remove(i));
        }
    }
    None
}

/// Puts a connection whose response was read to the end back where it came from: the client
/// connection's own idle list (while that connection lasts), else the target's shared stack.
pub(crate) fn give_back(target: &Arc<TargetRt>, conn: Conn, local: Option<&Local>) {
    if conn.sender.is_closed() {
        return;
    }
    let s = match (conn.local, local) {
        (true, Some(l)) => match l.give_back(target, conn.sender) {
            Ok(()) => return,
            Err(s) => s,
        },
        _ => conn.sender,
    };
    give_back_shared(target, s);
}

fn give_back_shared(target: &TargetRt, s: Sender) {
    if s.is_closed() {
        return;
    }
    let mut pool = lock(&target.pool);
    if pool.len() < MAX_IDLE {
        pool.push(s);
    }
}
