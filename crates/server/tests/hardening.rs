//! Issue #10 ("Hardening") over real HTTP: a multi-byte tag key, a hostile Authorization
//! header, an oversized task definition or body, and an extreme clock-skew setting each get an
//! AWS error (or success), never a dropped connection or a panic.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, TARGET};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// POSTs `body` to `/` with exactly `headers` (no signing); the status and the raw body.
async fn post(h: &Harness, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::post(&h.endpoint);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client.request(req.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn multi_byte_tag_keys_are_accepted() {
    let h = Harness::start().await;
    let tags = json!([{"key": "abcé", "value": "v"}, {"key": "日本", "value": "é"}]);
    let c = h.ok("CreateCluster", json!({"clusterName": "c", "tags": tags})).await;
    let arn = c["cluster"]["clusterArn"].as_str().unwrap().to_string();
    h.ok("TagResource", json!({"resourceArn": arn, "tags": [{"key": "é", "value": ""}]})).await;
    let listed = h.ok("ListTagsForResource", json!({"resourceArn": arn})).await;
    let keys: Vec<&str> =
        listed["tags"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["abcé", "日本", "é"]);
    let td = json!({
        "family": "f",
        "containerDefinitions": [{"name": "a", "image": "i", "memory": 16}],
        "tags": [{"key": "aé", "value": "v"}],
    });
    h.ok("RegisterTaskDefinition", td).await;
    // The reserved prefix is still refused, whatever follows it.
    let r = h.call("CreateCluster", json!({"clusterName": "d", "tags": [{"key": "aws:é"}]})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["__type"], "InvalidParameterException");
}

#[tokio::test]
async fn repeated_signed_header_names_get_a_short_error_quickly() {
    let h = Harness::start().await;
    let mut names = vec!["authorization"; 4000];
    names.extend(["host", "x-amz-date"]);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/20250101/us-east-1/ecs/aws4_request, SignedHeaders={}, \
         Signature={}",
        h.signer.credentials().access_key_id,
        names.join(";"),
        "0".repeat(64)
    );
    assert!(authorization.len() > 56_000);
    let target = format!("{TARGET}.ListClusters");
    let headers = [
        ("host", h.host.as_str()),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
        ("x-amz-date", "20250101T000000Z"),
        ("authorization", authorization.as_str()),
    ];
    let start = Instant::now();
    let (status, body) = post(&h, &headers, b"{}".to_vec()).await;
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(status, 400);
    assert!(body.len() < 1024, "an error body of {} bytes", body.len());
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["__type"], "IncompleteSignatureException", "{body}");
}

#[tokio::test]
async fn task_definition_over_64_kib_is_a_client_exception() {
    let h = Harness::start().await;
    let td = |pad: usize| {
        json!({
            "family": "big",
            "containerDefinitions": [{
                "name": "a", "image": "i", "memory": 16,
                "environment": [{"name": "PAD", "value": "x".repeat(pad)}],
            }],
        })
    };
    h.ok("RegisterTaskDefinition", td(60 * 1024)).await;
    let r = h.call("RegisterTaskDefinition", td(64 * 1024)).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["__type"], "ClientException");
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.contains("Max allowed length is '65536' bytes"), "{msg}");
    // A definition of nearly a mebibyte, under the body cap, is refused the same way.
    let r = h.call("RegisterTaskDefinition", td(1000 * 1024)).await;
    assert_eq!(r.body["__type"], "ClientException");
    let list = h.ok("ListTaskDefinitions", json!({"familyPrefix": "big"})).await;
    assert_eq!(list["taskDefinitionArns"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_over_the_cap_is_answered_413() {
    let h = Harness::start_with(|c| c.max_body_bytes = 256 * 1024).await;
    for size in [256 * 1024 + 1, 4 * 1024 * 1024] {
        let body = format!("{{\"clusterName\": \"{}\"}}", "x".repeat(size));
        let r = h.raw(&format!("{TARGET}.CreateCluster"), body.as_bytes(), Some(&h.signer)).await;
        assert_eq!(r.status, 413, "{size}: {}", r.body);
        assert_eq!(r.body["__type"], "RequestEntityTooLargeException");
    }
    // The server is still there.
    h.ok("ListClusters", json!({})).await;
}

/// Found by the fuzz test: a body somewhat over the cap, still being written when the 413 was
/// sent, had its connection reset under the client (which then saw a broken pipe, not the
/// 413). The server reads such a body to its end first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_somewhat_over_the_cap_still_gets_its_413() {
    let h = Harness::start().await;
    for round in 0..40 {
        let size = (1 << 20) + 1 + round * 64 * 1024;
        let body = format!("{{\"clusterName\": \"{}\"}}", "x".repeat(size));
        let r = h.raw(&format!("{TARGET}.CreateCluster"), body.as_bytes(), Some(&h.signer)).await;
        assert_eq!(r.status, 413, "{size}: {}", r.body);
    }
    h.ok("ListClusters", json!({})).await;
}

#[tokio::test]
async fn an_extreme_clock_skew_setting_does_not_panic() {
    for skew in [time::Duration::MAX, time::Duration::seconds(i64::MAX)] {
        let h = Harness::start_with(|c| c.max_clock_skew = skew).await;
        h.ok("ListClusters", json!({})).await;
    }
}
