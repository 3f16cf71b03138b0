//! Host access (issue #10) through the server alone: a task definition asking for a dangerous
//! setting is placed only on an instance whose agent advertises that it allows it; elsewhere
//! RunTask answers ECS's `ATTRIBUTE` failure, its detail naming the attribute and the setting.

mod common;

use common::Harness;
use serde_json::{Value, json};

async fn register_instance(h: &Harness, id: &str, attributes: Value) -> String {
    let r = h
        .ok(
            "RegisterContainerInstance",
            json!({
                "cluster": "default",
                "instanceIdentityDocument": json!({"instanceId": format!("i-{id:0>17}")}).to_string(),
                "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}
                ],
                "attributes": attributes
            }),
        )
        .await;
    r["containerInstance"]["containerInstanceArn"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_privileged_task_goes_only_where_the_agent_allows_it() {
    let h = Harness::start().await;
    let plain = register_instance(&h, "a", json!([])).await;
    h.ok(
        "RegisterTaskDefinition",
        json!({"family": "priv", "containerDefinitions": [
            {"name": "a", "image": "berth-demo:latest", "memory": 16, "privileged": true}]}),
    )
    .await;
    let r = h.ok("RunTask", json!({"taskDefinition": "priv"})).await;
    assert_eq!(r["tasks"], json!([]), "{r}");
    assert_eq!(r["failures"][0]["arn"], plain.as_str());
    assert_eq!(r["failures"][0]["reason"], "ATTRIBUTE");
    assert_eq!(
        r["failures"][0]["detail"],
        "Missing attributes: com.amazonaws.ecs.capability.privileged-container: \
         containerDefinitions[0].privileged (needs berth agent --allow-privileged)"
    );

    let allowed = register_instance(
        &h,
        "b",
        json!([{"name": "com.amazonaws.ecs.capability.privileged-container"}]),
    )
    .await;
    let r = h.ok("RunTask", json!({"taskDefinition": "priv"})).await;
    assert_eq!(r["failures"], json!([]), "{r}");
    assert_eq!(r["tasks"][0]["containerInstanceArn"], allowed.as_str());
}

#[tokio::test]
async fn a_host_path_needs_an_allowed_parent_directory() {
    let h = Harness::start().await;
    register_instance(&h, "a", json!([{"name": "berth.capability.host-path/srv"}])).await;
    let td = |family: &str, path: &str| {
        json!({"family": family,
               "containerDefinitions": [{"name": "a", "image": "i", "memory": 16,
                   "mountPoints": [{"sourceVolume": "h", "containerPath": "/h"}]}],
               "volumes": [{"name": "h", "host": {"sourcePath": path}}]})
    };
    h.ok("RegisterTaskDefinition", td("under", "/srv/data")).await;
    h.ok("RegisterTaskDefinition", td("outside", "/etc")).await;
    let r = h.ok("RunTask", json!({"taskDefinition": "under"})).await;
    assert_eq!(r["tasks"].as_array().unwrap().len(), 1, "{r}");
    let r = h.ok("RunTask", json!({"taskDefinition": "outside"})).await;
    assert_eq!(r["failures"][0]["reason"], "ATTRIBUTE", "{r}");
    let detail = r["failures"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("berth.capability.host-path/etc: volumes[0].host.sourcePath=/etc"),
        "{detail}"
    );
}
