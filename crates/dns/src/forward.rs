//! The forwarder: a query's bytes to the upstream servers, their answer's bytes back.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::UPSTREAM_TIMEOUT;

/// The `nameserver` lines of a resolv.conf, as port-53 addresses (IPv6 zone ids dropped;
/// lines that are not addresses ignored).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            if words.next() != Some("nameserver") {
                return None;
            }
            let addr = words.next()?;
            let addr = addr.split('%').next().unwrap_or(addr);
            addr.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

/// The host's resolvers: [`parse_resolv_conf`] of `/etc/resolv.conf` (none when it cannot be
/// read).
pub fn system_upstreams() -> Vec<SocketAddr> {
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /etc/resolv.conf: names outside Berth's zones will not resolve");
            vec![]
        }
    }
}

/// Why a forwarded query got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    #[error("no upstream DNS server is configured")]
    NoUpstream,
    #[error("no upstream DNS server answered ({0})")]
    Failed(String),
}

/// Sends `query` (a whole DNS message) to each upstream in turn until one answers.
pub(crate) async fn forward(
    upstreams: &[SocketAddr],
    query: &[u8],
    tcp: bool,
) -> Result<Vec<u8>, ForwardError> {
    if upstreams.is_empty() {
        return Err(ForwardError::NoUpstream);
    }
    let mut errors = vec![];
    for &up in upstreams {
        let attempt = async {
            if !tcp {
                let answer = udp(up, query).await?;
                // TC bit: the answer did not fit; ask again over TCP.
                if answer.len() > 2 && answer[2] & 0x02 == 0 {
                    return Ok(answer);
                }
            }
            over_tcp(up, query).await
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, attempt).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => errors.push(format!("{up}: {e}")),
            Err(_) => errors.push(format!("{up}: no answer in {UPSTREAM_TIMEOUT:?}")),
        }
    }
    Err(ForwardError::Failed(errors.join("; ")))
}

async fn udp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(up).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the answer to this query (same id) counts.
        if n >= 12 && buf[..2] == query[..2] {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn over_tcp(up: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut msg = len.to_be_bytes().to_vec();
    msg.extend_from_slice(query);
    s.write_all(&msg).await?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}
