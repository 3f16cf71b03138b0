//! Manifest parsing: OCI image manifests and indexes, Docker v2 schema 2 manifests and
//! manifest lists.
//!
//! Contract: [`parse`] accepts exactly those four media types (named by the request's
//! `Content-Type`, or by the document's own `mediaType` when the request names none; the two
//! must agree when both are given) and returns what the registry must check before storing
//! the manifest: the blobs it references (config and layers: they must exist in the
//! repository), the manifests an index references (they must exist too) and its `subject`
//! (for the referrers API). It is pure: no storage, no clock.

use serde::Deserialize;

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The media types this registry stores, as ECR accepts them.
pub const SUPPORTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// A content descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// Whether a manifest describes one image or a list of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Image,
    Index,
}

/// What a stored manifest says, for validation and the referrers API.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub media_type: String,
    pub kind: Kind,
    pub config: Option<Descriptor>,
    pub layers: Vec<Descriptor>,
    /// The manifests an index lists.
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, else (for an image manifest) the config's media type.
    pub artifact_type: Option<String>,
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Parsed {
    /// The blobs this manifest references (config first, then layers).
    pub fn blobs(&self) -> Vec<Descriptor> {
        self.config.iter().chain(self.layers.iter()).cloned().collect()
    }

    /// The size ECR reports for the image: its config and layers.
    pub fn image_size(&self) -> u64 {
        self.blobs().iter().map(|d| d.size).sum()
    }
}

/// Why a manifest was refused (`MANIFEST_INVALID`, or `UNSUPPORTED` for a media type).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "manifest media type '{0}' is not supported: use an OCI image manifest or index, or a Docker v2 schema 2 manifest or manifest list"
    )]
    MediaType(String),
    #[error("invalid manifest: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

fn descriptor(d: RawDescriptor, at: &str) -> Result<Descriptor, ManifestError> {
    let digest = Digest::parse(&d.digest)
        .map_err(|e| ManifestError::Invalid(format!("{at}.digest: {e}")))?;
    let size = u64::try_from(d.size)
        .map_err(|_| ManifestError::Invalid(format!("{at}.size: {} is negative", d.size)))?;
    Ok(Descriptor { media_type: d.media_type.unwrap_or_default(), digest, size })
}

/// Parses `bytes` as a manifest sent with `content_type` (see the module header).
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Parsed, ManifestError> {
    let raw: Raw = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("not a JSON manifest: {e}")))?;
    // Parameters such as `; charset=utf-8` do not change the type.
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    let media_type = match (header, raw.media_type.as_deref()) {
        (Some(h), Some(m)) if h != m => {
            return Err(ManifestError::Invalid(format!(
                "the Content-Type '{h}' differs from the manifest's mediaType '{m}'"
            )));
        }
        (Some(h), _) => h.to_string(),
        (None, Some(m)) => m.to_string(),
        // An OCI manifest need not carry a mediaType: tell it by its fields.
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if !SUPPORTED.contains(&media_type.as_str()) {
        return Err(ManifestError::MediaType(media_type));
    }
    if raw.schema_version != Some(2) {
        return Err(ManifestError::Invalid(format!(
            "schemaVersion must be 2, got {}",
            raw.schema_version.map_or("none".into(), |v| v.to_string())
        )));
    }
    let kind = if media_type == OCI_INDEX || media_type == DOCKER_LIST {
        Kind::Index
    } else {
        Kind::Image
    };
    let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
    match kind {
        Kind::Image => {
            let config = raw
                .config
                .ok_or_else(|| ManifestError::Invalid("an image manifest needs a config".into()))?;
            let config = descriptor(config, "config")?;
            let layers = raw
                .layers
                .ok_or_else(|| ManifestError::Invalid("an image manifest needs layers".into()))?
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(d, &format!("layers[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if raw.manifests.is_some() {
                return Err(ManifestError::Invalid("an image manifest has no manifests".into()));
            }
            let artifact_type = raw.artifact_type.or_else(|| Some(config.media_type.clone()));
            Ok(Parsed {
                media_type,
                kind,
                config: Some(config),
                layers,
                manifests: vec![],
                subject,
                artifact_type,
                annotations: raw.annotations,
            })
        }
        Kind::Index => {
            let manifests = raw
                .manifests
                .ok_or_else(|| ManifestError::Invalid("an index needs manifests".into()))?
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(d, &format!("manifests[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            if raw.config.is_some() || raw.layers.is_some() {
                return Err(ManifestError::Invalid("an index has no config or layers".into()));
            }
            Ok(Parsed {
                media_type,
                kind,
                config: None,
                layers: vec![],
                manifests,
                subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn image(media: Option<&str>) -> String {
        let mt = media.map(|m| format!(r#""mediaType":"{m}","#)).unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{mt}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":10}},"layers":[{{"mediaType":"l","digest":"{}","size":100}},{{"mediaType":"l","digest":"{}","size":1000}}]}}"#,
            d('a'),
            d('b'),
            d('c')
        )
    }

    #[test]
    fn image_manifests_list_their_blobs() {
        for (ct, body_mt) in [
            (Some(OCI_MANIFEST), Some(OCI_MANIFEST)),
            (Some(DOCKER_MANIFEST), None),
            (None, Some(DOCKER_MANIFEST)),
            (None, None),
            (Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"), None),
        ] {
            let p = parse(ct, image(body_mt).as_bytes()).unwrap();
            assert_eq!(p.kind, Kind::Image);
            assert_eq!(p.blobs().len(), 3);
            assert_eq!(p.blobs()[0].digest.as_str(), d('a'));
            assert_eq!(p.image_size(), 1110);
            assert_eq!(
                p.artifact_type.as_deref(),
                Some("application/vnd.oci.image.config.v1+json")
            );
        }
    }

    #[test]
    fn indexes_list_their_manifests_and_subjects_are_kept() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{{"mediaType":"{DOCKER_MANIFEST}","digest":"{}","size":5}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":7}}}}"#,
            d('d'),
            d('e')
        );
        let p = parse(Some(DOCKER_LIST), body.as_bytes()).unwrap();
        assert_eq!(p.kind, Kind::Index);
        assert_eq!(p.manifests[0].digest.as_str(), d('d'));
        assert!(p.blobs().is_empty());
        assert_eq!(p.subject.unwrap().digest.as_str(), d('e'));
    }

    #[test]
    fn bad_manifests_are_refused_with_the_reason() {
        let cases: Vec<(Option<&str>, String, &str)> = vec![
            (Some("text/plain"), image(None), "not supported"),
            (
                Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
                image(None),
                "not supported",
            ),
            (Some(OCI_INDEX), image(Some(OCI_MANIFEST)), "differs"),
            (None, "{".into(), "not a JSON"),
            (
                None,
                r#"{"schemaVersion":1,"config":{"digest":"x","size":1},"layers":[]}"#.into(),
                "schemaVersion",
            ),
            (None, r#"{"schemaVersion":2,"layers":[]}"#.into(), "needs a config"),
            (
                None,
                format!(
                    r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":-1}},"layers":[]}}"#,
                    d('a')
                ),
                "negative",
            ),
            (
                None,
                r#"{"schemaVersion":2,"config":{"digest":"sha256:12","size":1},"layers":[]}"#
                    .into(),
                "config.digest",
            ),
            (Some(OCI_INDEX), r#"{"schemaVersion":2}"#.into(), "needs manifests"),
        ];
        for (ct, body, want) in cases {
            let e = parse(ct, body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e} lacks {want}");
        }
    }
}
