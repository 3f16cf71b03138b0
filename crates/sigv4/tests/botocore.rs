//! A real client: botocore's own `SigV4Auth` signs requests, the `Verifier`
//! must accept exactly what it produced, and `sign()` must produce the same
//! Authorization header from the same inputs.
//!
//! Needs `python3` with botocore importable. Set `BERTH_SKIP_BOTOCORE_TESTS=1`
//! to skip on machines without it; otherwise a missing botocore fails the test.

use std::process::Command;

use berth_sigv4::{Credentials, RequestParts, Verifier, parse_amz_date, parse_authorization, sign};
use serde_json::Value;

const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FQoGZXIvYXdzEJr//////////wEaDEXAMPLEsessiontoken+/=";

/// Signs a few requests with botocore and prints, per request, what goes on
/// the wire: method, raw path and query, headers (plus the Host header the
/// HTTP layer adds from the URL) and body.
const SCRIPT: &str = r#"
import json, sys
from urllib.parse import urlsplit
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

akid, secret, token = sys.argv[1:4]
ECS = {"Content-Type": "application/x-amz-json-1.1",
       "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.ListClusters"}
cases = [
    # (name, method, url, headers, body, session token?)
    ("list-clusters", "POST", "http://127.0.0.1:8080/", ECS, "{}", False),
    ("list-clusters-session-token", "POST", "http://127.0.0.1:8080/", ECS, "{}", True),
    ("describe-clusters-user-agent", "POST", "http://127.0.0.1:8080/",
     dict(ECS, **{"X-Amz-Target": "AmazonEC2ContainerServiceV20141113.DescribeClusters",
                  "User-Agent": "aws-cli/2.15.0 Python/3.11 botocore/2.0",
                  "X-Custom": "  spaced   value  "}),
     '{"clusters":["default"],"include":["TAGS"]}', False),
    ("get-path-query", "GET",
     "http://127.0.0.1:8080/a%20b/./c%3Ad//e/../f?b=2&a=%2F&a=1&empty=&u=%E1%88%B4", {}, "", False),
]
out = []
for name, method, url, headers, body, use_token in cases:
    creds = Credentials(akid, secret, token if use_token else None)
    req = AWSRequest(method=method, url=url, data=body.encode(), headers=dict(headers))
    SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    wire_headers = [["Host", parts.netloc]] + [[k, v] for k, v in prepared.headers.items()]
    out.append({"name": name, "method": prepared.method, "path": parts.path, "query": parts.query,
                "headers": wire_headers, "body": body})
print(json.dumps(out))
"#;

fn botocore_requests() -> Option<Vec<Value>> {
    if std::env::var_os("BERTH_SKIP_BOTOCORE_TESTS").is_some() {
        eprintln!("BERTH_SKIP_BOTOCORE_TESTS is set: skipping the botocore cross-check");
        return None;
    }
    let output = Command::new("python3")
        .args(["-c", SCRIPT, ACCESS_KEY_ID, SECRET, TOKEN])
        .output()
        .expect("running python3 (set BERTH_SKIP_BOTOCORE_TESTS=1 to skip)");
    assert!(
        output.status.success(),
        "python3 + botocore failed (set BERTH_SKIP_BOTOCORE_TESTS=1 to skip):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: Value = serde_json::from_slice(&output.stdout).expect("JSON from the botocore script");
    Some(v.as_array().expect("array").clone())
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

#[test]
fn verifier_accepts_what_botocore_signs_and_sign_agrees() {
    let Some(requests) = botocore_requests() else {
        return;
    };
    assert_eq!(requests.len(), 4);
    let verifier = Verifier::default().expect_region("us-east-1").expect_service("ecs");

    for r in &requests {
        let name = s(&r["name"]);
        let headers: Vec<(&str, &str)> =
            r["headers"].as_array().unwrap().iter().map(|h| (s(&h[0]), s(&h[1]))).collect();
        let header = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|&(_, v)| v)
                .unwrap_or_else(|| panic!("{name}: no {n} header from botocore"))
        };
        let parts = RequestParts {
            method: s(&r["method"]),
            path: s(&r["path"]),
            query: s(&r["query"]),
            headers: &headers,
            body: s(&r["body"]).as_bytes(),
        };
        let amz_date = header("x-amz-date");
        let now = parse_amz_date(amz_date).expect("botocore's X-Amz-Date");
        let authorization = header("authorization");
        let auth = parse_authorization(authorization).expect("botocore's Authorization");
        assert_eq!(auth.access_key_id, ACCESS_KEY_ID, "{name}");
        assert!(auth.signed_headers.iter().any(|h| h == "host"), "{name}: {authorization}");

        // Server side: accepted exactly as botocore sent it.
        if let Err(e) = verifier.verify(&parts, &auth, SECRET, now) {
            panic!(
                "{name}: Verifier rejected botocore's request: {e}\nAuthorization: {authorization}"
            );
        }
        // ... and not once tampered with.
        let tampered = [parts.body, b" "].concat();
        assert!(
            verifier
                .verify(&RequestParts { body: &tampered, ..parts }, &auth, SECRET, now)
                .is_err(),
            "{name}: tampered body accepted"
        );

        // Client side: sign() over the headers botocore signed gives the same
        // Authorization (x-amz-date and the token come from sign() itself).
        let to_sign: Vec<(&str, &str)> = headers
            .iter()
            .copied()
            .filter(|(k, _)| {
                auth.signed_headers.iter().any(|h| h.eq_ignore_ascii_case(k))
                    && !k.eq_ignore_ascii_case("x-amz-date")
                    && !k.eq_ignore_ascii_case("x-amz-security-token")
            })
            .collect();
        let token = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-security-token"))
            .map(|&(_, v)| v.to_owned());
        assert_eq!(token.is_some(), name.contains("session-token"), "{name}");
        let creds = Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET.into(),
            session_token: token,
        };
        let ours =
            sign(&RequestParts { headers: &to_sign, ..parts }, &creds, "us-east-1", "ecs", now);
        let ours_auth = &ours.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(ours_auth, authorization, "{name}: sign() disagrees with botocore");
    }
}
