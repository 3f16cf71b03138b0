//! AWS Secrets Manager (issue #16): secrets, their versions and staging labels, resource
//! policies and tags (JSON 1.1, `secretsmanager.` target prefix, wire types generated from
//! botocore's `secretsmanager` model), over records in each region's view of the store; and
//! the resolution of task definitions' `secrets` for the agents ([`inject`]).
//!
//! Where to find an operation: `secrets.rs` (CreateSecret, GetSecretValue, BatchGetSecretValue,
//! PutSecretValue, UpdateSecret, DescribeSecret, ListSecrets, DeleteSecret, RestoreSecret),
//! `versions.rs` (ListSecretVersionIds, UpdateSecretVersionStage), `policies.rs` (resource
//! policies and tags). Other operations of the model (rotation, replication,
//! GetRandomPassword) answer the protocol's not-implemented error naming them.
//!
//! Contract and invariants:
//! * one record per secret, `secretsmanager/secrets/<name>` in the region's view, holding its
//!   metadata and every version ([`SecretRecord`]); every change is one compare-and-set on it;
//! * ARNs are `arn:PARTITION:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`, the suffix six
//!   random letters and digits as AWS makes them; a secret is found by name, full ARN or
//!   partial ARN (without the suffix);
//! * **values are never stored in plain text**: each version's value is sealed with
//!   AES-256-GCM under a key derived from the master key ([`Vault`], label
//!   [`SECRETS_KEY_LABEL`]), with the secret's ARN and the version id as associated data, so a
//!   sealed value copied to another record or version does not open. DescribeSecret and
//!   ListSecrets never carry a value; nothing here logs one;
//! * staging labels move as AWS moves them: a version given `AWSCURRENT` takes it from the
//!   version that had it, which gets `AWSPREVIOUS` (taken from whichever had that); a label
//!   belongs to at most one version; a version without labels is deprecated (listed only with
//!   `IncludeDeprecated`) and the oldest deprecated ones are dropped beyond [`MAX_VERSIONS`];
//! * `ClientRequestToken` is the new version's id: the same token with the same value answers
//!   the existing version, with another value `ResourceExistsException`;
//! * DeleteSecret schedules deletion after `RecoveryWindowInDays` (7-30, default 30) or
//!   deletes at once with `ForceDeleteWithoutRecovery`; a secret scheduled for deletion
//!   answers `InvalidRequestException` to everything but Describe/List/Restore/Delete (as
//!   AWS), and is removed by the sweep ([`Vault::sweeper`]) once its date has passed (a read
//!   after the date and before the sweep finds nothing);
//! * errors are Secrets Manager's codes (`ResourceNotFoundException`,
//!   `ResourceExistsException`, `InvalidParameterException` naming the member,
//!   `InvalidRequestException`, `MalformedPolicyDocumentException`, `PublicPolicyException`,
//!   `LimitExceededException`); nothing a client sends panics or answers 500.

pub(crate) mod inject;
mod policies;
mod secrets;
mod versions;

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use berth_model::regions::Region;
use berth_store::{Range, Store, Txn};
use berth_wire::AwsError;
use berth_wire::secretsmanager as wire;
use serde::{Deserialize, Serialize};
use wire::ErrorCode;

use crate::App;
use crate::auth::MasterKey;
use crate::ecs::RequestContext;
use crate::records;

/// The label of the key, derived from the master key, that seals secret values.
pub const SECRETS_KEY_LABEL: &str = "berth/secretsmanager/values/v1";
/// The label of the key that seals SSM SecureString values ([`crate::ssm`]).
pub const PARAMETERS_KEY_LABEL: &str = "berth/ssm/securestring/v1";
/// Versions kept per secret: beyond it the oldest deprecated (unlabelled) ones are dropped.
pub const MAX_VERSIONS: usize = 100;
/// Largest secret value, in bytes (AWS: 64 KiB).
pub const MAX_VALUE_BYTES: usize = 65_536;
/// How often the deletion sweep runs.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

const KEY_PREFIX: &str = "secretsmanager/secrets/";
const NONCE_LEN: usize = 12;

/// The record key of secret `name`.
fn key(name: &str) -> String {
    format!("{KEY_PREFIX}{name}")
}

/// AES-256-GCM under a key derived from the master key, for values at rest.
pub(crate) struct Cipher(Aes256Gcm);

impl Cipher {
    fn new(master: &MasterKey, label: &str) -> Self {
        Self(Aes256Gcm::new_from_slice(&master.derive(label)).expect("a 256-bit key"))
    }

    /// base64(nonce ‖ ciphertext ‖ tag) of `plain`, bound to `aad`.
    pub fn seal(&self, aad: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("OS randomness");
        let ct = self
            .0
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad: aad.as_bytes() })
            .expect("AES-GCM sealing of a bounded value cannot fail");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// The plain bytes of [`Cipher::seal`]'s output for `aad`, or `None` (tampered, moved to
    /// another record, or sealed under another master key).
    pub fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed).ok()?;
        if raw.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        self.0.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() }).ok()
    }
}

/// The keys that seal secret values and SecureString parameters, and the root store the
/// deletion sweep walks. One per server.
pub(crate) struct Vault {
    pub secrets: Cipher,
    pub parameters: Cipher,
    store: Arc<dyn Store>,
}

impl Vault {
    pub fn new(master: &MasterKey, store: Arc<dyn Store>) -> Self {
        Self {
            secrets: Cipher::new(master, SECRETS_KEY_LABEL),
            parameters: Cipher::new(master, PARAMETERS_KEY_LABEL),
            store,
        }
    }

    /// Removes, in every region, the secrets whose recovery window has passed; until `stop`.
    pub async fn sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.sweep(now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "secrets past their recovery window deleted"),
                Err(e) => tracing::warn!(error = %e.message, "secret deletion sweep failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass of the sweep at `now`: how many secrets it deleted.
    async fn sweep(&self, now: f64) -> Result<usize, AwsError> {
        let store = &*self.store;
        let mut prefixes = vec![KEY_PREFIX.to_string()];
        for region in berth_store::view::child_segments(store, berth_model::keys::REGIONS)
            .await
            .map_err(crate::error::store)?
        {
            prefixes.push(format!("{}{KEY_PREFIX}", berth_model::keys::region_prefix(&region)));
        }
        let mut deleted = 0;
        for prefix in prefixes {
            let recs = store.range(Range::prefix(&prefix)).await.map_err(crate::error::store)?;
            for r in recs {
                let Ok(rec) = serde_json::from_slice::<SecretRecord>(&r.value) else { continue };
                if rec.purge_at.is_some_and(|t| t <= now) {
                    // Guarded by the revision read: a restore meanwhile wins.
                    let txn = Txn::new().when(&r.key, r.mod_revision).delete(&r.key);
                    if records::commit(store, txn).await? {
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }
}

/// One secret, with every version it keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub name: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
    #[serde(default)]
    pub secret_type: Option<String>,
    pub created: f64,
    pub last_changed: f64,
    #[serde(default)]
    pub last_accessed: Option<f64>,
    /// When DeleteSecret marked it; `None` while live.
    #[serde(default)]
    pub deleted_at: Option<f64>,
    /// When the sweep removes it (the end of the recovery window).
    #[serde(default)]
    pub purge_at: Option<f64>,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policy: Option<String>,
    /// Oldest first.
    #[serde(default)]
    pub versions: Vec<VersionRecord>,
}

/// One version of a secret; its value sealed ([`Cipher`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct VersionRecord {
    pub id: String,
    pub stages: Vec<String>,
    pub created: f64,
    #[serde(default)]
    pub last_accessed: Option<f64>,
    /// `s` (SecretString) or `b` (SecretBinary, base64 as the wire carries it).
    pub kind: char,
    pub sealed: String,
}

/// A version's plain value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SecretValue {
    String(String),
    /// base64, as the JSON protocol carries blobs.
    Binary(String),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl SecretRecord {
    fn version(&self, id: &str) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.id == id)
    }

    fn staged(&self, stage: &str) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.stages.iter().any(|s| s == stage))
    }

    /// `version_id` and `stage` as GetSecretValue takes them (default `AWSCURRENT`).
    fn select(
        &self,
        version_id: Option<&str>,
        stage: Option<&str>,
    ) -> Result<&VersionRecord, AwsError> {
        match (version_id, stage) {
            (Some(id), stage) => {
                let v = self.version(id).ok_or_else(|| {
                    not_found(format!(
                        "Secrets Manager can't find the specified secret value for VersionId: {id}"
                    ))
                })?;
                if let Some(s) = stage
                    && !v.stages.iter().any(|x| x == s)
                {
                    return Err(invalid_request(format!(
                        "You provided a VersionStage ({s}) that is not associated to the provided VersionId."
                    )));
                }
                Ok(v)
            }
            (None, stage) => {
                let stage = stage.unwrap_or(AWSCURRENT);
                self.staged(stage).ok_or_else(|| {
                    not_found(format!(
                        "Secrets Manager can't find the specified secret value for staging label: {stage}"
                    ))
                })
            }
        }
    }

    fn aad(&self, version: &str) -> String {
        format!("{}\n{version}", self.arn)
    }

    /// Opens version `v`'s value.
    pub fn open(&self, cipher: &Cipher, v: &VersionRecord) -> Result<SecretValue, AwsError> {
        let plain = cipher.open(&self.aad(&v.id), &v.sealed).ok_or_else(|| {
            ErrorCode::DecryptionFailure.with(
                "Secrets Manager can't decrypt the protected secret text using the provided KMS key (the server's master key does not open it).",
            )
        })?;
        let s = String::from_utf8(plain).map_err(|_| {
            ErrorCode::DecryptionFailure.with("The stored secret value is not valid text.")
        })?;
        Ok(if v.kind == 'b' { SecretValue::Binary(s) } else { SecretValue::String(s) })
    }

    /// Adds a version holding `value` with `stages` (AWS's label moves), or, when `id` is a
    /// version already there, checks it holds the same value (idempotent retry). True when a
    /// version was added.
    fn add_version(
        &mut self,
        cipher: &Cipher,
        id: &str,
        value: &SecretValue,
        stages: &[String],
        now: f64,
    ) -> Result<bool, AwsError> {
        if let Some(v) = self.version(id) {
            if self.open(cipher, v)? == *value {
                return Ok(false);
            }
            return Err(ErrorCode::ResourceExistsException
                .with("You can't modify an existing version, you can only create new versions."));
        }
        let (kind, plain) = match value {
            SecretValue::String(s) => ('s', s),
            SecretValue::Binary(b) => ('b', b),
        };
        let sealed = cipher.seal(&self.aad(id), plain.as_bytes());
        self.versions.push(VersionRecord {
            id: id.to_string(),
            stages: Vec::new(),
            created: now,
            last_accessed: None,
            kind,
            sealed,
        });
        for s in stages {
            self.move_stage(s, id);
        }
        self.prune();
        self.last_changed = now;
        Ok(true)
    }

    /// Puts `stage` on version `to`, taking it from whichever version had it; moving
    /// `AWSCURRENT` leaves `AWSPREVIOUS` on the version that had it.
    fn move_stage(&mut self, stage: &str, to: &str) {
        let from = self.staged(stage).map(|v| v.id.clone());
        if from.as_deref() == Some(to) {
            return;
        }
        for v in &mut self.versions {
            v.stages.retain(|s| s != stage);
        }
        if stage == AWSCURRENT
            && let Some(from) = from
        {
            for v in &mut self.versions {
                v.stages.retain(|s| s != AWSPREVIOUS);
            }
            if let Some(v) = self.versions.iter_mut().find(|v| v.id == from) {
                v.stages.push(AWSPREVIOUS.into());
            }
        }
        if let Some(v) = self.versions.iter_mut().find(|v| v.id == to) {
            v.stages.push(stage.to_string());
        }
    }

    /// Drops the oldest deprecated versions beyond [`MAX_VERSIONS`].
    fn prune(&mut self) {
        while self.versions.len() > MAX_VERSIONS {
            let Some(i) = self.versions.iter().position(|v| v.stages.is_empty()) else { return };
            self.versions.remove(i);
        }
    }

    /// Version ids to their labels, for the versions that have labels.
    fn stages_map(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.versions
            .iter()
            .filter(|v| !v.stages.is_empty())
            .map(|v| (v.id.clone(), v.stages.clone()))
            .collect()
    }

    fn wire_tags(&self) -> Vec<wire::Tag> {
        self.tags
            .iter()
            .map(|(k, v)| wire::Tag { key: Some(k.clone()), value: Some(v.clone()) })
            .collect()
    }
}

pub(crate) const AWSCURRENT: &str = "AWSCURRENT";
pub(crate) const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// One region's Secrets Manager, for one request.
pub(crate) struct SecretsManager {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    region: Region,
    account_id: String,
}

impl SecretsManager {
    pub fn new(store: Arc<dyn Store>, vault: Arc<Vault>, region: Region, account_id: &str) -> Self {
        Self { store, vault, region, account_id: account_id.to_string() }
    }

    fn store(&self) -> &dyn Store {
        &*self.store
    }

    fn cipher(&self) -> &Cipher {
        &self.vault.secrets
    }

    /// A new secret's ARN.
    fn new_arn(&self, name: &str) -> String {
        format!(
            "arn:{}:secretsmanager:{}:{}:secret:{name}-{}",
            self.region.partition,
            self.region.name,
            self.account_id,
            random_suffix()
        )
    }

    /// The secret `id` names (name, ARN or partial ARN), with its revision; a secret whose
    /// recovery window has passed is gone.
    async fn find(&self, id: &str) -> Result<(SecretRecord, berth_store::Revision), AwsError> {
        let missing = || not_found("Secrets Manager can't find the specified secret.");
        if id.is_empty() {
            return Err(invalid_param("SecretId: must name a secret (its name or ARN)."));
        }
        let candidates: Vec<(String, bool)> = match id.strip_prefix("arn:") {
            Some(_) => {
                let parts: Vec<&str> = id.splitn(7, ':').collect();
                let [_, partition, service, region, account, kind, rest] = parts[..] else {
                    return Err(missing());
                };
                if service != "secretsmanager"
                    || kind != "secret"
                    || partition != self.region.partition
                    || region != self.region.name
                    || account != self.account_id
                {
                    return Err(missing());
                }
                let mut c = Vec::new();
                if let Some((name, suffix)) = rest.rsplit_once('-')
                    && suffix.len() == 6
                {
                    c.push((name.to_string(), true));
                }
                c.push((rest.to_string(), false));
                c
            }
            None => vec![(id.to_string(), false)],
        };
        for (name, full) in candidates {
            let Some((rec, rev)) = records::get::<SecretRecord>(self.store(), &key(&name)).await?
            else {
                continue;
            };
            if id.starts_with("arn:") && full && rec.arn != id {
                continue;
            }
            if rec.purge_at.is_some_and(|t| t <= now()) {
                return Err(missing());
            }
            return Ok((rec, rev));
        }
        Err(missing())
    }

    /// [`Self::find`], refusing a secret scheduled for deletion.
    async fn find_live(&self, id: &str) -> Result<(SecretRecord, berth_store::Revision), AwsError> {
        let (rec, rev) = self.find(id).await?;
        if rec.deleted_at.is_some() {
            return Err(marked_for_deletion());
        }
        Ok((rec, rev))
    }

    /// Read-modify-write of the secret `id` names: `f` edits it (or refuses) and answers.
    async fn update<T>(
        &self,
        id: &str,
        live_only: bool,
        mut f: impl FnMut(&mut SecretRecord) -> Result<T, AwsError>,
    ) -> Result<(SecretRecord, T), AwsError> {
        let mut cas = records::Cas::new(self.store(), format!("secret {id}"));
        loop {
            cas.attempt().await?;
            let (before, rev) =
                if live_only { self.find_live(id).await? } else { self.find(id).await? };
            let mut after = before.clone();
            let out = f(&mut after)?;
            if after == before {
                return Ok((after, out));
            }
            let k = key(&after.name);
            if cas.commit(Txn::new().when(&k, rev).put(&k, records::encode(&after))).await? {
                return Ok((after, out));
            }
        }
    }
}

impl wire::Api for SecretsManager {
    type Context = RequestContext;
    type Secrets = SecretsManager;
    type Versions = SecretsManager;
    type Policies = SecretsManager;
    type Tags = SecretsManager;
    fn secrets(&self) -> &Self {
        self
    }
    fn versions(&self) -> &Self {
        self
    }
    fn policies(&self) -> &Self {
        self
    }
    fn tags(&self) -> &Self {
        self
    }
}

/// Six random letters and digits, as AWS suffixes secret ARNs.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..6).map(|_| ALPHABET[rand::random::<u32>() as usize % ALPHABET.len()] as char).collect()
}

/// A new version id (a UUID, as the SDKs make `ClientRequestToken`s).
fn new_version_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Now, in epoch seconds.
pub(crate) fn now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

pub(crate) fn not_found(m: impl Into<String>) -> AwsError {
    ErrorCode::ResourceNotFoundException.with(m)
}
fn invalid_param(m: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterException.with(m)
}
fn invalid_request(m: impl Into<String>) -> AwsError {
    ErrorCode::InvalidRequestException.with(m)
}
fn marked_for_deletion() -> AwsError {
    invalid_request(
        "You can't perform this operation on the secret because it was marked for deletion.",
    )
}

/// Checks a secret name as Secrets Manager does.
fn check_name(name: &str) -> Result<(), AwsError> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid_param(format!(
            "Name: '{}' is not a valid secret name: use 1 to 512 ASCII letters, digits or /_+=.@- characters.",
            name.chars().take(64).collect::<String>()
        )))
    }
}

/// The value a request carries (exactly one of string and binary), checked.
fn value_of(
    string: Option<String>,
    binary: Option<String>,
    required: bool,
) -> Result<Option<SecretValue>, AwsError> {
    let v = match (string, binary) {
        (Some(_), Some(_)) => {
            return Err(invalid_param(
                "You can't specify both a binary secret value and a string secret value in the same secret.",
            ));
        }
        (Some(s), None) => SecretValue::String(s),
        (None, Some(b)) => {
            if B64.decode(&b).is_err() {
                return Err(invalid_param("SecretBinary: is not valid base64."));
            }
            SecretValue::Binary(b)
        }
        (None, None) if required => {
            return Err(invalid_param("You must provide either SecretString or SecretBinary."));
        }
        (None, None) => return Ok(None),
    };
    let len = match &v {
        SecretValue::String(s) => s.len(),
        SecretValue::Binary(b) => b.len() / 4 * 3,
    };
    if len > MAX_VALUE_BYTES {
        return Err(invalid_param(format!(
            "SecretString/SecretBinary: the value is {len} bytes; the limit is {MAX_VALUE_BYTES}."
        )));
    }
    Ok(Some(v))
}

/// A `ClientRequestToken`, checked (32 to 64 characters, as AWS), or a new version id.
fn version_token(token: Option<String>) -> Result<String, AwsError> {
    match token {
        None => Ok(new_version_id()),
        Some(t) if (32..=64).contains(&t.len()) => Ok(t),
        Some(t) => Err(invalid_param(format!(
            "ClientRequestToken: must be 32 to 64 characters long, got {}.",
            t.len()
        ))),
    }
}

/// Serves one Secrets Manager request (already routed here by its `secretsmanager` scope).
pub(crate) async fn serve(
    app: &App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let call = crate::protocol::json_call(
        app,
        req,
        request_id,
        &crate::protocol::JsonService {
            signing_name: wire::SIGNING_NAME,
            target_prefix: wire::TARGET_PREFIX,
            title: "AWS Secrets Manager",
            from_name: wire::Operation::from_name,
            name: wire::Operation::name,
        },
    )
    .await?;
    let api = SecretsManager::new(
        app.regions.services(call.region).view.clone(),
        app.vault.clone(),
        call.region,
        &app.account_id,
    );
    wire::dispatch(&api, &call.ctx, call.op, &call.body).await
}

/// The tags of the secret `id` (a name, ARN or partial ARN) names in `region`, for
/// `aws:ResourceTag`; `None` when there is no such secret.
pub(crate) async fn secret_tags(
    app: &App,
    region: Region,
    id: &str,
) -> Option<Vec<(String, String)>> {
    let sm = SecretsManager::new(
        app.regions.services(region).view.clone(),
        app.vault.clone(),
        region,
        &app.account_id,
    );
    sm.find(id).await.ok().map(|(rec, _)| rec.tags)
}

#[cfg(test)]
mod tests;
