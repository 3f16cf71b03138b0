//! Slow, stalled and surplus clients against the API port (issue #10, defect 3): the server
//! cuts them off after its timeouts, caps its connections with back-pressure, and never cuts
//! an agent's held poll.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Harness;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(h: &Harness) -> SocketAddr {
    h.host.parse().unwrap()
}

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

async fn healthz(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n").await.unwrap();
    String::from_utf8_lossy(&read_to_close(&mut s).await).into_owned()
}

#[tokio::test]
async fn a_slowloris_client_is_disconnected_after_the_header_timeout() {
    let h = Harness::start_with(|c| c.http.header_read_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(addr(&h)).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: b\r\nX-Amz-Target: ").await.unwrap();
    let t0 = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut slow))
        .await
        .expect("a client that never finishes its header must be dropped");
    assert!(t0.elapsed() >= Duration::from_millis(250));
    assert_eq!(h.call("ListClusters", json!({})).await.status, 200);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_refused() {
    let h = Harness::start_with(|c| c.http.body_read_timeout = Duration::from_millis(300)).await;
    let mut slow = TcpStream::connect(addr(&h)).await.unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 1000\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut slow))
        .await
        .expect("a client that never finishes its body must be dropped");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_and_are_answered_once_one_closes() {
    let h = Harness::start_with(|c| c.http.max_connections = 2).await;
    let a = addr(&h);
    let idle1 = TcpStream::connect(a).await.unwrap();
    let _idle2 = TcpStream::connect(a).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = tokio::spawn(healthz(a));
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!third.is_finished(), "a connection beyond the cap was served");
    drop(idle1);
    let got = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the waiting connection must be answered once one closes")
        .unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
}

#[tokio::test]
async fn stalled_clients_holding_every_connection_are_cut_and_requests_go_on() {
    let h = Harness::start_with(|c| {
        c.http.max_connections = 8;
        c.http.header_read_timeout = Duration::from_millis(400);
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(addr(&h)).await.unwrap();
        s.write_all(b"POST / HTTP/1.1\r\n").await.unwrap();
        stalled.push(s);
    }
    let reply = tokio::time::timeout(Duration::from_secs(15), h.call("ListClusters", json!({})))
        .await
        .expect("the server must answer while stalled clients hold its connections");
    assert_eq!(reply.status, 200);
    for s in &mut stalled {
        tokio::time::timeout(Duration::from_secs(10), read_to_close(s))
            .await
            .expect("a stalled client must be disconnected");
    }
}

#[tokio::test]
async fn a_held_agent_poll_outlives_every_timeout() {
    let h = Harness::start_with(|c| {
        c.http.header_read_timeout = Duration::from_millis(300);
        c.http.body_read_timeout = Duration::from_millis(300);
        c.http.write_stall_timeout = Duration::from_millis(300);
    })
    .await;
    let r = h
        .ok(
            "RegisterContainerInstance",
            json!({
                "cluster": "default",
                "instanceIdentityDocument": json!({"instanceId": "i-0123456789abcdef0"}).to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}
                ]
            }),
        )
        .await;
    let inst = r["containerInstance"]["containerInstanceArn"].as_str().unwrap().to_string();
    let poll = |seen: u64, wait: u32| json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": seen, "waitSeconds": wait});
    let p0 = h.post_path("/berth/agent/v1/poll", &poll(0, 0)).await;
    assert_eq!(p0.status, 200, "{}", p0.body);
    let v0 = p0.body["version"].as_u64().unwrap();
    let t0 = Instant::now();
    let held = h.post_path("/berth/agent/v1/poll", &poll(v0, 2)).await;
    assert_eq!(held.status, 200, "{}", held.body);
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "the poll was not held: {:?}",
        t0.elapsed()
    );
}
