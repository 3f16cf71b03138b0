//! The data directory (issue #10, defects 5 and 6): private files under a private directory,
//! access key secrets sealed at rest (and sealed on upgrade), one server at a time.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_model::keys;
use berth_model::records::AccessKeyRecord;
use berth_server::data_dir::DataDirError;
use berth_server::{Server, ServerConfig, StartError};
use berth_store::{SqliteStore, Store, Txn};
use common::Harness;
use serde_json::json;

fn config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    c.account_id = "123456789012".into();
    c
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode()
        & 0o777
}

/// Every byte of the database, its WAL and its shared-memory file.
fn db_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for name in ["berth.db", "berth.db-wal", "berth.db-shm"] {
        out.extend(std::fs::read(dir.join(name)).unwrap_or_default());
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn files_and_directories_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(config(&dir)).await.unwrap();
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("keys")), 0o700);
    for f in ["berth.db", "berth.db-wal", "berth.db-shm", "credentials", "config", "LOCK"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&dir.join("keys/master.key")), 0o600);
    drop(server);
}

#[tokio::test]
async fn the_database_never_holds_the_secret_in_plain_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let h = Harness::start_with(|c| c.data_dir = dir.clone()).await;
    assert_eq!(h.call("ListClusters", json!({})).await.status, 200);
    let creds = std::fs::read_to_string(dir.join("credentials")).unwrap();
    let secret =
        creds.lines().find_map(|l| l.strip_prefix("aws_secret_access_key = ")).unwrap().to_string();
    assert_eq!(secret.len(), 40);
    let bytes = db_bytes(&dir);
    assert!(contains(&bytes, "iam/access-keys/"), "the record is there");
    assert!(!contains(&bytes, &secret), "the secret is stored in plain text");
    let key = std::fs::read(dir.join("keys/master.key")).unwrap();
    assert!(!contains(&bytes, std::str::from_utf8(&key).unwrap().trim()));
}

#[tokio::test]
async fn a_data_directory_open_to_others_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Server::start(config(&dir)).await.err().expect("a 0755 data directory is refused");
    assert!(matches!(err, StartError::DataDir(DataDirError::NotPrivate { .. })), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("chmod 700 {}", dir.display())), "{msg}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing was written there");
}

const OLD_AKID: &str = "AKIAOLDPLAINTEXT0001";
const OLD_SECRET: &str = "oldPlainTextSecretKey0123456789abcdefABC";

/// A data directory as a server from before sealing left it: the bootstrap key's secret in
/// plain text in the store.
async fn old_data_dir(dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let store = SqliteStore::open(&dir.join("berth.db")).unwrap();
    // The record as older servers wrote it, byte for byte.
    let rec = json!({
        "accessKeyId": OLD_AKID,
        "secretAccessKey": OLD_SECRET,
        "principalArn": "arn:aws:iam::123456789012:root",
        "status": "Active",
        "createdAt": 1.0e9,
    });
    let txn = Txn::new()
        .put(keys::BOOTSTRAP_ADMIN_KEY, OLD_AKID.as_bytes().to_vec())
        .put(keys::access_key(OLD_AKID), serde_json::to_vec(&rec).unwrap());
    assert!(store.txn(txn).await.unwrap().committed());
    drop(store);
    assert!(contains(&db_bytes(dir), OLD_SECRET), "the old layout holds the plain text");
}

#[tokio::test]
async fn a_plaintext_secret_is_sealed_at_start_and_still_authenticates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("data");
    old_data_dir(&dir).await;
    let h = Harness::start_with(|c| c.data_dir = dir.clone()).await;
    // The same key, from the credentials file the server rewrote...
    let creds = std::fs::read_to_string(dir.join("credentials")).unwrap();
    assert!(creds.contains(OLD_AKID) && creds.contains(OLD_SECRET), "{creds}");
    // ...signs requests (the harness signs with the key the server reports)...
    assert_eq!(h.call("ListClusters", json!({})).await.status, 200);
    // ...and is gone from the database's bytes, sealed in its record.
    let bytes = db_bytes(&dir);
    assert!(!contains(&bytes, OLD_SECRET), "the plain text survived the upgrade");
    drop(h);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let store = SqliteStore::open(&dir.join("berth.db")).unwrap();
    let rec = store.get(&keys::access_key(OLD_AKID)).await.unwrap().unwrap();
    let rec: AccessKeyRecord = serde_json::from_slice(&rec.value).unwrap();
    assert!(rec.secret_access_key.starts_with("berth-sealed:v1:"), "{rec:?}");
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first = Server::start(config(&dir)).await.unwrap();
    let err = Server::start(config(&dir)).await.err().expect("the second server must not start");
    assert!(matches!(err, StartError::DataDir(DataDirError::Locked { .. })), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    // Serving keeps the lock; once the first server has stopped, the directory is free.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(first.serve(async move {
        let _ = rx.await;
    }));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(Server::start(config(&dir)).await.is_err(), "a serving server holds the lock");
    tx.send(()).unwrap();
    serving.await.unwrap().unwrap();
    let again = Server::start(config(&dir)).await.expect("the directory is free again");
    drop(again);
}

#[tokio::test]
async fn a_key_file_elsewhere_is_used_and_a_lost_one_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key_file = tmp.path().join("secrets/berth.key");
    let mut c = config(&dir);
    c.key_file = Some(key_file.clone());
    drop(Server::start(c.clone()).await.unwrap());
    assert_eq!(mode(&key_file), 0o600);
    assert!(!dir.join("keys").exists(), "no key beside the data when --key-file is given");
    drop(Server::start(c.clone()).await.expect("a restart opens the sealed key"));
    // Another key cannot open the stored secret: the server says so instead of starting.
    std::fs::remove_file(&key_file).unwrap();
    let err = Server::start(c).await.err().expect("a replaced key file is refused");
    assert!(err.to_string().contains("master key"), "{err}");
}
