//! The fake runtime's own tests: it keeps the contract of [`berth_runtime::Runtime`].

use super::*;
use crate::{HealthCheck, Mount, PortSpec, Protocol};

fn spec(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec { name: name.into(), image: image.into(), ..ContainerSpec::default() }
}

#[tokio::test]
async fn create_needs_a_local_image_and_a_free_name() {
    let rt = FakeRuntime::new();
    let err = rt.create(&spec("a", "app")).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NotFound { kind: ObjectKind::Image, .. }));
    assert!(rt.image("app:latest").await.unwrap().is_none());
    let pulled = rt.pull("app", None).await.unwrap();
    assert_eq!(rt.image("app:latest").await.unwrap(), Some(pulled));
    let id = rt.create(&spec("a", "app:latest")).await.unwrap();
    assert_eq!(id.len(), 64);
    assert!(matches!(rt.create(&spec("a", "app")).await, Err(RuntimeError::Conflict { .. })));
    let status = rt.inspect("a").await.unwrap().unwrap();
    assert_eq!(status.state, ContainerState::Created);
    assert_eq!(status.id, id);
}

#[tokio::test]
async fn pull_failures_and_injected_errors() {
    let rt = FakeRuntime::new();
    rt.fail_pull("private/app:1", "denied");
    let err = rt.pull("private/app:1", None).await.unwrap_err();
    assert_eq!(err, RuntimeError::Pull { image: "private/app:1".into(), message: "denied".into() });
    rt.fail_next(Op::Info, RuntimeError::Engine { op: "info", message: "down".into() });
    assert!(rt.info().await.is_err());
    assert_eq!(rt.info().await.unwrap().os, "linux");
    assert_eq!(rt.calls_of(Op::Info).len(), 2);
    assert_eq!(rt.calls()[0], Call::Pull("private/app:1".into()));
}

#[tokio::test]
async fn start_binds_ports_and_wait_sees_exit_codes() {
    let rt = FakeRuntime::new();
    rt.add_image("web:1");
    let mut s = spec("web", "web:1");
    s.ports = vec![
        PortSpec { container_port: 8080, host_port: None, protocol: Protocol::Tcp, host_ip: None },
        PortSpec {
            container_port: 53,
            host_port: Some(5353),
            protocol: Protocol::Udp,
            host_ip: None,
        },
    ];
    let id = rt.create(&s).await.unwrap();
    rt.start(&id).await.unwrap();
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert!(st.is_running());
    assert_eq!(st.host_port(8080, Protocol::Tcp), Some(32768));
    assert_eq!(st.host_port(53, Protocol::Udp), Some(5353));
    assert_eq!(st.ip_address.as_deref(), Some("172.17.0.2"));

    // A second container wanting the same fixed port cannot start.
    let mut s2 = s.clone();
    s2.name = "web2".into();
    let id2 = rt.create(&s2).await.unwrap();
    assert!(matches!(rt.start(&id2).await, Err(RuntimeError::Engine { .. })));

    let waiter = {
        let rt = rt.clone();
        let id = id.clone();
        tokio::spawn(async move { rt.wait_exit(&id).await })
    };
    tokio::task::yield_now().await;
    assert!(rt.exit(&id, 3));
    assert_eq!(waiter.await.unwrap().unwrap(), 3);
    let st = rt.inspect(&id).await.unwrap().unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, Some(3)));
    assert!(st.finished_at > st.started_at);
    // Not running: wait returns at once; stop is idempotent.
    assert_eq!(rt.wait_exit(&id).await.unwrap(), 3);
    rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    assert_eq!(rt.wait_exit(&id).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn scripts_run_on_tokio_time() {
    let rt = FakeRuntime::new();
    rt.add_image("job");
    rt.add_image("hog");
    rt.add_image("web");
    rt.script("job", Script { exit_after: Some((Duration::from_secs(5), 1)), ..Script::default() });
    rt.script("hog", Script { oom_after: Some(Duration::from_secs(2)), ..Script::default() });
    rt.script(
        "web",
        Script {
            health: vec![
                (Duration::from_secs(1), HealthStatus::Healthy),
                (Duration::from_secs(10), HealthStatus::Unhealthy),
            ],
            ignore_stop_signal: true,
            ..Script::default()
        },
    );
    let job = rt.create(&spec("job", "job")).await.unwrap();
    let hog = rt.create(&spec("hog", "hog")).await.unwrap();
    let mut w = spec("web", "web");
    w.healthcheck = Some(HealthCheck {
        test: vec![
            "CMD".into(),
            "/hello".into(),
            "-check".into(),
            "http://127.0.0.1:8080/health".into(),
        ],
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        retries: 1,
        start_period: Duration::ZERO,
    });
    let web = rt.create(&w).await.unwrap();
    for id in [&job, &hog, &web] {
        rt.start(id).await.unwrap();
    }
    let health =
        |rt: FakeRuntime, id: String| async move { rt.inspect(&id).await.unwrap().unwrap().health };
    assert_eq!(health(rt.clone(), web.clone()).await, Some(HealthStatus::Starting));
    assert_eq!(rt.wait_exit(&hog).await.unwrap(), 137);
    assert!(rt.inspect(&hog).await.unwrap().unwrap().oom_killed);
    assert_eq!(health(rt.clone(), web.clone()).await, Some(HealthStatus::Healthy));
    assert_eq!(rt.wait_exit(&job).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(health(rt.clone(), web.clone()).await, Some(HealthStatus::Unhealthy));
    rt.stop(&web, Duration::from_secs(30)).await.unwrap();
    assert_eq!(rt.wait_exit(&web).await.unwrap(), 137);
}

#[tokio::test]
async fn labels_volumes_and_removal() {
    let rt = FakeRuntime::new();
    rt.add_image("app");
    let mut a = spec("a", "app");
    a.labels.insert("task".into(), "t1".into());
    a.mounts = vec![Mount {
        source: MountSource::Volume("data".into()),
        target: "/data".into(),
        read_only: false,
    }];
    let mut b = spec("b", "app");
    b.labels.insert("task".into(), "t2".into());
    let a_id = rt.create(&a).await.unwrap();
    rt.create(&b).await.unwrap();
    let only_t1 = rt.list(&[("task".into(), "t1".into())]).await.unwrap();
    assert_eq!(only_t1.len(), 1);
    assert_eq!(only_t1[0].name, "a");
    assert_eq!(rt.list(&[]).await.unwrap().len(), 2);

    let vol = VolumeSpec {
        name: "data".into(),
        labels: [("task".to_string(), "t1".to_string())].into(),
        ..VolumeSpec::default()
    };
    rt.create_volume(&vol).await.unwrap(); // exists already (auto-created): fine
    assert!(matches!(rt.remove_volume("data").await, Err(RuntimeError::Conflict { .. })));
    rt.start(&a_id).await.unwrap();
    let waiter = {
        let rt = rt.clone();
        let id = a_id.clone();
        tokio::spawn(async move { rt.wait_exit(&id).await })
    };
    tokio::task::yield_now().await;
    rt.remove(&a_id).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 137);
    rt.remove(&a_id).await.unwrap();
    assert!(rt.inspect(&a_id).await.unwrap().is_none());
    assert!(rt.stats(&a_id).await.unwrap().is_none());
    assert!(matches!(rt.stop(&a_id, Duration::ZERO).await, Err(RuntimeError::NotFound { .. })));
    rt.remove_volume("data").await.unwrap();
    rt.remove_volume("data").await.unwrap();
    assert!(rt.volumes().is_empty());
}

#[tokio::test]
async fn events_follow_labelled_containers_until_the_stream_drops() {
    use crate::{ContainerEvent, ContainerEventKind as K};
    let rt = FakeRuntime::new();
    rt.add_image("app");
    let mut watched = spec("w", "app");
    watched.labels.insert("team".into(), "a".into());
    watched.healthcheck = Some(HealthCheck {
        test: vec!["CMD".into(), "true".into()],
        interval: Duration::from_secs(5),
        timeout: Duration::from_secs(1),
        retries: 1,
        start_period: Duration::ZERO,
    });
    let w = rt.create(&watched).await.unwrap();
    let other = rt.create(&spec("o", "app")).await.unwrap();
    rt.start(&w).await.unwrap(); // before the stream is polled: not delivered
    let labels = vec![("team".to_string(), "a".to_string())];
    let mut events = rt.events(&labels);
    assert_eq!(rt.calls_of(Op::Events), vec![Call::Events(labels.clone())]);
    assert_eq!(rt.event_subscribers(), 0, "subscribed when first polled");
    assert_eq!(events.next().await.unwrap().unwrap(), RuntimeEvent::Subscribed);
    assert_eq!(rt.event_subscribers(), 1);
    rt.start(&other).await.unwrap(); // not labelled: not delivered
    assert!(rt.set_health(&w, HealthStatus::Healthy));
    assert!(rt.set_health(&w, HealthStatus::Healthy)); // no change: no event
    rt.mute_events(true);
    assert!(rt.set_health(&w, HealthStatus::Unhealthy)); // lost
    rt.mute_events(false);
    rt.push_event(&w, K::Start);
    rt.oom_kill(&w);
    rt.remove(&w).await.unwrap();
    let c = |kind| RuntimeEvent::Container(ContainerEvent { id: w.clone(), kind });
    for want in
        [c(K::Health(HealthStatus::Healthy)), c(K::Start), c(K::Oom), c(K::Die), c(K::Destroy)]
    {
        assert_eq!(events.next().await.unwrap().unwrap(), want);
    }
    rt.drop_event_streams();
    assert!(matches!(events.next().await, Some(Err(RuntimeError::Engine { .. }))));
    assert!(events.next().await.is_none(), "the stream ends after its error");
    assert_eq!(rt.event_subscribers(), 0);

    rt.fail_next(Op::Events, RuntimeError::Engine { op: "events", message: "down".into() });
    let mut failed = rt.events(&[]);
    assert!(matches!(failed.next().await, Some(Err(RuntimeError::Engine { .. }))));
    assert!(failed.next().await.is_none());
}

#[tokio::test]
async fn networks_fixed_addresses_shared_namespaces_and_cgroups_behave_as_docker() {
    let rt = FakeRuntime::new();
    rt.add_image("img");
    let net = |name: &str, subnet: &str| NetworkSpec {
        name: name.into(),
        subnet: subnet.into(),
        gateway: None,
        labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
    };
    rt.create_network(&net("n1", "10.213.1.0/24")).await.unwrap();
    rt.create_network(&net("n1", "10.213.1.0/24")).await.expect("idempotent");
    assert!(matches!(
        rt.create_network(&net("n1", "10.213.2.0/24")).await,
        Err(RuntimeError::Conflict { .. })
    ));
    assert!(
        matches!(
            rt.create_network(&net("n2", "172.17.5.0/24")).await,
            Err(RuntimeError::Conflict { .. })
        ),
        "overlaps Docker's own bridge"
    );
    let listed = rt.list_networks(&[("k".into(), "v".into())]).await.unwrap();
    assert_eq!(listed.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["n1"]);
    assert_eq!(rt.list_networks(&[]).await.unwrap().len(), 2, "with Docker's bridge");

    let on = |name: &str, ip: &str| ContainerSpec {
        network_mode: NetworkMode::Named("n1".into()),
        ipv4_address: Some(ip.into()),
        mac_address: Some("0e:00:00:00:00:01".into()),
        cgroup_parent: Some("berth/t".into()),
        ..spec(name, "img")
    };
    assert!(matches!(rt.create(&on("out", "10.9.9.9")).await, Err(RuntimeError::Invalid { .. })));
    let pause = rt.create(&on("pause", "10.213.1.10")).await.unwrap();
    assert!(matches!(
        rt.create(&on("twin", "10.213.1.10")).await,
        Err(RuntimeError::Conflict { .. })
    ));
    let missing =
        ContainerSpec { network_mode: NetworkMode::Named("nope".into()), ..spec("x", "img") };
    assert!(matches!(
        rt.create(&missing).await,
        Err(RuntimeError::NotFound { kind: ObjectKind::Network, .. })
    ));
    rt.start(&pause).await.unwrap();
    let st = rt.inspect(&pause).await.unwrap().unwrap();
    assert_eq!(st.ip_address.as_deref(), Some("10.213.1.10"));
    assert_eq!(st.networks[0].mac_address.as_deref(), Some("0e:00:00:00:00:01"));
    assert!(st.pid.is_some(), "a running container has a pid");
    let app = rt
        .create(&ContainerSpec {
            network_mode: NetworkMode::Container(pause.clone()),
            ..spec("app", "img")
        })
        .await
        .unwrap();
    rt.start(&app).await.unwrap();

    rt.create_cgroup(&CgroupSpec { name: "berth/t".into(), ..Default::default() }).await.unwrap();
    assert_eq!(rt.list_cgroups("berth/").await.unwrap(), vec!["berth/t".to_string()]);
    assert!(matches!(rt.remove_network("n1").await, Err(RuntimeError::Conflict { .. })));
    assert!(matches!(rt.remove_cgroup("berth/t").await, Err(RuntimeError::Conflict { .. })));
    rt.remove(&app).await.unwrap();
    rt.remove(&pause).await.unwrap();
    assert!(rt.inspect(&pause).await.unwrap().is_none());
    rt.remove_network("n1").await.unwrap();
    rt.remove_network("n1").await.expect("a missing network is Ok");
    rt.remove_cgroup("berth/t").await.unwrap();
    assert!(rt.cgroups().is_empty());
    assert_eq!(rt.pause_image().await.unwrap(), PAUSE_IMAGE);
    assert!(rt.image(PAUSE_IMAGE).await.unwrap().is_some());
}

#[tokio::test]
async fn follow_logs_delivers_lines_after_the_cursor_until_the_container_stops() {
    let rt = FakeRuntime::new();
    rt.add_image("app");
    let id = rt.create(&spec("a", "app:latest")).await.unwrap();
    rt.start(&id).await.unwrap();
    assert!(rt.push_log(&id, "one", false));
    assert!(rt.push_log(&id, "two", true));
    let mut all = rt.follow_logs(&id, 0);
    let one = all.next().await.unwrap().unwrap();
    let two = all.next().await.unwrap().unwrap();
    assert_eq!(
        (one.text.as_str(), one.stderr, two.text.as_str(), two.stderr),
        ("one", false, "two", true)
    );
    assert!(two.timestamp_ns > one.timestamp_ns);
    // From a cursor: only later lines; a line written while following arrives.
    let mut after = rt.follow_logs(&id, one.timestamp_ns);
    assert_eq!(after.next().await.unwrap().unwrap().text, "two");
    rt.push_log(&id, "three", false);
    assert_eq!(after.next().await.unwrap().unwrap().text, "three");
    assert_eq!(all.next().await.unwrap().unwrap().text, "three");
    // Once the container has stopped, the stream ends after its last line.
    rt.exit(&id, 0);
    assert!(after.next().await.is_none());
    assert!(all.next().await.is_none());
    assert!(!rt.push_log("nope", "x", false));
}
