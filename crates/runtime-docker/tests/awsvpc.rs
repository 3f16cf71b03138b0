//! awsvpc building blocks against the real Docker Engine and the host's iptables: a subnet
//! bridge, pause containers (the locally built `berth-pause` image) holding each task's
//! network namespace with a fixed IP and MAC, security groups loaded into that namespace by
//! `berth-firewall`, and a shared task cgroup whose memory limit kills the container that
//! exceeds it.
//!
//! Everything a test makes carries `berth.test=<run id>` (containers, networks) and is
//! removed by label when its guard drops, also when the test fails. Subnets are
//! 10.213.x.0/24 (x from the process id) so parallel runs and other networks do not clash.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_firewall::{Firewall, Iptables, Options, compile};
use berth_model::network::{IpProtocol, ResolvedRule, SecurityGroupRules};
use berth_runtime::{CgroupSpec, ContainerSpec, NetworkMode, NetworkSpec, Runtime};
use berth_runtime_docker::{DEMO_IMAGE, DockerRuntime, demo};

const TEST_LABEL: &str = "berth.test";

/// Builds (once per test binary) the demo image unless it already holds this `hello`.
fn demo_image() -> &'static str {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        std::thread::spawn(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let target = exe.ancestors().nth(3).ok_or("no target dir")?.join("demo-static");
            let binary = demo::build_static_binary(&root, &target)?;
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(async move {
                    let rt = DockerRuntime::connect().map_err(|e| e.to_string())?;
                    rt.ensure_demo_image(&binary, DEMO_IMAGE).await.map_err(|e| e.to_string())?;
                    Ok(())
                })
        })
        .join()
        .unwrap_or_else(|_| Err("image setup panicked".into()))
    });
    if let Err(e) = ready {
        panic!("demo image unavailable: {e}");
    }
    DEMO_IMAGE
}

/// Removes this run's containers, networks and cgroups on drop.
struct Cleanup {
    run: String,
    cgroups: std::sync::Mutex<Vec<String>>,
}

impl Cleanup {
    fn new(test: &str) -> Cleanup {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Cleanup {
            run: format!("{}-{test}-{nanos:x}", std::process::id()),
            cgroups: Default::default(),
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![(TEST_LABEL.to_string(), self.run.clone())]
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let labels = self.labels();
        let cgroups = self.cgroups.lock().unwrap().clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(
                async move {
                    let rt = DockerRuntime::connect().unwrap();
                    for c in rt.list(&labels).await.unwrap_or_default() {
                        let _ = rt.remove(&c.id).await;
                    }
                    for n in rt.list_networks(&labels).await.unwrap_or_default() {
                        let _ = rt.remove_network(&n.name).await;
                    }
                    for g in cgroups {
                        let _ = rt.remove_cgroup(&g).await;
                    }
                },
            )
        })
        .join();
    }
}

/// A /24 for this test: 10.213.x.0 with x from the process id and `salt`.
fn subnet(salt: u32) -> (String, Ipv4Addr) {
    let x = ((std::process::id() * 7 + salt) % 250 + 2) as u8;
    (format!("10.213.{x}.0/24"), Ipv4Addr::new(10, 213, x, 0))
}

fn ip(base: Ipv4Addr, host: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(base) + u32::from(host))
}

/// One HTTP GET with a short timeout: `Ok(body)`, or the error (`TimedOut` when dropped).
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn tcp_rule(from: u16, to: u16, peers: &[&str]) -> ResolvedRule {
    ResolvedRule {
        protocol: IpProtocol::Tcp,
        from_port: Some(i32::from(from)),
        to_port: Some(i32::from(to)),
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

fn group(ingress: Vec<ResolvedRule>) -> SecurityGroupRules {
    let all = ResolvedRule {
        protocol: IpProtocol::All,
        from_port: None,
        to_port: None,
        peers: vec!["0.0.0.0/0".parse().unwrap()],
    };
    SecurityGroupRules { group_id: "sg-t".into(), ingress, egress: vec![all] }
}

/// A task: a pause container with `addr` and `mac` on `network`, and one demo server per
/// entry of `listen` in its namespace. Returns the pause container's pid.
async fn task(
    rt: &DockerRuntime,
    c: &Cleanup,
    name: &str,
    network: &str,
    (addr, mac): (Ipv4Addr, &str),
    listen: &[&str],
    cgroup: Option<&str>,
) -> (String, u32) {
    let labels = c.labels().into_iter().collect();
    let pause_image = rt.pause_image().await.expect("pause image");
    let pause = rt
        .create(&ContainerSpec {
            name: format!("{}-{name}-pause", c.run),
            image: pause_image,
            labels,
            network_mode: NetworkMode::Named(network.into()),
            ipv4_address: Some(addr.to_string()),
            mac_address: Some(mac.into()),
            hostname: Some(format!("ip-{}", addr.to_string().replace('.', "-"))),
            cgroup_parent: cgroup.map(str::to_string),
            ..Default::default()
        })
        .await
        .expect("create pause");
    rt.start(&pause).await.expect("start pause");
    for (i, l) in listen.iter().enumerate() {
        let id = rt
            .create(&ContainerSpec {
                name: format!("{}-{name}-{i}", c.run),
                image: demo_image().into(),
                command: Some(vec!["-listen".into(), (*l).into()]),
                labels: c.labels().into_iter().collect(),
                network_mode: NetworkMode::Container(pause.clone()),
                cgroup_parent: cgroup.map(str::to_string),
                ..Default::default()
            })
            .await
            .expect("create");
        rt.start(&id).await.expect("start");
    }
    let st = rt.inspect(&pause).await.unwrap().unwrap();
    let net = st.networks.iter().find(|n| n.name == network).expect("on the bridge");
    assert_eq!(net.ip_address.as_deref(), Some(addr.to_string().as_str()));
    assert_eq!(net.mac_address.as_deref(), Some(mac));
    (pause, st.pid.expect("a running pause has a pid"))
}

/// Waits until `f` holds, up to `limit`; returns how long it took.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_groups_govern_each_task_ip_from_the_host_and_from_other_tasks() {
    let fw = Iptables::new();
    if let Err(e) = fw.available().await {
        panic!("nsenter/iptables-restore needed: {e}");
    }
    demo_image();
    let rt = DockerRuntime::connect().unwrap();
    let c = Cleanup::new("sg");
    let (cidr, base) = subnet(1);
    let gateway = ip(base, 1);
    let network = format!("berth-subnet-{}", c.run);
    let spec = NetworkSpec {
        name: network.clone(),
        subnet: cidr.clone(),
        gateway: Some(gateway.to_string()),
        labels: c.labels().into_iter().collect(),
    };
    rt.create_network(&spec).await.expect("bridge");
    rt.create_network(&spec).await.expect("creating it again is harmless");
    let (a_ip, b_ip) = (ip(base, 10), ip(base, 11));
    let (_, a_pid) =
        task(&rt, &c, "a", &network, (a_ip, "0e:00:00:00:0a:01"), &[":8080", ":8081"], None).await;
    let (_, b_pid) =
        task(&rt, &c, "b", &network, (b_ip, "0e:00:00:00:0b:01"), &[":8080"], None).await;
    let opts = Options::default();
    // A admits 8081 from anywhere, not 8080; B admits 8080 from the host (its bridge address).
    fw.apply(a_pid, &compile(&[group(vec![tcp_rule(8081, 8081, &["0.0.0.0/0"])])], &opts))
        .await
        .unwrap();
    let host = format!("{gateway}/32");
    fw.apply(b_pid, &compile(&[group(vec![tcp_rule(8080, 8080, &[&host])])], &opts)).await.unwrap();

    let a8080 = SocketAddr::from((a_ip, 8080));
    let a8081 = SocketAddr::from((a_ip, 8081));
    // Both containers of A answer on A's one address.
    let ok = wait_until(Duration::from_secs(10), || {
        get(a8081, "/", Duration::from_millis(300)).is_ok_and(|b| b.contains("Hello"))
    });
    assert!(ok.is_some(), "A's second container answers on A's address");
    let blocked = get(a8080, "/", Duration::from_millis(500)).unwrap_err();
    assert!(
        matches!(blocked.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock),
        "a blocked request times out (dropped, not refused): {blocked:?}"
    );

    // Opening 8080 to the host takes effect at once.
    let t0 = Instant::now();
    let rules = vec![tcp_rule(8081, 8081, &["0.0.0.0/0"]), tcp_rule(8080, 8080, &[&host])];
    fw.apply(a_pid, &compile(&[group(rules.clone())], &opts)).await.unwrap();
    let applied = t0.elapsed();
    let open = wait_until(Duration::from_secs(1), || {
        get(a8080, "/", Duration::from_millis(200)).is_ok_and(|b| b.contains("Hello"))
    })
    .expect("A answers on 8080 within a second of the rule");
    println!(
        "rule update: applied in {:.1} ms, A answered {:.1} ms after the update began",
        applied.as_secs_f64() * 1000.0,
        (applied + open).as_secs_f64() * 1000.0
    );

    // B reaches A only once A's rules admit B's address (a group reference resolves to it).
    let b_fetch = |timeout_ms: u64| {
        let path = format!("/fetch?url=http://{a_ip}:8080/&timeout_ms={timeout_ms}");
        get(SocketAddr::from((b_ip, 8080)), &path, Duration::from_secs(5))
    };
    let denied = b_fetch(500).expect("B answers the host");
    assert!(denied.starts_with("HTTP/1.0 502") || denied.contains(" 502 "), "{denied}");
    let mut with_b = rules.clone();
    with_b.push(tcp_rule(8080, 8080, &[&format!("{b_ip}/32")]));
    fw.apply(a_pid, &compile(&[group(with_b)], &opts)).await.unwrap();
    let allowed = b_fetch(1000).expect("B answers the host");
    assert!(allowed.contains("200\nHello, World!"), "{allowed}");

    // Docker's host rules are untouched: the host's filter table has no rule of ours.
    let host_rules = std::process::Command::new("iptables").args(["-S"]).output().unwrap();
    let host_rules = String::from_utf8_lossy(&host_rules.stdout);
    assert!(!host_rules.contains(&a_ip.to_string()), "{host_rules}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_memory_limit_oom_kills_the_container_that_exceeds_it() {
    demo_image();
    let rt = DockerRuntime::connect().unwrap();
    let c = Cleanup::new("oom");
    let cgroup = format!("berth-test/{}", c.run);
    c.cgroups.lock().unwrap().push(cgroup.clone());
    rt.create_cgroup(&CgroupSpec {
        name: cgroup.clone(),
        memory_limit_bytes: Some(64 << 20),
        cpu_millis: Some(500),
    })
    .await
    .expect("task cgroup");
    let (cidr, base) = subnet(2);
    let network = format!("berth-subnet-{}", c.run);
    rt.create_network(&NetworkSpec {
        name: network.clone(),
        subnet: cidr,
        gateway: Some(ip(base, 1).to_string()),
        labels: c.labels().into_iter().collect(),
    })
    .await
    .unwrap();
    let (pause, _) = task(
        &rt,
        &c,
        "t",
        &network,
        (ip(base, 10), "0e:00:00:00:0c:01"),
        &[":8080"],
        Some(&cgroup),
    )
    .await;
    // No container limit of its own: only the task's 64 MiB holds it.
    let hog = rt
        .create(&ContainerSpec {
            name: format!("{}-hog", c.run),
            image: demo_image().into(),
            command: Some(vec!["-alloc".into()]),
            labels: c.labels().into_iter().collect(),
            network_mode: NetworkMode::Container(pause.clone()),
            cgroup_parent: Some(cgroup.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    rt.start(&hog).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(60), rt.wait_exit(&hog))
        .await
        .expect("the hog is killed")
        .unwrap();
    let st = rt.inspect(&hog).await.unwrap().unwrap();
    assert_eq!(code, 137);
    assert!(st.oom_killed, "Docker flags a kill by the task cgroup's limit as OOMKilled");
    let pause_st = rt.inspect(&pause).await.unwrap().unwrap();
    assert!(pause_st.is_running(), "the other containers of the task live on");
    // The cgroup cannot go while containers are in it, and goes once they are removed.
    assert!(rt.remove_cgroup(&cgroup).await.is_err());
    for x in rt.list(&c.labels()).await.unwrap() {
        rt.remove(&x.id).await.unwrap();
    }
    rt.remove_cgroup(&cgroup).await.expect("removed once empty");
    assert!(rt.list_cgroups(&format!("berth-test/{}", c.run)).await.unwrap().is_empty());
    let _ = rt.remove_cgroup("berth-test").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_subnet_is_a_conflict_and_a_used_bridge_stays() {
    let rt = DockerRuntime::connect().unwrap();
    let c = Cleanup::new("overlap");
    let (cidr, base) = subnet(3);
    let mk = |name: String, subnet: String| NetworkSpec {
        name,
        subnet,
        gateway: None,
        labels: c.labels().into_iter().collect(),
    };
    rt.create_network(&mk(format!("{}-one", c.run), cidr.clone())).await.unwrap();
    let err = rt
        .create_network(&mk(format!("{}-two", c.run), format!("{}/25", ip(base, 0))))
        .await
        .unwrap_err();
    assert!(matches!(err, berth_runtime::RuntimeError::Conflict { .. }), "{err:?}");
    let nets = rt.list_networks(&c.labels()).await.unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].subnets, vec![cidr]);
    rt.remove_network(&nets[0].name).await.unwrap();
    rt.remove_network(&nets[0].name).await.expect("a missing network is Ok");
}
