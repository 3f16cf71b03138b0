//! Issue #10: a mutational fuzz test of the ECS API over real HTTP.
//!
//! It starts from a valid request for every operation the server implements (plus a few it
//! answers `UnsupportedFeatureException` for), against fixtures that make them reach deep code
//! (a cluster, a full task definition, container instances, tasks, a service and its
//! deployment). Then, one field at a time, it walks every path of each seed (objects, arrays
//! and leaves) and replaces the value with a hostile one: multi-byte characters inserted at
//! each character offset, `""`, 70,000 characters, values of the wrong type, extreme numbers,
//! 100 and 200 levels of nesting; it also removes the field and repeats an array element. Every
//! request is signed with the administrator key and must get a response within 10 s, a status
//! under 500, and on 4xx a JSON body with a `__type`; a plain DescribeClusters must keep
//! answering 200 and no thread of the process may panic.
//!
//! * `cargo test -p berth-server --test fuzz`: the quick run (a deterministic sample of the
//!   mutations of every seed, a few seconds).
//! * `BERTH_FUZZ_LONG=1 cargo test -p berth-server --test fuzz -- --nocapture`: every mutation,
//!   then a random stage of `BERTH_FUZZ_ITERATIONS` (default 3000) requests with 2 to 4
//!   mutations each.
//! * `BERTH_FUZZ_SEED=N` changes the sample and the random stage (default 10); a failure
//!   prints the operation, the path, the mutation and the seed to reproduce it.

#![recursion_limit = "256"]

#[path = "../common/mod.rs"]
mod common;
mod mutations;
mod seeds;

use mutations::*;
use seeds::*;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_sigv4::RequestParts;
use bytes::Bytes;
use common::{Harness, TARGET};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const CLUSTER: &str = "fz";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A plain DescribeClusters after this many fuzzed requests.
const HEALTH_EVERY: usize = 64;
/// Operations whose accepted extreme numbers are held for a pass of the service controller.
const HOLD_FOR_CONTROLLER: &[&str] = &["CreateService", "UpdateService"];
/// Longer than the controller's settling delay after a commit (50 ms) plus a pass.
const CONTROLLER_PASS: Duration = Duration::from_millis(250);
/// Sent unmutated after an extreme number was accepted: what derives figures from records.
const READERS: &[&str] = &[
    "DescribeClusters",
    "DescribeContainerInstances",
    "ListContainerInstances",
    "DescribeServices",
    "DescribeServiceDeployments",
    "DescribeTasks",
    "RunTask",
];
/// The server reads a body over its 1 MiB cap on to its end, up to 8 MiB more, before it
/// answers 413; past that it may close the connection while the client still writes.
const DRAINED_UP_TO: usize = 9 << 20;
/// Mutations per seed in the quick run.
const QUICK_PER_SEED: usize = 40;

static PANICS: AtomicUsize = AtomicUsize::new(0);
/// The fuzzed request last sent, for the panic hook (a panic may be in a background task).
static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

// ---------------------------------------------------------------------------------------------
// Deterministic randomness (splitmix64): the same seed, the same requests.

// ---------------------------------------------------------------------------------------------
// The client.

struct Fuzzer {
    h: Harness,
    client: Client<HttpConnector, Full<Bytes>>,
    fixture: Fixture,
    sent: usize,
    failures: Vec<String>,
    statuses: std::collections::BTreeMap<(u16, String), usize>,
    seed: u64,
}

enum Outcome {
    Reply { status: u16, body: Vec<u8> },
    Failed(String),
}

impl Fuzzer {
    async fn send(&self, op: &str, body: &[u8]) -> Outcome {
        let target = format!("{TARGET}.{op}");
        let headers = [
            ("host", self.h.host.as_str()),
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let mut req = http::Request::post(&self.h.endpoint);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let parts = RequestParts { method: "POST", path: "/", query: "", headers: &headers, body };
        for (k, v) in self.h.signer.sign(&parts, time::OffsetDateTime::now_utc()) {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("no response: {e:?}"))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("the response body broke off: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body.to_vec()))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Err(_) => Outcome::Failed(format!("no response within {REQUEST_TIMEOUT:?}")),
            Ok(Err(e)) => Outcome::Failed(e),
            Ok(Ok((status, body))) => Outcome::Reply { status, body },
        }
    }

    /// A fixture call that must succeed.
    async fn ok(&self, op: &str, input: Value) -> Value {
        match self.send(op, input.to_string().as_bytes()).await {
            Outcome::Reply { status: 200, body } => serde_json::from_slice(&body).unwrap(),
            Outcome::Reply { status, body } => {
                panic!("{op} {input}: {status} {}", String::from_utf8_lossy(&body))
            }
            Outcome::Failed(e) => panic!("{op}: {e}"),
        }
    }

    /// Sends one fuzzed request and checks the answer; what went wrong goes to `failures`.
    async fn fuzz_one(&mut self, op: &'static str, bytes: &[u8], what: &str) -> Option<u16> {
        self.sent += 1;
        if let Ok(mut last) = LAST.lock() {
            *last = format!("{op} {what}");
        }
        let problem = match self.send(op, bytes).await {
            Outcome::Failed(_) if bytes.len() > DRAINED_UP_TO => {
                // The server reads no further and closes the connection: expected.
                *self
                    .statuses
                    .entry((0, "closed: body over the drain bound".into()))
                    .or_default() += 1;
                return None;
            }
            Outcome::Failed(e) => Some(e),
            Outcome::Reply { status, body } => {
                let parsed: Option<Value> = serde_json::from_slice(&body).ok();
                let ty = parsed
                    .as_ref()
                    .and_then(|b| b["__type"].as_str())
                    .unwrap_or(if status == 200 { "200" } else { "<none>" })
                    .to_string();
                *self.statuses.entry((status, ty.clone())).or_default() += 1;
                let text = || String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned();
                if status >= 500 {
                    Some(format!("status {status}: {}", text()))
                } else if status != 200 && ty == "<none>" {
                    Some(format!("status {status} without a JSON __type: {}", text()))
                } else if status == 200 && parsed.is_none() {
                    Some(format!("200 with a body that is not JSON: {}", text()))
                } else {
                    self.after_success(op, status).await;
                    return Some(status);
                }
            }
        };
        if let Some(problem) = problem {
            let mut shown = String::from_utf8_lossy(bytes).into_owned();
            if shown.len() > 600 {
                let mut cut = 600;
                while !shown.is_char_boundary(cut) {
                    cut -= 1;
                }
                shown.truncate(cut);
                shown.push_str("...");
            }
            self.failures.push(format!(
                "{op} {what} (BERTH_FUZZ_SEED={}): {problem}\n    request: {shown}",
                self.seed
            ));
        }
        if self.sent.is_multiple_of(HEALTH_EVERY) {
            self.health().await;
        }
        None
    }

    async fn health(&mut self) {
        let body = json!({"clusters": [CLUSTER]}).to_string();
        match self.send("DescribeClusters", body.as_bytes()).await {
            Outcome::Reply { status: 200, .. } => {}
            Outcome::Reply { status, body } => self.failures.push(format!(
                "health check after {} requests: {status} {}",
                self.sent,
                String::from_utf8_lossy(&body)
            )),
            Outcome::Failed(e) => {
                self.failures.push(format!("health check after {} requests: {e}", self.sent))
            }
        }
    }

    /// Puts back what a destructive operation that succeeded took away.
    async fn after_success(&mut self, op: &str, status: u16) {
        if status != 200 {
            return;
        }
        match op {
            "DeleteCluster" => {
                self.ok("CreateCluster", json!({"clusterName": "fz-victim"})).await;
            }
            "DeleteAccountSetting" => {
                let body = json!({"name": "fargateTaskRetirementWaitPeriod", "value": "14"});
                self.ok("PutAccountSetting", body).await;
            }
            "DeleteCapacityProvider" => {
                let body = json!({"name": "fz-cp",
                    "autoScalingGroupProvider": {"autoScalingGroupArn": "asg-fz"}});
                let _ = self.send("CreateCapacityProvider", body.to_string().as_bytes()).await;
            }
            "DeregisterContainerInstance" => {
                self.fixture.victim_instance = self.register_instance("i-0000000000000victim").await
            }
            "DeregisterTaskDefinition" => {
                let r = self.ok("RegisterTaskDefinition", small_td("fz-victim")).await;
                self.fixture.victim_td = arn_of(&r["taskDefinition"], "taskDefinitionArn");
            }
            "DeleteTaskDefinitions" => self.fixture.deleted_td = self.inactive_td().await,
            "StopTask" => {
                if let Some(t) = self.run_small().await {
                    self.fixture.victim_task = t;
                }
            }
            "DeleteService" => {
                let _ = self.send("CreateService", victim_service().to_string().as_bytes()).await;
            }
            "UpdateContainerInstancesState" => {
                let body = json!({"cluster": CLUSTER, "status": "ACTIVE",
                    "containerInstances": [self.fixture.instance]});
                self.ok("UpdateContainerInstancesState", body).await;
            }
            _ => {}
        }
    }

    async fn register_instance(&self, ec2_id: &str) -> String {
        let mut attributes = vec![json!({"name": "ecs.availability-zone", "value": "fz-a"})];
        attributes.extend(CAPABILITIES.iter().map(|name| json!({ "name": name })));
        let r = self
            .ok(
                "RegisterContainerInstance",
                json!({
                    "cluster": CLUSTER,
                    "instanceIdentityDocument": json!({"instanceId": ec2_id}).to_string(),
                    "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 8192},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 16384},
                        {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22"]}
                    ],
                    "attributes": attributes,
                }),
            )
            .await;
        arn_of(&r["containerInstance"], "containerInstanceArn")
    }

    async fn inactive_td(&self) -> String {
        let r = self.ok("RegisterTaskDefinition", small_td("fz-deleted")).await;
        let arn = arn_of(&r["taskDefinition"], "taskDefinitionArn");
        self.ok("DeregisterTaskDefinition", json!({"taskDefinition": arn})).await;
        arn
    }

    async fn run_small(&self) -> Option<String> {
        let r = self
            .ok("RunTask", json!({"cluster": CLUSTER, "taskDefinition": "fz-small", "count": 1}))
            .await;
        r["tasks"][0]["taskArn"].as_str().map(str::to_string)
    }
}
// ---------------------------------------------------------------------------------------------

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_fields_get_client_errors_never_a_crash() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        if let Ok(last) = LAST.lock()
            && !last.is_empty()
        {
            eprintln!("PANIC after the fuzzed request {last}");
        }
        default_hook(info);
    }));
    let long = env_flag("BERTH_FUZZ_LONG");
    let seed: u64 =
        std::env::var("BERTH_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let iterations: usize =
        std::env::var("BERTH_FUZZ_ITERATIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let started = Instant::now();
    let h = Harness::start().await;
    let mut f = Fuzzer {
        h,
        client: Client::builder(TokioExecutor::new()).build_http(),
        fixture: Fixture {
            cluster_arn: String::new(),
            td: String::new(),
            victim_td: String::new(),
            deleted_td: String::new(),
            instance: String::new(),
            victim_instance: String::new(),
            task: String::new(),
            victim_task: String::new(),
            service_arn: String::new(),
            deployment: String::new(),
            revision: String::new(),
        },
        sent: 0,
        failures: Vec::new(),
        statuses: Default::default(),
        seed,
    };
    fixture(&mut f).await;

    // Every seed as it stands is answered (200, or UnsupportedFeatureException).
    let unsupported: Vec<&str> = unsupported_seeds().iter().map(|(op, _)| *op).collect();
    let initial = seeds(&f.fixture);
    for (op, body) in &initial {
        match f.send(op, body.to_string().as_bytes()).await {
            Outcome::Reply { status: 200, .. } if !unsupported.contains(op) => {}
            Outcome::Reply { status: 400, body } if unsupported.contains(op) => {
                let b: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(b["__type"], "UnsupportedFeatureException", "{op}: {b}");
            }
            Outcome::Reply { status, body: answer } => {
                panic!("seed {op} {body}: {status} {}", String::from_utf8_lossy(&answer))
            }
            Outcome::Failed(e) => panic!("seed {op}: {e}"),
        }
        f.after_success(op, 200).await;
    }

    let mut rng = Rng(seed);
    let mut total_mutations = 0;
    let mut plan: Vec<(&'static str, Path, Mutation)> = Vec::new();
    for (op, body) in &initial {
        let mut all = mutations_of(body);
        total_mutations += all.len();
        if !long {
            // A sample, plus every extreme number in place of every number (arithmetic on
            // counts, ports and resources is where overflows hide) and every array grown to
            // 1,000 (bodies around the size cap).
            let (numeric, mut rest): (Vec<_>, Vec<_>) = all.into_iter().partition(|(p, m)| {
                let extreme =
                    matches!(m, Mutation::Replace { label, .. } if EXTREMES.contains(label));
                (extreme && value_at(body, p).is_some_and(Value::is_number))
                    || matches!(m, Mutation::Repeat { n: 1000 })
            });
            rng.shuffle(&mut rest);
            rest.truncate(QUICK_PER_SEED);
            all = numeric.into_iter().chain(rest).collect();
        }
        plan.extend(all.into_iter().map(|(p, m)| (*op, p, m)));
    }
    println!(
        "fuzz: {} seeds, {total_mutations} single-field mutations, sending {} (seed {seed})",
        initial.len(),
        plan.len()
    );
    for (op, path, m) in &plan {
        let Some(body) = seeds(&f.fixture).into_iter().find(|(o, _)| o == op).map(|s| s.1) else {
            continue;
        };
        let Some(bytes) = render(body, path, m) else { continue };
        let status = f.fuzz_one(op, &bytes, &format!("{path}: {m}")).await;
        let extreme = matches!(m, Mutation::Replace { label, .. } if EXTREMES.contains(label));
        if status == Some(200) && extreme {
            if HOLD_FOR_CONTROLLER.contains(op) {
                // Leave the extreme setting in place for a pass of the service controller
                // (the next request of the stage would put the seed's value back first).
                tokio::time::sleep(CONTROLLER_PASS).await;
            }
            // And for the readers that add up what was stored.
            for (reader, body) in seeds(&f.fixture) {
                if READERS.contains(&reader) {
                    let what = format!("(reading after {op} {path}: {m})");
                    f.fuzz_one(reader, body.to_string().as_bytes(), &what).await;
                }
            }
        }
    }
    let single = f.sent;

    if long {
        let all: Vec<_> = seeds(&f.fixture).iter().map(|(op, b)| (*op, mutations_of(b))).collect();
        for _ in 0..iterations {
            let (op, muts) = &all[rng.below(all.len())];
            let mut body = seeds(&f.fixture).into_iter().find(|(o, _)| o == op).unwrap().1;
            let mut what = Vec::new();
            for _ in 0..2 + rng.below(3) {
                let (p, m) = &muts[rng.below(muts.len())];
                if apply(&mut body, p, m) {
                    what.push(format!("{p}: {m}"));
                }
            }
            let what = what.join("; ");
            if f.fuzz_one(op, body.to_string().as_bytes(), &what).await == Some(200)
                && !READERS.contains(op)
            {
                for (reader, body) in seeds(&f.fixture) {
                    if READERS.contains(&reader) {
                        let after = format!("(reading after {op} {what})");
                        f.fuzz_one(reader, body.to_string().as_bytes(), &after).await;
                    }
                }
            }
        }
    }

    // The service controller still reconciles: a new service gets its task (on an instance
    // of its own, whatever the fuzzed requests left of the others' capacity).
    f.register_instance("i-0000000000000probe").await;
    f.ok(
        "CreateService",
        json!({"cluster": CLUSTER, "serviceName": "fz-probe",
        "taskDefinition": "fz-small", "desiredCount": 1}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = f.ok("ListTasks", json!({"cluster": CLUSTER, "serviceName": "fz-probe"})).await;
        if l["taskArns"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            f.failures.push("the service controller placed no task for a new service".into());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.health().await;
    let elapsed = started.elapsed();
    println!(
        "fuzz: {} requests ({single} in the single-field stage) in {elapsed:?}; answers:",
        f.sent
    );
    for ((status, ty), n) in &f.statuses {
        println!("  {status} {ty}: {n}");
    }
    let panics = PANICS.load(Ordering::SeqCst);
    LAST.lock().unwrap().clear();
    if !f.failures.is_empty() || panics > 0 {
        for fail in &f.failures {
            eprintln!("FAIL {fail}");
        }
        panic!("{} failures, {panics} panics (BERTH_FUZZ_SEED={seed})", f.failures.len());
    }
}

#[test]
fn mutations_apply_where_they_say() {
    let mut v = json!({"a": [{"b": "xé"}], "c": 1});
    let p = Path(vec![Seg::Key("a".into()), Seg::Index(0), Seg::Key("b".into())]);
    assert_eq!(p.to_string(), "a[0].b");
    assert!(apply(&mut v, &p, &Mutation::Insert { text: "日", offset: 1 }));
    assert_eq!(v["a"][0]["b"], "x日é");
    assert!(apply(&mut v, &Path(vec![Seg::Key("a".into())]), &Mutation::Repeat { n: 3 }));
    assert_eq!(v["a"].as_array().unwrap().len(), 3);
    assert!(apply(&mut v, &Path(vec![Seg::Key("c".into())]), &Mutation::Remove));
    assert!(v.get("c").is_none());
    assert!(!apply(&mut v, &Path(vec![Seg::Key("c".into()), Seg::Index(0)]), &Mutation::Remove));
    let nested = nested(200, true);
    assert!(serde_json::from_str::<Value>(&nested.to_string()).is_err(), "over serde's limit");
}
