//! The instance identity document, as EC2's instance metadata serves it
//! (`/latest/dynamic/instance-identity/document`), and the signature Berth gives it.
//!
//! Contract:
//! * [`IdentityDocument`] serialises with EC2's field names and `null`s, pretty-printed as
//!   EC2 serves it ([`IdentityDocument::to_json`]); the bytes signed are exactly the bytes
//!   handed to the agent, and verification is over the bytes received (no re-serialising).
//! * The signature is HMAC-SHA256 with a server-held key over those bytes, base64-encoded
//!   (EC2 signs with an RSA/PKCS7 key only AWS holds; Berth's verifier is its own server, so
//!   a shared-secret MAC is enough). [`verify`] compares in constant time and accepts nothing
//!   but a signature made with the same key over the same bytes.
//! * The server keeps one key per data directory ([`IdentityKey`], derived from its master key
//!   under [`KEY_LABEL`], so nothing beside the master key needs backing up) and checks
//!   `instanceIdentityDocumentSignature` at RegisterContainerInstance: a document that
//!   verifies names an instance the server launched, so its `instanceId` and zone may be
//!   trusted.
//! * The server hands an instance's agent its document and signature as two files in the
//!   agent's data directory ([`DOCUMENT_FILE`], [`SIGNATURE_FILE`], mode 0600, written by
//!   [`write_files`] atomically), as IMDS would serve them; the agent sends them verbatim.
//! * An agent holding a signed document joins with [`JOIN_TOKEN`] in place of a join token:
//!   the signed document is its credential, and the join returns the instance's own key.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::record::InstanceRecord;

/// EC2's document version string.
pub const DOCUMENT_VERSION: &str = "2017-09-30";

/// The label the server derives the [`IdentityKey`] under from its master key.
pub const KEY_LABEL: &str = "berth instance identity document v1";

/// The document's file in an instance agent's data directory.
pub const DOCUMENT_FILE: &str = "identity-document.json";
/// Its signature's file (base64, as IMDS serves `/latest/dynamic/instance-identity/signature`).
pub const SIGNATURE_FILE: &str = "identity-document.sig";

/// The join token an agent presents when its signed identity document is its credential
/// (not a secret: the server then requires a document that verifies).
pub const JOIN_TOKEN: &str = "berth-instance-identity";

/// The server's identity signing key (32 bytes; `Debug` never shows it).
#[derive(Clone, PartialEq, Eq)]
pub struct IdentityKey([u8; 32]);

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

impl IdentityKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// [`sign`] with this key.
    pub fn sign(&self, document: &[u8]) -> String {
        sign(&self.0, document)
    }

    /// The document, when `signature` is this key's over exactly `document`'s bytes and the
    /// bytes are an identity document; `None` otherwise (forged, altered or not a document).
    pub fn verified(&self, document: &str, signature: &str) -> Option<IdentityDocument> {
        if !verify(&self.0, document.as_bytes(), signature) {
            return None;
        }
        serde_json::from_str(document).ok()
    }
}

/// Writes `document` and `signature` into `dir` ([`DOCUMENT_FILE`], [`SIGNATURE_FILE`]),
/// each mode 0600 through a temporary file and a rename, so a reader sees whole files.
pub fn write_files(dir: &std::path::Path, document: &str, signature: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for (name, body) in [(DOCUMENT_FILE, document), (SIGNATURE_FILE, signature)] {
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// The identity document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityDocument {
    pub account_id: String,
    pub architecture: String,
    pub availability_zone: String,
    pub billing_products: Option<Vec<String>>,
    pub devpay_product_codes: Option<Vec<String>>,
    pub marketplace_product_codes: Option<Vec<String>>,
    pub image_id: String,
    pub instance_id: String,
    pub instance_type: String,
    pub kernel_id: Option<String>,
    /// RFC 3339, whole seconds, `Z`.
    pub pending_time: String,
    pub private_ip: String,
    pub ramdisk_id: Option<String>,
    pub region: String,
    pub version: String,
}

impl IdentityDocument {
    /// The document of `rec` in `region` of `account_id`.
    pub fn of(rec: &InstanceRecord, region: &str, account_id: &str) -> Self {
        let arch = crate::types::lookup(&rec.instance_type)
            .map(|t| t.architecture.as_str())
            .unwrap_or("x86_64");
        Self {
            account_id: account_id.into(),
            architecture: arch.into(),
            availability_zone: rec.availability_zone.clone(),
            billing_products: None,
            devpay_product_codes: None,
            marketplace_product_codes: None,
            image_id: rec.image_id.clone(),
            instance_id: rec.id.clone(),
            instance_type: rec.instance_type.clone(),
            kernel_id: None,
            pending_time: rfc3339(rec.launch_time),
            private_ip: rec.private_ip.to_string(),
            ramdisk_id: None,
            region: region.into(),
            version: DOCUMENT_VERSION.into(),
        }
    }

    /// The JSON EC2 serves (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises")
    }
}

fn rfc3339(epoch: f64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(epoch as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"))
        .expect("a fixed format")
}

fn mac(key: &[u8], document: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(document);
    m
}

/// The signature of `document` (its exact bytes) under `key`: base64 HMAC-SHA256.
pub fn sign(key: &[u8], document: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(mac(key, document).finalize().into_bytes())
}

/// Whether `signature` is [`sign`]`(key, document)` (constant time).
pub fn verify(key: &[u8], document: &[u8], signature: &str) -> bool {
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    mac(key, document).verify_slice(&raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> InstanceRecord {
        serde_json::from_value(serde_json::json!({
            "id": "i-0123456789abcdef0", "imageId": "ami-0berth", "instanceType": "t4g.small",
            "subnetId": "subnet-1", "vpcId": "vpc-1", "availabilityZone": "us-east-1b",
            "privateIp": "172.31.16.4", "state": "pending", "launchTime": 1764590400.0,
            "stateChangedAt": 1764590400.0, "keyName": null, "ecsCluster": "default"
        }))
        .unwrap()
    }

    #[test]
    fn document_has_ec2_fields() {
        let doc = IdentityDocument::of(&rec(), "us-east-1", "123456789012");
        let v: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
        assert_eq!(v["instanceId"], "i-0123456789abcdef0");
        assert_eq!(v["instanceType"], "t4g.small");
        assert_eq!(v["architecture"], "arm64");
        assert_eq!(v["availabilityZone"], "us-east-1b");
        assert_eq!(v["privateIp"], "172.31.16.4");
        assert_eq!(v["accountId"], "123456789012");
        assert_eq!(v["pendingTime"], "2025-12-01T12:00:00Z");
        assert_eq!(v["version"], "2017-09-30");
        assert!(v["kernelId"].is_null() && v["billingProducts"].is_null());
        assert_eq!(v.as_object().unwrap().len(), 15);
    }

    #[test]
    fn the_key_verifies_its_own_documents_only() {
        let doc = IdentityDocument::of(&rec(), "us-east-1", "123456789012").to_json();
        let key = IdentityKey::new([5; 32]);
        let sig = key.sign(doc.as_bytes());
        assert_eq!(key.verified(&doc, &sig).unwrap().instance_id, "i-0123456789abcdef0");
        assert!(IdentityKey::new([6; 32]).verified(&doc, &sig).is_none());
        let forged = doc.replace("us-east-1b", "us-east-1a");
        assert!(key.verified(&forged, &sig).is_none());
        // Signed, but not a document.
        assert!(key.verified("{}", &key.sign(b"{}")).is_none());
        assert!(!format!("{key:?}").contains('5'));
        let dir = tempfile::tempdir().unwrap();
        write_files(dir.path(), &doc, &sig).unwrap();
        let read = std::fs::read_to_string(dir.path().join(DOCUMENT_FILE)).unwrap();
        let read_sig = std::fs::read_to_string(dir.path().join(SIGNATURE_FILE)).unwrap();
        assert!(key.verified(&read, &read_sig).is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(SIGNATURE_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn signatures_verify_only_with_the_key_and_the_bytes() {
        let doc = IdentityDocument::of(&rec(), "us-east-1", "123456789012").to_json();
        let key = b"0123456789abcdef0123456789abcdef";
        let sig = sign(key, doc.as_bytes());
        assert!(verify(key, doc.as_bytes(), &sig));
        assert!(!verify(b"another key", doc.as_bytes(), &sig));
        let forged = doc.replace("i-0123456789abcdef0", "i-0123456789abcdef1");
        assert!(!verify(key, forged.as_bytes(), &sig));
        assert!(!verify(key, doc.as_bytes(), "not base64!"));
        assert!(!verify(key, doc.as_bytes(), ""));
        let mut raw = base64::engine::general_purpose::STANDARD.decode(&sig).unwrap();
        raw[0] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(!verify(key, doc.as_bytes(), &flipped));
    }
}
