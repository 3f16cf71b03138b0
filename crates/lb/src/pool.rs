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

use std::sync::Arc;
use std::time::Duration;

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

/// Sends `req` (origin-form URI, `Host` set) to `target`, on an idle connection when one is
/// free, else on a new one. Returns the response head and the connection, to be given back
/// with [`give_back`] once the body is done.
pub(crate) async fn send(
    target: &Arc<TargetRt>,
    mut req: Request<ReqBody>,
    connect_timeout: Duration,
) -> Result<(Response<Incoming>, Sender), SendError> {
    while let Some(mut s) = checkout(target) {
        match s.try_send_request(req).await {
            Ok(resp) => return Ok((resp, s)),
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
    tokio::spawn(conn);
    match s.send_request(req).await {
        Ok(resp) => Ok((resp, s)),
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

/// Puts a connection whose response was read to the end back on its target's stack.
pub(crate) fn give_back(target: &TargetRt, s: Sender) {
    if s.is_closed() {
        return;
    }
    let mut pool = lock(&target.pool);
    if pool.len() < MAX_IDLE {
        pool.push(s);
    }
}
