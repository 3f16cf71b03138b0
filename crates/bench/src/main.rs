//! `berth-loadgen`: a closed-loop load generator for AWS JSON 1.1 endpoints.
//!
//! Each of `--connections` keep-alive HTTP/1.1 connections sends one SigV4-signed request,
//! waits for the answer, records the latency and sends the next, for `--seconds`. It prints
//! one JSON line: requests, errors, requests/s, p50/p99/max latency in microseconds. The same
//! requests go to Berth and to the baseline (moto), so the figures compare like with like.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_sigv4::{Credentials, Signer};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

#[derive(Parser, Clone)]
struct Args {
    /// e.g. http://127.0.0.1:8080
    #[arg(long)]
    endpoint: String,
    /// describe | list | register | setup (registers the `bench` family once) | fill N
    #[arg(long)]
    op: String,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Worker threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// AWS shared credentials file to sign with (profile default); dummy keys if absent.
    #[arg(long)]
    credentials: Option<std::path::PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// With --op fill: how many revisions to register.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// A label for the output line.
    #[arg(long, default_value = "")]
    label: String,
}

fn load_credentials(path: Option<&std::path::Path>) -> anyhow::Result<Credentials> {
    let Some(path) = path else {
        return Ok(Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        });
    };
    berth_sigv4::credentials::from_file(path, "default")
        .with_context(|| format!("reading credentials from {}", path.display()))
}

fn request_for(op: &str, conn: usize, seq: u64) -> (&'static str, String) {
    match op {
        "describe" => ("DescribeTaskDefinition", r#"{"taskDefinition":"bench:1"}"#.to_string()),
        "list" => {
            ("ListTaskDefinitions", r#"{"familyPrefix":"bench","maxResults":100}"#.to_string())
        }
        "register" | "setup" | "fill" => (
            "RegisterTaskDefinition",
            format!(
                r#"{{"family":"{}","containerDefinitions":[{{"name":"web","image":"berth-demo:latest","memory":64,"cpu":128,"essential":true,"portMappings":[{{"containerPort":8080,"hostPort":0}}],"environment":[{{"name":"SEQ","value":"{seq}"}}]}}]}}"#,
                if op == "register" { format!("bench-reg-{conn}") } else { "bench".to_string() }
            ),
        ),
        _ => ("ListClusters", "{}".to_string()),
    }
}

struct Conn {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
    endpoint: String,
}

async fn connect(endpoint: &str) -> anyhow::Result<Conn> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
    let stream =
        TcpStream::connect(&host).await.with_context(|| format!("connecting to {host}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender, host, endpoint: endpoint.to_string() })
}

/// Sends one signed request; returns the status. Reconnects first if the server closed the
/// connection (moto's development server closes it after every response).
async fn send(c: &mut Conn, signer: &Signer, op: &str, body: String) -> anyhow::Result<u16> {
    if c.sender.is_closed() || c.sender.ready().await.is_err() {
        *c = connect(&c.endpoint.clone()).await?;
    }
    let req = berth_bench::signed_ecs_request(signer, &c.host, op, body)?;
    c.sender.ready().await?;
    let resp = c.sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await?;
    Ok(status)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let creds = load_credentials(args.credentials.as_deref())?;
    let signer = Arc::new(Signer::new(creds, args.region.clone(), "ecs"));
    match args.op.as_str() {
        "setup" => {
            let mut c = connect(&args.endpoint).await?;
            let (op, body) = request_for("setup", 0, 0);
            let status = send(&mut c, &signer, op, body).await?;
            if status != 200 {
                bail!("setup failed with HTTP {status}");
            }
            return Ok(());
        }
        "fill" => {
            // Registers `count` revisions over `connections` connections, as fast as it can.
            let started = Instant::now();
            let per = args.count.div_ceil(args.connections);
            let mut tasks = Vec::new();
            for conn in 0..args.connections {
                let signer = signer.clone();
                let endpoint = args.endpoint.clone();
                tasks.push(tokio::spawn(async move {
                    let mut c = connect(&endpoint).await?;
                    for i in 0..per {
                        let (op, body) = request_for("fill", conn, i as u64);
                        let status = send(&mut c, &signer, op, body).await?;
                        if status != 200 {
                            bail!("register failed with HTTP {status}");
                        }
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            println!(
                "{{\"op\":\"fill\",\"count\":{},\"seconds\":{:.2}}}",
                per * args.connections,
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        _ => {}
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let signer = signer.clone();
        let endpoint = args.endpoint.clone();
        let opname = args.op.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = connect(&endpoint).await?;
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let (op, body) = request_for(&opname, conn, seq);
                seq += 1;
                let t0 = Instant::now();
                match send(&mut c, &signer, op, body).await {
                    Ok(200) => lat.push(t0.elapsed().as_micros() as u32),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        c = connect(&endpoint).await?;
                    }
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64().max(args.seconds);
    all.sort_unstable();
    let pct = |p: f64| {
        if all.is_empty() { 0 } else { all[((all.len() - 1) as f64 * p) as usize] }
    };
    println!(
        "{{\"label\":\"{}\",\"op\":\"{}\",\"requests\":{},\"errors\":{},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        args.label,
        args.op,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0)
    );
    Ok(())
}
