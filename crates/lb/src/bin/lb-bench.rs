//! `berth-lb-bench`: the pieces of the load balancer benchmark (bench/lb.sh), each its own
//! process so the three set-ups share nothing but the machine:
//! * `backend`: a small hyper HTTP/1.1 server answering `GET /` with 13 bytes;
//! * `lb`: Berth's data plane with one ALB listener forwarding to `--backend`;
//! * `load`: a closed-loop generator: `--connections` keep-alive HTTP/1.1 connections, each
//!   sending `GET /`, waiting for the whole answer and sending the next, for `--seconds` after
//!   `--warmup` seconds; prints one JSON line (requests/s, p50/p99/max in microseconds,
//!   errors). Bounded in time, loopback only.
#![forbid(unsafe_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use berth_lb::config::*;
use berth_lb::{Lb, LbOptions, Snapshot};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Cli {
    /// Tokio worker threads (1: the current-thread scheduler).
    #[arg(long, default_value_t = 2, global = true)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Backend {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    Lb {
        #[arg(long)]
        backend: SocketAddr,
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    Load {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        #[arg(long, default_value = "")]
        label: String,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Backend { listen } => backend(listen).await,
            Cmd::Lb { backend, port } => lb(backend, port).await,
            Cmd::Load { target, connections, seconds, warmup, label } => {
                load(target, connections, seconds, warmup, &label).await
            }
        }
    })
}

async fn backend(listen: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                    b"Hello, World!",
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn lb(backend: SocketAddr, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let snap = Snapshot {
        version: 1,
        load_balancers: vec![LoadBalancer {
            arn: "bench-lb".into(),
            name: "bench".into(),
            lb_type: LbType::Application,
            bind_address: "127.0.0.1".parse()?,
            idle_timeout_seconds: 60,
            listeners: vec![Listener {
                arn: "bench-listener".into(),
                protocol: ListenerProtocol::Http,
                port,
                default_actions: vec![Action::Forward {
                    target_groups: vec![WeightedTargetGroup {
                        target_group_arn: "bench-tg".into(),
                        weight: 1,
                    }],
                    stickiness: None,
                }],
                rules: vec![Rule {
                    arn: "bench-rule".into(),
                    priority: 1,
                    conditions: vec![Condition::PathPattern { values: vec!["/never/*".into()] }],
                    actions: vec![Action::FixedResponse {
                        status_code: 404,
                        content_type: None,
                        message_body: None,
                    }],
                }],
            }],
        }],
        target_groups: vec![TargetGroup {
            arn: "bench-tg".into(),
            name: "bench".into(),
            protocol: TargetProtocol::Http,
            port: backend.port(),
            target_type: TargetType::Ip,
            health_check: HealthCheck {
                interval_seconds: 5,
                timeout_seconds: 2,
                healthy_threshold: 2,
                ..HealthCheck::default()
            },
            attributes: TargetGroupAttributes::default(),
            targets: vec![Target {
                id: "backend".into(),
                ip: backend.ip(),
                port: backend.port(),
                state: Registration::Registered,
            }],
        }],
    };
    let lb = Lb::new(LbOptions::default());
    let applied = lb.apply(&snap)?;
    if let Some((arn, e)) = applied.bind_errors.first() {
        return Err(format!("{arn}: {e}").into());
    }
    println!("listening on {}", lb.listener_addr("bench-listener").ok_or("no listener")?);
    std::future::pending::<()>().await;
    Ok(())
}

async fn load(
    target: SocketAddr,
    connections: usize,
    seconds: f64,
    warmup: f64,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now() + Duration::from_secs_f64(warmup);
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            let mut lat: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            'conn: loop {
                if Instant::now() >= end {
                    break;
                }
                let Ok(stream) = TcpStream::connect(target).await else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                else {
                    errors += 1;
                    continue;
                };
                tokio::spawn(conn);
                loop {
                    let now = Instant::now();
                    if now >= end {
                        break 'conn;
                    }
                    let req = hyper::Request::get("/")
                        .header("host", target.to_string())
                        .body(Empty::<Bytes>::new())
                        .expect("static request");
                    let ok = match send.send_request(req).await {
                        Ok(resp) => {
                            resp.status().is_success() && resp.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if now >= start {
                        if ok {
                            lat.push(now.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    if !ok {
                        continue 'conn;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        serde_json::json!({
            "label": label,
            "requests": all.len(),
            "errors": errors,
            "rps": all.len() as f64 / seconds,
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
            "max_us": all.last().copied().unwrap_or(0),
        })
    );
    Ok(())
}
