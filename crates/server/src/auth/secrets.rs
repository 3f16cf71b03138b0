//! Secrets at rest: the secret of every access key is kept in the store sealed with
//! AES-256-GCM under a master key that lives in its own file, never in the database, so a
//! copy of the database (a backup, a stray `cp`) does not give the keys away.
//!
//! * **Envelope.** In place of the secret, the record holds the string
//!   `berth-sealed:v1:` + base64(nonce (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)), sealed
//!   with the access key id as associated data, so a sealed secret moved to another record does
//!   not open. The `v1` names the algorithm and layout; another version means another
//!   envelope, recognised by its prefix.
//! * **Key file.** 32 random bytes from the OS, as 64 hex digits and a newline, mode 0600 in
//!   a 0700 directory: by default `DATA_DIR/keys/master.key` (beside the database, not in
//!   it), anywhere else with `--key-file` (a secrets mount, another disk). Created at the first
//!   start; a key file open to group or others is refused. Losing it loses every stored secret
//!   (the server then refuses to start, naming the file), so back it up apart from the data.
//! * **Migration.** [`seal_plaintext_keys`] runs at every start and seals any secret still in
//!   plain text (a database written before sealing existed); the server then rewrites the
//!   database file so the plain text is gone from it and from its WAL.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use berth_model::keys;
use berth_model::records::AccessKeyRecord;
use berth_store::{Range, Store, Txn};

use crate::records;

/// What a sealed secret starts with.
pub const SEALED_PREFIX: &str = "berth-sealed:v1:";
/// The key file's name under `DATA_DIR/keys/` when `--key-file` is not given.
pub const DEFAULT_KEY_FILE: &str = "keys/master.key";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Problems with the master key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("master key file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "master key file {path} is open to other users (mode {mode:04o}): run `chmod 600 {path}`"
    )]
    NotPrivate { path: PathBuf, mode: u32 },
    #[error("master key file {path} does not hold a key (expected 64 hex digits)")]
    Malformed { path: PathBuf },
}

/// Why a sealed secret did not open.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the secret is not sealed")]
    NotSealed,
    #[error("the sealed secret is malformed")]
    Malformed,
    #[error(
        "the sealed secret does not open with this master key (was the key file replaced or lost?)"
    )]
    WrongKey,
}

/// The AES-256-GCM master key.
pub struct MasterKey {
    cipher: Aes256Gcm,
    /// The key itself, only ever used through [`MasterKey::derive`].
    raw: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new_from_slice(bytes).expect("a 256-bit key"), raw: *bytes }
    }

    /// A 32-byte key for one purpose, derived from this one (HMAC-SHA256 keyed by the master
    /// key over `label`): other secrets (the registry's token key) need no file of their own,
    /// live wherever `--key-file` keeps the master key, and differ per label.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.raw)
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Reads the key file at `path`, or creates it (0600, its directory 0700) with a fresh
    /// random key; true when this call created it.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyFileError> {
        let ioerr = |source| KeyFileError::Io { path: path.to_path_buf(), source };
        match std::fs::metadata(path) {
            Ok(_) => return Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ioerr(e)),
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && !dir.exists()
        {
            if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(up).map_err(ioerr)?;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(ioerr)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(ioerr(e)),
            }
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| ioerr(std::io::Error::other(format!("no OS randomness: {e}"))))?;
        // Write aside, then link into place: a crash never leaves a half-written key, and a
        // key that appeared meanwhile is never overwritten.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let written = (|| {
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            writeln!(f, "{}", hex::encode(bytes))?;
            f.sync_all()?;
            std::fs::hard_link(&tmp, path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok((Self::from_bytes(&bytes), true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((Self::load(path)?, false))
            }
            Err(e) => Err(ioerr(e)),
        }
    }

    fn load(path: &Path) -> Result<Self, KeyFileError> {
        let ioerr = |source| KeyFileError::Io { path: path.to_path_buf(), source };
        let mode = std::fs::metadata(path).map_err(ioerr)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::NotPrivate { path: path.to_path_buf(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(ioerr)?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| KeyFileError::Malformed { path: path.to_path_buf() })?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Seals `secret` for the record named `aad` (the access key id).
    pub fn seal(&self, aad: &str, secret: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("OS randomness");
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload { msg: secret.as_bytes(), aad: aad.as_bytes() },
            )
            .expect("AES-GCM sealing of a short secret cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{SEALED_PREFIX}{}", B64.encode(out))
    }

    /// Opens a secret sealed by [`MasterKey::seal`] for `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, SealError> {
        let b64 = sealed.strip_prefix(SEALED_PREFIX).ok_or(SealError::NotSealed)?;
        let raw = B64.decode(b64).map_err(|_| SealError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map_err(|_| SealError::WrongKey)?;
        String::from_utf8(pt).map_err(|_| SealError::Malformed)
    }
}

/// True when `s` is a sealed secret (of any version).
pub fn is_sealed(s: &str) -> bool {
    s.starts_with("berth-sealed:")
}

/// Seals every access key secret still stored in plain text; returns how many were sealed.
/// Run at start, while this server holds the data directory alone.
pub async fn seal_plaintext_keys(store: &dyn Store, key: &MasterKey) -> Result<usize, String> {
    let recs = store.range(Range::prefix(keys::ACCESS_KEYS)).await.map_err(|e| e.to_string())?;
    let mut sealed = 0;
    for (mut rec, rev) in
        records::decode_all::<AccessKeyRecord>(recs).map_err(|e| e.message.clone())?
    {
        if is_sealed(&rec.secret_access_key) {
            continue;
        }
        rec.secret_access_key = key.seal(&rec.access_key_id, &rec.secret_access_key);
        let k = keys::access_key(&rec.access_key_id);
        let txn = Txn::new().when(&k, rev).put(&k, records::encode(&rec));
        if !records::commit(store, txn).await.map_err(|e| e.message)? {
            return Err(format!(
                "access key {} changed while its secret was sealed",
                rec.access_key_id
            ));
        }
        sealed += 1;
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_record() {
        let k = MasterKey::from_bytes(&[7; 32]);
        let s = k.seal("AKIAONE", "s3cr3t");
        assert!(s.starts_with(SEALED_PREFIX) && !s.contains("s3cr3t"));
        assert_eq!(k.open("AKIAONE", &s).unwrap(), "s3cr3t");
        assert_ne!(s, k.seal("AKIAONE", "s3cr3t"), "a fresh nonce every time");
        assert!(matches!(k.open("AKIATWO", &s), Err(SealError::WrongKey)));
        let other = MasterKey::from_bytes(&[8; 32]);
        assert!(matches!(other.open("AKIAONE", &s), Err(SealError::WrongKey)));
        assert!(matches!(k.open("AKIAONE", "s3cr3t"), Err(SealError::NotSealed)));
        assert!(matches!(k.open("AKIAONE", "berth-sealed:v1:AAAA"), Err(SealError::Malformed)));
    }

    #[test]
    fn the_key_file_is_created_private_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("data/keys/master.key");
        std::fs::create_dir(tmp.path().join("data")).unwrap();
        let (k1, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.trim().len(), 64);
        let (k2, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k2.open("A", &k1.seal("A", "x")).unwrap(), "x");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp left");
    }

    #[test]
    fn a_key_file_open_to_others_or_garbled_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("master.key");
        MasterKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = MasterKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(MasterKey::load_or_create(&path), Err(KeyFileError::Malformed { .. })));
    }
}
