//! `berth store copy --from LOCATION --to LOCATION [--force]`: moves every record of a Berth
//! store between SQLite (`sqlite:DATA_DIR`, its `berth.db`) and etcd
//! (`etcd://HOST:2379[,...][/PREFIX]`), in either direction (issue #18).
//!
//! Contract:
//! * Every key is copied with its value as is (secrets stay sealed: the servers on the
//!   destination need the source's master key). Revisions are the destination's own.
//! * A destination that holds any key is refused unless `--force`, which first deletes every
//!   key the destination has (under its prefix), so the result is an exact copy.
//! * The copy needs a quiet source: a SQLite data directory is locked for the whole copy (as a
//!   running server would hold it, so a running server makes the copy fail); for etcd, the copy
//!   fails if the source's revision moved while copying (stop every server and retry).
//! * Afterwards every key is read back from both sides and compared: a copy that reports
//!   success lost nothing.
//! * Writes are batched under etcd's default limits (128 operations, 1.5 MiB a transaction);
//!   one value over the limit fails the copy naming its key.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_store::{EtcdConfig, EtcdStore, Range, Record, SqliteStore, Store, Txn, prefix_end};

/// Keys read per page.
const PAGE: usize = 500;
/// Most operations per destination transaction (etcd's default limit is 128).
const BATCH_OPS: usize = 100;
/// Most value bytes per destination transaction (etcd's default request limit is 1.5 MiB).
const BATCH_BYTES: usize = 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Copy every record from one store to another (stop the servers first).
    Copy(CopyArgs),
}

#[derive(clap::Args, Debug)]
struct CopyArgs {
    /// The source: sqlite:DATA_DIR or etcd://HOST:2379[,HOST:2379...][/PREFIX].
    #[arg(long)]
    from: String,
    /// The destination: sqlite:DATA_DIR or etcd://HOST:2379[,HOST:2379...][/PREFIX].
    #[arg(long)]
    to: String,
    /// Replace whatever the destination holds (every key deleted first).
    #[arg(long)]
    force: bool,
    /// TLS to an etcds:// source or destination (the same files for both).
    #[command(flatten)]
    etcd_tls: super::server::EtcdTlsArgs,
}

/// Where a store is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Location {
    Sqlite(PathBuf),
    Etcd(EtcdConfig),
}

fn parse_location(
    flag: &str,
    s: &str,
    tls: &super::server::EtcdTlsArgs,
) -> anyhow::Result<Location> {
    if let Some(dir) = s.strip_prefix("sqlite:") {
        anyhow::ensure!(
            !dir.is_empty(),
            "{flag}: sqlite: needs the data directory (sqlite:DATA_DIR)"
        );
        return Ok(Location::Sqlite(PathBuf::from(dir)));
    }
    if s.starts_with(EtcdConfig::SCHEME_TLS) {
        return tls.config(flag, s).map(Location::Etcd);
    }
    if s.starts_with(EtcdConfig::SCHEME) {
        return EtcdConfig::parse(s)
            .map(Location::Etcd)
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"));
    }
    anyhow::bail!(
        "{flag} must be sqlite:DATA_DIR, etcd://HOST:2379[,HOST:2379...][/PREFIX] or etcds://... for TLS (got '{s}')"
    )
}

/// An open store, with whatever keeps it exclusive.
struct Opened {
    store: Arc<dyn Store>,
    _lock: Option<berth_server::data_dir::DataDir>,
    name: String,
}

async fn open(location: &Location, must_exist: bool) -> anyhow::Result<Opened> {
    match location {
        Location::Sqlite(dir) => {
            let db = dir.join("berth.db");
            if must_exist && !db.exists() {
                anyhow::bail!("{} does not exist: no Berth store to copy from", db.display());
            }
            // Held for the whole copy: no server may run on it meanwhile.
            let lock = berth_server::data_dir::DataDir::open(dir)
                .with_context(|| format!("cannot take the data directory {}", dir.display()))?;
            let store = SqliteStore::open(&db)?;
            Ok(Opened { store: Arc::new(store), _lock: Some(lock), name: db.display().to_string() })
        }
        Location::Etcd(config) => {
            let store = EtcdStore::connect(config.clone()).await?;
            let name = format!("etcd {} (keys under {:?})", config.describe(), config.prefix);
            Ok(Opened { store: Arc::new(store), _lock: None, name })
        }
    }
}

/// The records of `[from, end of the store)`, one page.
async fn page(store: &dyn Store, from: &str) -> anyhow::Result<Vec<Record>> {
    let range = Range { start: from.to_string(), end: prefix_end(""), limit: PAGE, reverse: false };
    Ok(store.range(range).await?)
}

/// The key right after `key`.
fn after(key: &str) -> String {
    format!("{key}\0")
}

/// Splits records into destination transactions under the batch limits.
fn batches(records: &[Record]) -> Vec<&[Record]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.key.len() + r.value.len();
        if i > start && (i - start >= BATCH_OPS || bytes + size > BATCH_BYTES) {
            out.push(&records[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

async fn copy(args: CopyArgs) -> anyhow::Result<()> {
    let from = parse_location("--from", &args.from, &args.etcd_tls)?;
    let to = parse_location("--to", &args.to, &args.etcd_tls)?;
    let tls_used = [&from, &to].iter().any(|l| matches!(l, Location::Etcd(c) if c.tls.is_some()));
    anyhow::ensure!(
        tls_used || !args.etcd_tls.any(),
        "--etcd-ca, --etcd-cert and --etcd-key are for an etcds:// --from or --to"
    );
    anyhow::ensure!(from != to, "--from and --to are the same store");
    let src = open(&from, true).await?;
    let dst = open(&to, false).await?;
    let everything = prefix_end("");
    let total = src.store.count("", &everything).await?;
    let start_revision = src.store.revision().await?;
    let existing = dst.store.count("", &everything).await?;
    if existing > 0 {
        anyhow::ensure!(
            args.force,
            "the destination {} already holds {existing} keys; pass --force to replace them all",
            dst.name
        );
        eprintln!("deleting the {existing} keys {} holds (--force)", dst.name);
        loop {
            let keys = page(&*dst.store, "").await?;
            if keys.is_empty() {
                break;
            }
            for chunk in keys.chunks(BATCH_OPS) {
                let txn = chunk.iter().fold(Txn::new(), |t, r| t.delete(r.key.clone()));
                dst.store.txn(txn).await?;
            }
        }
    }
    eprintln!("copying {total} keys from {} to {}", src.name, dst.name);
    let (mut copied, mut from_key, mut last_report) =
        (0u64, String::new(), std::time::Instant::now());
    loop {
        let records = page(&*src.store, &from_key).await?;
        let Some(last) = records.last() else { break };
        from_key = after(&last.key);
        for batch in batches(&records) {
            let txn = batch.iter().fold(Txn::new(), |t, r| t.put(r.key.clone(), r.value.clone()));
            dst.store.txn(txn).await.with_context(|| {
                format!("writing {} keys from {:?} to {}", batch.len(), batch[0].key, dst.name)
            })?;
            copied += batch.len() as u64;
        }
        if last_report.elapsed() >= std::time::Duration::from_secs(1) {
            eprintln!("  {copied}/{total} keys copied");
            last_report = std::time::Instant::now();
        }
    }
    // Nothing lost: the same keys and values on both sides, and the source did not move.
    eprintln!("  {copied}/{total} keys copied; verifying");
    let (mut checked, mut from_key) = (0u64, String::new());
    loop {
        let a = page(&*src.store, &from_key).await?;
        let Some(last) = a.last() else { break };
        let b = dst.store.range(Range {
            start: from_key.clone(),
            end: after(&last.key),
            limit: usize::MAX,
            reverse: false,
        });
        let b = b.await?;
        anyhow::ensure!(
            a.len() == b.len()
                && a.iter().zip(&b).all(|(x, y)| x.key == y.key && x.value == y.value),
            "verification failed between {:?} and {:?}: the destination differs from the source (was a server running?)",
            a[0].key,
            last.key
        );
        checked += a.len() as u64;
        from_key = after(&last.key);
    }
    let end_revision = src.store.revision().await?;
    anyhow::ensure!(
        end_revision == start_revision,
        "the source changed during the copy (revision {start_revision} -> {end_revision}): stop every server using it and copy again with --force"
    );
    let dst_total = dst.store.count("", &everything).await?;
    anyhow::ensure!(
        dst_total == checked,
        "the destination holds {dst_total} keys, the source {checked}: was a server writing to it?"
    );
    eprintln!("copied and verified {checked} keys from {} to {}", src.name, dst.name);
    eprintln!(
        "  the secrets are sealed with the source's master key: start the servers on the destination with the same --key-file (DATA_DIR/keys/master.key by default)"
    );
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.command {
        Command::Copy(c) => rt.block_on(copy(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_name_the_flag() {
        assert_eq!(
            parse_location("--from", "sqlite:/var/lib/berth", &Default::default()).unwrap(),
            Location::Sqlite("/var/lib/berth".into())
        );
        let Location::Etcd(c) =
            parse_location("--to", "etcd://a:2379,b:2379/x", &Default::default()).unwrap()
        else {
            panic!()
        };
        assert_eq!((c.endpoints.len(), c.prefix.as_str()), (2, "x/"));
        for bad in ["sqlite:", "/var/lib/berth", "etcd://nohost", "postgres://x"] {
            let e = parse_location("--to", bad, &Default::default()).unwrap_err().to_string();
            assert!(e.contains("--to"), "{bad}: {e}");
        }
    }

    #[test]
    fn etcds_locations_take_the_tls_flags() {
        let tls = super::super::server::EtcdTlsArgs {
            etcd_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        let Location::Etcd(c) = parse_location("--to", "etcds://a:2379", &tls).unwrap() else {
            panic!()
        };
        assert_eq!(c.endpoints, ["https://a:2379"]);
        assert_eq!(c.tls.and_then(|t| t.ca), Some("ca.pem".into()));
        // The plain one beside it is left plain; etcds:// without a CA names the flag.
        let Location::Etcd(c) = parse_location("--from", "etcd://b:2379", &tls).unwrap() else {
            panic!()
        };
        assert_eq!((c.endpoints[0].as_str(), c.tls), ("http://b:2379", None));
        let e = parse_location("--to", "etcds://a:2379", &Default::default()).unwrap_err();
        assert!(e.to_string().contains("--etcd-ca"), "{e}");
    }

    #[test]
    fn batches_stay_under_etcds_limits() {
        let rec = |k: usize, size: usize| Record {
            key: format!("k{k:04}"),
            value: vec![0u8; size].into(),
            create_revision: 1,
            mod_revision: 1,
        };
        let small: Vec<Record> = (0..250).map(|i| rec(i, 10)).collect();
        let sizes: Vec<usize> = batches(&small).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let big: Vec<Record> = (0..5).map(|i| rec(i, 400 * 1024)).collect();
        let sizes: Vec<usize> = batches(&big).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [2, 2, 1]);
        let huge = vec![rec(0, 2 << 20), rec(1, 1)];
        let sizes: Vec<usize> = batches(&huge).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, [1, 1], "an oversized value goes alone (and etcd names it)");
        assert!(batches(&[]).is_empty());
    }
}
