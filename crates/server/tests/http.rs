//! The server in-process, over real HTTP on an ephemeral port, with requests signed by
//! berth-sigv4: protocol edges, concurrency, and the store-backed emptiness checks.

use std::sync::Arc;

use berth_server::{Server, ServerConfig};
use berth_sigv4::{Credentials, RequestParts, Signer};
use berth_store::{SqliteStore, Store, Txn};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const TARGET: &str = "AmazonEC2ContainerServiceV20141113";

struct Harness {
    endpoint: String,
    host: String,
    signer: Signer,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    data_dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Value,
}

impl Harness {
    async fn start() -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config =
            ServerConfig::new(data_dir.path().join("d"), "127.0.0.1:0".parse().unwrap());
        config.account_id = "123456789012".into();
        let server = Server::start(config).await.unwrap();
        let addr = server.local_addr();
        let key = server.admin_key().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        let signer = Signer::new(
            Credentials {
                access_key_id: key.access_key_id,
                secret_access_key: key.secret_access_key,
                session_token: None,
            },
            "us-east-1",
            "ecs",
        );
        Self {
            endpoint: format!("http://{addr}/"),
            host: addr.to_string(),
            signer,
            client: Client::builder(TokioExecutor::new()).build_http(),
            data_dir,
            _shutdown: tx,
        }
    }

    async fn raw(&self, target: &str, body: &[u8], signer: Option<&Signer>) -> Reply {
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let mut req = http::Request::post(&self.endpoint);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(signer) = signer {
            let parts =
                RequestParts { method: "POST", path: "/", query: "", headers: &headers, body };
            for (k, v) in signer.sign(&parts, time::OffsetDateTime::now_utc()) {
                req = req.header(k, v);
            }
        }
        let resp = self
            .client
            .request(req.body(Full::new(Bytes::copy_from_slice(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply { status, headers, body }
    }

    async fn call(&self, op: &str, input: Value) -> Reply {
        self.raw(&format!("{TARGET}.{op}"), input.to_string().as_bytes(), Some(&self.signer)).await
    }

    async fn ok(&self, op: &str, input: Value) -> Value {
        let r = self.call(op, input).await;
        assert_eq!(r.status, 200, "{op}: {}", r.body);
        r.body
    }
}

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
