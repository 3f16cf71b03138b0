//! Join tokens and the instance keys they are exchanged for (issue #10).
//!
//! * **A token** is `berth-join.<id>.<secret>`: `id` 16 hex digits (public: it names the
//!   token in `berth token list` and `revoke`), `secret` 32 random bytes in hex. The store
//!   keeps only SHA-256(secret) (`iam/join-tokens/<id>`), never the token itself; since the
//!   secret is 256 random bits a fast hash is enough, and it is compared in constant time.
//! * **Lifecycle.** Created by an administrator with an expiry (1 minute to 30 days); usable
//!   by any number of agents until it expires or is revoked; every use is counted. Revoking a
//!   token stops further joins; keys already issued with it stay valid.
//! * **Instance keys.** An agent that presents a valid token registers a new container
//!   instance and gets an access key bound to it ([`issue_instance_key`]): its record names
//!   the instance ([`AccessKeyRecord::container_instance_arn`]) and its secret is sealed under
//!   the master key like every other. What such a key may do is decided in
//!   [`super::authorize`] and [`super::authorize_instance`].

use std::sync::Arc;

use berth_model::keys;
use berth_model::records::AccessKeyRecord;
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use berth_wire::ecs::ErrorCode;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::secrets::MasterKey;
use crate::clock::{Clock, epoch_seconds};
use crate::records;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "berth-join.";
/// Shortest lifetime a token may be created with, in seconds.
pub const MIN_TTL_SECS: u64 = 60;
/// Longest lifetime a token may be created with, in seconds (30 days).
pub const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// A join token as stored: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinTokenRecord {
    pub id: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Epoch seconds.
    pub created_at: f64,
    pub expires_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who created it (a principal ARN).
    pub created_by: String,
    /// How many agents joined with it.
    #[serde(default)]
    pub uses: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<f64>,
}

impl JoinTokenRecord {
    /// `active`, `expired` or `revoked` at `now` (epoch seconds).
    pub fn status(&self, now: f64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if now >= self.expires_at {
            "expired"
        } else {
            "active"
        }
    }
}

/// A token as the admin API shows it (no secret, no hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: String,
    pub created_at: f64,
    pub expires_at: f64,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub uses: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<f64>,
}

/// Why a token was not accepted (logged; the caller only hears that it was refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Unknown,
    WrongSecret,
    Expired,
    Revoked,
}

fn hash(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill(&mut b[..]);
    hex::encode(b)
}

/// Splits `berth-join.<id>.<secret>`.
fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.trim().strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('.')?;
    let hexy = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexy(id, 16) && hexy(secret, 64)).then_some((id, secret))
}

/// The join tokens in the store.
pub struct JoinTokens {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl JoinTokens {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn now(&self) -> f64 {
        epoch_seconds(self.clock.now())
    }

    /// Creates a token valid for `ttl_secs`; returns its record and the token itself (shown
    /// once, never stored).
    pub async fn create(
        &self,
        ttl_secs: u64,
        description: Option<String>,
        created_by: &str,
    ) -> Result<(JoinTokenRecord, String), AwsError> {
        if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl_secs) {
            return Err(crate::error::invalid(format!(
                "expiresInSeconds must be between {MIN_TTL_SECS} and {MAX_TTL_SECS}, got {ttl_secs}."
            )));
        }
        if description.as_ref().is_some_and(|d| d.len() > 256) {
            return Err(crate::error::invalid("description must be at most 256 characters."));
        }
        let now = self.now();
        loop {
            let id = random_hex(8);
            let secret = random_hex(32);
            let rec = JoinTokenRecord {
                id: id.clone(),
                secret_sha256: hash(&secret),
                created_at: now,
                expires_at: now + ttl_secs as f64,
                revoked_at: None,
                description: description.clone(),
                created_by: created_by.to_string(),
                uses: 0,
                last_used_at: None,
            };
            let key = keys::join_token(&id);
            let txn = Txn::new().when(&key, 0).put(&key, records::encode(&rec));
            if records::commit(&*self.store, txn).await? {
                return Ok((rec, format!("{TOKEN_PREFIX}{id}.{secret}")));
            }
        }
    }

    /// Every token, oldest first.
    pub async fn list(&self) -> Result<Vec<JoinTokenRecord>, AwsError> {
        let recs = self
            .store
            .range(Range::prefix(keys::JOIN_TOKENS))
            .await
            .map_err(crate::error::store)?;
        let mut out: Vec<JoinTokenRecord> =
            records::decode_all(recs)?.into_iter().map(|(r, _)| r).collect();
        out.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revokes token `id` (the id, or the whole token); revoking twice is harmless.
    pub async fn revoke(&self, id: &str) -> Result<JoinTokenRecord, AwsError> {
        let id = parse(id).map_or(id.trim(), |(id, _)| id);
        let now = self.now();
        records::update::<JoinTokenRecord, _>(
            &*self.store,
            &keys::join_token(id),
            &format!("join token {id}"),
            |r| {
                r.revoked_at.get_or_insert(now);
                Ok(())
            },
        )
        .await?
        .ok_or_else(|| crate::error::client(format!("There is no join token {id}.")))
    }

    /// Checks `token` and counts a use; the token's record, or why it was refused.
    pub async fn redeem(&self, token: &str) -> Result<Result<JoinTokenRecord, Refusal>, AwsError> {
        let Some((id, secret)) = parse(token) else { return Ok(Err(Refusal::Malformed)) };
        let key = keys::join_token(id);
        let now = self.now();
        let mut cas = records::Cas::new(&*self.store, format!("join token {id}"));
        loop {
            cas.attempt().await?;
            let Some((mut rec, rev)) = records::get::<JoinTokenRecord>(&*self.store, &key).await?
            else {
                return Ok(Err(Refusal::Unknown));
            };
            if !bool::from(hash(secret).as_bytes().ct_eq(rec.secret_sha256.as_bytes())) {
                return Ok(Err(Refusal::WrongSecret));
            }
            match rec.status(now) {
                "revoked" => return Ok(Err(Refusal::Revoked)),
                "expired" => return Ok(Err(Refusal::Expired)),
                _ => {}
            }
            rec.uses += 1;
            rec.last_used_at = Some(now);
            if cas.commit(Txn::new().when(&key, rev).put(&key, records::encode(&rec))).await? {
                return Ok(Ok(rec));
            }
        }
    }

    /// The view of `rec` the admin API returns.
    pub fn view(&self, rec: &JoinTokenRecord) -> TokenView {
        TokenView {
            id: rec.id.clone(),
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            status: rec.status(self.now()).to_string(),
            description: rec.description.clone(),
            uses: rec.uses,
            last_used_at: rec.last_used_at,
        }
    }
}

/// A new access key bound to container instance `instance_arn`: (access key id, secret).
/// Stored sealed under `master_key`; its principal is the instance itself.
pub async fn issue_instance_key(
    store: &dyn Store,
    clock: &dyn Clock,
    master_key: &MasterKey,
    instance_arn: &str,
) -> Result<(String, String), AwsError> {
    let (akid, secret, _) =
        new_key_for(store, clock, master_key, "AKIA", instance_arn, Some(instance_arn)).await?;
    Ok((akid, secret))
}

/// Creates a new active access key (`PREFIX` + 16 characters, `AKIA` or `ASIA`) for
/// `principal_arn`, its secret sealed in the store; returns the id, the secret (the only time
/// it is seen in plain text) and the record.
pub async fn new_key(
    store: &dyn Store,
    clock: &dyn Clock,
    master_key: &MasterKey,
    prefix: &str,
    principal_arn: &str,
) -> Result<(String, String, AccessKeyRecord), AwsError> {
    new_key_for(store, clock, master_key, prefix, principal_arn, None).await
}

async fn new_key_for(
    store: &dyn Store,
    clock: &dyn Clock,
    master_key: &MasterKey,
    prefix: &str,
    principal_arn: &str,
    instance_arn: Option<&str>,
) -> Result<(String, String, AccessKeyRecord), AwsError> {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let pick = |alphabet: &[u8], n: usize| -> String {
        let mut rng = rand::rng();
        (0..n).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
    };
    loop {
        let akid = format!("{prefix}{}", pick(UPPER, 16));
        let secret = pick(SECRET, 40);
        let rec = AccessKeyRecord {
            access_key_id: akid.clone(),
            secret_access_key: master_key.seal(&akid, &secret),
            principal_arn: principal_arn.to_string(),
            status: "Active".into(),
            created_at: epoch_seconds(clock.now()),
            container_instance_arn: instance_arn.map(str::to_string),
        };
        let key = keys::access_key(&akid);
        if records::commit(store, Txn::new().when(&key, 0).put(&key, records::encode(&rec))).await?
        {
            return Ok((akid, secret, rec));
        }
    }
}

/// The refusal every bad token gets: it does not say which check failed.
pub fn refused() -> AwsError {
    ErrorCode::AccessDeniedException.with(
        "The join token is not valid: it is malformed, unknown, expired or revoked. Create one with `berth token create` on the server's machine.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn setup() -> (JoinTokens, Arc<ManualClock>, Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(berth_store::SqliteStore::open(&dir.path().join("berth.db")).unwrap());
        let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-12-01 12:00 UTC)));
        (JoinTokens::new(store.clone(), clock.clone()), clock, store, dir)
    }

    #[tokio::test]
    async fn a_token_is_stored_hashed_and_redeems_until_it_expires() {
        let (tokens, clock, store, _dir) = setup();
        let (rec, token) = tokens.create(3600, Some("rack 4".into()), "admin").await.unwrap();
        let (id, secret) = parse(&token).unwrap();
        assert_eq!(id, rec.id);
        // Only the hash is kept.
        let raw = store.get(&keys::join_token(id)).await.unwrap().unwrap().value;
        let raw = String::from_utf8(raw.to_vec()).unwrap();
        assert!(!raw.contains(secret), "{raw}");
        assert!(raw.contains(&hash(secret)));

        assert_eq!(tokens.redeem(&token).await.unwrap().unwrap().uses, 1);
        assert_eq!(tokens.redeem(&token).await.unwrap().unwrap().uses, 2, "reusable");
        let wrong = format!("{TOKEN_PREFIX}{id}.{}", "0".repeat(64));
        assert_eq!(tokens.redeem(&wrong).await.unwrap(), Err(Refusal::WrongSecret));
        let unknown = format!("{TOKEN_PREFIX}{}.{secret}", "f".repeat(16));
        assert_eq!(tokens.redeem(&unknown).await.unwrap(), Err(Refusal::Unknown));
        assert_eq!(tokens.redeem("berth-join.nope").await.unwrap(), Err(Refusal::Malformed));

        clock.advance(std::time::Duration::from_secs(3600));
        assert_eq!(tokens.redeem(&token).await.unwrap(), Err(Refusal::Expired));
        let listed = tokens.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(tokens.view(&listed[0]).status, "expired");
        assert_eq!(listed[0].uses, 2);
    }

    #[tokio::test]
    async fn a_revoked_token_no_longer_redeems() {
        let (tokens, _clock, _store, _dir) = setup();
        let (rec, token) = tokens.create(600, None, "admin").await.unwrap();
        let (_, other) = tokens.create(600, None, "admin").await.unwrap();
        let revoked = tokens.revoke(&rec.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(tokens.revoke(&token).await.unwrap(), revoked, "by token too; idempotent");
        assert_eq!(tokens.redeem(&token).await.unwrap(), Err(Refusal::Revoked));
        assert!(tokens.redeem(&other).await.unwrap().is_ok(), "other tokens unaffected");
        assert!(tokens.revoke("0123456789abcdef").await.is_err());
        assert_eq!(tokens.view(&revoked).status, "revoked");
    }

    #[tokio::test]
    async fn lifetimes_are_bounded() {
        let (tokens, _clock, _store, _dir) = setup();
        assert!(tokens.create(59, None, "a").await.is_err());
        assert!(tokens.create(MAX_TTL_SECS + 1, None, "a").await.is_err());
        assert!(tokens.create(MIN_TTL_SECS, None, "a").await.is_ok());
    }

    #[tokio::test]
    async fn an_instance_key_is_sealed_and_bound() {
        let (_tokens, clock, store, _dir) = setup();
        let mk = MasterKey::from_bytes(&[3; 32]);
        let arn = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/abc";
        let (akid, secret) = issue_instance_key(&*store, &*clock, &mk, arn).await.unwrap();
        let (rec, _) = records::get::<AccessKeyRecord>(&*store, &keys::access_key(&akid))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.container_instance_arn.as_deref(), Some(arn));
        assert!(super::super::secrets::is_sealed(&rec.secret_access_key));
        assert_eq!(mk.open(&akid, &rec.secret_access_key).unwrap(), secret);
    }
}
