//! The actions a task definition needs (a table), and decisions on them for users with real
//! stored policies: wildcards do not grant them, named grants do, conditions on the path and
//! the cluster apply, denies win.

use std::sync::Arc;

use berth_model::iam::{Attached, IamUser};
use berth_store::{Store, Txn};
use serde_json::json;

use super::*;
use crate::auth::{MasterKey, Principal};
use crate::clock::SystemClock;
use crate::iam::{Iam, model};
use crate::records;

const ACCT: &str = "123456789012";

fn td(v: serde_json::Value) -> TaskDefinition {
    serde_json::from_value(v).expect("a task definition")
}

fn container(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"name": "a", "image": "i", "memory": 16});
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

#[test]
fn task_definitions_need_these_actions() {
    type Row = (
        &'static str,
        serde_json::Value,
        Vec<(&'static str, Vec<(&'static str, &'static str)>, &'static str)>,
    );
    let rows: Vec<Row> = vec![
        ("plain", json!({"containerDefinitions": [container(json!({}))]}), vec![]),
        (
            "privileged",
            json!({"containerDefinitions": [container(json!({"privileged": true}))]}),
            vec![("berth:RunPrivileged", vec![], "containerDefinitions[0].privileged")],
        ),
        (
            "privileged false",
            json!({"containerDefinitions": [container(json!({"privileged": false}))]}),
            vec![],
        ),
        (
            "two privileged containers: once",
            json!({"containerDefinitions": [container(json!({"privileged": true})),
                                            container(json!({"name": "b", "privileged": true}))]}),
            vec![("berth:RunPrivileged", vec![], "containerDefinitions[0].privileged")],
        ),
        (
            "host network",
            json!({"networkMode": "host", "containerDefinitions": [container(json!({}))]}),
            vec![("berth:UseHostNetwork", vec![], "networkMode=host")],
        ),
        (
            "bridge network",
            json!({"networkMode": "bridge", "containerDefinitions": [container(json!({}))]}),
            vec![],
        ),
        (
            "host pid and ipc",
            json!({"pidMode": "host", "ipcMode": "host", "containerDefinitions": [container(json!({}))]}),
            vec![
                ("berth:UseHostPid", vec![], "pidMode=host"),
                ("berth:UseHostIpc", vec![], "ipcMode=host"),
            ],
        ),
        (
            "task pid mode",
            json!({"pidMode": "task", "containerDefinitions": [container(json!({}))]}),
            vec![],
        ),
        (
            "capabilities beyond Docker's defaults, each",
            json!({"containerDefinitions": [container(json!({"linuxParameters": {"capabilities":
                {"add": ["CHOWN", "cap_net_admin", "SYS_TIME"]}}}))]}),
            vec![
                (
                    "berth:AddCapabilities",
                    vec![("berth:Capability", "NET_ADMIN")],
                    "containerDefinitions[0].linuxParameters.capabilities.add=NET_ADMIN",
                ),
                (
                    "berth:AddCapabilities",
                    vec![("berth:Capability", "SYS_TIME")],
                    "containerDefinitions[0].linuxParameters.capabilities.add=SYS_TIME",
                ),
            ],
        ),
        (
            "dropping capabilities",
            json!({"containerDefinitions": [container(json!({"linuxParameters": {"capabilities":
                {"drop": ["ALL"]}}}))]}),
            vec![],
        ),
        (
            "a host path, normalised",
            json!({"containerDefinitions": [container(json!({}))],
                   "volumes": [{"name": "h", "host": {"sourcePath": "/srv//data/"}}]}),
            vec![(
                "berth:MountHostPath",
                vec![("berth:HostPath", "/srv/data")],
                "volumes[0].host.sourcePath=/srv//data/",
            )],
        ),
        (
            "a volume without a host path",
            json!({"containerDefinitions": [container(json!({}))],
                   "volumes": [{"name": "h", "host": {}}, {"name": "d"}]}),
            vec![],
        ),
        (
            "the Docker socket",
            json!({"containerDefinitions": [container(json!({}))],
                   "volumes": [{"name": "s", "host": {"sourcePath": "/var/run"}}]}),
            vec![
                (
                    "berth:MountDockerSocket",
                    vec![],
                    "volumes[0].host.sourcePath=/var/run (the Docker socket)",
                ),
                (
                    "berth:MountHostPath",
                    vec![("berth:HostPath", "/var/run")],
                    "volumes[0].host.sourcePath=/var/run",
                ),
            ],
        ),
        (
            "a bind through driver options",
            json!({"containerDefinitions": [container(json!({}))],
                   "volumes": [{"name": "d", "dockerVolumeConfiguration":
                       {"driver": "local", "driverOpts": {"o": "bind", "device": "/etc"}}}]}),
            vec![(
                "berth:MountHostPath",
                vec![],
                "volumes[0].dockerVolumeConfiguration.driverOpts.device=/etc",
            )],
        ),
        (
            "security options",
            json!({"containerDefinitions": [container(json!({"dockerSecurityOptions":
                ["no-new-privileges", "seccomp=unconfined"]}))]}),
            vec![(
                "berth:SetSecurityOptions",
                vec![("berth:SecurityOption", "seccomp=unconfined")],
                "containerDefinitions[0].dockerSecurityOptions[1]=seccomp=unconfined",
            )],
        ),
    ];
    for (name, v, want) in rows {
        let got = needs(&td(v));
        let want: Vec<Need> = want
            .into_iter()
            .map(|(action, keys, field)| Need {
                action,
                keys: keys.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                field: field.to_string(),
            })
            .collect();
        assert_eq!(got, want, "case {name}");
    }
}

#[test]
fn only_berth_actions_need_explicit_grants() {
    for (action, want) in [
        ("berth:RunPrivileged", true),
        ("Berth:MountHostPath", true),
        ("ecs:RunTask", false),
        ("berthx:RunPrivileged", false),
        ("berth", false),
    ] {
        assert_eq!(explicit_only(action), want, "{action}");
    }
    for (op, want) in [
        ("RegisterTaskDefinition", true),
        ("RunTask", true),
        ("StartTask", true),
        ("CreateService", true),
        ("UpdateService", true),
        ("CreateTaskSet", true),
        ("DescribeTaskDefinition", false),
        ("StopTask", false),
    ] {
        assert_eq!(governs(op), want, "{op}");
    }
}

async fn user_with(store: &dyn Store, name: &str, statements: serde_json::Value) -> Principal {
    let mut policies = Attached::default();
    policies
        .inline
        .insert("p".into(), json!({"Version": "2012-10-17", "Statement": statements}).to_string());
    let arn = format!("arn:aws:iam::{ACCT}:user/{name}");
    let u = IamUser {
        name: name.into(),
        id: format!("AIDA{name}"),
        path: "/".into(),
        arn: arn.clone(),
        created_at: 0.0,
        tags: vec![],
        policies,
        groups: vec![],
        boundary: None,
    };
    store.txn(Txn::new().put(model::user_key(name), records::encode(&u))).await.unwrap();
    Principal { arn, account_id: ACCT.into(), access_key_id: format!("AKIA{name}"), instance: None }
}

#[tokio::test]
async fn decisions_on_berth_actions() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(berth_store::SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let iam = Iam::new(
        store.clone(),
        Arc::new(SystemClock),
        Arc::new(MasterKey::from_bytes(&[1; 32])),
        ACCT,
    );
    let web = format!("arn:aws:ecs:us-east-1:{ACCT}:task-definition/web:3");
    let db = format!("arn:aws:ecs:us-east-1:{ACCT}:task-definition/db:1");
    let cluster = |c: &str| format!("arn:aws:ecs:us-east-1:{ACCT}:cluster/{c}");
    let admin =
        user_with(&*store, "admin", json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}]))
            .await;
    let named = user_with(
        &*store,
        "named",
        json!([
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {"Effect": "Allow", "Action": "berth:RunPrivileged",
             "Resource": "arn:aws:ecs:*:*:task-definition/web:*",
             "Condition": {"StringEquals": {"ecs:cluster": cluster("dev")}}},
            {"Effect": "Allow", "Action": "berth:MountHostPath", "Resource": "*",
             "Condition": {"StringLike": {"berth:HostPath": "/srv/*"}}}
        ]),
    )
    .await;
    let denied = user_with(
        &*store,
        "denied",
        json!([
            {"Effect": "Allow", "Action": "berth:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "berth:UseHost*", "Resource": "*"}
        ]),
    )
    .await;
    iam.invalidate();
    let req = |action: &str, resource: &str, keys: &[(&str, &str)]| Authz {
        action: action.into(),
        resources: vec![resource.into()],
        keys: keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        region: "us-east-1".into(),
        ..Authz::default()
    };
    let dev = cluster("dev");
    let prod = cluster("prod");
    type Row<'a> = (&'a str, &'a Principal, Authz, Option<&'a str>);
    let rows: Vec<Row> = vec![
        (
            "Action * grants ecs:RunTask",
            &admin,
            req("ecs:RunTask", &web, &[("ecs:cluster", &dev)]),
            None,
        ),
        (
            "Action * does not grant berth:RunPrivileged",
            &admin,
            req("berth:RunPrivileged", &web, &[("ecs:cluster", &dev)]),
            Some("because no identity-based policy allows the berth:RunPrivileged action"),
        ),
        (
            "named, its family, its cluster",
            &named,
            req("berth:RunPrivileged", &web, &[("ecs:cluster", &dev)]),
            None,
        ),
        (
            "named, another cluster",
            &named,
            req("berth:RunPrivileged", &web, &[("ecs:cluster", &prod)]),
            Some("berth:RunPrivileged on resource: "),
        ),
        (
            "named, another family",
            &named,
            req("berth:RunPrivileged", &db, &[("ecs:cluster", &dev)]),
            Some("on resource: arn:aws:ecs:us-east-1:123456789012:task-definition/db:1"),
        ),
        (
            "a host path under the allowed one",
            &named,
            req("berth:MountHostPath", &web, &[("berth:HostPath", "/srv/data")]),
            None,
        ),
        (
            "a host path elsewhere",
            &named,
            req("berth:MountHostPath", &web, &[("berth:HostPath", "/etc")]),
            Some("berth:MountHostPath"),
        ),
        (
            "driver options: no path to match",
            &named,
            req("berth:MountHostPath", &web, &[]),
            Some("berth:MountHostPath"),
        ),
        ("berth:* grants", &denied, req("berth:RunPrivileged", &web, &[]), None),
        (
            "an explicit deny wins",
            &denied,
            req("berth:UseHostNetwork", &web, &[]),
            Some("with an explicit deny in an identity-based policy"),
        ),
    ];
    for (name, who, r, want) in rows {
        let got = iam.authorize(who, &r).await;
        match (want, got) {
            (None, Ok(())) => {}
            (Some(part), Err(e)) => {
                assert_eq!(e.code, "AccessDeniedException", "{name}");
                assert!(e.message.contains(part), "{name}: {}", e.message);
                assert!(e.message.contains(&r.action), "{name}: {}", e.message);
            }
            (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
        }
    }
}
