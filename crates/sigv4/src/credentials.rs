//! AWS credentials from the standard chain, as the AWS CLI resolves them: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) at the profile
//! `AWS_PROFILE` (else `default`).

use std::path::PathBuf;

use crate::Credentials;

/// Why no credentials could be found.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or AWS_SHARED_CREDENTIALS_FILE (berth server writes DATA_DIR/credentials)"
    )]
    /// Neither the environment nor a credentials file has any.
    NotFound,
    /// The profile exists but lacks `key`.
    #[error("profile [{profile}] in {path} has no {key}")]
    Incomplete {
        /// The credentials file.
        path: PathBuf,
        /// The profile read.
        profile: String,
        /// The missing setting.
        key: &'static str,
    },
    /// The credentials file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The credentials file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Resolves credentials from the environment `env` (a lookup, so tests need not touch the
/// process environment).
pub fn resolve(env: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
    let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) =
        (nonempty("AWS_ACCESS_KEY_ID"), nonempty("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(Credentials {
            access_key_id: id,
            secret_access_key: secret,
            session_token: nonempty("AWS_SESSION_TOKEN"),
        });
    }
    let path = match nonempty("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => match nonempty("HOME") {
            Some(h) => PathBuf::from(h).join(".aws/credentials"),
            None => return Err(CredentialsError::NotFound),
        },
    };
    if !path.exists() {
        return Err(CredentialsError::NotFound);
    }
    let profile = nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into());
    from_file(&path, &profile)
}

/// Reads one profile of an AWS shared-credentials file.
pub fn from_file(path: &std::path::Path, profile: &str) -> Result<Credentials, CredentialsError> {
    let path = path.to_path_buf();
    let profile = profile.to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|source| CredentialsError::Read { path: path.clone(), source })?;
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_string());
            match k.trim() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    let incomplete =
        |key| CredentialsError::Incomplete { path: path.clone(), profile: profile.clone(), key };
    Ok(Credentials {
        access_key_id: id.ok_or_else(|| incomplete("aws_access_key_id"))?,
        secret_access_key: secret.ok_or_else(|| incomplete("aws_secret_access_key"))?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn environment_first_then_file_profile() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(
            &file,
            "[default]\naws_access_key_id = AKIAFILE\naws_secret_access_key = s1\n[other]\naws_access_key_id=AKIAOTHER\naws_secret_access_key=s2\naws_session_token=t\n",
        )
        .unwrap();
        let env = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> =
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            move |k: &str| m.get(k).cloned()
        };
        let f = file.to_str().unwrap();
        let c = resolve(env(&[
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
            ("AWS_SHARED_CREDENTIALS_FILE", f),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id, "AKIAENV");
        let c = resolve(env(&[("AWS_SHARED_CREDENTIALS_FILE", f)])).unwrap();
        assert_eq!(c.access_key_id, "AKIAFILE");
        let c =
            resolve(env(&[("AWS_SHARED_CREDENTIALS_FILE", f), ("AWS_PROFILE", "other")])).unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("AKIAOTHER", Some("t"))
        );
        assert!(matches!(
            resolve(env(&[("AWS_SHARED_CREDENTIALS_FILE", f), ("AWS_PROFILE", "none")])),
            Err(CredentialsError::Incomplete { .. })
        ));
        assert!(matches!(resolve(env(&[])), Err(CredentialsError::NotFound)));
    }
}
