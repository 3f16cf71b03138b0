//! `maxResults` / `nextToken` as ECS's List operations use them.
//!
//! A token is opaque to clients: base64url of the last key returned, bound to the listing it
//! came from (a token whose key lies outside the listing's key range is refused).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_store::{Range, Store, prefix_end};
use berth_wire::AwsError;

use crate::error;

/// The token that resumes a listing after `key`.
pub fn token(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

/// A page request, validated.
pub struct Page {
    pub limit: usize,
    pub after: Option<String>,
}

impl Page {
    /// Validates `maxResults` (1..=`max`, default `max`) and decodes `nextToken` for a listing
    /// of `prefix`.
    pub fn parse(
        max_results: Option<i32>,
        next_token: Option<&str>,
        max: usize,
        prefix: &str,
    ) -> Result<Self, AwsError> {
        let limit = match max_results {
            None => max,
            Some(n) if n >= 1 && n as usize <= max => n as usize,
            Some(n) => {
                return Err(error::invalid(format!(
                    "maxResults must be between 1 and {max}; got {n}."
                )));
            }
        };
        let after = match next_token {
            None | Some("") => None,
            Some(t) => {
                let bad = || {
                    error::invalid(
                        "Invalid nextToken: use the nextToken of the previous page of this same listing.",
                    )
                };
                let raw = URL_SAFE_NO_PAD.decode(t).map_err(|_| bad())?;
                let key = String::from_utf8(raw).map_err(|_| bad())?;
                if !key.starts_with(prefix) {
                    return Err(bad());
                }
                Some(key)
            }
        };
        Ok(Self { limit, after })
    }

    /// Reads one page of keys under `prefix`; returns the keys and the next token, if more.
    pub async fn keys(
        &self,
        store: &dyn Store,
        prefix: &str,
        reverse: bool,
    ) -> Result<(Vec<String>, Option<String>), AwsError> {
        let mut range = Range::prefix(prefix).limit(self.limit + 1);
        if let Some(after) = &self.after {
            if reverse {
                range.end = after.clone();
            } else {
                // The smallest key after `after`: keys hold no control characters.
                range.start = format!("{after}\u{1}");
            }
        }
        if reverse {
            range = range.reversed();
        }
        debug_assert!(range.end <= prefix_end(prefix));
        let mut recs = store.range(range).await.map_err(error::store)?;
        let more = recs.len() > self.limit;
        recs.truncate(self.limit);
        let keys: Vec<String> = recs.into_iter().map(|r| r.key).collect();
        let token = if more { keys.last().map(|k| token(k)) } else { None };
        Ok((keys, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens made of, or decoding to, text with multi-byte characters at every offset (and
    /// cut inside a character) are refused or accepted without panicking.
    #[test]
    fn multi_byte_tokens_at_every_offset() {
        let prefix = "ecs/clusters/";
        let key = "ecs/clusters/wéb日𐐷";
        assert_eq!(Page::parse(None, Some(&token(key)), 100, prefix).unwrap().after.unwrap(), key);
        let bytes = key.as_bytes();
        for cut in 0..=bytes.len() {
            let t = URL_SAFE_NO_PAD.encode(&bytes[..cut]);
            match Page::parse(None, Some(&t), 100, prefix) {
                Ok(p) => assert!(p.after.map_or(cut == 0, |a| key.starts_with(&a)), "{cut}"),
                Err(e) => assert_eq!(e.code, "InvalidParameterException"),
            }
        }
        let t = token(key);
        for c in ['é', '日', '𐐷', '=', '/'] {
            for at in (0..=t.len()).filter(|&i| t.is_char_boundary(i)) {
                let mut bad = t.clone();
                bad.insert(at, c);
                let _ = Page::parse(Some(1), Some(&bad), 100, prefix);
            }
        }
    }
}
