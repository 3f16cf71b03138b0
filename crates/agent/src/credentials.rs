//! The instance's own access key (issue #10): what `berth agent --join-token` got in exchange
//! for its token, kept in `DATA_DIR/instance-credentials.json` (mode 0600, written atomically)
//! and reused at every restart, so a token is needed only once. The key may only poll, report
//! and re-register for this container instance.

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
    crate::state::read_json(&path(data_dir), "remove it and join again")
}

/// Saves the credentials durably, mode 0600.
pub fn save(data_dir: &Path, creds: &InstanceCredentials) -> anyhow::Result<()> {
    crate::state::write_private_json(data_dir, &path(data_dir), creds)
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
