//! The etcd backend over TLS (`etcds://`) against a real etcd whose client port requires
//! client certificates issued by a test CA (generated per test, `support/pki.rs`). The store
//! contract itself is run over TLS by `conformance.rs` (`on_etcd_tls`); here: the leader
//! election works over TLS, and every way of being refused fails the connect, promptly, with
//! [`StoreError::EtcdTlsRefused`] saying which side to fix.

use std::sync::Arc;
use std::time::Duration;

use berth_store::etcd_process::{EtcdProcess, etcd_for_test};
use berth_store::{EtcdConfig, EtcdStore, EtcdTls, Store, StoreError, Txn};

#[path = "support/pki.rs"]
mod pki;

/// How long a refused connect may take (the store's connect timeout is 5 s).
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

struct Cluster {
    etcd: EtcdProcess,
    pki: pki::Pki,
    dir: tempfile::TempDir,
}

fn start(test: &str) -> Option<Cluster> {
    let bin = etcd_for_test(test)?;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::generate(&dir.path().join("pki"), "cluster");
    let flags = ["--heartbeat-interval=20", "--election-timeout=200"];
    let etcd =
        EtcdProcess::start_tls(&bin, &dir.path().join("etcd"), &pki.member(), &flags).unwrap();
    Some(Cluster { etcd, pki, dir })
}

async fn connect(url: &str, tls: &EtcdTls) -> Result<EtcdStore, StoreError> {
    let config = EtcdConfig::parse(url)?.with_tls_files(
        url,
        tls.ca.clone(),
        tls.cert.clone(),
        tls.key.clone(),
    )?;
    tokio::time::timeout(REFUSED_WITHIN, EtcdStore::connect(config))
        .await
        .expect("the connect neither succeeded nor failed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_writes_reads_and_elects_a_leader() {
    use berth_store::{EtcdLeadership, Leadership};
    let Some(c) = start("etcd_over_tls_writes_reads_and_elects_a_leader") else { return };
    let url = c.etcd.url("berth/");
    assert!(url.starts_with("etcds://"), "{url}");
    let store = Arc::new(connect(&url, &c.pki.client()).await.unwrap());
    let out = store.txn(Txn::new().put("k", "v")).await.unwrap();
    assert!(out.committed(), "{out:?}");
    assert_eq!(&store.get("k").await.unwrap().unwrap().value[..], b"v");
    let leadership = EtcdLeadership::new(&store, "server-a", Duration::from_secs(2));
    let term = tokio::time::timeout(Duration::from_secs(10), leadership.campaign())
        .await
        .expect("campaign in time")
        .unwrap();
    assert_eq!(term.ended(), None);
    leadership.resign(&term).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_refuses_clients_without_a_certificate_or_with_a_foreign_one() {
    let Some(c) = start("etcd_refuses_clients_without_a_certificate_or_with_a_foreign_one") else {
        return;
    };
    let url = c.etcd.url("berth/");
    let other = pki::Pki::generate(&c.dir.path().join("other"), "other");
    let no_cert = EtcdTls { ca: Some(c.pki.ca.clone()), cert: None, key: None };
    let foreign_cert = EtcdTls { ca: Some(c.pki.ca.clone()), ..other.client() };
    let foreign_ca = EtcdTls { ca: Some(other.ca.clone()), ..c.pki.client() };
    // (client settings, what the hint must say)
    let table = [
        (no_cert, "requires a client certificate"),
        (foreign_cert, "refused the client certificate"),
        (foreign_ca, "not issued by the --etcd-ca"),
    ];
    for (tls, want) in table {
        match connect(&url, &tls).await {
            Err(e @ StoreError::EtcdTlsRefused { .. }) => {
                let text = e.to_string();
                assert!(text.contains(want), "{tls:?}: {text}");
                assert!(text.contains(&c.etcd.client_url()[8..]), "names the endpoint: {text}");
            }
            Err(other) => panic!("{tls:?}: expected EtcdTlsRefused, got {other}"),
            Ok(_) => panic!("{tls:?}: connected"),
        }
    }
    // A plain client on the TLS port gets nothing through either.
    let plain = EtcdConfig::parse(&url.replacen("etcds://", "etcd://", 1)).unwrap();
    let got = tokio::time::timeout(REFUSED_WITHIN, EtcdStore::connect(plain)).await.unwrap();
    assert!(got.is_err(), "a plain-text client must not connect");
}

#[test]
fn tls_files_are_checked_against_the_url() {
    let f = |s: &str| Some(std::path::PathBuf::from(s));
    // (url, ca, cert, key, accepted)
    let table = [
        ("etcds://h:2379", f("ca"), None, None, true),
        ("etcds://h:2379,g:2379/p", f("ca"), f("c"), f("k"), true),
        ("etcds://h:2379", None, None, None, false),
        ("etcds://h:2379", f("ca"), f("c"), None, false),
        ("etcd://h:2379", f("ca"), None, None, false),
        ("etcd://h:2379", None, None, None, true),
    ];
    for (url, ca, cert, key, ok) in table {
        let got = EtcdConfig::parse(url).unwrap().with_tls_files(url, ca, cert, key);
        assert_eq!(got.is_ok(), ok, "{url}: {got:?}");
        if let Ok(c) = got {
            let scheme = if url.starts_with("etcds") { "https://" } else { "http://" };
            assert!(c.endpoints.iter().all(|e| e.starts_with(scheme)), "{:?}", c.endpoints);
        }
    }
}
