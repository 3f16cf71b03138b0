//! The administrator access key created on first start.
//!
//! Invariant: exactly one bootstrap key exists per data directory; it is created atomically
//! (compare-and-set on `iam/bootstrap-admin-key`), kept across restarts, and mirrored into
//! `DATA_DIR/credentials` (AWS shared-credentials format, profile `default`, mode 0600) and
//! `DATA_DIR/config` (the region), rewritten from the store whenever they are missing or stale.
//! In the store its secret is sealed under the master key ([`super::secrets`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_model::arn::Scope;
use berth_model::keys;
use berth_model::records::AccessKeyRecord;
use berth_store::{Store, Txn};
use rand::Rng;

use super::secrets::MasterKey;
use crate::clock::{Clock, epoch_seconds};
use crate::records;

/// The administrator key and where its files are.
#[derive(Clone)]
pub struct BootstrapKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub credentials_path: PathBuf,
    pub config_path: PathBuf,
    /// True when this start created the key.
    pub created: bool,
}

impl std::fmt::Debug for BootstrapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapKey")
            .field("access_key_id", &self.access_key_id)
            .field("credentials_path", &self.credentials_path)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Errors creating the bootstrap key or its files.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("could not write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Store(String),
    #[error("cannot open the secret of administrator key {access_key_id}: {source}")]
    Secret { access_key_id: String, source: super::secrets::SealError },
}

fn random_from(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::rng();
    (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// Finds or creates the administrator key and (re)writes its credentials files.
pub async fn bootstrap_admin_key(
    store: &dyn Store,
    clock: &dyn Clock,
    scope: &Scope,
    data_dir: &Path,
    master_key: &MasterKey,
) -> Result<BootstrapKey, BootstrapError> {
    let serr = |e: berth_wire::AwsError| BootstrapError::Store(e.message);
    let mut created = false;
    let (record, secret) = loop {
        if let Some(rec) = store
            .get(keys::BOOTSTRAP_ADMIN_KEY)
            .await
            .map_err(|e| BootstrapError::Store(e.to_string()))?
        {
            let akid = String::from_utf8_lossy(&rec.value).into_owned();
            match records::get::<AccessKeyRecord>(store, &keys::access_key(&akid))
                .await
                .map_err(serr)?
            {
                Some((r, _)) => {
                    let secret = master_key.open(&r.access_key_id, &r.secret_access_key).map_err(
                        |source| BootstrapError::Secret {
                            access_key_id: r.access_key_id.clone(),
                            source,
                        },
                    )?;
                    break (r, secret);
                }
                None => {
                    return Err(BootstrapError::Store(format!(
                        "bootstrap key {akid} is missing from the store"
                    )));
                }
            }
        }
        let akid = format!("AKIA{}", random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret =
            random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
        let rec = AccessKeyRecord {
            access_key_id: akid.clone(),
            secret_access_key: master_key.seal(&akid, &secret),
            principal_arn: scope.account_root_arn(),
            status: "Active".into(),
            created_at: epoch_seconds(clock.now()),
            container_instance_arn: None,
        };
        let txn = Txn::new()
            .when(keys::BOOTSTRAP_ADMIN_KEY, 0)
            .when(keys::access_key(&akid), 0)
            .put(keys::BOOTSTRAP_ADMIN_KEY, akid.clone().into_bytes())
            .put(keys::access_key(&akid), records::encode(&rec));
        if records::commit(store, txn).await.map_err(serr)? {
            created = true;
            break (rec, secret);
        }
    };
    let credentials_path = data_dir.join("credentials");
    let config_path = data_dir.join("config");
    let credentials = format!(
        "# Written by berth server: the administrator key of this data directory.\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        record.access_key_id, secret
    );
    // botocore sends some calls (Cloud Map's DiscoverInstances) to a prefixed host
    // (`data-HOST`), which does not resolve for an `--endpoint-url` of an IP address; every
    // service is at the one endpoint here.
    let config = format!(
        "# Written by berth server.\n[default]\nregion = {}\ndisable_host_prefix_injection = true\n",
        scope.region
    );
    write_private(&credentials_path, &credentials)?;
    write_private(&config_path, &config)?;
    Ok(BootstrapKey {
        access_key_id: record.access_key_id,
        secret_access_key: secret,
        credentials_path,
        config_path,
        created,
    })
}

/// Writes `contents` to `path` with mode 0600 unless it already holds exactly that.
fn write_private(path: &Path, contents: &str) -> Result<(), BootstrapError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let werr = |source| BootstrapError::Write { path: path.to_path_buf(), source };
    if let Ok(existing) = std::fs::read_to_string(path) {
        let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
        if existing == contents && mode == 0o600 {
            return Ok(());
        }
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        // A write cut short (a full disk) must not leave part of the secret lying about.
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(werr)
}
