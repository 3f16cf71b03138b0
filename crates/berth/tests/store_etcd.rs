//! `berth server --store etcd://...` and `berth store copy` through the real binary and the AWS
//! CLI (issue #18): a server keeps its records in an etcd it shares nothing else with, they move
//! to SQLite and back with nothing lost, a non-empty destination is refused without --force, and
//! a data directory in use by a running server cannot be copied. The test starts its own etcd
//! on ephemeral ports (skipped with a message when etcd is not installed, unless CI is set).
//! No Docker needed.

use std::path::Path;
use std::process::{Command, Output};

use berth_store::etcd_process::{EtcdProcess, etcd_for_test};
use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

fn store_copy(args: &[&str]) -> Output {
    Command::new(bin()).args(["store", "copy"]).args(args).output().unwrap()
}

fn clusters(server: &ServerProc) -> Vec<String> {
    let out = server.aws(&["ecs", "list-clusters"]).json();
    let mut names: Vec<String> = out["clusterArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn create_cluster(server: &ServerProc, name: &str) {
    server.aws(&["ecs", "create-cluster", "--cluster-name", name]).json();
}

#[test]
fn records_move_between_etcd_and_sqlite_with_nothing_lost() {
    let Some(etcd_bin) = etcd_for_test("records_move_between_etcd_and_sqlite_with_nothing_lost")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let etcd = EtcdProcess::start(&etcd_bin, &tmp.path().join("etcd"), &[]).unwrap();
    let url = etcd.url("berth/");

    // A server on etcd: its records are there, not in the data directory.
    let mut on_etcd = ServerProc::start_with(bin(), &["--store", &url]).unwrap();
    create_cluster(&on_etcd, "made-on-etcd");
    on_etcd.register_task_definition(&serde_json::json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": "nginx", "memory": 64}]
    }));
    let data_dir = on_etcd.data_dir.clone();
    assert!(!data_dir.join("berth.db").exists(), "no SQLite store beside an etcd one");
    let sqlite = format!("sqlite:{}", data_dir.display());

    // The data directory is in use by the running server: no copy from or to it.
    let out = store_copy(&["--from", &url, "--to", &sqlite]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another berth server"), "{err}");
    assert!(on_etcd.interrupt(), "the server stops cleanly");

    // etcd -> SQLite; a SQLite server on the same data directory (same master key) has it all.
    let out = store_copy(&["--from", &url, "--to", &sqlite]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("copied and verified"), "{err}");
    let on_sqlite = ServerProc::start_in(bin(), &data_dir).unwrap();
    assert_eq!(clusters(&on_sqlite), ["made-on-etcd"]);
    let td = on_sqlite.aws(&["ecs", "describe-task-definition", "--task-definition", "web:1"]);
    assert_eq!(td.json()["taskDefinition"]["containerDefinitions"][0]["image"], "nginx");
    create_cluster(&on_sqlite, "made-on-sqlite");
    drop(on_sqlite); // SIGKILL: what was acknowledged is in the file

    // SQLite -> etcd: refused while etcd holds records, then replaced with --force.
    let out = store_copy(&["--from", &sqlite, "--to", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a non-empty destination must be refused");
    assert!(err.contains("already holds") && err.contains("--force"), "{err}");
    let out = store_copy(&["--from", &sqlite, "--to", &url, "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");

    // Back on etcd: both clusters, the task definition, and it keeps working.
    on_etcd.restart_after_kill9().unwrap();
    assert_eq!(clusters(&on_etcd), ["made-on-etcd", "made-on-sqlite"]);
    let td = on_etcd.aws(&["ecs", "describe-task-definition", "--task-definition", "web:1"]);
    assert_eq!(td.json()["taskDefinition"]["revision"], 1);
    let next = on_etcd.register_task_definition(&serde_json::json!({
        "family": "web",
        "containerDefinitions": [{"name": "web", "image": "nginx:2", "memory": 64}]
    }));
    assert_eq!(next["taskDefinition"]["revision"], 2);
}

#[test]
fn a_bad_store_flag_is_refused_naming_it() {
    let out = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--store", "etcd://nohost"])
        .arg("--data-dir")
        .arg(tempfile::tempdir().unwrap().path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--store") && err.contains("HOST:PORT"), "{err}");
    let out = store_copy(&["--from", "mysql://x", "--to", "sqlite:/tmp/x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--from must be"), "{err}");
}
