//! `berth-taskbench`: how fast Berth brings tasks to RUNNING, next to raw Docker on the same
//! image, in one run on one machine (driven by `bench/tasks.sh`, which starts the server and
//! the agent).
//!
//! 1. RunTask -> RUNNING latency: a signed RunTask (count 1), then DescribeTasks every
//!    `--poll-ms` until `lastStatus` is RUNNING. Each sample starts from the same state: the
//!    previous task was stopped (StopTask), reached STOPPED, and its container is gone.
//! 2. The baseline, interleaved with 1 (Berth sample i, then Docker sample i): create, start
//!    and inspect-until-running of the same image with the configuration the agent gives it
//!    (16 MiB, 8080 published to a dynamic host port, the same labels, env, cpu shares and
//!    host-gateway entry), through `berth_runtime_docker::DockerRuntime`; removed after.
//! 3. 100 tasks to RUNNING: RunTask count=10 x 10 back to back, then DescribeTasks until all
//!    are RUNNING; and 100 raw containers, sequentially and 8 at a time.
//! 4. RSS of the agent and the server (VmRSS), idle before the run and after it.
//!
//! `--cleanup-label K=V` instead removes every container carrying that label and exits (the
//! script's exit trap).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use berth_model::lifecycle::TaskStatus;
use berth_runtime::{ContainerSpec, PortSpec, Protocol, Runtime};
use berth_runtime_docker::DockerRuntime;
use berth_sigv4::{Credentials, Signer};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

#[derive(Parser, Clone)]
struct Args {
    /// Berth's endpoint, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    endpoint: Option<String>,
    /// AWS shared credentials file (profile default) to sign with.
    #[arg(long)]
    credentials: Option<std::path::PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value = "default")]
    cluster: String,
    /// The agent's container instance ARN (its containers carry it as a label).
    #[arg(long)]
    instance_arn: Option<String>,
    #[arg(long)]
    agent_pid: Option<u32>,
    #[arg(long)]
    server_pid: Option<u32>,
    /// Labels this run's raw-Docker containers with `berth.bench=<run id>`.
    #[arg(long, default_value = "taskbench")]
    run_id: String,
    #[arg(long, default_value = "berth-demo:latest")]
    image: String,
    /// Latency samples per side.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Unmeasured warm-up samples per side.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// DescribeTasks polling interval of the latency test, milliseconds.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Tasks of the bulk test (a multiple of 10).
    #[arg(long, default_value_t = 100)]
    bulk: usize,
    /// Concurrency of the concurrent raw-Docker bulk run.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Idle time before the first RSS reading, seconds.
    #[arg(long, default_value_t = 3)]
    idle_secs: u64,
    /// Only remove every container with this label (K=V; repeatable), then exit.
    #[arg(long)]
    cleanup_label: Vec<String>,
}

const FAMILY: &str = "taskbench";
const BENCH_LABEL: &str = "berth.bench";
const TASK_ARN_LABEL: &str = "com.amazonaws.ecs.task-arn";
const INSTANCE_LABEL: &str = "berth.container-instance-arn";
const MIB: u64 = 1024 * 1024;

fn load_credentials(path: &std::path::Path) -> anyhow::Result<Credentials> {
    berth_sigv4::credentials::from_file(path, "default")
        .with_context(|| format!("reading credentials from {}", path.display()))
}

/// One keep-alive connection to Berth, signing every request.
struct Ecs {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
    signer: Signer,
}

impl Ecs {
    async fn connect(endpoint: &str, signer: Signer) -> anyhow::Result<Self> {
        let host = endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
        let sender = Self::handshake(&host).await?;
        Ok(Self { sender, host, signer })
    }

    async fn handshake(host: &str) -> anyhow::Result<http1::SendRequest<Full<Bytes>>> {
        let stream =
            TcpStream::connect(host).await.with_context(|| format!("connecting to {host}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// Calls an ECS operation; an AWS error is an `Err` naming its type and message.
    async fn call(&mut self, op: &str, body: &Value) -> anyhow::Result<Value> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = Self::handshake(&self.host).await?;
        }
        let body = body.to_string();
        let req = berth_bench::signed_ecs_request(&self.signer, &self.host, op, body)?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status != 200 {
            bail!("{op}: HTTP {status}: {} {}", v["__type"], v["message"]);
        }
        Ok(v)
    }

    /// RunTask; the ARNs of the tasks started (any failure is an error).
    async fn run_task(
        &mut self,
        cluster: &str,
        td: &str,
        count: usize,
    ) -> anyhow::Result<Vec<String>> {
        let r = self
            .call("RunTask", &json!({"cluster": cluster, "taskDefinition": td, "count": count}))
            .await?;
        if r["failures"].as_array().is_some_and(|f| !f.is_empty()) {
            bail!("RunTask failures: {}", r["failures"]);
        }
        let arns: Vec<String> = r["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["taskArn"].as_str().map(str::to_string))
            .collect();
        if arns.len() != count {
            bail!("RunTask started {} tasks, not {count}: {r}", arns.len());
        }
        Ok(arns)
    }

    async fn describe(&mut self, cluster: &str, arns: &[String]) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(arns.len());
        for chunk in arns.chunks(100) {
            let r =
                self.call("DescribeTasks", &json!({"cluster": cluster, "tasks": chunk})).await?;
            out.extend(r["tasks"].as_array().cloned().unwrap_or_default());
        }
        Ok(out)
    }

    /// Polls DescribeTasks every `every` until all `arns` have `lastStatus == status`.
    async fn wait_status(
        &mut self,
        cluster: &str,
        arns: &[String],
        status: TaskStatus,
        every: Duration,
        limit: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        let deadline = Instant::now() + limit;
        let last = |t: &Value| t["lastStatus"].as_str().and_then(|s| s.parse::<TaskStatus>().ok());
        loop {
            let tasks = self.describe(cluster, arns).await?;
            if tasks.len() == arns.len() && tasks.iter().all(|t| last(t) == Some(status)) {
                return Ok(tasks);
            }
            if let Some(t) =
                tasks.iter().find(|t| last(t) == Some(TaskStatus::Stopped) && !status.is_terminal())
            {
                bail!(
                    "task stopped instead of reaching {status}: {} {}",
                    t["stoppedReason"],
                    t["containers"]
                );
            }
            if Instant::now() >= deadline {
                let n = tasks.iter().filter(|t| last(t) == Some(status)).count();
                bail!("only {n} of {} tasks reached {status} within {limit:?}", arns.len());
            }
            tokio::time::sleep(every).await;
        }
    }
}

fn epoch_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50/p99 (nearest rank), mean, min, max of milliseconds.
struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

fn stats(v: &[f64]) -> Stats {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return Stats { p50: 0.0, p99: 0.0, mean: 0.0, min: 0.0, max: 0.0 };
    }
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    Stats {
        p50: rank(0.50),
        p99: rank(0.99),
        mean: s.iter().sum::<f64>() / s.len() as f64,
        min: s[0],
        max: s[s.len() - 1],
    }
}

fn rss_mb(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The 1-minute load average.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn label(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

/// The raw-Docker twin of what the agent creates for the task definition's container: same
/// image, memory limit, published port, cpu shares, environment, host-gateway entry and
/// label set (with `berth.bench` in place of the instance label).
fn raw_spec(image: &str, run_id: &str, n: usize) -> ContainerSpec {
    let id = format!("{run_id}-{n}");
    let labels: BTreeMap<String, String> = [
        label("com.amazonaws.ecs.cluster", "taskbench-raw"),
        label(TASK_ARN_LABEL, &format!("arn:aws:ecs:us-east-1:000000000000:task/raw/{id}")),
        label("com.amazonaws.ecs.container-name", "web"),
        label("com.amazonaws.ecs.task-definition-family", FAMILY),
        label("com.amazonaws.ecs.task-definition-version", "1"),
        label(BENCH_LABEL, run_id),
    ]
    .into();
    ContainerSpec {
        name: format!("ecs-{FAMILY}-raw-web-{id}"),
        image: image.to_string(),
        // The agent's environment: its execution env and the metadata endpoint's URIs.
        env: vec![
            ("AWS_EXECUTION_ENV".into(), "AWS_ECS_EC2".into()),
            ("ECS_CONTAINER_METADATA_URI_V4".into(), format!("http://172.17.0.1:1/v4/{id}-web")),
            ("ECS_CONTAINER_METADATA_URI".into(), format!("http://172.17.0.1:1/v4/{id}-web")),
        ],
        labels,
        cpu_shares: Some(2),
        memory_limit_bytes: Some(16 * MIB),
        ports: vec![PortSpec {
            container_port: 8080,
            host_port: None,
            protocol: Protocol::Tcp,
            host_ip: None,
        }],
        host_gateway: true,
        ..Default::default()
    }
}

/// Times of one raw create + start + inspect-until-running.
struct RawSample {
    total: Duration,
    create: Duration,
    start: Duration,
    inspect: Duration,
    id: String,
}

async fn raw_start(docker: &DockerRuntime, spec: &ContainerSpec) -> anyhow::Result<RawSample> {
    let t0 = Instant::now();
    let id = docker.create(spec).await.context("docker create")?;
    let t1 = Instant::now();
    docker.start(&id).await.context("docker start")?;
    let t2 = Instant::now();
    loop {
        let st = docker.inspect(&id).await?.context("container vanished")?;
        if st.is_running() {
            if st.host_port(8080, Protocol::Tcp).is_none() {
                bail!("{id} runs without a published port");
            }
            break;
        }
        if Instant::now() - t2 > Duration::from_secs(30) {
            bail!("{id} never ran: {:?}", st.state);
        }
    }
    let t3 = Instant::now();
    Ok(RawSample { total: t3 - t0, create: t1 - t0, start: t2 - t1, inspect: t3 - t2, id })
}

async fn raw_remove(docker: &DockerRuntime, id: &str) -> anyhow::Result<()> {
    // As the agent does: stop (SIGTERM), then remove.
    docker.stop(id, Duration::from_secs(10)).await?;
    docker.remove(id).await?;
    Ok(())
}

/// Removes `ids` 8 at a time.
async fn raw_remove_all(docker: &DockerRuntime, ids: Vec<String>) -> anyhow::Result<()> {
    let queue = Arc::new(tokio::sync::Mutex::new(ids));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let queue = queue.clone();
        let docker = docker.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(id) = queue.lock().await.pop() else { return anyhow::Ok(()) };
                docker.remove(&id).await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    Ok(())
}

/// Waits until no container carries `labels` (the agent removes a task's containers right
/// after reporting it STOPPED).
async fn wait_gone(docker: &DockerRuntime, labels: &[(String, String)]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = docker.list(labels).await?;
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{} containers with {labels:?} still exist", left.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One Berth latency sample and the task's own timestamps (epoch seconds, 1 ms resolution).
struct BerthSample {
    total: Duration,
    run_task: Duration,
    sent: f64,
    seen: f64,
    created: f64,
    pull_started: f64,
    pull_stopped: f64,
    started: f64,
}

async fn berth_sample(
    ecs: &mut Ecs,
    docker: &DockerRuntime,
    args: &Args,
    td: &str,
) -> anyhow::Result<BerthSample> {
    let poll = Duration::from_millis(args.poll_ms);
    let sent = epoch_now();
    let t0 = Instant::now();
    let arns = ecs.run_task(&args.cluster, td, 1).await?;
    let run_task = t0.elapsed();
    let tasks = ecs
        .wait_status(&args.cluster, &arns, TaskStatus::Running, poll, Duration::from_secs(60))
        .await?;
    let total = t0.elapsed();
    let seen = epoch_now();
    let t = &tasks[0];
    let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    let sample = BerthSample {
        total,
        run_task,
        sent,
        seen,
        created: f("createdAt"),
        pull_started: f("pullStartedAt"),
        pull_stopped: f("pullStoppedAt"),
        started: f("startedAt"),
    };
    // Back to the starting state: stopped, and its container removed.
    ecs.call("StopTask", &json!({"cluster": args.cluster, "task": arns[0], "reason": "taskbench"}))
        .await?;
    ecs.wait_status(
        &args.cluster,
        &arns,
        TaskStatus::Stopped,
        Duration::from_millis(20),
        Duration::from_secs(60),
    )
    .await?;
    wait_gone(docker, &[label(TASK_ARN_LABEL, &arns[0])]).await?;
    Ok(sample)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run(args))
}

async fn cleanup(docker: &DockerRuntime, specs: &[String]) -> anyhow::Result<()> {
    for s in specs {
        let (k, v) = s.split_once('=').context("--cleanup-label wants K=V")?;
        let found = docker.list(&[label(k, v)]).await?;
        let n = found.len();
        raw_remove_all(docker, found.into_iter().map(|c| c.id).collect()).await?;
        if n > 0 {
            eprintln!("taskbench cleanup: removed {n} containers labelled {k}={v}");
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let docker = DockerRuntime::connect()?;
    docker.ping().await?;
    if !args.cleanup_label.is_empty() {
        return cleanup(&docker, &args.cleanup_label).await;
    }
    let endpoint = args.endpoint.clone().context("--endpoint is required")?;
    let creds =
        load_credentials(args.credentials.as_deref().context("--credentials is required")?)?;
    let instance = args.instance_arn.clone().context("--instance-arn is required")?;
    if docker.image(&args.image).await?.is_none() {
        bail!("the image {} is missing: run scripts/build-demo-image.sh", args.image);
    }
    let mut ecs = Ecs::connect(&endpoint, Signer::new(creds, args.region.clone(), "ecs")).await?;
    let rss = |pid: Option<u32>| pid.and_then(rss_mb);

    let load_start = loadavg();
    // 5 (first): RSS idle, registered, no task yet.
    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let agent_idle = rss(args.agent_pid);
    let server_idle = rss(args.server_pid);

    let reg = ecs
        .call(
            "RegisterTaskDefinition",
            &json!({"family": FAMILY, "containerDefinitions": [{
                "name": "web", "image": args.image, "memory": 16, "essential": true,
                "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}]}]}),
        )
        .await?;
    let td = reg["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .context("RegisterTaskDefinition returned no ARN")?
        .to_string();

    // 1 + 2: latency, interleaved.
    let mut berth: Vec<BerthSample> = Vec::new();
    let mut raw: Vec<RawSample> = Vec::new();
    for i in 0..args.warmup + args.samples {
        let b = berth_sample(&mut ecs, &docker, &args, &td).await?;
        let r = raw_start(&docker, &raw_spec(&args.image, &args.run_id, i)).await?;
        raw_remove(&docker, &r.id).await?;
        if i >= args.warmup {
            berth.push(b);
            raw.push(r);
        }
    }

    let load_latency = loadavg();

    // 4: 100 tasks.
    let calls = args.bulk.div_ceil(10);
    let t0 = Instant::now();
    let mut arns = Vec::new();
    for _ in 0..calls {
        arns.extend(ecs.run_task(&args.cluster, &td, 10).await?);
    }
    let bulk_calls = t0.elapsed();
    ecs.wait_status(
        &args.cluster,
        &arns,
        TaskStatus::Running,
        Duration::from_millis(50),
        Duration::from_secs(300),
    )
    .await?;
    let bulk_berth = t0.elapsed();
    let running = docker.list(&[label(INSTANCE_LABEL, &instance)]).await?;
    let running = running.iter().filter(|c| c.state.is_running()).count();
    let t1 = Instant::now();
    for a in &arns {
        ecs.call("StopTask", &json!({"cluster": args.cluster, "task": a, "reason": "taskbench"}))
            .await?;
    }
    ecs.wait_status(
        &args.cluster,
        &arns,
        TaskStatus::Stopped,
        Duration::from_millis(50),
        Duration::from_secs(300),
    )
    .await?;
    let bulk_stop = t1.elapsed();
    wait_gone(&docker, &[label(INSTANCE_LABEL, &instance)]).await?;
    let bulk_gone = t1.elapsed();

    let n = calls * 10;
    let base = args.warmup + args.samples;
    let t2 = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(raw_start(&docker, &raw_spec(&args.image, &args.run_id, base + i)).await?.id);
    }
    let bulk_seq = t2.elapsed();
    raw_remove_all(&docker, ids).await?;

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t3 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (docker, next, image, run_id) =
            (docker.clone(), next.clone(), args.image.clone(), args.run_id.clone());
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(ids);
                }
                ids.push(raw_start(&docker, &raw_spec(&image, &run_id, base + n + i)).await?.id);
            }
        }));
    }
    let mut ids = Vec::new();
    for w in workers {
        ids.extend(w.await??);
    }
    let bulk_conc = t3.elapsed();
    raw_remove_all(&docker, ids).await?;
    wait_gone(&docker, &[label(BENCH_LABEL, &args.run_id)]).await?;

    tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
    let agent_after = rss(args.agent_pid);
    let server_after = rss(args.server_pid);

    report(&Report {
        args: &args,
        berth: &berth,
        raw: &raw,
        bulk_calls,
        bulk_berth,
        bulk_running_containers: running,
        bulk_stop,
        bulk_gone,
        bulk_seq,
        bulk_conc,
        n,
        rss: [agent_idle, server_idle, agent_after, server_after],
        load: [load_start, load_latency],
    });
    Ok(())
}

struct Report<'a> {
    args: &'a Args,
    berth: &'a [BerthSample],
    raw: &'a [RawSample],
    bulk_calls: Duration,
    bulk_berth: Duration,
    bulk_running_containers: usize,
    bulk_stop: Duration,
    bulk_gone: Duration,
    bulk_seq: Duration,
    bulk_conc: Duration,
    n: usize,
    rss: [Option<f64>; 4],
    /// 1-minute load average before and after the latency samples (the machine may be shared).
    load: [String; 2],
}

fn report(r: &Report<'_>) {
    let a = r.args;
    let row = |name: &str, v: &[f64]| {
        let s = stats(v);
        println!(
            "{name:<40} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            s.p50, s.p99, s.mean, s.min, s.max
        );
    };
    let b_total: Vec<f64> = r.berth.iter().map(|s| ms(s.total)).collect();
    let r_total: Vec<f64> = r.raw.iter().map(|s| ms(s.total)).collect();
    println!();
    println!(
        "image {}; container memory 16 MiB, 8080/tcp published to a dynamic host port; N={} per side after {} warm-up, interleaved",
        a.image, a.samples, a.warmup
    );
    println!(
        "Berth: signed RunTask sent -> DescribeTasks says RUNNING (polled every {} ms, so +{:.1} ms on average); each sample from an empty instance",
        a.poll_ms,
        a.poll_ms as f64 / 2.0
    );
    println!(
        "Docker: create -> start -> inspect says running, via DockerRuntime (bollard, unix socket); same config and labels"
    );
    println!(
        "1-minute load average: {} before, {} after the latency samples ({} CPUs)",
        r.load[0],
        r.load[1],
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency (ms)", "p50", "p99", "mean", "min", "max"
    );
    row("Berth RunTask -> RUNNING", &b_total);
    row("raw Docker create+start -> running", &r_total);
    let (bp, rp) = (stats(&b_total).p50, stats(&r_total).p50);
    println!(
        "{:<40} {:>7.2}x   (target: within 1.3x at p50; Berth - Docker = {:+.1} ms)",
        "ratio p50 Berth / raw Docker",
        bp / rp,
        bp - rp
    );
    println!();
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "Berth breakdown (ms)", "p50", "p99", "mean", "min", "max"
    );
    let col = |f: &dyn Fn(&BerthSample) -> f64| -> Vec<f64> { r.berth.iter().map(f).collect() };
    row("  RunTask round trip", &col(&|s| ms(s.run_task)));
    row("  sent -> createdAt (server clock)", &col(&|s| (s.created - s.sent) * 1000.0));
    row("  createdAt -> pullStartedAt (agent)", &col(&|s| (s.pull_started - s.created) * 1000.0));
    row("  pullStartedAt -> pullStoppedAt", &col(&|s| (s.pull_stopped - s.pull_started) * 1000.0));
    row("  pullStoppedAt -> startedAt", &col(&|s| (s.started - s.pull_stopped) * 1000.0));
    row("  startedAt -> seen RUNNING", &col(&|s| (s.seen - s.started) * 1000.0));
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "raw Docker breakdown (ms)", "p50", "p99", "mean", "min", "max"
    );
    let rcol = |f: &dyn Fn(&RawSample) -> Duration| -> Vec<f64> {
        r.raw.iter().map(|s| ms(f(s))).collect()
    };
    row("  create", &rcol(&|s| s.create));
    row("  start", &rcol(&|s| s.start));
    row("  inspect", &rcol(&|s| s.inspect));
    println!();
    let per = |d: Duration| r.n as f64 / d.as_secs_f64();
    println!("{:<52} {:>9} {:>9}", format!("{} containers to running", r.n), "seconds", "per s");
    println!(
        "{:<52} {:>9.2} {:>9.1}   (RunTask calls done at {:.2} s; {} containers running)",
        format!("Berth: RunTask count=10 x {}, until all RUNNING", r.n / 10),
        r.bulk_berth.as_secs_f64(),
        per(r.bulk_berth),
        r.bulk_calls.as_secs_f64(),
        r.bulk_running_containers
    );
    println!(
        "{:<52} {:>9.2} {:>9.1}",
        "raw Docker, sequential",
        r.bulk_seq.as_secs_f64(),
        per(r.bulk_seq)
    );
    println!(
        "{:<52} {:>9.2} {:>9.1}",
        format!("raw Docker, {} at a time", a.concurrency),
        r.bulk_conc.as_secs_f64(),
        per(r.bulk_conc)
    );
    println!(
        "{:<52} {:>9.2}            (containers removed at {:.2} s)",
        format!("Berth: StopTask x {} until all STOPPED", r.n),
        r.bulk_stop.as_secs_f64(),
        r.bulk_gone.as_secs_f64()
    );
    println!();
    let mb = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
    println!("{:<52} {:>9}", "RSS (VmRSS)", "MB");
    println!(
        "{:<52} {:>9}   (target < 20 MB)",
        format!("agent, idle {} s after registering, no task", a.idle_secs),
        mb(r.rss[0])
    );
    println!("{:<52} {:>9}", "server, same moment", mb(r.rss[1]));
    println!("{:<52} {:>9}", "agent, idle after the run (all tasks stopped)", mb(r.rss[2]));
    println!("{:<52} {:>9}", "server, idle after the run", mb(r.rss[3]));
}
