//! Table tests of the dangerous settings, the attributes they need and the policy that allows
//! them.

use super::*;

fn td(v: serde_json::Value) -> TaskDefinition {
    let mut base =
        serde_json::json!({"family": "f", "containerDefinitions": [{"name": "a", "image": "i"}]});
    for (k, val) in v.as_object().unwrap() {
        base[k] = val.clone();
    }
    serde_json::from_value(base).unwrap()
}

fn container(extra: serde_json::Value) -> serde_json::Value {
    let mut c = serde_json::json!({"name": "a", "image": "i"});
    for (k, val) in extra.as_object().unwrap() {
        c[k] = val.clone();
    }
    serde_json::json!({"containerDefinitions": [{"name": "z", "image": "i"}, c]})
}

#[test]
fn dangerous_settings_table() {
    use serde_json::json;
    // (what, task definition members, expected (field, required attribute))
    type Row = (&'static str, serde_json::Value, Vec<(&'static str, &'static str)>);
    let rows: Vec<Row> = vec![
        ("plain", json!({}), vec![]),
        ("privileged false", container(json!({"privileged": false})), vec![]),
        (
            "privileged",
            container(json!({"privileged": true})),
            vec![("containerDefinitions[1].privileged", ATTR_PRIVILEGED)],
        ),
        (
            "capabilities: defaults are harmless, others named, CAP_ and case normalised",
            container(json!({"linuxParameters": {"capabilities": {
                "add": ["CHOWN", "cap_net_admin", "SYS_ADMIN"], "drop": ["ALL"]}}})),
            vec![
                (
                    "containerDefinitions[1].linuxParameters.capabilities.add=NET_ADMIN",
                    "berth.capability.cap-add.NET_ADMIN",
                ),
                (
                    "containerDefinitions[1].linuxParameters.capabilities.add=SYS_ADMIN",
                    "berth.capability.cap-add.SYS_ADMIN",
                ),
            ],
        ),
        (
            "capability ALL",
            container(json!({"linuxParameters": {"capabilities": {"add": ["ALL"]}}})),
            vec![(
                "containerDefinitions[1].linuxParameters.capabilities.add=ALL",
                "berth.capability.cap-add.ALL",
            )],
        ),
        ("pidMode task", json!({"pidMode": "task", "ipcMode": "none"}), vec![]),
        ("pidMode host", json!({"pidMode": "host"}), vec![("pidMode=host", ATTR_HOST_NAMESPACES)]),
        ("ipcMode host", json!({"ipcMode": "host"}), vec![("ipcMode=host", ATTR_HOST_NAMESPACES)]),
        (
            "networkMode host",
            json!({"networkMode": "host"}),
            vec![("networkMode=host", ATTR_HOST_NAMESPACES)],
        ),
        ("networkMode bridge", json!({"networkMode": "bridge"}), vec![]),
        (
            "security options: no-new-privileges is harmless",
            container(json!({"dockerSecurityOptions": [
                "no-new-privileges", "seccomp=unconfined", "apparmor:unconfined"]})),
            vec![
                (
                    "containerDefinitions[1].dockerSecurityOptions[1]=seccomp=unconfined",
                    ATTR_SECURITY_OPTIONS,
                ),
                (
                    "containerDefinitions[1].dockerSecurityOptions[2]=apparmor:unconfined",
                    ATTR_SECURITY_OPTIONS,
                ),
            ],
        ),
        (
            "host path, normalised",
            json!({"volumes": [{"name": "d", "dockerVolumeConfiguration": {"scope": "task"}},
                               {"name": "e", "host": {"sourcePath": "/srv/../etc/"}}]}),
            vec![("volumes[1].host.sourcePath=/srv/../etc/", "berth.capability.host-path/etc")],
        ),
        (
            "a host volume without a source path is a Docker volume",
            json!({"volumes": [{"name": "e", "host": {}}]}),
            vec![],
        ),
        (
            "a relative host path counts as / (which holds the Docker socket)",
            json!({"volumes": [{"name": "e", "host": {"sourcePath": "data"}}]}),
            vec![
                ("volumes[0].host.sourcePath=data (the Docker socket)", ATTR_DOCKER_SOCKET),
                ("volumes[0].host.sourcePath=data", "berth.capability.host-path/"),
            ],
        ),
        (
            "docker socket bind",
            json!({"volumes": [{"name": "s", "host": {"sourcePath": "/var/run/docker.sock"}}]}),
            vec![
                (
                    "volumes[0].host.sourcePath=/var/run/docker.sock (the Docker socket)",
                    ATTR_DOCKER_SOCKET,
                ),
                (
                    "volumes[0].host.sourcePath=/var/run/docker.sock",
                    "berth.capability.host-path/var/run/docker.sock",
                ),
            ],
        ),
        (
            "a directory holding the docker socket",
            json!({"volumes": [{"name": "s", "host": {"sourcePath": "/run"}}]}),
            vec![
                ("volumes[0].host.sourcePath=/run (the Docker socket)", ATTR_DOCKER_SOCKET),
                ("volumes[0].host.sourcePath=/run", "berth.capability.host-path/run"),
            ],
        ),
        (
            "driverOpts o=bind and device",
            json!({"volumes": [{"name": "v", "dockerVolumeConfiguration": {"scope": "task", "driver": "local",
                "driverOpts": {"type": "none", "o": "bind", "device": "/etc"}}}]}),
            vec![
                (
                    "volumes[0].dockerVolumeConfiguration.driverOpts.device=/etc",
                    ATTR_VOLUME_DRIVER_OPTS,
                ),
                ("volumes[0].dockerVolumeConfiguration.driverOpts.o=bind", ATTR_VOLUME_DRIVER_OPTS),
            ],
        ),
        (
            "driverOpts without host paths",
            json!({"volumes": [{"name": "v", "dockerVolumeConfiguration": {"scope": "task",
                "driverOpts": {"type": "tmpfs", "o": "size=100m,uid=1000"}}}]}),
            vec![],
        ),
    ];
    for (what, members, want) in rows {
        let got: Vec<(String, String)> = dangerous_settings(&td(members))
            .iter()
            .map(|d| (d.field.clone(), d.required_attribute()))
            .collect();
        let want: Vec<(String, String)> =
            want.into_iter().map(|(f, a)| (f.to_string(), a.to_string())).collect();
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn required_attributes_are_deduplicated() {
    let t = td(serde_json::json!({"pidMode": "host", "ipcMode": "host", "networkMode": "host"}));
    assert_eq!(required_attributes(&t), vec![ATTR_HOST_NAMESPACES.to_string()]);
}

#[test]
fn normalize_paths() {
    for (p, want) in [
        ("/", Some("/")),
        ("//srv//data/", Some("/srv/data")),
        ("/srv/./a/../b", Some("/srv/b")),
        ("/../..", Some("/")),
        ("srv", None),
        ("", None),
    ] {
        assert_eq!(normalize_path(p).as_deref(), want, "{p}");
    }
}

#[test]
fn satisfied_table() {
    // (required, instance attributes, satisfied)
    let rows: &[(&str, &[&str], bool)] = &[
        (ATTR_PRIVILEGED, &[], false),
        (ATTR_PRIVILEGED, &[ATTR_PRIVILEGED], true),
        ("berth.capability.cap-add.NET_ADMIN", &["berth.capability.cap-add.SYS_ADMIN"], false),
        ("berth.capability.cap-add.NET_ADMIN", &["berth.capability.cap-add.ALL"], true),
        ("berth.capability.cap-add.ALL", &["berth.capability.cap-add.NET_ADMIN"], false),
        ("berth.capability.host-path/srv/data", &["berth.capability.host-path/srv"], true),
        ("berth.capability.host-path/srv/data", &["berth.capability.host-path/"], true),
        ("berth.capability.host-path/srv", &["berth.capability.host-path/srv"], true),
        ("berth.capability.host-path/srvx", &["berth.capability.host-path/srv"], false),
        ("berth.capability.host-path/srv", &["berth.capability.host-path/srv/data"], false),
        ("berth.capability.host-path/", &["berth.capability.host-path/srv"], false),
        (ATTR_DOCKER_SOCKET, &["berth.capability.host-path/"], false),
    ];
    for (req, have, want) in rows {
        assert_eq!(satisfied(req, |a| have.contains(&a)), *want, "{req} with {have:?}");
    }
}

#[test]
fn a_policy_advertises_and_allows_what_its_flags_say() {
    let default = HostAccess::default();
    assert!(default.attributes().is_empty(), "nothing is allowed by default");
    let all = td(serde_json::json!({
        "pidMode": "host",
        "containerDefinitions": [{"name": "a", "image": "i", "privileged": true,
            "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}},
            "dockerSecurityOptions": ["label:disable"]}],
        "volumes": [{"name": "h", "host": {"sourcePath": "/srv/data"}},
                    {"name": "s", "host": {"sourcePath": "/var/run/docker.sock"}},
                    {"name": "v", "dockerVolumeConfiguration": {"driverOpts": {"device": "/dev/sda1"}}}]
    }));
    let reason = default.refusal(&all).unwrap();
    assert!(reason.starts_with("CannotStartContainerError: "), "{reason}");
    for part in [
        "containerDefinitions[0].privileged (needs berth agent --allow-privileged)",
        "capabilities.add=NET_ADMIN (needs berth agent --allow-capabilities NET_ADMIN)",
        "pidMode=host (needs berth agent --allow-host-namespaces)",
        "dockerSecurityOptions[0]=label:disable (needs berth agent --allow-security-options)",
        "volumes[0].host.sourcePath=/srv/data (needs berth agent --allow-host-paths /srv/data)",
        "(the Docker socket) (needs berth agent --allow-host-paths /var/run/docker.sock)",
        "driverOpts.device=/dev/sda1 (needs berth agent --allow-volume-driver-opts)",
    ] {
        assert!(reason.contains(part), "{part} not in {reason}");
    }

    let open = HostAccess {
        privileged: true,
        capabilities: HostAccess::parse_capabilities(&["cap_net_admin".into()]),
        host_namespaces: true,
        security_options: true,
        host_paths: HostAccess::parse_host_paths(&["/srv/".into(), "/var/run/docker.sock".into()])
            .unwrap(),
        volume_driver_opts: true,
    };
    assert_eq!(open.refusal(&all), None);
    assert!(open.attributes().contains(&ATTR_DOCKER_SOCKET.to_string()));
    assert!(open.attributes().contains(&"berth.capability.host-path/srv".to_string()));
    // Every required attribute of what it allows is one it advertises (or satisfies).
    let have = open.attributes();
    for a in required_attributes(&all) {
        assert!(satisfied(&a, |n| have.iter().any(|h| h == n)), "{a}");
    }
    let only_srv = HostAccess { host_paths: vec!["/srv".into(), "/".into()], ..open.clone() };
    let r = only_srv.refusal(&all).unwrap();
    assert!(r.contains("(the Docker socket)") && !r.contains("/srv/data"), "{r}");

    assert_eq!(HostAccess::parse_capabilities(&["All".into()]), Capabilities::All);
    assert!(HostAccess::parse_host_paths(&["srv".into()]).is_err());
}

#[test]
fn a_missing_attribute_is_explained_by_the_settings_that_need_it() {
    let t = td(container(serde_json::json!({"privileged": true})));
    assert_eq!(
        explain_missing(&t, &[ATTR_PRIVILEGED.to_string(), "x".to_string()]),
        "Missing attributes: com.amazonaws.ecs.capability.privileged-container: \
         containerDefinitions[1].privileged (needs berth agent --allow-privileged); x"
    );
}
