//! `berth-loadgen`: a closed-loop load generator for AWS JSON 1.1 endpoints.
//!
//! Each of `--connections` keep-alive HTTP/1.1 connections sends one SigV4-signed request,
//! waits for the answer, records the latency and sends the next, for `--seconds`. It prints
//! one JSON line: requests, errors, requests/s, p50/p99/max latency in microseconds. The same
//! requests go to Berth and to the baseline (moto), so the figures compare like with like.
//!
//! Subcommands (bench/scale.sh), each signing with `--credentials`:
//! * `fleet`: simulates `--instances` container instances in this process (the real agent
//!   protocol, no Docker; see `berth_bench::fleet`), prints progress, stops on Ctrl-C or after
//!   `--duration`, optionally deregistering its instances;
//! * `runtask`: RunTask throughput (`--count` tasks a call from `--callers` closed loops, until
//!   `--tasks` are placed or `--seconds` pass);
//! * `service`: a service from CreateService to steady state, then a rolling update;
//! * `wait-fleet`: waits on a fleet's status file.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_sigv4::Signer;
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
    if let Some(sub) = std::env::args().nth(1)
        && SUBCOMMANDS.contains(&sub.as_str())
    {
        return subcommands::main();
    }
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let creds = berth_bench::api::load_credentials(args.credentials.as_deref())?;
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

const SUBCOMMANDS: [&str; 4] = ["fleet", "runtask", "service", "wait-fleet"];

mod subcommands {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use berth_bench::api::{Api, load_credentials, raise_nofile_limit};
    use berth_bench::{fleet, scale};
    use clap::{Args, Parser, Subcommand};

    #[derive(Parser)]
    #[command(name = "berth-loadgen")]
    struct Cli {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Subcommand)]
    enum Cmd {
        /// Simulate a fleet of container instances running the agent protocol (no Docker).
        Fleet(FleetArgs),
        /// RunTask throughput: placement + commit, `--count` tasks a call.
        Runtask(RunTaskArgs),
        /// A service from CreateService to steady state, then a rolling update.
        Service(ServiceArgs),
        /// Wait until a fleet's status file shows a field at least some value.
        WaitFleet(WaitArgs),
    }

    #[derive(Args, Clone)]
    struct Common {
        /// e.g. http://127.0.0.1:8080
        #[arg(long)]
        endpoint: String,
        /// AWS shared credentials file to sign with (profile default), e.g.
        /// DATA_DIR/credentials of `berth server`.
        #[arg(long)]
        credentials: Option<PathBuf>,
        #[arg(long, default_value = "us-east-1")]
        region: String,
        #[arg(long, default_value = "fleet")]
        cluster: String,
        /// Worker threads of the load generator itself.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    }

    #[derive(Args)]
    struct FleetArgs {
        #[command(flatten)]
        common: Common,
        /// How many container instances to simulate.
        #[arg(long, default_value_t = 100)]
        instances: usize,
        /// Stop after this many seconds (default: run until Ctrl-C / SIGTERM).
        #[arg(long)]
        duration: Option<f64>,
        /// Deregister (force) every instance when stopping.
        #[arg(long)]
        deregister: bool,
        /// Availability zones: REGIONa, REGIONb, ...
        #[arg(long, default_value_t = 3)]
        zones: usize,
        /// RegisterContainerInstance calls in flight at once.
        #[arg(long, default_value_t = 32)]
        register_concurrency: usize,
        /// How long each poll asks the server to hold it (the agent: 20).
        #[arg(long, default_value_t = 20)]
        poll_wait: u32,
        /// Seconds between progress lines.
        #[arg(long, default_value_t = 5.0)]
        progress_secs: f64,
        /// Rewrite this file with the fleet's figures as JSON every 250 ms.
        #[arg(long)]
        status_file: Option<PathBuf>,
    }

    #[derive(Args)]
    struct RunTaskArgs {
        #[command(flatten)]
        common: Common,
        /// Task definition to run; default: register a small one in `--family`.
        #[arg(long)]
        task_definition: Option<String>,
        #[arg(long, default_value = "scale")]
        family: String,
        #[arg(long, default_value_t = 32)]
        cpu: u32,
        #[arg(long, default_value_t = 64)]
        memory: u32,
        /// Tasks per RunTask call (1-10).
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Concurrent callers (closed loops).
        #[arg(long, default_value_t = 16)]
        callers: usize,
        /// Stop once this many tasks are placed...
        #[arg(long, default_value_t = 10_000)]
        tasks: u64,
        /// ...or after this many seconds, whichever comes first.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        #[arg(long, default_value = "")]
        label: String,
    }

    #[derive(Args)]
    struct ServiceArgs {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "scale-svc")]
        name: String,
        #[arg(long, default_value = "scale-svc")]
        family: String,
        /// Desired count.
        #[arg(long, default_value_t = 100)]
        count: u64,
        #[arg(long, default_value_t = 32)]
        cpu: u32,
        #[arg(long, default_value_t = 64)]
        memory: u32,
        /// Seconds CreateService may take to reach steady state before "timeout".
        #[arg(long, default_value_t = 120)]
        create_timeout: u64,
        /// After steady state, roll the service to a new revision.
        #[arg(long)]
        update: bool,
        #[arg(long, default_value_t = 180)]
        update_timeout: u64,
        /// A fleet status file: the update also waits until no old task runs on the fleet.
        #[arg(long)]
        fleet_status: Option<PathBuf>,
        #[arg(long, default_value = "")]
        label: String,
    }

    #[derive(Args)]
    struct WaitArgs {
        /// The fleet's `--status-file`.
        #[arg(long)]
        status_file: PathBuf,
        /// registered | running | started | polling ...
        #[arg(long, default_value = "running")]
        field: String,
        #[arg(long)]
        at_least: u64,
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    }

    pub fn main() -> anyhow::Result<()> {
        let cli = Cli::parse();
        let threads = match &cli.cmd {
            Cmd::Fleet(a) => a.common.threads,
            Cmd::Runtask(a) => a.common.threads,
            Cmd::Service(a) => a.common.threads,
            Cmd::WaitFleet(_) => 1,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        rt.block_on(async move {
            match cli.cmd {
                Cmd::Fleet(a) => run_fleet(a).await,
                Cmd::Runtask(a) => run_task(a).await,
                Cmd::Service(a) => run_service(a).await,
                Cmd::WaitFleet(a) => {
                    let out = scale::wait_fleet(
                        &a.status_file,
                        &a.field,
                        a.at_least,
                        Duration::from_secs(a.timeout),
                    )
                    .await;
                    println!("{out}");
                    Ok(())
                }
            }
        })
    }

    fn api(c: &Common) -> anyhow::Result<Api> {
        Api::new(&c.endpoint, load_credentials(c.credentials.as_deref())?, &c.region)
    }

    /// Resolves on Ctrl-C or SIGTERM.
    async fn interrupted() {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }

    async fn run_fleet(a: FleetArgs) -> anyhow::Result<()> {
        let limit = raise_nofile_limit();
        let needed = a.instances as u64 + 256;
        if limit < needed {
            eprintln!(
                "fleet: warning: the open-file limit is {limit} (hard limit reached) but {} instances hold about {needed} connections; raise it (ulimit -Hn) or expect connection errors",
                a.instances
            );
        }
        let api = api(&a.common)?;
        let mut cfg = fleet::FleetConfig::new(&a.common.cluster, a.instances);
        cfg.region = a.common.region.clone();
        cfg.zones = a.zones.max(1);
        cfg.register_concurrency = a.register_concurrency.max(1);
        cfg.poll_wait_seconds = a.poll_wait;
        cfg.deregister = a.deregister;
        println!(
            "fleet: simulating {} instances in cluster {} against {} (open-file limit {limit})",
            a.instances,
            a.common.cluster,
            api.endpoint()
        );
        let stats = Arc::new(fleet::FleetStats::default());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let duration = a.duration;
        tokio::spawn(async move {
            match duration {
                Some(d) => tokio::select! {
                    _ = interrupted() => {}
                    _ = tokio::time::sleep(Duration::from_secs_f64(d)) => {}
                },
                None => interrupted().await,
            }
            println!("fleet: stopping");
            let _ = stop_tx.send(true);
        });
        let (progress_stop_tx, progress_stop_rx) = tokio::sync::watch::channel(false);
        let progress = tokio::spawn(fleet::report_progress(
            stats.clone(),
            a.instances,
            Duration::from_secs_f64(a.progress_secs.max(0.1)),
            a.status_file.clone(),
            progress_stop_rx,
        ));
        let result = fleet::run(api, cfg, stats.clone(), stop_rx).await;
        let _ = progress_stop_tx.send(true);
        let _ = progress.await;
        result?;
        if a.deregister {
            println!(
                "fleet: deregistered {} instances",
                stats.deregistered.load(std::sync::atomic::Ordering::Relaxed)
            );
        }
        if let Some(e) = stats.last_error() {
            println!("fleet: last error: {e}");
        }
        println!("fleet: stopped");
        Ok(())
    }

    async fn run_task(a: RunTaskArgs) -> anyhow::Result<()> {
        let api = api(&a.common)?;
        let td = match a.task_definition.clone() {
            Some(td) => td,
            None => {
                scale::register_task_definition(&api, &a.family, a.cpu, a.memory, "runtask").await?
            }
        };
        let load = scale::RunTaskLoad {
            cluster: a.common.cluster.clone(),
            task_definition: td,
            count: a.count.clamp(1, 10),
            callers: a.callers,
            tasks: a.tasks,
            seconds: a.seconds,
            started_by: "berth-loadgen".into(),
        };
        let mut out = scale::run_tasks(&api, &load).await;
        out["label"] = a.label.into();
        println!("{out}");
        Ok(())
    }

    async fn run_service(a: ServiceArgs) -> anyhow::Result<()> {
        let api = api(&a.common)?;
        let b = scale::ServiceBench {
            cluster: a.common.cluster.clone(),
            name: a.name.clone(),
            family: a.family.clone(),
            count: a.count,
            cpu: a.cpu,
            memory: a.memory,
            create_cap: Duration::from_secs(a.create_timeout),
            update: a.update,
            update_cap: Duration::from_secs(a.update_timeout),
            fleet_status: a.fleet_status.clone(),
        };
        for mut line in scale::service_bench(&api, &b).await? {
            line["label"] = a.label.clone().into();
            println!("{line}");
        }
        Ok(())
    }
}
