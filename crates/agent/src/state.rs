//! The agent's identity on disk: which container instance it is, so a restarted agent comes
//! back as the same instance and adopts its containers. Written atomically (temp + rename,
//! fsync), mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `DATA_DIR/agent-state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentState {
    pub cluster: String,
    /// The EC2-style instance id this host registers with (stable across restarts).
    pub ec2_instance_id: String,
    /// Set once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_instance_arn: Option<String>,
}

/// The state file of a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("agent-state.json")
}

/// Loads the state, or `None` when the agent never ran with this data directory.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<AgentState>> {
    read_json(&path(data_dir), "move it away to register as a new instance")
}

/// Saves the state durably.
pub fn save(data_dir: &Path, state: &AgentState) -> anyhow::Result<()> {
    write_private_json(data_dir, &path(data_dir), state)
}

/// A JSON file of the agent's data directory, or `None` when absent; `if_corrupt` says what to
/// do when it cannot be decoded.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    p: &Path,
    if_corrupt: &str,
) -> anyhow::Result<Option<T>> {
    match std::fs::read(p) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is corrupt ({e}); {if_corrupt}", p.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", p.display())),
    }
}

/// Writes `value` as JSON to `p` in `data_dir` (created 0700 if missing) atomically (temp file,
/// fsync, rename, directory fsync), mode 0600.
pub(crate) fn write_private_json<T: Serialize>(
    data_dir: &Path,
    p: &Path,
    value: &T,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if !data_dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir)?;
    }
    let tmp = p.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(value)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, p)?;
    if let Ok(dir) = std::fs::File::open(data_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let s = AgentState {
            cluster: "c".into(),
            ec2_instance_id: "i-0123456789abcdef0".into(),
            container_instance_arn: Some("arn:x".into()),
        };
        save(dir.path(), &s).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(s));
        std::fs::write(path(dir.path()), b"{nope").unwrap();
        assert!(load(dir.path()).is_err());
    }
}
