//! Signing-key derivation and the verifier's bounded key cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::TERMINATOR;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `data` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length");
    mac.update(data);
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// The SigV4 signing key:
/// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

/// The hex signature of `string_to_sign` under `signing_key`
/// (`hex(HMAC-SHA256(signing_key, string_to_sign))`).
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

/// Access keys the cache holds before it starts over.
const MAX_ACCESS_KEYS: usize = 4096;
/// Scopes (date, region, service) kept per access key; the oldest goes first.
const MAX_SCOPES_PER_KEY: usize = 4;

struct Entry {
    date: String,
    region: String,
    service: String,
    /// The secret the key was derived from: a rotated secret misses.
    secret: String,
    key: [u8; 32],
}

/// Counters of a [`crate::Verifier`]'s signing-key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that derived the key.
    pub misses: u64,
    /// Keys held now.
    pub entries: usize,
}

/// Bounded, thread-safe cache of derived signing keys, indexed by access
/// key id. A hit does no allocation and holds the lock only to compare a few
/// short strings; a miss derives the key outside the lock.
#[derive(Default)]
pub(crate) struct KeyCache {
    map: Mutex<HashMap<String, Vec<Entry>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl KeyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        // The map is consistent after any panic (entries are written whole),
        // so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(
        &self,
        access_key_id: &str,
        secret: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> [u8; 32] {
        {
            let map = self.lock();
            if let Some(entries) = map.get(access_key_id) {
                let found = entries.iter().find(|e| {
                    e.date == date
                        && e.region == region
                        && e.service == service
                        && e.secret == secret
                });
                if let Some(e) = found {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return e.key;
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let key = signing_key(secret, date, region, service);
        let mut map = self.lock();
        if !map.contains_key(access_key_id) && map.len() >= MAX_ACCESS_KEYS {
            map.clear();
        }
        let entries = map.entry(access_key_id.to_owned()).or_default();
        // Drop a stale entry for this scope (rotated secret), then the oldest if full.
        entries.retain(|e| !(e.date == date && e.region == region && e.service == service));
        if entries.len() >= MAX_SCOPES_PER_KEY {
            entries.remove(0);
        }
        entries.push(Entry {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            secret: secret.to_owned(),
            key,
        });
        key
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.lock().values().map(Vec::len).sum(),
        }
    }
}
