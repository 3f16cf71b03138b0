//! The instance's own access key (issue #10): what `berth agent --join-token` got in exchange
//! for its token, kept in `DATA_DIR/instance-credentials.json` (mode 0600, written atomically)
//! and reused at every restart, so a token is needed only once. The key may only poll, report
//! and re-register for this container instance.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `DATA_DIR/instance-credentials.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCredentials {
    pub cluster: String,
    pub container_instance_arn: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for InstanceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceCredentials")
            .field("cluster", &self.cluster)
            .field("container_instance_arn", &self.container_instance_arn)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl InstanceCredentials {
    /// As SigV4 credentials.
    pub fn sigv4(&self) -> berth_sigv4::Credentials {
        berth_sigv4::Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: None,
        }
    }
}

/// The credentials file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("instance-credentials.json")
}

/// The saved credentials, or `None` when this agent never joined.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<InstanceCredentials>> {
    let p = path(data_dir);
    match std::fs::read(&p) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is corrupt ({e}); remove it and join again", p.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// Saves the credentials durably, mode 0600.
pub fn save(data_dir: &Path, creds: &InstanceCredentials) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if !data_dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir)?;
    }
    let p = path(data_dir);
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(creds)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn saved_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("agent");
        assert!(load(&data).unwrap().is_none());
        let c = InstanceCredentials {
            cluster: "default".into(),
            container_instance_arn: "arn:x".into(),
            access_key_id: "AKIAX".into(),
            secret_access_key: "s3cret".into(),
        };
        save(&data, &c).unwrap();
        assert_eq!(load(&data).unwrap(), Some(c.clone()));
        let mode = std::fs::metadata(path(&data)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
