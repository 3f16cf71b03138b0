//! Content digests and the names the distribution API carries (repositories, tags,
//! references).
//!
//! Invariants: a [`Digest`] is always `sha256:` followed by exactly 64 lowercase hex digits
//! (the only algorithm this registry stores); a repository name and a tag are valid by the
//! OCI distribution grammar (and ECR's length limits) before anything touches storage, so
//! no name can reach outside the data directory.

use std::fmt;

use sha2::{Digest as _, Sha256};

/// A `sha256:<64 hex>` content digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest '{0}' names an algorithm this registry does not support (use sha256)")]
    Algorithm(String),
    #[error("digest '{0}' is not sha256: followed by 64 lowercase hex digits")]
    Malformed(String),
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        if alg != "sha256" {
            return Err(DigestError::Algorithm(s.to_string()));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// The digest a finished hasher gives.
    pub fn from_hasher(h: Sha256) -> Self {
        Self(format!("sha256:{}", hex::encode(h.finalize())))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    /// A digest when it has a `:`, else a tag (each validated).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Digest::parse(s).map(Reference::Digest).map_err(NameError::Digest)
        } else {
            valid_tag(s)?;
            Ok(Reference::Tag(s.to_string()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "repository name '{0}' is invalid: 2 to 256 characters, lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'"
    )]
    Repository(String),
    #[error(
        "tag '{0}' is invalid: 1 to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'"
    )]
    Tag(String),
    #[error(transparent)]
    Digest(DigestError),
}

/// Checks a repository name: path components `[a-z0-9]+([._-][a-z0-9]+)*` (a `__` or a run
/// of `-` between alphanumerics allowed, as the distribution grammar does) joined by `/`;
/// 2 to 256 characters (ECR's limits).
pub fn valid_repository(name: &str) -> Result<(), NameError> {
    let bad = || NameError::Repository(name.to_string());
    if name.len() < 2 || name.len() > 256 {
        return Err(bad());
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err(bad());
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            // A separator: '.', '_', '__' or a run of '-'.
            let start = i;
            match b[i] {
                b'.' => i += 1,
                b'_' => {
                    i += 1;
                    if i < b.len() && b[i] == b'_' {
                        i += 1;
                    }
                }
                b'-' => {
                    while i < b.len() && b[i] == b'-' {
                        i += 1;
                    }
                }
                _ => return Err(bad()),
            }
            if i == start || i >= b.len() || !alnum(b[i]) {
                return Err(bad());
            }
        }
    }
    Ok(())
}

/// Checks a tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> Result<(), NameError> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(NameError::Tag(tag.to_string())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_strictly() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert!(Digest::parse(&good).is_ok());
        for bad in [
            "sha256:abc".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha512:{}", "a".repeat(128)),
            "a".repeat(64),
            format!("sha256:{}/..", "a".repeat(62)),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn repository_names_follow_the_grammar() {
        for good in ["ab", "app", "team/app", "a.b/c_d/e__f/g--h", "x1/y2-3"] {
            assert!(valid_repository(good).is_ok(), "{good}");
        }
        for bad in
            ["a", "App", "team//app", "/app", "app/", "a..b", "a___b", "-ab", "ab-", "a b", "../x"]
        {
            assert!(valid_repository(bad).is_err(), "{bad}");
        }
        assert!(valid_repository(&"a".repeat(257)).is_err());
    }

    #[test]
    fn tags_follow_the_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d"] {
            assert!(valid_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(valid_tag(bad).is_err(), "{bad}");
        }
        assert_eq!(Reference::parse("v1").unwrap(), Reference::Tag("v1".into()));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "0".repeat(64))).unwrap(),
            Reference::Digest(_)
        ));
        assert!(Reference::parse("sha256:zz").is_err());
    }
}
