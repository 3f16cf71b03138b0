//! The server: the compiled table behind an atomic swap, hickory-server's UDP and TCP
//! listeners, and the request handler that answers or forwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{
    Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::{LowerName, Record};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::compile::{Answer, Table};
use crate::forward::forward;
use crate::{Applied, Snapshot};

/// How long a TCP client may stay silent before its connection is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// The DNS data plane: its table and upstreams. Cheap to clone; clones share the table.
#[derive(Clone)]
pub struct Dns {
    inner: Arc<Inner>,
}

struct Inner {
    table: ArcSwap<Table>,
    upstreams: Vec<SocketAddr>,
    turn: AtomicUsize,
}

impl Dns {
    /// An empty table (everything forwarded) forwarding to `upstreams`
    /// ([`crate::system_upstreams`] for the host's).
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Self {
            inner: Arc::new(Inner {
                table: ArcSwap::from_pointee(Table::default()),
                upstreams,
                turn: AtomicUsize::new(0),
            }),
        }
    }

    /// Replaces the whole table with `snapshot`'s, atomically.
    pub fn apply(&self, snapshot: &Snapshot) -> Applied {
        let (table, applied) = Table::compile(snapshot);
        self.inner.table.store(Arc::new(table));
        applied
    }

    /// The table in force.
    pub fn table(&self) -> Arc<Table> {
        self.inner.table.load_full()
    }

    /// Binds UDP and TCP on `addr` (port 0: one free port for both) and serves them until the
    /// listener is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Listener> {
        let (udp, tcp) = bind_both(addr).await?;
        let local_addr = udp.local_addr()?;
        let handler = Handler { inner: self.inner.clone(), own: local_addr };
        let mut server = Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE, 16);
        Ok(Listener { local_addr, server })
    }
}

/// Binds a UDP socket and a TCP listener on the same address; with port 0, retries a few
/// ports until both bind.
async fn bind_both(
    addr: SocketAddr,
) -> std::io::Result<(tokio::net::UdpSocket, tokio::net::TcpListener)> {
    let mut last = None;
    for _ in 0..16 {
        let udp = tokio::net::UdpSocket::bind(addr).await?;
        let at = udp.local_addr()?;
        match tokio::net::TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port free for both UDP and TCP")))
}

/// A running listener (UDP and TCP on one port).
pub struct Listener {
    local_addr: SocketAddr,
    server: Server<Handler>,
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening and waits for the queries in progress.
    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS listener stopped with an error");
        }
    }
}

struct Handler {
    inner: Arc<Inner>,
    own: SocketAddr,
}

fn header(metadata: Metadata) -> ResponseInfo {
    ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
}

impl Handler {
    async fn error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
        code: ResponseCode,
    ) -> ResponseInfo {
        let msg = MessageResponseBuilder::from_message_request(request)
            .error_msg(&request.metadata, code);
        match response.send_response(msg).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send a DNS answer");
                let mut m = Metadata::response_from_request(&request.metadata);
                m.response_code = code;
                header(m)
            }
        }
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let upstreams: Vec<SocketAddr> =
            self.inner.upstreams.iter().copied().filter(|u| *u != self.own).collect();
        let tcp = request.protocol() == Protocol::Tcp;
        let answer = match forward(&upstreams, request.as_slice(), tcp).await {
            Ok(bytes) => Message::from_vec(&bytes).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let msg = match answer {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "forwarded query failed");
                return self.error(request, response, ResponseCode::ServFail).await;
            }
        };
        let mut metadata = msg.metadata;
        metadata.id = request.metadata.id;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = msg.edns.as_ref() {
            builder.edns(edns);
        }
        let none: [&Record; 0] = [];
        let out = builder.build(
            metadata,
            msg.answers.iter(),
            msg.authorities.iter(),
            none,
            msg.additionals.iter(),
        );
        match response.send_response(out).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot send a DNS answer");
                header(metadata)
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        if request.metadata.message_type != MessageType::Query {
            return self.error(request, response, ResponseCode::FormErr).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return self.error(request, response, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return self.error(request, response, ResponseCode::FormErr).await;
        };
        let name: &LowerName = info.query.name();
        let qtype = info.query.query_type();
        let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        let table = self.inner.table.load();
        match table.lookup(name, qtype, turn) {
            Answer::Forward => {
                drop(table);
                self.forward(request, response).await
            }
            Answer::Authoritative { code, answers, soa, additionals } => {
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.authoritative = true;
                metadata.response_code = code;
                metadata.recursion_available = true;
                let none: [&Record; 0] = [];
                let msg = MessageResponseBuilder::from_message_request(request).build(
                    metadata,
                    answers.iter(),
                    none,
                    soa.iter(),
                    additionals.iter(),
                );
                match response.send_response(msg).await {
                    Ok(info) => info,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot send a DNS answer");
                        header(metadata)
                    }
                }
            }
        }
    }
}
