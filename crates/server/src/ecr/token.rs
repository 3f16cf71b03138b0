//! Registry credentials as ECR issues them: GetAuthorizationToken answers
//! `base64("AWS:" + password)`, valid 12 hours, and the registry accepts it as HTTP Basic
//! auth (`docker login --username AWS --password-stdin`).
//!
//! The password is `<expiry epoch seconds>.<hex HMAC-SHA256>` over the account and the
//! expiry, keyed by a 32-byte secret derived from the server's master key
//! ([`crate::auth::MasterKey::derive`], label [`KEY_LABEL`]): no file of its own, kept wherever
//! `--key-file` keeps the master key. Nothing is stored per token, so tokens survive a restart and
//! verify without a lookup; none is ever logged. Invariants: a token verifies only under the
//! key and account that minted it, and only before its expiry; comparing MACs takes
//! constant time.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_registry::{Access, Authorizer, Denial};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::Clock;

/// How long a token is valid (ECR: 12 hours).
pub const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;

/// The label the token key is derived from the master key with.
pub const KEY_LABEL: &str = "berth/ecr/registry-token/v1";

/// The token key.
pub struct TokenKey {
    key: [u8; 32],
    account: String,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn new(key: [u8; 32], account: &str) -> Self {
        Self { key, account: account.to_string() }
    }

    fn mac(&self, expiry: i64) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(format!("berth-ecr-token-v1|{}|{expiry}", self.account).as_bytes());
        hex::encode(m.finalize().into_bytes())
    }

    /// The password of a token expiring at `expiry` (epoch seconds).
    pub fn password(&self, expiry: i64) -> String {
        format!("{expiry}.{}", self.mac(expiry))
    }

    /// ECR's `authorizationToken`: base64 of `AWS:<password>`.
    pub fn authorization_token(&self, expiry: i64) -> String {
        STANDARD.encode(format!("AWS:{}", self.password(expiry)))
    }

    /// Checks an `Authorization` header at `now` (epoch seconds).
    pub fn verify(&self, header: Option<&str>, now: i64) -> Result<(), Denial> {
        let Some(h) = header else {
            return Err(Denial::Unauthenticated(
                "no basic auth credentials: log in with `aws ecr get-login-password | docker login --username AWS --password-stdin HOST`".into(),
            ));
        };
        let bad = || Denial::Unauthenticated("Your authorization token is invalid.".into());
        let encoded = h.strip_prefix("Basic ").ok_or_else(bad)?;
        let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        if user != "AWS" {
            return Err(bad());
        }
        let (expiry, mac) = password.split_once('.').ok_or_else(bad)?;
        let expiry: i64 = expiry.parse().map_err(|_| bad())?;
        if !bool::from(self.mac(expiry).as_bytes().ct_eq(mac.as_bytes())) {
            return Err(bad());
        }
        if now >= expiry {
            return Err(Denial::Unauthenticated(
                "Your authorization token has expired. Reauthenticate and try again.".into(),
            ));
        }
        Ok(())
    }
}

/// The registry's gate: a valid, unexpired token may pull and push every repository (until
/// IAM policies arrive, as any valid Berth key may call every ECR operation).
pub struct TokenAuthorizer {
    pub key: Arc<TokenKey>,
    pub clock: Arc<dyn Clock>,
    /// `http://HOST:PORT/`: the realm of the challenge.
    pub realm: String,
}

#[async_trait]
impl Authorizer for TokenAuthorizer {
    fn realm(&self) -> String {
        self.realm.clone()
    }
    async fn authorize(
        &self,
        authorization: Option<&str>,
        _repository: Option<&str>,
        _access: Access,
    ) -> Result<(), Denial> {
        self.key.verify(authorization, self.clock.now().unix_timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(token: &str) -> String {
        format!("Basic {token}")
    }

    #[test]
    fn tokens_verify_only_under_their_key_and_before_expiry() {
        let key = TokenKey::new([7; 32], "000000000000");
        let token = key.authorization_token(1_000);
        let decoded = String::from_utf8(STANDARD.decode(&token).unwrap()).unwrap();
        assert!(decoded.starts_with("AWS:1000."));
        assert_eq!(key.verify(Some(&basic(&token)), 999), Ok(()));
        let expired = key.verify(Some(&basic(&token)), 1_000).unwrap_err();
        assert!(matches!(expired, Denial::Unauthenticated(m) if m.contains("expired")));
        let other_key = TokenKey::new([8; 32], "000000000000");
        assert!(other_key.verify(Some(&basic(&token)), 0).is_err());
        let other_account = TokenKey::new([7; 32], "111111111111");
        assert!(other_account.verify(Some(&basic(&token)), 0).is_err());
        // A forged expiry does not carry the MAC along.
        let forged = decoded.replace("AWS:1000.", "AWS:9999.");
        assert!(key.verify(Some(&basic(&STANDARD.encode(forged))), 0).is_err());
        for bad in [None, Some("Bearer x"), Some("Basic !!"), Some("Basic dXNlcjpwYXNz")] {
            assert!(key.verify(bad, 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_key_is_derived_from_the_master_key_per_label() {
        let master = crate::auth::MasterKey::from_bytes(&[7u8; 32]);
        let a = TokenKey::new(master.derive(KEY_LABEL), "000000000000");
        let b = TokenKey::new(master.derive(KEY_LABEL), "000000000000");
        assert_eq!(a.password(5), b.password(5), "the same master key gives the same tokens");
        assert_ne!(master.derive(KEY_LABEL), master.derive("another purpose"));
        let other = crate::auth::MasterKey::from_bytes(&[8u8; 32]);
        let c = TokenKey::new(other.derive(KEY_LABEL), "000000000000");
        assert_ne!(a.password(5), c.password(5), "another master key, other tokens");
    }
}
