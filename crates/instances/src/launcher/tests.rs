use base64::Engine;

use super::fake::{Call, FakeLauncher};
use super::*;
use crate::record::InstanceState;

fn spec(id: &str, cluster: &str) -> AgentSpec {
    AgentSpec {
        instance_id: id.into(),
        cluster: cluster.into(),
        region: "us-east-1".into(),
        instance_type: "t3.micro".into(),
        availability_zone: "us-east-1a".into(),
        capacity: Capacity { cpu: 2048, memory_mib: 768 },
        attributes: vec![(INSTANCE_ID_ATTRIBUTE.into(), id.into())],
    }
}

fn running(id: &str, cluster: &str, phase: Phase) -> RunningAgent {
    RunningAgent { spec: spec(id, cluster), phase, pid: Some(1) }
}

#[test]
fn reconcile_table() {
    use Phase::*;
    let start = |id: &str, c: &str| Action::Start(spec(id, c));
    let stop = |id: &str| Action::Stop(id.into());
    // (desired, running, actions)
    let table: Vec<(Vec<AgentSpec>, Vec<RunningAgent>, Vec<Action>)> = vec![
        (vec![], vec![], vec![]),
        // New instance: start.
        (vec![spec("i-1", "a")], vec![], vec![start("i-1", "a")]),
        // Already running with the same spec: nothing.
        (vec![spec("i-1", "a")], vec![running("i-1", "a", Running)], vec![]),
        // Not desired any more: stop.
        (vec![], vec![running("i-1", "a", Running)], vec![stop("i-1")]),
        // Already stopping: wait.
        (vec![], vec![running("i-1", "a", Stopping)], vec![]),
        // Spec changed: stop now, start once gone.
        (vec![spec("i-1", "b")], vec![running("i-1", "a", Running)], vec![stop("i-1")]),
        (vec![spec("i-1", "b")], vec![running("i-1", "a", Stopping)], vec![]),
        // Desired again while the old one still stops: wait for it.
        (vec![spec("i-1", "a")], vec![running("i-1", "a", Stopping)], vec![]),
        // Several at once, sorted by id.
        (
            vec![spec("i-3", "a"), spec("i-1", "a")],
            vec![running("i-2", "a", Running), running("i-1", "a", Running)],
            vec![stop("i-2"), start("i-3", "a")],
        ),
    ];
    for (desired, have, want) in table {
        assert_eq!(reconcile(&desired, &have), want, "desired {desired:?} running {have:?}");
    }
}

fn record(id: &str, state: InstanceState, user_data: Option<&str>) -> InstanceRecord {
    serde_json::from_value(serde_json::json!({
        "id": id, "imageId": "ami-berth", "instanceType": "m5.large",
        "subnetId": "subnet-1", "vpcId": "vpc-1", "availabilityZone": "us-east-1c",
        "privateIp": "172.31.32.4", "state": state, "launchTime": 1.0, "stateChangedAt": 1.0,
        "keyName": null, "ecsCluster": "x",
        "userData": user_data.map(|u| base64::engine::general_purpose::STANDARD.encode(u)),
    }))
    .unwrap()
}

#[test]
fn specs_come_from_the_type_and_the_user_data() {
    let ud = "#!/bin/bash\necho ECS_CLUSTER=web >> /etc/ecs/ecs.config\n\
              echo 'ECS_INSTANCE_ATTRIBUTES={\"stack\":\"prod\",\"ecs.instance-id\":\"forged\"}' >> /etc/ecs/ecs.config\n";
    let recs = [
        record("i-1", InstanceState::Running, Some(ud)),
        record("i-2", InstanceState::Pending, None),
        record("i-3", InstanceState::Stopped, None),
        record("i-4", InstanceState::ShuttingDown, None),
    ];
    let (specs, errors) = desired_specs(&recs, "us-east-1");
    assert!(errors.is_empty());
    let ids: Vec<&str> = specs.iter().map(|s| s.instance_id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2"], "only pending and running instances have agents");
    let s = &specs[0];
    assert_eq!(s.cluster, "web");
    assert_eq!(s.capacity, Capacity { cpu: 2048, memory_mib: 8192 - 256 });
    assert_eq!(s.availability_zone, "us-east-1c");
    assert_eq!(
        s.attributes,
        vec![("ecs.instance-id".into(), "i-1".into()), ("stack".into(), "prod".into())],
        "the instance id attribute cannot be overridden by user data"
    );
    assert_eq!(specs[1].cluster, "default");
    let mut bad = record("i-5", InstanceState::Running, None);
    bad.instance_type = "z9.huge".into();
    let (_, errors) = desired_specs([&bad], "us-east-1");
    assert_eq!(errors[0].0, "i-5");
}

#[test]
fn converging_a_fake_through_a_lifecycle() {
    let f = FakeLauncher::new();
    let mut recs = vec![
        record("i-1", InstanceState::Pending, None),
        record("i-2", InstanceState::Pending, None),
    ];
    let pass = |recs: &[InstanceRecord]| {
        let (specs, _) = desired_specs(recs, "us-east-1");
        converge(&f, &specs)
    };
    let (actions, failed) = pass(&recs);
    assert_eq!((actions.len(), failed.len()), (2, 0));
    assert_eq!(f.running().len(), 2);
    assert!(pass(&recs).0.is_empty(), "converged: a second pass does nothing");
    // Terminate i-2: its agent is stopped once, and reported gone when it exits.
    recs[1].state = InstanceState::ShuttingDown;
    assert_eq!(pass(&recs).0, vec![Action::Stop("i-2".into())]);
    assert!(pass(&recs).0.is_empty(), "stopping is not repeated");
    assert!(f.running().iter().any(|r| r.spec.instance_id == "i-2"));
    assert!(gone(&recs, &f.running()).is_empty(), "still stopping");
    f.exit("i-2");
    assert!(!f.running().iter().any(|r| r.spec.instance_id == "i-2"));
    assert_eq!(gone(&recs, &f.running()), vec![("i-2".to_string(), InstanceState::Terminated)]);
    recs[1].state = InstanceState::Terminated;
    assert!(gone(&recs, &f.running()).is_empty(), "terminated stays terminated");
    // i-1's agent crashes: the next pass starts it again.
    f.crash("i-1");
    let (actions, _) = pass(&recs);
    assert!(matches!(&actions[..], [Action::Start(s)] if s.instance_id == "i-1"));
    let starts = f.calls().iter().filter(|c| matches!(c, Call::Start(_))).count();
    assert_eq!(starts, 3);
    // Starting a listed agent twice is refused.
    let err = f.start(&spec("i-1", "default")).unwrap_err();
    assert_eq!(err.code(), "InternalError");
}

#[test]
fn record_attributes_join_and_win_over_the_user_data() {
    let ud = "#!/bin/bash\necho 'ECS_INSTANCE_ATTRIBUTES={\"ecs.capacity-provider\":\"forged\",\"stack\":\"prod\"}' >> /etc/ecs/ecs.config\n";
    let mut rec = record("i-1", InstanceState::Running, Some(ud));
    rec.ecs_attributes = vec![("ecs.capacity-provider".into(), "asg-cp".into())];
    let spec = AgentSpec::for_instance(&rec, "us-east-1").unwrap();
    assert_eq!(
        spec.attributes,
        vec![
            ("ecs.instance-id".into(), "i-1".into()),
            ("stack".into(), "prod".into()),
            ("ecs.capacity-provider".into(), "asg-cp".into()),
        ]
    );
}
