//! A minimal DNS client (one query, one answer, over UDP or TCP), built on hickory-proto's
//! message codec: for tests and diagnostics.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use hickory_proto::op::{Message as DnsMessage, ResponseCode};
pub use hickory_proto::rr::{RData, RecordType as Type};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// Asks `server` for `name`/`qtype` (recursion desired) and returns the answer.
pub async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    transport: Transport,
) -> std::io::Result<Message> {
    let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let name = Name::from_ascii(name).map_err(|e| bad(e.to_string()))?;
    let id: u16 = (std::process::id() as u16)
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u16)
            .unwrap_or(7));
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, qtype));
    let bytes = msg.to_vec().map_err(|e| bad(e.to_string()))?;
    let raw = tokio::time::timeout(Duration::from_secs(10), async {
        match transport {
            Transport::Udp => {
                let local: SocketAddr = if server.is_ipv4() {
                    "0.0.0.0:0".parse().expect("address")
                } else {
                    "[::]:0".parse().expect("address")
                };
                let sock = tokio::net::UdpSocket::bind(local).await?;
                sock.connect(server).await?;
                sock.send(&bytes).await?;
                let mut buf = vec![0u8; 65_535];
                let n = sock.recv(&mut buf).await?;
                buf.truncate(n);
                Ok::<_, std::io::Error>(buf)
            }
            Transport::Tcp => {
                let mut s = tokio::net::TcpStream::connect(server).await?;
                let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
                out.extend_from_slice(&bytes);
                s.write_all(&out).await?;
                let mut len = [0u8; 2];
                s.read_exact(&mut len).await?;
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                s.read_exact(&mut buf).await?;
                Ok(buf)
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no DNS answer in 10 s"))??;
    let answer = Message::from_vec(&raw).map_err(|e| bad(e.to_string()))?;
    if answer.metadata.id != id {
        return Err(bad(format!("answer id {} is not the query's {id}", answer.metadata.id)));
    }
    Ok(answer)
}
