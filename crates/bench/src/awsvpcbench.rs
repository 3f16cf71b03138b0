//! `berth-awsvpcbench`: how long the agent takes to bring an awsvpc task to RUNNING, next to
//! the same task in bridge mode and to a raw `docker run --network <bridge> --ip <ip>` of the
//! same image, side by side on one machine (needs root: the firewall is the host's iptables).
//! Two agents run: one with the default warm pool of pause containers (`awsvpc`, and
//! `bridge`), one without (`awsvpc-cold`: the pause container made and started per task).
//! Before every sample the warm agent's pool is full again (steady state: replenishing never
//! overlaps a measurement).
//!
//! The agent runs in-process against a scripted control plane (the server's awsvpc placement
//! is measured by `berth-taskbench` once the server sends `TaskNetwork`s): a sample starts
//! when a poll answer carrying the new task is released and ends when the agent reports the
//! task RUNNING; then the task is stopped and its containers (and, for awsvpc, its pause
//! container) are gone before the next sample; the subnet's bridge stays between samples as
//! the agent keeps it (`BRIDGE_LINGER`), like the raw side's network. The raw sample is create + start +
//! inspect-until-running of one container on a user-defined bridge with a fixed address.
//! Samples interleave (awsvpc-cold i, awsvpc i, bridge i, raw i). Everything carries this
//! run's instance labels or `berth.bench=<run>` and is removed at the end.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use berth_agent::client::ClientError;
use berth_agent::control::ControlPlane;
use berth_agent::task::network::{DEFAULT_POOL_SIZE, LABEL_POOL, pause_name, pool_name_prefix};
use berth_agent::{Agent, AgentConfig};
use berth_agent_protocol::{DesiredTask, PollRequest, PollResponse, TaskReport};
use berth_model::lifecycle::{DesiredTaskStatus, TaskStatus};
use berth_model::network::{IpProtocol, ResolvedRule, SecurityGroupRules, TaskNetwork};
use berth_runtime::{ContainerSpec, NetworkMode, NetworkSpec, Runtime};
use berth_runtime_docker::DockerRuntime;
use berth_wire::ecs::{
    ContainerInstance, RegisterContainerInstanceRequest, RegisterContainerInstanceResponse,
};
use clap::Parser;
use tokio::sync::watch;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "berth-demo:latest")]
    image: String,
    /// Measured samples per side.
    #[arg(long, default_value_t = 20)]
    samples: usize,
    /// Unmeasured warm-up samples per side.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// The third octet of the 10.213.x.0/24 test subnet.
    #[arg(long, default_value_t = 250)]
    subnet_octet: u8,
}

/// The server's side of the channel, scripted.
struct Script {
    arn: String,
    desired: watch::Sender<PollResponse>,
    reports: Mutex<Vec<(Instant, TaskReport)>>,
}

#[async_trait]
impl ControlPlane for Script {
    async fn register(
        &self,
        _: &RegisterContainerInstanceRequest,
    ) -> Result<RegisterContainerInstanceResponse, ClientError> {
        Ok(RegisterContainerInstanceResponse {
            container_instance: Some(ContainerInstance {
                container_instance_arn: Some(self.arn.clone()),
                ..Default::default()
            }),
        })
    }

    async fn poll(&self, req: &PollRequest) -> Result<PollResponse, ClientError> {
        let mut rx = self.desired.subscribe();
        let hold = Duration::from_secs(u64::from(req.wait_seconds));
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            let current = rx.borrow_and_update().clone();
            if current.version > req.seen_version {
                return Ok(current);
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Ok(current);
            }
        }
    }

    async fn report(&self, report: &TaskReport) -> Result<(), ClientError> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((Instant::now(), report.clone()));
        if report.change.status.as_deref() == Some("STOPPED") {
            let task = report.change.task.clone();
            self.desired.send_modify(|d| {
                d.tasks.retain(|t| Some(&t.task_arn) != task.as_ref());
                d.version += 1;
            });
        }
        Ok(())
    }
}

impl Script {
    fn set(&self, f: impl FnOnce(&mut PollResponse)) {
        self.desired.send_modify(|d| {
            f(d);
            d.version += 1;
        });
    }

    /// When `task` was first reported `status`.
    async fn wait(&self, task: &str, status: &str) -> anyhow::Result<Instant> {
        let t0 = Instant::now();
        loop {
            let found = {
                let r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
                r.iter()
                    .find(|(_, r)| {
                        r.change.task.as_deref() == Some(task)
                            && r.change.status.as_deref() == Some(status)
                    })
                    .map(|(t, _)| *t)
            };
            if let Some(t) = found {
                return Ok(t);
            }
            let stopped_early = status == "RUNNING" && {
                let r = self.reports.lock().unwrap_or_else(|e| e.into_inner());
                r.iter().any(|(_, r)| {
                    r.change.task.as_deref() == Some(task)
                        && r.change.status.as_deref() == Some("STOPPED")
                })
            };
            if stopped_early {
                bail!("{task} stopped instead of running");
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!("{task} never reached {status}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn td(image: &str, awsvpc: bool) -> berth_wire::ecs::TaskDefinition {
    let mut v = serde_json::json!({
        "family": "awsvpcbench", "revision": 1,
        "containerDefinitions": [{"name": "web", "image": image, "memory": 16,
            "portMappings": [{"containerPort": 8080}]}],
    });
    if awsvpc {
        v["networkMode"] = "awsvpc".into();
    }
    serde_json::from_value(v).expect("task definition")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p50_mean(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (0.0, 0.0);
    }
    (s[(s.len() - 1) / 2], s.iter().sum::<f64>() / s.len() as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = format!("{:x}", std::process::id());
    let instance = format!("arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{run}");
    let warm_instance = format!("{instance}-warm");
    let x = args.subnet_octet;
    let base = Ipv4Addr::new(10, 213, x, 0);
    let cidr = format!("10.213.{x}.0/24");
    let docker = DockerRuntime::connect()?;
    let rt: Arc<dyn Runtime> = Arc::new(docker.clone());
    let groups = vec![SecurityGroupRules {
        group_id: "sg-bench".into(),
        ingress: vec![ResolvedRule {
            protocol: IpProtocol::Tcp,
            from_port: Some(8080),
            to_port: Some(8080),
            peers: vec!["0.0.0.0/0".parse().expect("a CIDR")],
        }],
        egress: vec![],
    }];
    // The warm agent (default networking: a warm pool) and the cold one (no pool).
    let mut agents = Vec::new();
    let mut stops = Vec::new();
    let mut dirs = Vec::new();
    for (tag, warm) in [("warm", true), ("cold", false)] {
        let script = Arc::new(Script {
            arn: format!("{instance}-{tag}"),
            desired: watch::channel(PollResponse::default()).0,
            reports: Mutex::new(vec![]),
        });
        script.set(|d| {
            d.epoch = 1;
            d.security_groups = groups.clone();
        });
        let dir = std::env::temp_dir().join(format!("berth-awsvpcbench-{run}-{tag}"));
        std::fs::create_dir_all(&dir)?;
        let config = AgentConfig {
            server: "http://unused.invalid".into(),
            cluster: "bench".into(),
            data_dir: dir.clone(),
            region: "us-east-1".into(),
            instance_type: "bench".into(),
            availability_zone: "us-east-1a".into(),
            attributes: vec![],
            cpu: None,
            memory_mib: None,
            credentials: None,
            metadata_listen: Some("127.0.0.1:0".parse().map_err(anyhow::Error::msg)?),
            host_access: Default::default(),
        };
        let mut agent = Agent::register_with(config, rt.clone(), script.clone()).await?;
        if warm {
            agent = agent.with_warm_pool(DEFAULT_POOL_SIZE);
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async move {
            let _ = stop_rx.await;
        }));
        agents.push((script, format!("{instance}-{tag}")));
        stops.push((stop_tx, task));
        dirs.push(dir);
    }
    // The pause image is built once, before measuring.
    rt.pause_image().await.context("pause image")?;

    // The raw side's bridge.
    let raw_net = format!("berth-bench-raw-{run}");
    let raw_base = Ipv4Addr::new(10, 213, x.wrapping_sub(1), 0);
    docker
        .create_network(&NetworkSpec {
            name: raw_net.clone(),
            subnet: format!("{raw_base}/24"),
            gateway: Some(Ipv4Addr::from(u32::from(raw_base) + 1).to_string()),
            labels: BTreeMap::from([("berth.bench".to_string(), run.clone())]),
        })
        .await?;

    let mut results: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let total = args.warmup + args.samples;
    for i in 0..total {
        for side in ["awsvpc-cold", "awsvpc", "bridge", "raw"] {
            // Steady state: the warm agent's pool is full before every sample (its first
            // awsvpc task starts the pool).
            if i > 0 {
                let labels = [
                    (berth_agent::spec::LABEL_INSTANCE.to_string(), warm_instance.clone()),
                    (LABEL_POOL.to_string(), "1".to_string()),
                ];
                let prefix = pool_name_prefix(&warm_instance);
                let t0 = Instant::now();
                loop {
                    let idle = rt
                        .list(&labels)
                        .await?
                        .iter()
                        .filter(|c| c.name.starts_with(&prefix) && c.state.is_running())
                        .count();
                    if idle >= DEFAULT_POOL_SIZE {
                        break;
                    }
                    if t0.elapsed() > Duration::from_secs(60) {
                        bail!("the warm pool never refilled");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let took = match side {
                "raw" => {
                    let spec = ContainerSpec {
                        name: format!("berth-bench-raw-{run}-{i}"),
                        image: args.image.clone(),
                        labels: BTreeMap::from([("berth.bench".to_string(), run.clone())]),
                        memory_limit_bytes: Some(16 << 20),
                        cpu_shares: Some(2),
                        network_mode: NetworkMode::Named(raw_net.clone()),
                        ipv4_address: Some(Ipv4Addr::from(u32::from(raw_base) + 10).to_string()),
                        ..Default::default()
                    };
                    let t0 = Instant::now();
                    let id = docker.create(&spec).await?;
                    docker.start(&id).await?;
                    while !docker.inspect(&id).await?.is_some_and(|s| s.is_running()) {}
                    let took = t0.elapsed();
                    docker.stop(&id, Duration::from_secs(10)).await?;
                    docker.remove(&id).await?;
                    took
                }
                _ => {
                    let awsvpc = side.starts_with("awsvpc");
                    let script = &agents[usize::from(side == "awsvpc-cold")].0;
                    let arn =
                        format!("arn:aws:ecs:us-east-1:000000000000:task/bench/{side}{i}x{run}");
                    let ip = Ipv4Addr::from(u32::from(base) + 10);
                    let task = DesiredTask {
                        task_arn: arn.clone(),
                        desired_status: DesiredTaskStatus::Running,
                        last_status: TaskStatus::Pending,
                        task_definition: td(&args.image, awsvpc),
                        network: awsvpc.then(|| TaskNetwork {
                            eni_id: format!("eni-{i:017x}"),
                            subnet_id: format!("subnet-bench{run}"),
                            vpc_id: "vpc-bench".into(),
                            subnet_cidr: cidr.clone(),
                            gateway: Ipv4Addr::from(u32::from(base) + 1),
                            private_ip: ip,
                            mac_address: "0e:00:00:00:be:01".into(),
                            private_dns_name: "ip-bench.ec2.internal".into(),
                            security_groups: vec!["sg-bench".into()],
                            assign_public_ip: false,
                        }),
                        ..Default::default()
                    };
                    let t0 = Instant::now();
                    script.set(|d| d.tasks.push(task));
                    let running = script.wait(&arn, "RUNNING").await?;
                    let took = running - t0;
                    script.set(|d| {
                        for t in &mut d.tasks {
                            t.desired_status = DesiredTaskStatus::Stopped;
                        }
                    });
                    script.wait(&arn, "STOPPED").await?;
                    // Gone: its containers (and pause container, warm ones by name) removed.
                    let labels = [("com.amazonaws.ecs.task-arn".to_string(), arn.clone())];
                    let task_id = arn.rsplit('/').next().unwrap_or_default();
                    let pause = pause_name(Some("awsvpcbench"), task_id);
                    loop {
                        let gone = rt.list(&labels).await?.is_empty()
                            && rt.inspect(&pause).await?.is_none();
                        if gone {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    took
                }
            };
            if i >= args.warmup {
                results.entry(side).or_default().push(ms(took));
            }
        }
    }
    let (raw50, _) = p50_mean(&results["raw"]);
    println!("start to RUNNING, {} samples each (ms):", args.samples);
    println!("{:<12} {:>8} {:>8} {:>10}", "side", "p50", "mean", "p50/raw");
    for side in ["raw", "bridge", "awsvpc-cold", "awsvpc"] {
        let (p50, mean) = p50_mean(&results[side]);
        println!("{side:<12} {p50:>8.1} {mean:>8.1} {:>9.2}x", p50 / raw50);
    }
    for (stop_tx, task) in stops {
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    }
    let _ = docker.remove_network(&raw_net).await;
    for (_, inst) in &agents {
        let labels = [(berth_agent::spec::LABEL_INSTANCE.to_string(), inst.clone())];
        for c in rt.list(&labels).await.unwrap_or_default() {
            let _ = rt.remove(&c.id).await;
        }
        for n in rt.list_networks(&labels).await.unwrap_or_default() {
            let _ = rt.remove_network(&n.name).await;
        }
    }
    for dir in dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
