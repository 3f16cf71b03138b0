//! Serving an axum [`Router`] over HTTP/1 so that no client can hold a connection, or a file
//! descriptor, for long without sending or reading anything: the loop the API server and the
//! agent's task metadata endpoint both run (`axum::serve` has no timeouts and no cap).
//!
//! Guarantees of [`serve`], each with its [`Limits`] field:
//! * **Connection cap with back-pressure** (`max_connections`): a connection is accepted only
//!   once a permit is free. When all are taken the loop stops calling `accept`, so newcomers
//!   wait in the kernel's listen backlog (and are served as soon as a connection closes); the
//!   server never runs out of descriptors because of clients, and never crashes for it.
//! * **Header-read timeout** (`header_read_timeout`, hyper's own): a request head must arrive
//!   whole within this long of the server starting to wait for it. Hyper starts that clock
//!   when it waits for the *next* request too, so it is also the **idle keep-alive timeout**:
//!   a kept-alive connection with no new request for this long is closed.
//! * **Body-read timeout** (`body_read_timeout`): once a handler starts reading a request
//!   body, all of it must arrive within this long, or the read fails (the handler answers an
//!   error and the connection closes).
//! * **Stalled-write timeout** (`write_stall_timeout`): a response write that makes no
//!   progress for this long (a client that stopped reading) closes the connection.
//!
//! None of these runs while a handler is working on a request: a request that is held open on
//! purpose (the agents' long poll, up to 60 s) is never cut.
//!
//! **TLS** ([`serve_tls`]): each accepted connection does its TLS handshake (rustls, through
//! tokio-rustls) in its own task, never in the accept loop, bounded by `header_read_timeout`
//! like a request head. A handshake that fails or times out closes that connection only and
//! frees its permit; it never stops the loop or delays other clients. The stalled-write guard
//! sits under TLS, on the socket itself.
//!
//! Shutdown: when the `shutdown` future resolves the loop stops accepting, idle connections
//! are closed and in-flight requests finish before [`serve`] returns.
//!
//! [`raise_nofile_limit`] raises the process's descriptor limit to its hard limit; the binary
//! calls it at start.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// Default [`Limits::header_read_timeout`] (also the idle keep-alive timeout): 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Limits::body_read_timeout`]: 30 s (a 1 MiB body at 35 KB/s).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Limits::write_stall_timeout`]: 30 s.
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long and how many clients may hold connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once; more wait in the listen backlog. At least 1.
    pub max_connections: usize,
    /// A request head (or, on a kept-alive connection, the next one) must arrive within this.
    pub header_read_timeout: Duration,
    /// A request body, once a handler reads it, must arrive whole within this.
    pub body_read_timeout: Duration,
    /// A response write making no progress this long closes the connection.
    pub write_stall_timeout: Duration,
}

impl Limits {
    /// `max_connections` with the default timeouts.
    pub fn new(max_connections: usize) -> Self {
        Self {
            max_connections,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then stops
/// accepting, closes idle connections and waits for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    serve_tls(listener, router, limits, None, shutdown).await
}

/// The connection a request came on, in every request's extensions (for `aws:SourceIp` and
/// `aws:SecureTransport`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub addr: std::net::SocketAddr,
    /// Whether the connection speaks TLS.
    pub tls: bool,
}

/// [`serve`], speaking TLS through `tls` on every connection when it is given (plain HTTP
/// when `None`). The handshake is bounded by [`Limits::header_read_timeout`].
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Back-pressure: no permit, no accept.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or memory: wait, then try again.
                    tracing::warn!(error = %e, "accept failed; retrying in 1 s");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stream = StallGuard::new(stream, limits.write_stall_timeout);
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let peer_info = Peer { addr: peer, tls: tls.is_some() };
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut router = router.clone();
            let mut req = req.map(|b| axum::body::Body::new(TimeoutBody::new(b, body_timeout)));
            req.extensions_mut().insert(peer_info);
            async move { tower::Service::call(&mut router, req).await }
        });
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    drop(permit);
                });
            }
            Some(acceptor) => {
                // The watcher holds shutdown until this connection is done, handshake included.
                let watcher = graceful.watcher();
                let handshake = acceptor.accept(stream);
                let builder = builder.clone();
                let timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(%peer, error = %e, "connection closed");
                            }
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of one connection that says nothing about the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Raises the soft limit on open descriptors (`RLIMIT_NOFILE`) to the hard limit (to the
/// kernel's `fs.nr_open` when the hard limit is unlimited); returns the soft limit in force
/// afterwards (`None`: unlimited). Failing to raise it is not an error: the old limit stays.
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let target = match lim.maximum {
        Some(hard) => hard,
        None => std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1 << 20),
    };
    if lim.current.is_some_and(|soft| soft < target) {
        lim.current = Some(target);
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, target, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The error a request body read gets when its [`Limits::body_read_timeout`] passes.
#[derive(Debug)]
pub struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} s", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails once `timeout` has passed since it was first read.
struct TimeoutBody {
    inner: Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl TimeoutBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        Self { inner, timeout, deadline: None }
    }
}

impl Body for TimeoutBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket whose writes fail once they have made no progress for `timeout`.
struct StallGuard<T> {
    inner: T,
    timeout: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, timeout: Duration) -> Self {
        Self { inner, timeout, stalled: None }
    }

    fn guard<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        self.stalled = None;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {} s", timeout.as_secs_f64()),
        )))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, polled)
    }
}

#[cfg(test)]
mod tests;
