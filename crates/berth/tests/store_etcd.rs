//! `berth server --store etcd://...` and `berth store copy` through the real binary and the AWS
//! CLI (issue #18): a server keeps its records in an etcd it shares nothing else with, they move
//! to SQLite and back with nothing lost, a non-empty destination is refused without --force, and
//! a data directory in use by a running server cannot be copied. The test starts its own etcd
//! on ephemeral ports (skipped with a message when etcd is not installed, unless CI is set).
//! No Docker needed. Two servers on etcd over TLS share one registry blob directory.

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

/// Pushes one blob and a manifest naming it to `repo` at registry `host` over the OCI API
/// (Basic auth with `password`), then reads both back from registry `pull_host`: prints the
/// blob's digest, or fails.
const PUSH_PULL: &str = r#"
import base64, hashlib, json, sys, urllib.request
push, pull, repo, password = sys.argv[1:5]
auth = "Basic " + base64.b64encode(b"AWS:" + password.encode()).decode()
def call(method, url, body=None, ctype=None):
    req = urllib.request.Request(url, data=body, method=method, headers={"Authorization": auth})
    if ctype: req.add_header("Content-Type", ctype)
    return urllib.request.urlopen(req, timeout=30)
blob = b"shared blob storage " * 4096
digest = "sha256:" + hashlib.sha256(blob).hexdigest()
config = b"{}"
cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
for data, d in ((blob, digest), (config, cdigest)):
    loc = call("POST", f"http://{push}/v2/{repo}/blobs/uploads/").headers["Location"]
    if loc.startswith("/"): loc = f"http://{push}{loc}"
    sep = "&" if "?" in loc else "?"
    call("PUT", f"{loc}{sep}digest={d}", data, "application/octet-stream")
manifest = json.dumps({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest, "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": len(blob)}]}).encode()
call("PUT", f"http://{push}/v2/{repo}/manifests/v1", manifest, "application/vnd.oci.image.manifest.v1+json")
got = call("GET", f"http://{pull}/v2/{repo}/manifests/v1").read()
assert got == manifest, "the manifest read through the other server differs"
got = call("GET", f"http://{pull}/v2/{repo}/blobs/{digest}").read()
assert got == blob, "the blob read through the other server differs"
print(digest)
"#;

/// Two servers on one etcd store (reached over TLS with a client certificate: `etcds://`,
/// `--etcd-ca`, `--etcd-cert`, `--etcd-key`) sharing one `--registry-blob-dir`: an image
/// pushed through one is pulled through the other, its blob stored once in the shared
/// directory. A server given no client certificate is refused at start, saying so.
#[test]
fn servers_on_etcds_share_registry_blobs() {
    let Some(etcd_bin) = etcd_for_test("servers_on_etcds_share_registry_blobs") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pki = tls_pki(&tmp.path().join("pki"));
    let member = berth_store::etcd_process::MemberTls {
        cert: pki.join("server.pem"),
        key: pki.join("server-key.pem"),
        client_ca: pki.join("ca.pem"),
    };
    let etcd = EtcdProcess::start_tls(&etcd_bin, &tmp.path().join("etcd"), &member, &[]).unwrap();
    let url = etcd.url("berth/");
    let blobs = tmp.path().join("shared-blobs");
    let key = tmp.path().join("master.key");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (ca, cert, client_key) = (
        path(&pki.join("ca.pem")),
        path(&pki.join("client.pem")),
        path(&pki.join("client-key.pem")),
    );
    let (blobs_s, key_s) = (path(&blobs), path(&key));
    let flags: Vec<&str> = vec![
        "--store",
        &url,
        "--etcd-ca",
        &ca,
        "--etcd-cert",
        &cert,
        "--etcd-key",
        &client_key,
        "--key-file",
        &key_s,
        "--registry-blob-dir",
        &blobs_s,
    ];
    let a = ServerProc::start_with(bin(), &flags).unwrap();
    let b = ServerProc::start_with(bin(), &flags).unwrap();

    let repo = a.aws(&["ecr", "create-repository", "--repository-name", "shared/app"]).json();
    let uri_a = repo["repository"]["repositoryUri"].as_str().unwrap().to_string();
    let described = b.aws(&["ecr", "describe-repositories"]).json();
    let uri_b = described["repositories"][0]["repositoryUri"].as_str().unwrap().to_string();
    let (host_a, host_b) = (uri_a.split_once('/').unwrap().0, uri_b.split_once('/').unwrap().0);
    assert_ne!(host_a, host_b, "each server runs its own registry listener");
    let password = a.aws(&["ecr", "get-login-password"]);
    assert!(password.ok, "{}", password.stderr);
    let out = Command::new("python3")
        .args(["-c", PUSH_PULL, host_a, host_b, "shared/app", password.stdout.trim()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "push through one, pull through the other: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let digest = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let stored = blobs.join("blobs/sha256").join(&hex[..2]).join(hex);
    assert!(stored.is_file(), "the blob is in the shared directory: {}", stored.display());
    for s in [&a, &b] {
        assert!(!s.data_dir.join("registry/blobs/sha256").join(&hex[..2]).exists());
    }

    // Without a client certificate etcd refuses the server, and it says what to give.
    let out = Command::new(bin())
        .args(["server", "--listen", "127.0.0.1:0", "--store", &url, "--etcd-ca", &ca])
        .arg("--data-dir")
        .arg(tmp.path().join("no-cert"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--etcd-cert"), "{err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
fn tls_pki(dir: &Path) -> std::path::PathBuf {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = Issuer::new(ca, &ca_key);
    for (name, sans, eku) in [
        ("server", vec!["127.0.0.1".to_string()], ExtendedKeyUsagePurpose::ServerAuth),
        ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
    ] {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.extended_key_usages = vec![eku];
        let cert = p.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
    dir.to_path_buf()
}
