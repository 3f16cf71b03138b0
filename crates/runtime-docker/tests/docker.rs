//! DockerRuntime against the real Docker Engine (20.10, API 1.41 here), with only the locally
//! built demo image (`berth-demo:latest`, built on first use from this workspace's `hello`;
//! no registry is reachable).
//!
//! Every container and volume a test creates carries `berth.test=<unique run id>`; the test's
//! [`Cleanup`] guard removes all of them by that label when it drops, also when the test
//! fails. Images a test builds are removed the same way.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_runtime::{
    ContainerSpec, ContainerState, HealthCheck, HealthStatus, LogConfig, Mount, MountSource,
    NetworkMode, ObjectKind, PortSpec, Protocol, Runtime, RuntimeError, Ulimit, VolumeSpec,
    VolumesFrom,
};
use berth_runtime_docker::{BuildContext, DEMO_IMAGE, DockerRuntime, demo};

const TEST_LABEL: &str = "berth.test";

/// Builds (once per test binary) the static `hello` and the demo image, unless the image
/// already holds that exact binary.
fn demo_image() -> &'static str {
    demo_binary();
    DEMO_IMAGE
}

/// The static `hello` binary the demo image holds (building both on first use).
fn demo_binary() -> &'static std::path::Path {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        std::thread::spawn(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
            // This binary lives in <target>/debug/deps/.
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let target = exe.ancestors().nth(3).ok_or("no target dir")?.join("demo-static");
            let binary = demo::build_static_binary(&root, &target)?;
            block_on(async move {
                let rt = DockerRuntime::connect().map_err(|e| e.to_string())?;
                rt.ensure_demo_image(&binary, DEMO_IMAGE).await.map_err(|e| e.to_string())?;
                Ok(binary)
            })
        })
        .join()
        .unwrap_or_else(|_| Err("image setup panicked".into()))
    });
    match ready {
        Ok(binary) => binary,
        Err(e) => panic!("demo image unavailable: {e}"),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

/// Removes, on drop, every container and volume labelled with this run's id, the images
/// registered with [`Cleanup::image`] and the host paths made by [`Cleanup::temp_path`].
struct Cleanup {
    run: String,
    images: std::sync::Mutex<Vec<String>>,
    paths: std::sync::Mutex<Vec<PathBuf>>,
}

impl Cleanup {
    fn new(test: &str) -> Cleanup {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Cleanup {
            run: format!("{}-{test}-{nanos:x}", std::process::id()),
            images: Default::default(),
            paths: Default::default(),
        }
    }

    fn labels(&self) -> Vec<(String, String)> {
        vec![(TEST_LABEL.to_string(), self.run.clone())]
    }

    /// A container spec of the demo image, named and labelled for this run.
    fn spec(&self, name: &str, command: &[&str]) -> ContainerSpec {
        ContainerSpec {
            name: format!("berth-test-{}-{name}", self.run),
            image: demo_image().to_string(),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            labels: BTreeMap::from([(TEST_LABEL.to_string(), self.run.clone())]),
            ..ContainerSpec::default()
        }
    }

    fn image(&self, tag: &str) {
        self.images.lock().unwrap().push(tag.to_string());
    }

    /// A fresh path under the temp dir, removed (file or tree) on drop.
    fn temp_path(&self, name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("berth-test-{}-{name}", self.run));
        self.paths.lock().unwrap().push(p.clone());
        p
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let labels = self.labels();
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        for p in std::mem::take(&mut *self.paths.lock().unwrap()) {
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
        // Our own thread and runtime: Drop may run inside (or outside) a test's runtime.
        let done = std::thread::spawn(move || {
            block_on(async move {
                let Ok(rt) = DockerRuntime::connect() else { return };
                for c in rt.list(&labels).await.unwrap_or_default() {
                    let _ = rt.remove(&c.id).await;
                }
                for v in rt.list_volumes(&labels).await.unwrap_or_default() {
                    let _ = rt.remove_volume(&v).await;
                }
                for i in images {
                    let _ = rt.remove_image(&i).await;
                }
            })
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup of {} panicked", self.run);
        }
    }
}

async fn docker() -> DockerRuntime {
    let rt = DockerRuntime::connect().expect("Docker client");
    rt.ping().await.expect("Docker Engine reachable");
    rt
}

/// GET over plain TCP, retried until `deadline` passes; returns (status, body).
async fn http_get(addr: &str, path: &str, within: Duration) -> (u16, String) {
    let start = Instant::now();
    loop {
        let addr_owned = addr.to_string();
        let path_owned = path.to_string();
        let res = tokio::task::spawn_blocking(move || -> std::io::Result<(u16, String)> {
            let mut s = TcpStream::connect(&addr_owned)?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(s, "GET {path_owned} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")?;
            let mut raw = String::new();
            s.read_to_string(&mut raw)?;
            let (head, body) = raw.split_once("\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or(std::io::ErrorKind::InvalidData)?;
            Ok((status, body.to_string()))
        })
        .await
        .unwrap();
        match res {
            Ok(r) => return r,
            Err(e) if start.elapsed() > within => panic!("GET http://{addr}{path}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn web_port() -> PortSpec {
    PortSpec { container_port: 8080, host_port: None, protocol: Protocol::Tcp, host_ip: None }
}

#[tokio::test]
async fn serves_hello_world_on_a_dynamic_host_port() {
    let t = Cleanup::new("hello");
    let rt = docker().await;
    let mut spec = t.spec("web", &[]);
    spec.ports = vec![web_port()];

    let start = Instant::now();
    let id = rt.create(&spec).await.unwrap();
    let created = start.elapsed();
    rt.start(&id).await.unwrap();
    eprintln!("create {created:?}, create+start {:?}", start.elapsed());

    let st = rt.inspect(&id).await.unwrap().expect("exists");
    assert_eq!(st.state, ContainerState::Running);
    assert_eq!(st.id, id);
    assert_eq!(st.name, spec.name);
    assert_eq!(st.image, DEMO_IMAGE);
    assert!(st.image_id.starts_with("sha256:"));
    assert_eq!(st.labels.get(TEST_LABEL), Some(&t.run));
    assert_eq!((st.exit_code, st.oom_killed, st.health, st.finished_at), (None, false, None, None));
    assert!(st.started_at.is_some() && st.created_at.is_some());
    assert!(st.ip_address.is_some(), "bridge address");
    let port = st.host_port(8080, Protocol::Tcp).expect("host port bound");
    assert_ne!(port, 0);
    let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/", Duration::from_secs(10)).await;
    assert_eq!((status, body.as_str()), (200, "Hello, World!\n"));
    assert_eq!(
        http_get(&format!("127.0.0.1:{port}"), "/nope", Duration::from_secs(5)).await.0,
        404
    );

    // The image's entrypoint with the image's defaults: stop is SIGTERM -> exit 0, promptly.
    let stop_started = Instant::now();
    rt.stop(&id, Duration::from_secs(10)).await.unwrap();
    assert!(stop_started.elapsed() < Duration::from_secs(5), "SIGTERM honoured");
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(0)));
    assert!(st.finished_at >= st.started_at);
    assert!(st.port_bindings.is_empty());
    // Already stopped: still Ok.
    rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    rt.remove(&id).await.unwrap();
    assert!(rt.inspect(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn stop_kills_a_container_that_ignores_sigterm() {
    let t = Cleanup::new("stop");
    let rt = docker().await;
    let id = rt.create(&t.spec("stubborn", &["-sleep", "300", "-ignore-sigterm"])).await.unwrap();
    rt.start(&id).await.unwrap();
    let start = Instant::now();
    rt.stop(&id, Duration::from_secs(2)).await.unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1900), "waited the grace period, took {took:?}");
    assert!(took < Duration::from_secs(15), "then killed, took {took:?}");
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert_eq!((st.state, st.exit_code, st.oom_killed), (ContainerState::Exited, Some(137), false));
    assert_eq!(rt.wait_exit(&id).await.unwrap(), 137);
}

#[tokio::test]
async fn wait_exit_returns_exit_codes_even_past_the_request_timeout() {
    let t = Cleanup::new("wait");
    // Ordinary requests are bounded by 2 s; the wait itself must not be.
    let rt = docker().await.with_request_timeout(Duration::from_secs(2));
    let slow = rt.create(&t.spec("slow", &["-exit", "3", "-after", "4"])).await.unwrap();
    let quick = rt.create(&t.spec("quick", &["-exit", "0"])).await.unwrap();
    // Created, never started: not running, so the wait returns at once.
    assert_eq!(rt.wait_exit(&quick).await.unwrap(), 0);
    rt.start(&slow).await.unwrap();
    rt.start(&quick).await.unwrap();
    let start = Instant::now();
    assert_eq!(rt.wait_exit(&slow).await.unwrap(), 3);
    assert!(start.elapsed() >= Duration::from_secs(3), "waited for the exit");
    assert_eq!(rt.wait_exit(&quick).await.unwrap(), 0);
    let st = rt.inspect(&slow).await.unwrap().unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(3)));
    assert!(st.finished_at.unwrap() - st.started_at.unwrap() >= time::Duration::seconds(3));
}

#[tokio::test]
async fn pulling_without_a_registry_is_a_pull_error_and_quick() {
    let rt = docker().await.with_pull_timeout(Duration::from_secs(20));
    for reference in ["127.0.0.1:9/berth-test/nothing:1", "berth-no-such-registry.invalid/app"] {
        let start = Instant::now();
        match rt.pull(reference, None).await {
            Err(RuntimeError::Pull { image, message }) => {
                assert_eq!(image, reference);
                assert!(!message.is_empty());
            }
            other => panic!("pull {reference}: {other:?}"),
        }
        assert!(start.elapsed() < Duration::from_secs(20));
    }
    assert_eq!(rt.image("berth-test-missing:1").await.unwrap(), None);
    let img = rt.image(demo_image()).await.unwrap().expect("demo image present");
    assert!(img.id.starts_with("sha256:"));
    assert!(img.repo_tags.iter().any(|t| t == DEMO_IMAGE));
    assert_eq!(img.labels.get("berth.demo").map(String::as_str), Some("1"));
}

#[tokio::test]
async fn list_matches_every_label_running_or_not() {
    let t = Cleanup::new("list");
    let rt = docker().await;
    let mut a = t.spec("a", &["-sleep", "300"]);
    a.labels.insert("berth.test.role".into(), "x".into());
    let b = t.spec("b", &["-sleep", "300"]);
    let a_id = rt.create(&a).await.unwrap();
    let b_id = rt.create(&b).await.unwrap();
    rt.start(&a_id).await.unwrap();

    let mut all = rt.list(&t.labels()).await.unwrap();
    all.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![a_id.as_str(), b_id.as_str()]
    );
    assert_eq!(all[0].state, ContainerState::Running);
    assert_eq!(all[1].state, ContainerState::Created);
    assert_eq!(all[0].name, a.name);
    assert_eq!(all[0].image, DEMO_IMAGE);
    let mut both = t.labels();
    both.push(("berth.test.role".into(), "x".into()));
    let only_a = rt.list(&both).await.unwrap();
    assert_eq!(only_a.len(), 1);
    assert_eq!(only_a[0].id, a_id);
    assert!(rt.list(&[(TEST_LABEL.into(), format!("{}-none", t.run))]).await.unwrap().is_empty());
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let t = Cleanup::new("oom");
    let rt = docker().await;
    let mut spec = t.spec("hog", &["-alloc"]);
    spec.memory_limit_bytes = Some(6 << 20);
    spec.max_swap_bytes = Some(0);
    let id = rt.create(&spec).await.unwrap();
    rt.start(&id).await.unwrap();
    let code =
        tokio::time::timeout(Duration::from_secs(30), rt.wait_exit(&id)).await.expect("killed");
    assert_eq!(code.unwrap(), 137);
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert!(st.oom_killed, "{st:?}");
    assert_eq!(st.exit_code, Some(137));
}

#[tokio::test]
async fn healthcheck_goes_healthy_then_unhealthy() {
    let t = Cleanup::new("health");
    let rt = docker().await;
    let mut spec = t.spec("web", &["-fail-health-after", "6"]);
    spec.healthcheck = Some(HealthCheck {
        test: ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"]
            .map(String::from)
            .to_vec(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retries: 2,
        start_period: Duration::ZERO,
    });
    let id = rt.create(&spec).await.unwrap();
    rt.start(&id).await.unwrap();
    let health = || async { rt.inspect(&id).await.unwrap().unwrap().health };
    assert!(matches!(health().await, Some(HealthStatus::Starting | HealthStatus::Healthy)));
    wait_for("healthy", Duration::from_secs(6), || async {
        health().await == Some(HealthStatus::Healthy)
    })
    .await;
    wait_for("unhealthy", Duration::from_secs(20), || async {
        health().await == Some(HealthStatus::Unhealthy)
    })
    .await;
    assert!(rt.inspect(&id).await.unwrap().unwrap().is_running(), "unhealthy is not stopped");
}

#[tokio::test]
async fn events_deliver_health_and_exits_of_labelled_containers_only() {
    use berth_runtime::{ContainerEventKind, RuntimeEvent};
    use futures_util::StreamExt;

    let t = Cleanup::new("events");
    let rt = docker().await;
    let mut wanted = t.labels();
    wanted.push(("berth.test.role".into(), "watched".into()));
    let mut events = rt.events(&wanted);
    async fn next(events: &mut berth_runtime::EventStream) -> RuntimeEvent {
        tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("an event within 30 s")
            .expect("the stream stays open")
            .expect("no stream error")
    }
    assert_eq!(next(&mut events).await, RuntimeEvent::Subscribed);

    let mut spec = t.spec("watched", &[]);
    spec.labels.insert("berth.test.role".into(), "watched".into());
    spec.healthcheck = Some(HealthCheck {
        test: ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"]
            .map(String::from)
            .to_vec(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retries: 1,
        start_period: Duration::ZERO,
    });
    let watched = rt.create(&spec).await.unwrap();
    // Same run label, not the role: its events are filtered out by the engine.
    let other = rt.create(&t.spec("other", &[])).await.unwrap();
    rt.start(&other).await.unwrap();
    rt.start(&watched).await.unwrap();

    let mut seen = Vec::new();
    while !seen.contains(&ContainerEventKind::Health(HealthStatus::Healthy)) {
        let RuntimeEvent::Container(e) = next(&mut events).await else { panic!("resubscribed") };
        assert_eq!(e.id, watched, "only the labelled container: {e:?}");
        seen.push(e.kind);
    }
    assert_eq!(seen.first(), Some(&ContainerEventKind::Start), "{seen:?}");

    rt.stop(&other, Duration::from_secs(10)).await.unwrap();
    rt.stop(&watched, Duration::from_secs(10)).await.unwrap();
    rt.remove(&watched).await.unwrap();
    let mut after = Vec::new();
    while !after.contains(&ContainerEventKind::Destroy) {
        let RuntimeEvent::Container(e) = next(&mut events).await else { panic!("resubscribed") };
        assert_eq!(e.id, watched, "only the labelled container: {e:?}");
        after.push(e.kind);
    }
    assert!(after.contains(&ContainerEventKind::Die), "{after:?}");
    let die = after.iter().position(|k| *k == ContainerEventKind::Die);
    assert!(die < after.iter().position(|k| *k == ContainerEventKind::Destroy), "{after:?}");
}

#[tokio::test]
async fn volumes_are_idempotent_and_guarded_while_in_use() {
    let t = Cleanup::new("vol");
    let rt = docker().await;
    let name = format!("berth-test-{}-data", t.run);
    let spec = VolumeSpec {
        name: name.clone(),
        driver: Some("local".into()),
        driver_opts: BTreeMap::new(),
        labels: t.labels().into_iter().collect(),
    };
    rt.create_volume(&spec).await.unwrap();
    rt.create_volume(&spec).await.unwrap();
    assert_eq!(rt.list_volumes(&t.labels()).await.unwrap(), vec![name.clone()]);

    let mut user = t.spec("user", &["-sleep", "300"]);
    user.mounts = vec![Mount {
        source: MountSource::Volume(name.clone()),
        target: "/data".into(),
        read_only: false,
    }];
    let id = rt.create(&user).await.unwrap();
    assert!(matches!(rt.remove_volume(&name).await, Err(RuntimeError::Conflict { .. })));
    rt.remove(&id).await.unwrap();
    rt.remove_volume(&name).await.unwrap();
    rt.remove_volume(&name).await.unwrap();
    assert!(rt.list_volumes(&t.labels()).await.unwrap().is_empty());
}

#[tokio::test]
async fn missing_objects_and_conflicts() {
    let t = Cleanup::new("missing");
    let rt = docker().await;
    let ghost = format!("berth-test-{}-ghost", t.run);
    rt.remove(&ghost).await.unwrap();
    assert!(rt.inspect(&ghost).await.unwrap().is_none());
    assert!(rt.stats(&ghost).await.unwrap().is_none());
    let nf = |r: Result<(), RuntimeError>| {
        matches!(r, Err(RuntimeError::NotFound { kind: ObjectKind::Container, .. }))
    };
    assert!(nf(rt.start(&ghost).await));
    assert!(nf(rt.stop(&ghost, Duration::from_secs(1)).await));
    assert!(matches!(
        rt.wait_exit(&ghost).await,
        Err(RuntimeError::NotFound { kind: ObjectKind::Container, .. })
    ));

    let mut no_image = t.spec("noimage", &[]);
    no_image.image = "berth-test-no-such-image:1".into();
    match rt.create(&no_image).await {
        Err(RuntimeError::NotFound { kind: ObjectKind::Image, id }) => {
            assert!(id.contains("berth-test-no-such-image"))
        }
        other => panic!("{other:?}"),
    }
    let spec = t.spec("dup", &["-sleep", "300"]);
    rt.create(&spec).await.unwrap();
    match rt.create(&spec).await {
        Err(RuntimeError::Conflict { id, .. }) => assert_eq!(id, spec.name),
        other => panic!("{other:?}"),
    }
    let mut tiny = t.spec("tiny", &[]);
    tiny.memory_limit_bytes = Some(1 << 20);
    assert!(
        matches!(rt.create(&tiny).await, Err(RuntimeError::Invalid { .. })),
        "below Docker's 6 MiB minimum"
    );
}

/// A spec using (nearly) every field: the engine must accept it, record it, and run it.
#[tokio::test]
async fn spec_fields_reach_the_engine() {
    let t = Cleanup::new("fields");
    let rt = docker().await;
    let db = rt.create(&t.spec("db", &["-sleep", "300"])).await.unwrap();
    rt.start(&db).await.unwrap();
    let host_dir = t.temp_path("host");
    std::fs::create_dir_all(&host_dir).unwrap();

    let mut spec = t.spec("web", &["-listen", ":9090"]);
    spec.env = vec![("GREETING".into(), "hi there".into()), ("EMPTY".into(), String::new())];
    spec.working_dir = Some("/".into());
    spec.user = Some("1000:1000".into());
    spec.cpu_shares = Some(256);
    spec.memory_limit_bytes = Some(64 << 20);
    spec.memory_reservation_bytes = Some(32 << 20);
    spec.ulimits = vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }];
    spec.ports = vec![PortSpec {
        container_port: 9090,
        host_port: Some(0),
        protocol: Protocol::Tcp,
        host_ip: Some("127.0.0.1".into()),
    }];
    spec.network_mode = NetworkMode::Bridge;
    spec.links = vec![format!("{}:database", t.spec("db", &[]).name)];
    spec.mounts = vec![
        Mount {
            source: MountSource::HostPath(host_dir.clone()),
            target: "/host".into(),
            read_only: true,
        },
        Mount {
            source: MountSource::Tmpfs {
                size_bytes: Some(1 << 20),
                options: vec!["noexec".into()],
            },
            target: "/scratch".into(),
            read_only: false,
        },
    ];
    spec.volumes_from = vec![VolumesFrom { container: db.clone(), read_only: true }];
    spec.readonly_rootfs = true;
    spec.cap_add = vec!["NET_ADMIN".into()];
    spec.cap_drop = vec!["MKNOD".into()];
    spec.init = true;
    spec.shm_size_bytes = Some(16 << 20);
    spec.extra_hosts = vec![("db.local".into(), "10.0.0.5".into())];
    spec.host_gateway = true;
    spec.dns_servers = vec!["10.0.0.2".into()];
    spec.dns_search = vec!["example.internal".into()];
    spec.hostname = Some("web-1".into());
    spec.stop_timeout = Some(Duration::from_secs(7));
    spec.sysctls = BTreeMap::from([("net.core.somaxconn".to_string(), "512".to_string())]);
    spec.log_config = Some(LogConfig {
        driver: "json-file".into(),
        options: BTreeMap::from([("max-size".to_string(), "1m".to_string())]),
    });
    spec.security_opts = vec!["no-new-privileges".into()];

    let id = rt.create(&spec).await.unwrap();
    let raw = rt
        .client()
        .inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>)
        .await
        .unwrap();
    let v = serde_json::to_value(&raw).unwrap();
    let (cfg, hc) = (&v["Config"], &v["HostConfig"]);
    assert!(cfg["Env"].as_array().unwrap().contains(&"GREETING=hi there".into()));
    assert_eq!(cfg["User"], "1000:1000");
    assert_eq!(cfg["Hostname"], "web-1");
    assert_eq!(cfg["StopTimeout"], 7);
    assert_eq!(hc["CpuShares"], 256);
    assert_eq!(hc["Memory"], 64 << 20);
    assert_eq!(hc["MemoryReservation"], 32 << 20);
    assert_eq!(hc["Ulimits"][0]["Name"], "nofile");
    assert_eq!(hc["PortBindings"]["9090/tcp"][0]["HostIp"], "127.0.0.1");
    assert_eq!(hc["NetworkMode"], "bridge");
    assert_eq!(hc["Binds"][0], format!("{}:/host:ro", host_dir.display()));
    assert_eq!(hc["Tmpfs"]["/scratch"], "noexec,size=1048576");
    assert_eq!(hc["VolumesFrom"][0], format!("{db}:ro"));
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(hc["CapAdd"][0], "NET_ADMIN");
    assert_eq!(hc["CapDrop"][0], "MKNOD");
    assert_eq!(hc["Init"], true);
    assert_eq!(hc["ShmSize"], 16 << 20);
    assert!(
        hc["ExtraHosts"].as_array().unwrap().contains(&"host.docker.internal:host-gateway".into())
    );
    assert_eq!(hc["Dns"][0], "10.0.0.2");
    assert_eq!(hc["DnsSearch"][0], "example.internal");
    assert_eq!(hc["Sysctls"]["net.core.somaxconn"], "512");
    assert_eq!(hc["LogConfig"]["Type"], "json-file");
    assert_eq!(hc["LogConfig"]["Config"]["max-size"], "1m");
    assert_eq!(hc["SecurityOpt"][0], "no-new-privileges");
    assert!(hc["Links"][0].as_str().unwrap().ends_with("/database"));

    rt.start(&id).await.unwrap();
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert!(st.is_running(), "{st:?}");
    let port = st.host_port(9090, Protocol::Tcp).unwrap();
    let binding = st.port_bindings.iter().find(|b| b.container_port == 9090).unwrap();
    assert_eq!(binding.host_ip, "127.0.0.1");
    let (status, env) =
        http_get(&format!("127.0.0.1:{port}"), "/env", Duration::from_secs(10)).await;
    assert_eq!(status, 200);
    assert!(env.contains("GREETING=hi there\n"), "{env}");
    assert!(env.contains("HOSTNAME=web-1\n"), "{env}");
    // Stats of a running container: Docker's stats JSON.
    let stats = rt.stats(&id).await.unwrap().expect("stats");
    assert!(stats["memory_stats"]["usage"].as_u64().is_some_and(|u| u > 0), "{stats}");
    assert_eq!(stats["memory_stats"]["limit"].as_u64(), Some(64 << 20), "{stats}");
    assert!(stats["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().is_some(), "{stats}");
    assert!(stats["networks"]["eth0"]["rx_bytes"].as_u64().is_some(), "{stats}");
    assert_eq!(stats["id"], id.as_str());
}

#[tokio::test]
async fn info_describes_the_engine() {
    let info = docker().await.info().await.unwrap();
    assert_eq!(info.os, "linux");
    assert!(["x86_64", "arm64"].contains(&info.arch.as_str()), "{info:?}");
    assert!(info.cpus > 0 && info.memory_bytes > 0, "{info:?}");
    assert!(!info.engine_version.is_empty() && info.api_version.starts_with("1."), "{info:?}");
}

#[tokio::test]
async fn build_image_from_a_directory_and_report_build_errors() {
    let t = Cleanup::new("build");
    let rt = docker().await;
    let base = demo_image();
    let dir = t.temp_path("ctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), format!("FROM {base}\nCOPY note.txt /note.txt\n"))
        .unwrap();
    std::fs::write(dir.join("note.txt"), "hi\n").unwrap();
    let tag = format!("berth-test-{}:1", t.run.to_ascii_lowercase());
    t.image(&tag);
    let labels = BTreeMap::from([(TEST_LABEL.to_string(), t.run.clone())]);
    let img = rt.build_image(&tag, BuildContext::Dir(dir.clone()), &labels).await.unwrap();
    assert_eq!(img.labels.get(TEST_LABEL), Some(&t.run));
    assert_eq!(
        img.labels.get("berth.demo").map(String::as_str),
        Some("1"),
        "inherited from the base"
    );

    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nCOPY missing.txt /x\n").unwrap();
    let bad_tag = format!("berth-test-{}:bad", t.run.to_ascii_lowercase());
    t.image(&bad_tag);
    match rt.build_image(&bad_tag, BuildContext::Dir(dir.clone()), &labels).await {
        Err(RuntimeError::Engine { op: "build", message }) => {
            assert!(message.contains("missing.txt"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ensure_demo_image_rebuilds_only_when_the_binary_changes() {
    let t = Cleanup::new("ensure");
    let rt = docker().await;
    let tag = format!("berth-test-{}:1", t.run.to_ascii_lowercase());
    t.image(&tag);
    let copy = t.temp_path("hello");
    // A binary of its own (a trailing byte is harmless to an ELF file): the classic builder's
    // cache would otherwise give this tag the very image of berth-demo:latest.
    let mut bytes = std::fs::read(demo_binary()).unwrap();
    bytes.push(1);
    std::fs::write(&copy, &bytes).unwrap();
    let first = rt.ensure_demo_image(&copy, &tag).await.unwrap();
    assert_eq!(first.labels.get("berth.demo").map(String::as_str), Some("1"));
    assert_eq!(
        rt.ensure_demo_image(&copy, &tag).await.unwrap().id,
        first.id,
        "unchanged binary: no rebuild"
    );
    // A different binary replaces the image.
    bytes.push(2);
    std::fs::write(&copy, bytes).unwrap();
    let second = rt.ensure_demo_image(&copy, &tag).await.unwrap();
    assert_ne!(second.id, first.id);
    assert!(rt.image(&first.id).await.unwrap().is_none(), "the replaced image is removed");
    // The rebuilt image runs.
    let mut spec = t.spec("web", &["-exit", "4"]);
    spec.image = tag.clone();
    let id = rt.create(&spec).await.unwrap();
    rt.start(&id).await.unwrap();
    assert_eq!(rt.wait_exit(&id).await.unwrap(), 4);
    rt.remove(&id).await.unwrap();
}
