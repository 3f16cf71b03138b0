//! Slow and stalled clients against [`serve`], over real sockets with short limits.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

fn limits(max_connections: usize, header: Duration) -> Limits {
    Limits {
        max_connections,
        header_read_timeout: header,
        body_read_timeout: Duration::from_millis(300),
        write_stall_timeout: Duration::from_millis(300),
    }
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/held",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                "held"
            }),
        )
        .route(
            "/echo",
            post(|body: axum::body::Body| async move {
                match axum::body::to_bytes(body, 1 << 20).await {
                    Ok(b) => (http::StatusCode::OK, b.len().to_string()),
                    Err(e) => (http::StatusCode::BAD_REQUEST, e.to_string()),
                }
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 64 << 20] }))
}

async fn start(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app(), limits, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until the peer closes (or errors); the bytes read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one request with `Connection: close` and returns the whole answer.
async fn request(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
}

#[tokio::test]
async fn a_partial_header_is_cut_off_after_the_header_timeout() {
    let (addr, _stop) = start(limits(16, Duration::from_millis(300))).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ").await.unwrap();
    let t0 = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut slow))
        .await
        .expect("the server must drop a client that never finishes its header");
    assert!(t0.elapsed() >= Duration::from_millis(250), "cut too early: {:?}", t0.elapsed());
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed() {
    let (addr, _stop) = start(limits(16, Duration::from_millis(300))).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(GET).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut c))
        .await
        .expect("an idle keep-alive connection must be closed");
}

#[tokio::test]
async fn a_body_that_stops_arriving_fails_the_request() {
    let (addr, _stop) = start(limits(16, Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut c))
        .await
        .expect("a stalled body must not hold the connection");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("did not arrive within"), "{got}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    let (addr, _stop) = start(limits(16, Duration::from_secs(60))).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    // Read nothing for a while: the server's writes stall and it gives up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = tokio::time::timeout(Duration::from_secs(20), read_to_close(&mut c))
        .await
        .expect("the connection must end");
    assert!(got.len() < 64 << 20, "the whole 64 MiB arrived: the stalled write was not cut");
}

#[tokio::test]
async fn a_held_request_outlives_every_timeout() {
    // The agents' long poll: the handler holds the request far longer than any timeout.
    let (addr, _stop) = start(limits(16, Duration::from_millis(300))).await;
    let got = request(addr, "/held").await;
    assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("held"), "{got}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_served_when_one_closes() {
    let (addr, _stop) = start(limits(2, Duration::from_secs(60))).await;
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let _idle2 = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn(async move { request(addr, "/").await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a connection beyond the cap was served");
    drop(idle1);
    let got = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the waiting connection must be served once one closes")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn stalled_clients_at_the_cap_are_cut_and_service_resumes() {
    let header = Duration::from_millis(400);
    let (addr, _stop) = start(limits(8, header)).await;
    let mut stalled = Vec::new();
    for _ in 0..32 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: ").await.unwrap();
        stalled.push(s);
    }
    let t0 = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(10), request(addr, "/"))
        .await
        .expect("the server must answer while stalled clients hold connections");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // Every stalled client is gone: none holds a descriptor forever.
    for s in &mut stalled {
        tokio::time::timeout(Duration::from_secs(10), read_to_close(s))
            .await
            .expect("a stalled client must be disconnected");
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve(listener, app(), limits(4, Duration::from_secs(60)), async {
        let _ = rx.await;
    }));
    // An idle kept-alive connection does not hold shutdown up.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    let mut buf = [0u8; 1024];
    let _ = idle.read(&mut buf).await.unwrap();
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

#[test]
fn the_descriptor_limit_is_raised_to_the_hard_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    // Start from a low soft limit, as a login shell gives (1024).
    let mut low = getrlimit(Resource::Nofile);
    low.current = Some(low.maximum.map_or(1024, |h| h.min(1024)));
    setrlimit(Resource::Nofile, low).unwrap();
    let now = raise_nofile_limit();
    let lim = getrlimit(Resource::Nofile);
    assert_eq!(now, lim.current);
    if let Some(hard) = lim.maximum {
        assert_eq!(lim.current, Some(hard));
    }
}

// ---- TLS ([`serve_tls`]) ----

mod tls {
    use std::sync::Arc;

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    use super::*;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A server on TLS with a fresh self-signed certificate for 127.0.0.1, and a connector
    /// that trusts it.
    async fn start_tls(
        limits: Limits,
    ) -> (SocketAddr, tokio_rustls::TlsConnector, tokio::sync::oneshot::Sender<()>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let der: CertificateDer<'static> = cert.cert.der().clone();
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(serve_tls(listener, app(), limits, Some(acceptor), async move {
            let _ = rx.await;
        }));
        (addr, tokio_rustls::TlsConnector::from(Arc::new(client)), tx)
    }

    async fn tls_get(addr: SocketAddr, connector: &tokio_rustls::TlsConnector) -> String {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut s = connector.connect(name, tcp).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn requests_are_served_over_tls_and_plain_http_is_not() {
        let (addr, connector, _stop) = start_tls(limits(16, Duration::from_secs(5))).await;
        let answer = tls_get(addr, &connector).await;
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
        // Plain HTTP on the TLS port gets no HTTP answer, and the port keeps serving.
        let plain = request(addr, "/").await;
        assert!(!plain.contains("HTTP/1.1 200"), "{plain}");
        assert!(tls_get(addr, &connector).await.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn a_stalled_or_failed_handshake_costs_only_its_own_connection() {
        // One connection at a time: a client that never finishes its handshake holds the
        // only permit until the header timeout, then the next client is served.
        let (addr, connector, _stop) = start_tls(limits(1, Duration::from_millis(300))).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = Instant::now();
        let waiting = tokio::spawn(async move { tls_get(addr, &connector).await });
        let closed = read_to_close(&mut silent).await;
        assert!(closed.is_empty());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "cut too early: {waited:?}");
        assert!(waited < Duration::from_secs(3), "never cut: {waited:?}");
        let answer = waiting.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[tokio::test]
    async fn garbage_instead_of_a_handshake_is_dropped() {
        let (addr, connector, _stop) = start_tls(limits(4, Duration::from_secs(5))).await;
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5]).await.unwrap();
            s.write_all(&[0u8; 512]).await.unwrap();
            let _ = read_to_close(&mut s).await;
        }
        assert!(tls_get(addr, &connector).await.starts_with("HTTP/1.1 200"));
    }
}
