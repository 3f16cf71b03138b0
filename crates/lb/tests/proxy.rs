//! The data plane on real sockets (127.0.0.1, ephemeral ports), backends being small hyper
//! servers in the test: routing by rule, forwarded headers, ELB's error answers, draining,
//! passive ejection of a killed target, stickiness, table swaps, HTTP/2, TCP forwarding.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_lb::config::*;
use berth_lb::{HealthState, Lb, LbOptions, Reason};
use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rule(priority: u32, conditions: Vec<Condition>, action: Action) -> Rule {
    Rule { arn: format!("arn:rule/{priority}"), priority, conditions, actions: vec![action] }
}

#[tokio::test]
async fn routes_by_priority_and_sets_forwarded_headers() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let rules = vec![
        rule(10, vec![Condition::PathPattern { values: vec!["/api/*".into()] }], forward("tg-a")),
        rule(
            5,
            vec![Condition::HostHeader { values: vec!["admin.*".into()] }],
            Action::FixedResponse {
                status_code: 403,
                content_type: Some("application/json".into()),
                message_body: Some("{\"denied\":true}".into()),
            },
        ),
        rule(
            20,
            vec![Condition::PathPattern { values: vec!["/old/*".into()] }],
            Action::Redirect(Redirect {
                protocol: None,
                host: Some("new.#{host}".into()),
                port: Some("80".into()),
                path: Some("/v2/#{path}".into()),
                query: None,
                status_code: RedirectCode::Http301,
            }),
        ),
        rule(
            30,
            vec![
                Condition::HttpHeader {
                    header_name: "X-Canary".into(),
                    values: vec!["yes".into()],
                },
                Condition::QueryString {
                    values: vec![QueryPair { key: Some("v".into()), value: "2".into() }],
                },
            ],
            forward("tg-a"),
        ),
    ];
    let snap = alb(
        1,
        http_listener(forward("tg-b"), rules),
        vec![group("tg-a", vec![target(a.addr)]), group("tg-b", vec![target(b.addr)])],
    );
    let lb = Lb::new(LbOptions::default());
    assert!(lb.apply(&snap).unwrap().bind_errors.is_empty());
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    wait_state(&lb, "tg-a", HealthState::Healthy).await;
    let c = client();

    let r = get(
        &c,
        addr,
        "/api/users?x=1",
        &[
            ("host", "shop.example.com:8443"),
            ("x-forwarded-for", "203.0.113.7"),
            ("connection", "x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["name"], "a");
    assert_eq!(j["path"], "/api/users");
    assert_eq!(j["query"], "x=1");
    let h = &j["headers"];
    assert_eq!(h["host"], "shop.example.com:8443", "Host is preserved");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1", "XFF appended");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-port"], addr.port().to_string());
    assert!(
        h.get("x-hop").is_none() && h.get("keep-alive").is_none(),
        "hop-by-hop headers removed: {h}"
    );

    let r = get(&c, addr, "/", &[]).await.unwrap();
    assert_eq!((r.status, r.backend()), (200, "b".to_string()), "default action");
    let j = r.json();
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1", "XFF set when absent");

    // Priority 5 beats priority 10 for /api/ on the admin host.
    let r = get(&c, addr, "/api/x", &[("host", "admin.example.com")]).await.unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(r.body, "{\"denied\":true}");
    assert_eq!(r.headers["content-type"], "application/json");

    let r = get(&c, addr, "/old/page?q=1", &[("host", "example.com:1234")]).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.headers["location"], "http://new.example.com/v2/old/page?q=1");

    // All conditions of a rule must match.
    let r = get(&c, addr, "/x?v=2", &[("x-canary", "YES")]).await.unwrap();
    assert_eq!(r.backend(), "a");
    let r = get(&c, addr, "/x?v=3", &[("x-canary", "yes")]).await.unwrap();
    assert_eq!(r.backend(), "b");

    // HTTP/2 (prior knowledge) from the client: :authority becomes Host for the target.
    let h2: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let resp = h2
        .request(
            hyper::Request::get(format!("http://{addr}/api/h2"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["name"], "a");
    assert_eq!(j["headers"]["host"], addr.to_string());
    lb.shutdown();
}

#[tokio::test]
async fn elb_errors_503_502_504() {
    let slow = Backend::start("slow").await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // nothing listens there any more
    let rules = vec![
        rule(
            1,
            vec![Condition::PathPattern { values: vec!["/empty".into()] }],
            forward("tg-empty"),
        ),
        rule(2, vec![Condition::PathPattern { values: vec!["/dead".into()] }], forward("tg-dead")),
    ];
    let mut snap = alb(
        1,
        http_listener(forward("tg-slow"), rules),
        vec![
            group("tg-empty", vec![]),
            group("tg-dead", vec![target(closed)]),
            group("tg-slow", vec![target(slow.addr)]),
        ],
    );
    snap.load_balancers[0].idle_timeout_seconds = 1;
    let lb = Lb::new(LbOptions::default());
    lb.apply(&snap).unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    let c = client();
    let r = get(&c, addr, "/empty", &[]).await.unwrap();
    assert_eq!(r.status, 503);
    assert!(
        r.body.contains("<center><h1>503 Service Temporarily Unavailable</h1></center>"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["server"], "awselb/2.0");
    let r = get(&c, addr, "/dead", &[]).await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.body.contains("502 Bad Gateway"));
    let r = get(&c, addr, "/slow/3000", &[]).await.unwrap();
    assert_eq!(r.status, 504);
    assert!(r.body.contains("504 Gateway Time-out"));
    let r = get(&c, addr, "/slow/10", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    lb.shutdown();
}

#[tokio::test]
async fn draining_finishes_in_flight_and_refuses_new() {
    let a = Backend::start("a").await;
    let snap =
        alb(1, http_listener(forward("tg"), vec![]), vec![group("tg", vec![target(a.addr)])]);
    let lb = Lb::new(LbOptions::default());
    lb.apply(&snap).unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    wait_state(&lb, "tg", HealthState::Healthy).await;
    let c = client();
    let started = a.slow_started.notified();
    let slow = tokio::spawn({
        let c = c.clone();
        async move { get(&c, addr, "/slow/700", &[]).await }
    });
    started.await;
    // Deregister while the slow request is in flight.
    let mut next = snap.clone();
    next.version = 2;
    next.target_groups[0].targets[0].state = Registration::Deregistering;
    lb.apply(&next).unwrap();
    assert_eq!(
        lb.listener_addr("arn:listener/1"),
        Some(addr),
        "the unchanged listener kept its socket"
    );
    let h = lb.group_health("tg").unwrap();
    assert_eq!(
        (h[0].state, h[0].reason),
        (HealthState::Draining, Some(Reason::DeregistrationInProgress))
    );
    let before = a.requests.load(Ordering::SeqCst);
    let r = get(&c, addr, "/new", &[]).await.unwrap();
    assert_eq!(r.status, 503, "no new request to a draining target");
    assert_eq!(a.requests.load(Ordering::SeqCst), before);
    let r = slow.await.unwrap().unwrap();
    assert_eq!((r.status, r.backend()), (200, "a".to_string()), "the in-flight request finished");
    lb.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_target_loses_only_requests_in_flight() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let snap = alb(
        1,
        http_listener(forward("tg"), vec![]),
        vec![group("tg", vec![target(a.addr), target(b.addr)])],
    );
    let lb = Lb::new(LbOptions::default());
    lb.apply(&snap).unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    wait_state(&lb, "tg", HealthState::Healthy).await;
    const CLIENTS: usize = 8;
    const PER_CLIENT: usize = 300;
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, done, failed) = (client(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..PER_CLIENT {
                match get(&c, addr, "/slow/1", &[]).await {
                    Ok(r) if r.status == 200 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    while done.load(Ordering::SeqCst) < CLIENTS * PER_CLIENT / 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let served_by_a = a.requests.load(Ordering::SeqCst);
    a.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let failed = failed.load(Ordering::SeqCst);
    assert!(served_by_a > 0);
    assert!(failed <= CLIENTS, "{failed} requests failed; at most the {CLIENTS} in flight may");
    let h = lb.group_health("tg").unwrap();
    let ha = h.iter().find(|t| t.port == a.addr.port()).unwrap();
    assert_eq!(ha.state, HealthState::Unhealthy, "{ha:?}");
    assert!(b.requests.load(Ordering::SeqCst) >= CLIENTS * PER_CLIENT * 2 / 3 - CLIENTS);
    eprintln!("killed target: {failed} of {} requests failed", CLIENTS * PER_CLIENT);
    lb.shutdown();
}

#[tokio::test]
async fn sticky_sessions_by_awsalb_cookie() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let mut g = group("tg", vec![target(a.addr), target(b.addr)]);
    g.attributes.stickiness_enabled = true;
    g.attributes.stickiness_duration_seconds = 600;
    let lb = Lb::new(LbOptions::default());
    lb.apply(&alb(1, http_listener(forward("tg"), vec![]), vec![g])).unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    wait_state(&lb, "tg", HealthState::Healthy).await;
    let c = client();
    let first = get(&c, addr, "/", &[]).await.unwrap();
    let set = first.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("AWSALB=") && set.contains("Max-Age=600"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    for _ in 0..10 {
        let r = get(&c, addr, "/", &[("cookie", &cookie)]).await.unwrap();
        assert_eq!(r.backend(), first.backend(), "the cookie pins the target");
    }
    let names: std::collections::HashSet<_> = futures_collect(&c, addr, 6).await;
    assert_eq!(names.len(), 2, "without the cookie, round robin");
    lb.shutdown();
}

async fn futures_collect(
    c: &TestClient,
    addr: std::net::SocketAddr,
    n: usize,
) -> std::collections::HashSet<String> {
    let mut s = std::collections::HashSet::new();
    for _ in 0..n {
        s.insert(get(c, addr, "/", &[]).await.unwrap().backend());
    }
    s
}

#[tokio::test]
async fn apply_swaps_tables_and_health_checks_follow_the_backend() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let groups = vec![group("tg-a", vec![target(a.addr)]), group("tg-b", vec![target(b.addr)])];
    let lb = Lb::new(LbOptions::default());
    lb.apply(&alb(1, http_listener(forward("tg-a"), vec![]), groups.clone())).unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    let c = client();
    assert_eq!(get(&c, addr, "/", &[]).await.unwrap().backend(), "a");
    // Same listener, new default action: same socket, new table.
    lb.apply(&alb(2, http_listener(forward("tg-b"), vec![]), groups.clone())).unwrap();
    assert_eq!(lb.listener_addr("arn:listener/1"), Some(addr));
    assert_eq!(get(&c, addr, "/", &[]).await.unwrap().backend(), "b");
    // An older snapshot is ignored.
    assert!(
        lb.apply(&alb(1, http_listener(forward("tg-a"), vec![]), groups.clone())).unwrap().skipped
    );
    assert_eq!(get(&c, addr, "/", &[]).await.unwrap().backend(), "b");
    // Active health checks: 500 from /health -> unhealthy with ELB's reason, 200 -> healthy.
    wait_state(&lb, "tg-b", HealthState::Healthy).await;
    b.health_status.store(500, Ordering::SeqCst);
    wait_state(&lb, "tg-b", HealthState::Unhealthy).await;
    let h = lb.group_health("tg-b").unwrap();
    assert_eq!(h[0].reason, Some(Reason::ResponseCodeMismatch));
    assert_eq!(h[0].description.as_deref(), Some("Health checks failed with these codes: [500]"));
    assert_eq!(
        lb.group_health("tg-a").unwrap()[0].state,
        HealthState::Unused,
        "no listener forwards to tg-a"
    );
    b.health_status.store(200, Ordering::SeqCst);
    wait_state(&lb, "tg-b", HealthState::Healthy).await;
    // The listener leaves the snapshot: its socket closes.
    let empty = berth_lb::Snapshot { version: 3, load_balancers: vec![], target_groups: groups };
    lb.apply(&empty).unwrap();
    assert!(lb.listener_addr("arn:listener/1").is_none());
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "the removed listener's socket is closed");
    lb.shutdown();
}

#[tokio::test]
async fn weighted_forward_between_groups() {
    let (a, b) = (Backend::start("a").await, Backend::start("b").await);
    let action = Action::Forward {
        target_groups: vec![
            WeightedTargetGroup { target_group_arn: "tg-a".into(), weight: 80 },
            WeightedTargetGroup { target_group_arn: "tg-b".into(), weight: 20 },
        ],
        stickiness: None,
    };
    let lb = Lb::new(LbOptions { seed: 7, ..LbOptions::default() });
    lb.apply(&alb(
        1,
        http_listener(action, vec![]),
        vec![group("tg-a", vec![target(a.addr)]), group("tg-b", vec![target(b.addr)])],
    ))
    .unwrap();
    let addr = lb.listener_addr("arn:listener/1").unwrap();
    let c = client();
    let n = 1000;
    for _ in 0..n {
        assert_eq!(get(&c, addr, "/", &[]).await.unwrap().status, 200);
    }
    let share = a.requests.load(Ordering::SeqCst) as f64 / n as f64;
    assert!((share - 0.8).abs() < 0.04, "tg-a share {share}");
    // Each group counts the requests routed to it (CloudWatch's RequestCount).
    let counts = lb.request_counts();
    let count = |arn: &str| counts.iter().find(|c| c.target_group_arn == arn).unwrap().clone();
    assert_eq!(count("tg-a").requests, a.requests.load(Ordering::SeqCst) as u64);
    assert_eq!(count("tg-b").requests, b.requests.load(Ordering::SeqCst) as u64);
    assert_eq!(count("tg-a").requests + count("tg-b").requests, n as u64);
    assert_eq!((count("tg-a").registered, count("tg-b").registered), (1, 1));
    lb.shutdown();
}

#[tokio::test]
async fn tcp_listener_forwards_connections() {
    let (e1, h1) = tcp_echo("one").await;
    let (e2, h2) = tcp_echo("two").await;
    let mut g1 = group("tg-tcp", vec![target(e1), target(e2)]);
    g1.protocol = TargetProtocol::Tcp;
    g1.health_check.protocol = HealthProtocol::Tcp;
    let snap = berth_lb::Snapshot {
        version: 1,
        load_balancers: vec![LoadBalancer {
            arn: "arn:lb/net/n".into(),
            name: "n".into(),
            lb_type: LbType::Network,
            bind_address: "127.0.0.1".parse().unwrap(),
            idle_timeout_seconds: 350,
            listeners: vec![Listener {
                arn: "arn:listener/tcp".into(),
                protocol: ListenerProtocol::Tcp,
                port: 0,
                default_actions: vec![forward("tg-tcp")],
                rules: vec![],
            }],
        }],
        target_groups: vec![g1],
    };
    let lb = Lb::new(LbOptions::default());
    lb.apply(&snap).unwrap();
    let addr = lb.listener_addr("arn:listener/tcp").unwrap();
    wait_state(&lb, "tg-tcp", HealthState::Healthy).await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let msg = format!("hello {i}");
        s.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        let (who, echoed) = got.split_once(':').unwrap();
        assert_eq!(echoed, msg);
        seen.insert(who.to_string());
    }
    assert_eq!(seen.len(), 2, "connections spread over both targets");
    // One target dies: connections go to the other one.
    h1.abort();
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two:x");
    }
    h2.abort();
    lb.shutdown();
}
