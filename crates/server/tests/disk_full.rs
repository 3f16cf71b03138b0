//! Disk full (issue #10, R9): with the data directory on a small tmpfs filled up, writes fail
//! with a clear `ServerException` (HTTP 500) naming the full filesystem, reads keep working,
//! nothing acknowledged is lost, no refused write half-appears, and the server takes writes
//! again as soon as space returns, without a restart.
//!
//! Needs root (it mounts a tmpfs); skipped with a message otherwise. The mount is always
//! undone by a guard, also when the test fails.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_server::{Server, ServerConfig, StartError};
use common::{Harness, Reply};
use serde_json::{Value, json};

/// A tmpfs of `size` mounted on a fresh directory; unmounted (and the directory removed) on
/// drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// `None` (after saying why) when this process cannot mount.
    fn mount(size: &str) -> Option<Self> {
        let dir =
            tempfile::Builder::new().prefix("berth-disk-full-").tempdir().expect("temp dir").keep();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir)
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            other => {
                let _ = std::fs::remove_dir(&dir);
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs on {} ({other:?}); this test needs root",
                    dir.display()
                );
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open (a server that outlived a failed assertion) must not keep
        // the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Fills the filesystem holding `dir` to the last byte with `dir/filler`.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
    path
}

/// A task definition of about 24 KB: a few of them exhaust a small filesystem quickly.
fn big_task_definition(family: &str, seq: usize) -> Value {
    let env: Vec<Value> = (0..48)
        .map(
            |i| json!({"name": format!("V{i}"), "value": format!("{seq}-{i}-{}", "x".repeat(480))}),
        )
        .collect();
    json!({"family": family, "containerDefinitions": [{
        "name": "web", "image": "berth-demo:latest", "cpu": 1, "memory": 8,
        "environment": env}]})
}

/// What the test expects of a write refused for want of space.
fn assert_disk_full_error(op: &str, r: &Reply, fs: &Path) {
    assert_eq!(r.status, 500, "{op}: {}", r.body);
    assert_eq!(r.body["__type"], "ServerException", "{op}: {}", r.body);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("full"), "{op}: the message says the disk is full: {msg}");
    assert!(
        msg.contains(&fs.display().to_string()),
        "{op}: the message names {}: {msg}",
        fs.display()
    );
    assert!(msg.contains("not applied"), "{op}: the message says nothing was applied: {msg}");
}

/// Starts a server on `data`, waiting for a previous one on the same directory to let go.
async fn start(data: &Path) -> Harness {
    let deadline = Instant::now() + Duration::from_secs(20);
    while berth_server::data_dir::DataDir::open(data).is_err() {
        assert!(Instant::now() < deadline, "the previous server never released {}", data.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = data.to_path_buf();
    Harness::start_with(move |c| c.data_dir = data).await
}

#[derive(Default)]
struct Ledger {
    /// Clusters whose CreateCluster got a 200.
    clusters: Vec<String>,
    /// Clusters whose CreateCluster was refused: they must not exist.
    refused_clusters: Vec<String>,
    /// Task definition revision (of family `big`) -> the `seq` its definition carries.
    revisions: BTreeMap<i64, usize>,
    /// Tasks RunTask acknowledged.
    tasks: Vec<String>,
}

impl Ledger {
    async fn create_cluster(&mut self, h: &Harness, name: String) -> Reply {
        let r = h.call("CreateCluster", json!({"clusterName": name})).await;
        if r.status == 200 {
            self.clusters.push(name);
        } else {
            self.refused_clusters.push(name);
        }
        r
    }

    async fn register(&mut self, h: &Harness, seq: usize) -> Reply {
        let r = h.call("RegisterTaskDefinition", big_task_definition("big", seq)).await;
        if r.status == 200 {
            let rev = r.body["taskDefinition"]["revision"].as_i64().unwrap();
            assert!(self.revisions.insert(rev, seq).is_none(), "revision {rev} handed out twice");
        }
        r
    }

    async fn run_task(&mut self, h: &Harness) -> Reply {
        let r = h.call("RunTask", json!({"cluster": "default", "taskDefinition": "small"})).await;
        if r.status == 200 {
            for t in r.body["tasks"].as_array().unwrap() {
                self.tasks.push(t["taskArn"].as_str().unwrap().to_string());
            }
        }
        r
    }
}

/// Every item of a paginated List operation.
async fn list_all(h: &Harness, op: &str, mut input: Value, member: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let page = h.ok(op, input.clone()).await;
        out.extend(
            page[member].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(token) => input["nextToken"] = json!(token),
            None => return out,
        }
    }
}

fn last_segment(arn: &str, sep: char) -> &str {
    arn.rsplit(sep).next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_directory_refuses_writes_clearly_and_recovers() {
    let Some(fs) = Tmpfs::mount("32m") else { return };
    let data = fs.dir.join("data");
    let mut ledger = Ledger::default();

    let h = start(&data).await;
    h.ok("CreateCluster", json!({"clusterName": "default"})).await;
    h.ok(
        "RegisterContainerInstance",
        json!({
            "cluster": "default",
            "instanceIdentityDocument": json!({"instanceId": "i-0123456789abcdef0"}).to_string(),
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 1_000_000},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 1_000_000}
            ]
        }),
    )
    .await;
    h.ok(
        "RegisterTaskDefinition",
        json!({"family": "small", "containerDefinitions": [{
            "name": "web", "image": "berth-demo:latest", "cpu": 1, "memory": 6}]}),
    )
    .await;
    // Acknowledged before the disk fills: enough (about 4 MB) for the WAL to have been
    // checkpointed and restarted, so that some commits land in WAL space already allocated.
    for i in 0..160 {
        assert_eq!(ledger.register(&h, i).await.status, 200);
        if i % 20 == 0 {
            assert_eq!(ledger.create_cluster(&h, format!("before-{i}")).await.status, 200);
            assert_eq!(ledger.run_task(&h).await.status, 200);
        }
    }

    let filler = fill(&fs.dir);

    // Write until writes fail (commits that fit in the WAL's allocated space still succeed).
    let mut refused = 0;
    let mut first_error = None;
    for i in 0..400 {
        let replies = [
            ("CreateCluster", ledger.create_cluster(&h, format!("full-{i}")).await),
            ("RegisterTaskDefinition", ledger.register(&h, 1000 + i).await),
            ("RunTask", ledger.run_task(&h).await),
        ];
        for (op, r) in replies {
            if r.status != 200 {
                assert_disk_full_error(op, &r, &fs.dir);
                refused += 1;
                first_error.get_or_insert_with(|| r.body["message"].clone());
            }
        }
        if refused >= 12 {
            break;
        }
    }
    assert!(refused >= 12, "writes kept succeeding on a full filesystem");
    eprintln!("refused with: {}", first_error.unwrap());
    assert!(!ledger.refused_clusters.is_empty(), "some CreateCluster was refused");

    // Reads keep working while the disk is full.
    let clusters = list_all(&h, "ListClusters", json!({}), "clusterArns").await;
    assert_eq!(clusters.len(), ledger.clusters.len() + 1, "{clusters:?}");
    let (rev, seq) = ledger.revisions.last_key_value().map(|(r, s)| (*r, *s)).unwrap();
    let d = h.ok("DescribeTaskDefinition", json!({"taskDefinition": format!("big:{rev}")})).await;
    assert_eq!(
        d["taskDefinition"]["containerDefinitions"][0]["environment"][0]["value"]
            .as_str()
            .unwrap()
            .split('-')
            .next()
            .unwrap(),
        seq.to_string()
    );
    let d = h.ok("DescribeTasks", json!({"cluster": "default", "tasks": [&ledger.tasks[0]]})).await;
    assert_eq!(d["tasks"].as_array().unwrap().len(), 1, "{d}");

    // Space returns: the next writes succeed, no restart needed, and refused writes took no
    // revision.
    std::fs::remove_file(&filler).unwrap();
    let r = ledger.create_cluster(&h, "after".into()).await;
    assert_eq!(r.status, 200, "a write after space returned: {}", r.body);
    let r = ledger.register(&h, 9999).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["taskDefinition"]["revision"],
        rev + 1,
        "a refused registration took a revision"
    );
    assert_eq!(ledger.run_task(&h).await.status, 200);

    // Restart on the same directory: every acknowledged write is there, no refused one is.
    drop(h);
    let h = start(&data).await;
    let mut names: Vec<String> = list_all(&h, "ListClusters", json!({}), "clusterArns")
        .await
        .iter()
        .map(|a| last_segment(a, '/').to_string())
        .collect();
    names.sort();
    let mut expected = ledger.clusters.clone();
    expected.push("default".into());
    expected.sort();
    assert_eq!(names, expected, "clusters after restart (refused: {:?})", ledger.refused_clusters);

    let revs: Vec<i64> =
        list_all(&h, "ListTaskDefinitions", json!({"familyPrefix": "big"}), "taskDefinitionArns")
            .await
            .iter()
            .map(|a| last_segment(a, ':').parse().unwrap())
            .collect();
    assert_eq!(revs, ledger.revisions.keys().copied().collect::<Vec<_>>(), "big's revisions");
    for (rev, seq) in &ledger.revisions {
        let d =
            h.ok("DescribeTaskDefinition", json!({"taskDefinition": format!("big:{rev}")})).await;
        let v = d["taskDefinition"]["containerDefinitions"][0]["environment"][0]["value"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(v.starts_with(&format!("{seq}-0-")), "big:{rev} holds {v}, acknowledged {seq}");
    }

    let mut tasks = list_all(&h, "ListTasks", json!({"cluster": "default"}), "taskArns").await;
    tasks.sort();
    let mut acked = ledger.tasks.clone();
    acked.sort();
    assert_eq!(tasks, acked, "tasks after restart");
    eprintln!(
        "acknowledged: {} clusters, {} task definitions, {} tasks; refused: {refused}",
        ledger.clusters.len(),
        ledger.revisions.len(),
        ledger.tasks.len()
    );
    drop(h);
}

fn config(data: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(data.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    c.account_id = "123456789012".into();
    c
}

fn assert_start_refused_for_space(err: StartError, data: &Path, fs: &Path) {
    let msg = err.to_string();
    assert!(matches!(err, StartError::DiskFull { .. }), "{msg}");
    assert!(msg.contains("is full"), "{msg}");
    assert!(msg.contains(&format!("free space on {}", fs.display())), "{msg}");
    assert!(msg.contains(&data.display().to_string()), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_on_a_full_disk_says_so_and_starts_once_there_is_space() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.dir.join("data");
    let h = start(&data).await;
    h.ok("CreateCluster", json!({"clusterName": "kept"})).await;
    drop(h);
    // Wait for the first server to let go of the directory.
    drop(berth_server::data_dir::DataDir::open(&data).ok());
    let deadline = Instant::now() + Duration::from_secs(20);
    while berth_server::data_dir::DataDir::open(&data).is_err() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let filler = fill(&fs.dir);

    // An existing data directory: the store cannot even create its WAL.
    let err = Server::start(config(&data)).await.err().expect("no start on a full disk");
    eprintln!("existing data directory: {err}");
    assert_start_refused_for_space(err, &data, &fs.dir);

    // A new one: nothing fits, not even the lock file's pid.
    let fresh = fs.dir.join("fresh");
    let err = Server::start(config(&fresh)).await.err().expect("no start on a full disk");
    eprintln!("new data directory: {err}");
    assert_start_refused_for_space(err, &fresh, &fs.dir);
    for name in ["credentials.tmp", "config.tmp"] {
        assert!(!fresh.join(name).exists(), "{name} left behind");
        assert!(!data.join(name).exists(), "{name} left behind");
    }

    // Space returns: the same directory starts with its data.
    std::fs::remove_file(&filler).unwrap();
    let h = start(&data).await;
    let d = h.ok("DescribeClusters", json!({"clusters": ["kept"]})).await;
    assert_eq!(d["clusters"][0]["status"], "ACTIVE", "{d}");
    drop(h);
}
