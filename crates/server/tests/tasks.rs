//! Container instances and tasks through the server alone (no Docker): placement committed
//! with compare-and-set, the agent channel's poll and report, the lifecycle's forward-only
//! rule. An "agent" here is the test itself speaking the agent protocol.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use serde_json::{Value, json};

async fn register_instance(h: &Harness, cpu: i64, memory: i64, az: &str) -> String {
    let r = h
        .ok(
            "RegisterContainerInstance",
            json!({
                "cluster": "default",
                "instanceIdentityDocument": json!({"instanceId": format!("i-{}", uuid_like(az))}).to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}
                ],
                "attributes": [{"name": "ecs.availability-zone", "value": az}]
            }),
        )
        .await;
    r["containerInstance"]["containerInstanceArn"].as_str().unwrap().to_string()
}

fn uuid_like(seed: &str) -> String {
    format!("{:0>17}", seed.bytes().map(|b| format!("{b:x}")).collect::<String>())[..17].to_string()
}

async fn task_def(h: &Harness, family: &str, cpu: i64, memory: i64, host_port: i64) {
    h.ok(
        "RegisterTaskDefinition",
        json!({"family": family, "containerDefinitions": [{
            "name": "web", "image": "berth-demo:latest", "cpu": cpu, "memory": memory,
            "portMappings": [{"containerPort": 8080, "hostPort": host_port}]}]}),
    )
    .await;
}

fn resource(ci: &Value, name: &str, which: &str) -> Value {
    ci[which].as_array().unwrap().iter().find(|r| r["name"] == name).unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_run_tasks_never_overcommit_an_instance() {
    let h = Arc::new(Harness::start().await);
    let a = register_instance(&h, 1024, 1000, "a").await;
    let b = register_instance(&h, 1024, 1000, "b").await;
    task_def(&h, "t", 256, 100, 0).await;
    // 2 instances x 4 tasks of 256 cpu fit; 20 concurrent RunTasks of 1 ask for 20.
    let mut joins = Vec::new();
    for _ in 0..20 {
        let h = h.clone();
        joins.push(tokio::spawn(
            async move { h.ok("RunTask", json!({"taskDefinition": "t"})).await },
        ));
    }
    let (mut placed, mut refused) = (0, 0);
    for j in joins {
        let r = j.await.unwrap();
        placed += r["tasks"].as_array().unwrap().len();
        if let Some(f) = r["failures"].as_array().and_then(|f| f.first()) {
            assert_eq!(f["reason"], "RESOURCE:CPU", "{r}");
            refused += 1;
        }
    }
    assert_eq!(placed, 8);
    assert_eq!(refused, 12);
    for arn in [&a, &b] {
        let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [arn]})).await;
        let ci = &d["containerInstances"][0];
        assert_eq!(resource(ci, "CPU", "remainingResources")["integerValue"], 0);
        assert_eq!(resource(ci, "MEMORY", "remainingResources")["integerValue"], 600);
        assert_eq!(ci["pendingTasksCount"], 4);
    }
    let c = h.ok("DescribeClusters", json!({})).await;
    assert_eq!(c["clusters"][0]["pendingTasksCount"], 8);
    assert_eq!(c["clusters"][0]["registeredContainerInstancesCount"], 2);
}

#[tokio::test]
async fn static_ports_conflict_and_failures_name_the_resource() {
    let h = Harness::start().await;
    register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "p", 10, 10, 8080).await;
    let r = h.ok("RunTask", json!({"taskDefinition": "p", "count": 2})).await;
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1);
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:PORTS");
    task_def(&h, "big", 10, 999_999, 0).await;
    let r = h.ok("RunTask", json!({"taskDefinition": "big"})).await;
    assert_eq!(r["failures"][0]["reason"], "RESOURCE:MEMORY");
    let bad = h.call("RunTask", json!({"taskDefinition": "p", "count": 11})).await;
    assert_eq!(bad.body["__type"], "InvalidParameterException");
    let over = h
        .call(
            "RunTask",
            json!({"taskDefinition": "p", "overrides": {"containerOverrides": [{"name": "nope"}]}}),
        )
        .await;
    assert!(over.body["message"].as_str().unwrap().contains("containerOverrides[0].name"));
}

#[tokio::test]
async fn an_empty_cluster_says_so() {
    let h = Harness::start().await;
    h.ok("CreateCluster", json!({})).await;
    task_def(&h, "t", 1, 6, 0).await;
    let r = h.call("RunTask", json!({"taskDefinition": "t"})).await;
    assert_eq!(r.body["__type"], "InvalidParameterException");
    assert_eq!(r.body["message"], "No Container Instances were found in your cluster.");
}

#[tokio::test]
async fn client_token_makes_run_task_idempotent() {
    let h = Harness::start().await;
    register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "t", 1, 6, 0).await;
    let a =
        h.ok("RunTask", json!({"taskDefinition": "t", "count": 2, "clientToken": "once"})).await;
    let b =
        h.ok("RunTask", json!({"taskDefinition": "t", "count": 2, "clientToken": "once"})).await;
    let arns = |v: &Value| {
        v["tasks"].as_array().unwrap().iter().map(|t| t["taskArn"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(arns(&a), arns(&b));
    let list = h.ok("ListTasks", json!({})).await;
    assert_eq!(list["taskArns"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_client_token_reused_with_other_parameters_is_a_conflict() {
    let h = Harness::start().await;
    register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "t", 1, 6, 0).await;
    let arns = |v: &Value| {
        v["tasks"].as_array().unwrap().iter().map(|t| t["taskArn"].clone()).collect::<Vec<_>>()
    };
    let first = h.ok("RunTask", json!({"taskDefinition": "t", "clientToken": "tok"})).await;
    let original = arns(&first);
    assert_eq!(original.len(), 1);
    // The same parameters (defaults spelled out or not) answer the original tasks...
    for same in [
        json!({"taskDefinition": "t", "clientToken": "tok"}),
        json!({"taskDefinition": "t", "clientToken": "tok", "count": 1, "cluster": "default"}),
    ] {
        assert_eq!(arns(&h.ok("RunTask", same).await), original);
    }
    // ...other parameters are a conflict naming the tasks the token started.
    for other in [
        json!({"taskDefinition": "t", "clientToken": "tok", "count": 2}),
        json!({"taskDefinition": "t", "clientToken": "tok", "startedBy": "someone"}),
    ] {
        let r = h.call("RunTask", other).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["__type"], "ConflictException", "{}", r.body);
        assert_eq!(r.headers["x-amzn-errortype"], "ConflictException");
        assert_eq!(r.body["resourceIds"], json!(original), "{}", r.body);
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains("clientToken") && msg.contains("tok"), "{msg}");
    }
    let list = h.ok("ListTasks", json!({})).await;
    assert_eq!(list["taskArns"].as_array().unwrap().len(), 1, "nothing more was started");
}

#[tokio::test]
async fn the_agent_channel_is_level_triggered_and_reports_only_move_forward() {
    let h = Harness::start().await;
    let inst = register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "t", 100, 100, 0).await;
    // First poll answers at once with the full (empty) desired state.
    let p0 = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": 0, "waitSeconds": 5})).await;
    assert_eq!(p0.status, 200, "{}", p0.body);
    assert_eq!(p0.body["tasks"], json!([]));
    let v0 = p0.body["version"].as_u64().unwrap();
    // A held poll returns when a task is placed on the instance.
    let started = Instant::now();
    let held = json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": v0, "waitSeconds": 20});
    let (poll, run) = tokio::join!(h.post_path("/berth/agent/v1/poll", &held), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.ok("RunTask", json!({"taskDefinition": "t"})).await
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    let task_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    assert_eq!(poll.body["tasks"][0]["taskArn"], task_arn.as_str());
    assert_eq!(poll.body["tasks"][0]["desiredStatus"], "RUNNING");
    assert_eq!(poll.body["tasks"][0]["taskDefinition"]["family"], "t");
    let v1 = poll.body["version"].as_u64().unwrap();
    assert!(v1 > v0);
    // Nothing changed: a poll with the current version waits out its (short) wait.
    let idle = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": v1, "waitSeconds": 1})).await;
    assert_eq!(idle.body["version"], v1);

    let epoch = poll.body["epoch"].as_u64().unwrap();
    let seq = std::sync::atomic::AtomicU64::new(0);
    let report = |status: &str| {
        let seq = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        json!({"cluster": "default", "task": task_arn, "status": status, "containerInstanceArn": inst,
               "containers": [{"containerName": "web", "status": status, "runtimeId": "abc",
                               "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 8080, "hostPort": 32768, "protocol": "tcp"}]}],
               "epoch": epoch, "seq": seq})
    };
    assert_eq!(h.post_path("/berth/agent/v1/report", &report("RUNNING")).await.status, 200);
    // A stale PENDING report changes nothing.
    h.post_path("/berth/agent/v1/report", &report("PENDING")).await;
    let t = &h.ok("DescribeTasks", json!({"tasks": [task_arn]})).await["tasks"][0];
    assert_eq!(t["lastStatus"], "RUNNING");
    assert!(t["startedAt"].is_number());
    assert_eq!(t["containers"][0]["networkBindings"][0]["hostPort"], 32768);
    // A report from another instance is refused.
    let mut foreign = report("STOPPED");
    foreign["containerInstanceArn"] =
        json!("arn:aws:ecs:us-east-1:123456789012:container-instance/default/other");
    assert_eq!(h.post_path("/berth/agent/v1/report", &foreign).await.status, 400);

    // StopTask: the agent sees desired STOPPED on its next poll.
    h.ok("StopTask", json!({"task": task_arn, "reason": "bye"})).await;
    let p = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": v1, "waitSeconds": 5})).await;
    assert_eq!(p.body["tasks"][0]["desiredStatus"], "STOPPED");
    assert_eq!(p.body["tasks"][0]["stoppedReason"], "bye");
    let mut stopped = report("STOPPED");
    stopped["containers"][0]["exitCode"] = json!(0);
    h.post_path("/berth/agent/v1/report", &stopped).await;
    let t = &h.ok("DescribeTasks", json!({"tasks": [task_arn]})).await["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
    assert_eq!(t["stopCode"], "UserInitiated");
    assert_eq!(t["containers"][0]["exitCode"], 0);
    // STOPPED released the instance's resources and left the live indexes.
    let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [inst]})).await;
    assert_eq!(
        resource(&d["containerInstances"][0], "CPU", "remainingResources")["integerValue"],
        4096
    );
    assert_eq!(d["containerInstances"][0]["runningTasksCount"], 0);
    assert_eq!(h.ok("ListTasks", json!({})).await["taskArns"], json!([]));
    assert_eq!(
        h.ok("ListTasks", json!({"desiredStatus": "STOPPED"})).await["taskArns"],
        json!([task_arn])
    );
    // A late RUNNING report cannot resurrect it.
    h.post_path("/berth/agent/v1/report", &report("RUNNING")).await;
    assert_eq!(
        h.ok("DescribeTasks", json!({"tasks": [task_arn]})).await["tasks"][0]["lastStatus"],
        "STOPPED"
    );
}

#[tokio::test]
async fn silent_agents_show_disconnected_and_get_no_tasks() {
    let h = Harness::start_with(|c| c.agent_timeout = Duration::from_secs(3)).await;
    let inst = register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "t", 1, 6, 0).await;
    let connected = |d: &Value| d["containerInstances"][0]["agentConnected"] == true;
    let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [inst]})).await;
    assert!(connected(&d), "registration counts as a heartbeat");
    // No poll arrives: the instance turns disconnected once the timeout has passed.
    let silent_since = Instant::now();
    loop {
        let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [inst]})).await;
        if !connected(&d) {
            break;
        }
        assert!(silent_since.elapsed() < Duration::from_secs(30), "never marked disconnected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = h.ok("RunTask", json!({"taskDefinition": "t"})).await;
    assert_eq!(r["failures"][0]["reason"], "AGENT");
    // A poll is a heartbeat: connected again.
    h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": 0, "waitSeconds": 0})).await;
    let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [inst]})).await;
    assert!(connected(&d));
}

#[tokio::test]
async fn forced_deregistration_stops_the_instances_tasks() {
    let h = Harness::start().await;
    let inst = register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "t", 1, 6, 0).await;
    let run = h.ok("RunTask", json!({"taskDefinition": "t"})).await;
    let task = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let refused = h.call("DeregisterContainerInstance", json!({"containerInstance": inst})).await;
    assert_eq!(refused.body["__type"], "InvalidParameterException");
    let d = h
        .ok("DeregisterContainerInstance", json!({"containerInstance": inst, "force": true}))
        .await;
    assert_eq!(d["containerInstance"]["status"], "INACTIVE");
    let t = &h.ok("DescribeTasks", json!({"tasks": [task]})).await["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
    let p = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": 0, "waitSeconds": 1})).await;
    assert_eq!(p.body["instanceStatus"], "INACTIVE");
    let l = h.ok("ListContainerInstances", json!({})).await;
    assert_eq!(l["containerInstanceArns"], json!([]));
    // Still describable.
    let d = h.ok("DescribeContainerInstances", json!({"containerInstances": [inst]})).await;
    assert_eq!(d["containerInstances"][0]["status"], "INACTIVE");
}

#[tokio::test]
async fn attributes_put_list_delete() {
    let h = Harness::start().await;
    let inst = register_instance(&h, 1024, 1024, "a").await;
    let put = h
        .ok(
            "PutAttributes",
            json!({"attributes": [{"name": "stack", "value": "prod", "targetId": inst}]}),
        )
        .await;
    assert_eq!(put["attributes"][0]["targetId"], inst.as_str());
    let l = h
        .ok("ListAttributes", json!({"targetType": "container-instance", "attributeName": "stack"}))
        .await;
    assert_eq!(l["attributes"], json!([{"name": "stack", "value": "prod", "targetId": inst}]));
    h.ok("DeleteAttributes", json!({"attributes": [{"name": "stack", "targetId": inst}]})).await;
    let l = h
        .ok("ListAttributes", json!({"targetType": "container-instance", "attributeName": "stack"}))
        .await;
    assert_eq!(l["attributes"], json!([]));
    let bad = h
        .call(
            "PutAttributes",
            json!({"attributes": [{"name": "x", "value": " padded ", "targetId": inst}]}),
        )
        .await;
    assert_eq!(bad.body["__type"], "InvalidParameterException");
}

#[tokio::test]
async fn start_task_places_on_the_named_instances_and_list_tasks_filters() {
    let h = Harness::start().await;
    let a = register_instance(&h, 1024, 1024, "a").await;
    let b = register_instance(&h, 1024, 1024, "b").await;
    task_def(&h, "t", 512, 6, 0).await;
    task_def(&h, "u", 1, 6, 0).await;
    let r = h
        .ok(
            "StartTask",
            json!({"taskDefinition": "t", "containerInstances": [b], "startedBy": "me"}),
        )
        .await;
    assert_eq!(r["tasks"][0]["containerInstanceArn"], b.as_str());
    let r = h
        .ok("StartTask", json!({"taskDefinition": "t", "containerInstances": [b, b, "nope"]}))
        .await;
    // One more fits on b (512 of 1024 left), the second does not, "nope" is missing.
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1);
    let reasons: Vec<&str> =
        r["failures"].as_array().unwrap().iter().map(|f| f["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"MISSING") && reasons.contains(&"RESOURCE:CPU"), "{reasons:?}");
    h.ok("RunTask", json!({"taskDefinition": "u", "startedBy": "other"})).await;

    let count = |v: Value| v["taskArns"].as_array().unwrap().len();
    assert_eq!(count(h.ok("ListTasks", json!({})).await), 3);
    assert_eq!(count(h.ok("ListTasks", json!({"family": "t"})).await), 2);
    assert_eq!(count(h.ok("ListTasks", json!({"startedBy": "me"})).await), 1);
    assert_eq!(count(h.ok("ListTasks", json!({"containerInstance": b})).await), 2);
    assert_eq!(count(h.ok("ListTasks", json!({"containerInstance": a})).await), 1);
    // Filtered pagination walks every match exactly once.
    let p1 = h.ok("ListTasks", json!({"family": "t", "maxResults": 1})).await;
    let p2 = h
        .ok("ListTasks", json!({"family": "t", "maxResults": 1, "nextToken": p1["nextToken"]}))
        .await;
    assert_ne!(p1["taskArns"], p2["taskArns"]);
    assert!(p2.get("nextToken").is_none() || p2["nextToken"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_fenced_by_epoch_and_sequence() {
    let h = Harness::start().await;
    let inst = register_instance(&h, 4096, 4096, "a").await;
    task_def(&h, "f", 100, 100, 0).await;
    let p = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": 0, "waitSeconds": 0})).await;
    let epoch = p.body["epoch"].as_u64().unwrap();
    assert_eq!(epoch, 1, "the first registration");
    let task_arn = h.ok("RunTask", json!({"taskDefinition": "f"})).await["tasks"][0]["taskArn"]
        .as_str()
        .unwrap()
        .to_string();
    let report = |health: &str, epoch: u64, seq: u64| {
        json!({"cluster": "default", "task": task_arn, "status": "RUNNING", "containerInstanceArn": inst,
               "containers": [{"containerName": "web", "status": "RUNNING", "runtimeId": "abc"}],
               "containerHealth": [{"containerName": "web", "healthStatus": health}],
               "epoch": epoch, "seq": seq})
    };
    let send = |body: Value| {
        let h = &h;
        async move { h.post_path("/berth/agent/v1/report", &body).await }
    };
    let stale = |r: &common::Reply| {
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.body["__type"], "StaleReportException", "{}", r.body);
    };
    assert_eq!(send(report("HEALTHY", epoch, 2)).await.status, 200);
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    // A retry of an older report, delivered late, is stale: refused as such, changes nothing...
    stale(&send(report("UNHEALTHY", epoch, 1)).await);
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    // ...and so is a replay of the very report last applied.
    stale(&send(report("UNHEALTHY", epoch, 2)).await);
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    // A newer one applies.
    assert_eq!(send(report("UNHEALTHY", epoch, 3)).await.status, 200);
    assert_eq!(health(&h, &task_arn).await, "UNHEALTHY");
    // A forged report from a registration that does not exist yet is refused, naming both
    // epochs, and does not pin the mark: later genuine reports still apply.
    let forged = send(report("HEALTHY", epoch + 1, 1)).await;
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert_eq!(forged.body["__type"], "ClientException");
    let msg = forged.body["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("epoch {}", epoch + 1)) && msg.contains(&format!("epoch {epoch}")),
        "{msg}"
    );
    assert_eq!(health(&h, &task_arn).await, "UNHEALTHY");
    assert_eq!(send(report("HEALTHY", epoch, 4)).await.status, 200);
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    // The agent channel carries fenced reports only: epoch 0 is refused.
    let unfenced = send(report("UNHEALTHY", 0, 5)).await;
    assert_eq!(unfenced.status, 400, "{}", unfenced.body);
    assert_eq!(unfenced.body["__type"], "InvalidParameterException");
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    // The instance registers again (a restarted agent): its new epoch wins over any sequence
    // number of the old one, and reports of the old registration are stale.
    let again = register_instance(&h, 4096, 4096, "a").await;
    assert_eq!(again, inst);
    let p = h.post_path("/berth/agent/v1/poll", &json!({"cluster": "default", "containerInstanceArn": inst, "seenVersion": 0, "waitSeconds": 0})).await;
    let new_epoch = p.body["epoch"].as_u64().unwrap();
    assert_eq!(new_epoch, epoch + 1);
    // Before the new agent reports, the old one's reports are already stale.
    stale(&send(report("UNHEALTHY", epoch, 99)).await);
    assert_eq!(health(&h, &task_arn).await, "HEALTHY");
    assert_eq!(send(report("UNHEALTHY", new_epoch, 1)).await.status, 200);
    assert_eq!(health(&h, &task_arn).await, "UNHEALTHY");
    stale(&send(report("HEALTHY", epoch, 100)).await);
    assert_eq!(
        health(&h, &task_arn).await,
        "UNHEALTHY",
        "a report of the previous registration is stale"
    );
    // ECS's public SubmitTaskStateChange is not an agent report: it is not fenced.
    h.ok("SubmitTaskStateChange", json!({"task": task_arn, "status": "STOPPED", "reason": "api"}))
        .await;
    let t = &h.ok("DescribeTasks", json!({"tasks": [task_arn]})).await["tasks"][0];
    assert_eq!(t["lastStatus"], "STOPPED");
}

/// The health status of the first container of a task.
async fn health(h: &Harness, task_arn: &str) -> Value {
    h.ok("DescribeTasks", json!({"tasks": [task_arn]})).await["tasks"][0]["containers"][0]
        ["healthStatus"]
        .clone()
}
