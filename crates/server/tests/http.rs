//! The server in-process, over real HTTP on an ephemeral port, with requests signed by
//! berth-sigv4: protocol edges, concurrency, and the store-backed emptiness checks.

mod common;

use std::sync::Arc;

use berth_sigv4::Signer;
use berth_store::{SqliteStore, Store, Txn};
use common::{Harness, TARGET};
use serde_json::{Value, json};

fn td(family: &str) -> Value {
    json!({"family": family, "containerDefinitions": [{"name": "a", "image": "i", "memory": 16}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_registrations_get_unique_contiguous_revisions() {
    let h = Arc::new(Harness::start().await);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.ok("RegisterTaskDefinition", td("race")).await["taskDefinition"]["revision"]
                .as_i64()
                .unwrap()
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap());
    }
    revs.sort();
    assert_eq!(revs, (1..=40).collect::<Vec<_>>());
    let list = h.ok("ListTaskDefinitions", json!({"familyPrefix": "race"})).await;
    assert_eq!(list["taskDefinitionArns"].as_array().unwrap().len(), 40);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_their_type() {
    let h = Harness::start().await;
    let ok = h.call("ListClusters", json!({})).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.headers["content-type"], "application/x-amz-json-1.1");
    let id1 = ok.headers["x-amzn-requestid"].to_str().unwrap().to_string();
    let err = h.call("DescribeTaskDefinition", json!({"taskDefinition": "nope"})).await;
    assert_eq!(err.status, 400);
    assert_eq!(err.body["__type"], "ClientException");
    assert_eq!(err.headers["x-amzn-errortype"], "ClientException");
    let id2 = err.headers["x-amzn-requestid"].to_str().unwrap();
    assert_ne!(id1, id2);
    assert_eq!(id1.len(), 36);
}

#[tokio::test]
async fn targets_of_other_services_and_unknown_operations_are_refused() {
    let h = Harness::start().await;
    for target in
        ["DynamoDB_20120810.ListTables", "AmazonEC2ContainerServiceV20141113.Nope", "nodot"]
    {
        let r = h.raw(target, b"{}", Some(&h.signer)).await;
        assert_eq!(r.status, 400, "{target}");
        assert_eq!(r.body["__type"], "UnknownOperationException", "{target}");
    }
    // A signature scoped to another service is refused before anything else.
    let creds = h.signer.credentials().clone();
    let s3 = Signer::new(creds, "us-east-1", "s3");
    let r = h.raw(&format!("{TARGET}.ListClusters"), b"{}", Some(&s3)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["__type"], "InvalidSignatureException");
    assert!(r.body["message"].as_str().unwrap().contains("'ecs'"));
}

#[tokio::test]
async fn a_token_from_another_listing_is_refused() {
    let h = Harness::start().await;
    for i in 0..3 {
        h.ok("RegisterTaskDefinition", td(&format!("fam{i}"))).await;
        h.ok("CreateCluster", json!({"clusterName": format!("c{i}")})).await;
    }
    let page = h.ok("ListTaskDefinitionFamilies", json!({"maxResults": 1})).await;
    let token = page["nextToken"].as_str().unwrap();
    let r = h.call("ListClusters", json!({"nextToken": token})).await;
    assert_eq!(r.body["__type"], "InvalidParameterException");
    let next =
        h.ok("ListTaskDefinitionFamilies", json!({"maxResults": 1, "nextToken": token})).await;
    assert_eq!(next["families"], json!(["fam1"]));
}

#[tokio::test]
async fn delete_cluster_refuses_while_it_holds_anything() {
    let h = Harness::start().await;
    h.ok("CreateCluster", json!({"clusterName": "busy"})).await;
    // Another writer of the same database (as the agent and scheduler issues will be) puts an
    // instance, a task and a service under the cluster's index prefixes.
    let store = SqliteStore::open(&h.data_dir.path().join("d/berth.db")).unwrap();
    let cases = [
        ("ecs/instances/busy/i-1", "ClusterContainsContainerInstancesException"),
        ("ecs/services/busy/web", "ClusterContainsServicesException"),
        ("ecs/tasks-live/busy/t-1", "ClusterContainsTasksException"),
    ];
    for (key, code) in cases {
        store.txn(Txn::new().put(key, b"{}".to_vec())).await.unwrap();
        let r = h.call("DeleteCluster", json!({"cluster": "busy"})).await;
        assert_eq!(r.body["__type"], code, "{key}");
        store.txn(Txn::new().delete(key)).await.unwrap();
    }
    let d = h.ok("DeleteCluster", json!({"cluster": "busy"})).await;
    assert_eq!(d["cluster"]["status"], "INACTIVE");
}

#[tokio::test]
async fn cluster_counts_come_from_the_store_indexes() {
    let h = Harness::start().await;
    h.ok("CreateCluster", json!({"clusterName": "c"})).await;
    let store = SqliteStore::open(&h.data_dir.path().join("d/berth.db")).unwrap();
    store
        .txn(
            Txn::new()
                .put("ecs/instances/c/i-1", b"{}".to_vec())
                .put("ecs/instances/c/i-2", b"{}".to_vec())
                .put("ecs/tasks-by-status/c/RUNNING/t-1", b"".to_vec())
                .put("ecs/tasks-by-status/c/PENDING/t-2", b"".to_vec())
                .put("ecs/services/c/s", b"{}".to_vec()),
        )
        .await
        .unwrap();
    let d = h.ok("DescribeClusters", json!({"clusters": ["c"], "include": ["STATISTICS"]})).await;
    let c = &d["clusters"][0];
    assert_eq!(c["registeredContainerInstancesCount"], 2);
    assert_eq!(c["runningTasksCount"], 1);
    assert_eq!(c["pendingTasksCount"], 1);
    assert_eq!(c["activeServicesCount"], 1);
    let stat = |n: &str| {
        c["statistics"].as_array().unwrap().iter().find(|kv| kv["name"] == n).unwrap()["value"]
            .clone()
    };
    assert_eq!(stat("runningEC2TasksCount"), "1");
}

#[tokio::test]
async fn update_cluster_sets_configuration() {
    let h = Harness::start().await;
    h.ok("CreateCluster", json!({"clusterName": "c"})).await;
    let conf = json!({"executeCommandConfiguration": {"logging": "DEFAULT"}});
    let u = h.ok("UpdateCluster", json!({"cluster": "c", "configuration": conf})).await;
    assert_eq!(u["cluster"]["configuration"], conf);
    let d =
        h.ok("DescribeClusters", json!({"clusters": ["c"], "include": ["CONFIGURATIONS"]})).await;
    assert_eq!(d["clusters"][0]["configuration"], conf);
    let plain = h.ok("DescribeClusters", json!({"clusters": ["c"]})).await;
    assert!(plain["clusters"][0].get("configuration").is_none());
    let bad = h
        .call(
            "UpdateClusterSettings",
            json!({"cluster": "c", "settings": [{"name": "containerInsights", "value": "maybe"}]}),
        )
        .await;
    assert_eq!(bad.body["__type"], "InvalidParameterException");
    assert!(bad.body["message"].as_str().unwrap().contains("settings[0].value"));
}
