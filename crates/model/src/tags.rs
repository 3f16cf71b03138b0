//! Resource tags as ECS constrains them: at most 50 per resource, unique keys of 1-128
//! characters, values of 0-256, and no user key in the reserved `aws:` namespace.

use berth_wire::ecs::Tag;

use crate::ModelError;

/// Most tags one resource may carry.
pub const MAX_TAGS: usize = 50;

/// Checks tags given in a request; `field` names the request member (`tags`).
pub fn validate(tags: &[Tag], field: &str) -> Result<(), ModelError> {
    if tags.len() > MAX_TAGS {
        return Err(ModelError::invalid(
            field,
            format!(
                "Too many tags: {} given, at most {MAX_TAGS} are allowed per resource.",
                tags.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, t) in tags.iter().enumerate() {
        let key = t.key.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        let at = format!("{field}[{i}]");
        if key.is_empty() || key.chars().count() > 128 {
            return Err(ModelError::invalid(
                format!("{at}.key"),
                format!("Tag keys must be 1-128 characters ({at}.key)."),
            ));
        }
        if value.chars().count() > 256 {
            return Err(ModelError::invalid(
                format!("{at}.value"),
                format!("Tag values must be at most 256 characters ({at}.value)."),
            ));
        }
        if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(ModelError::invalid(
                format!("{at}.key"),
                format!("Tag key '{key}' uses the reserved prefix 'aws:'."),
            ));
        }
        let ok = |s: &str| {
            s.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
        };
        for (part, text) in [("key", key), ("value", value)] {
            if !ok(text) {
                return Err(ModelError::invalid(
                    format!("{at}.{part}"),
                    format!(
                        "Tag {part}s may contain letters, numbers, spaces and _ . : / = + - @ only ({at}.{part})."
                    ),
                ));
            }
        }
        if !seen.insert(key) {
            return Err(ModelError::invalid(
                format!("{at}.key"),
                format!("Duplicate tag key '{key}'."),
            ));
        }
    }
    Ok(())
}

/// `existing` with `new` applied: values of existing keys replaced, new keys appended.
pub fn merge(existing: &[Tag], new: &[Tag]) -> Vec<Tag> {
    let mut out = existing.to_vec();
    for t in new {
        match out.iter_mut().find(|e| e.key == t.key) {
            Some(e) => e.value = Some(t.value.clone().unwrap_or_default()),
            None => out
                .push(Tag { key: t.key.clone(), value: Some(t.value.clone().unwrap_or_default()) }),
        }
    }
    out
}

/// `existing` without the keys in `remove`.
pub fn remove(existing: &[Tag], remove: &[String]) -> Vec<Tag> {
    existing.iter().filter(|t| !remove.iter().any(|k| Some(k) == t.key.as_ref())).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag { key: Some(k.into()), value: Some(v.into()) }
    }

    #[test]
    fn rules() {
        assert!(validate(&[tag("env", "prod"), tag("team", "")], "tags").is_ok());
        let too_many: Vec<_> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        let cases: Vec<(Vec<Tag>, &str)> = vec![
            (too_many, "tags"),
            (vec![tag("", "v")], "tags[0].key"),
            (vec![tag(&"k".repeat(129), "v")], "tags[0].key"),
            (vec![tag("k", &"v".repeat(257))], "tags[0].value"),
            (vec![tag("ok", "v"), tag("AWS:x", "v")], "tags[1].key"),
            (vec![tag("a", "1"), tag("a", "2")], "tags[1].key"),
            (vec![tag("a#", "1")], "tags[0].key"),
            (vec![tag("a", "1#")], "tags[0].value"),
        ];
        for (tags, field) in cases {
            let err = validate(&tags, "tags").unwrap_err();
            assert_eq!(err.field(), field, "{tags:?}");
        }
    }

    /// Keys and values with 2-, 3- and 4-byte letters at every offset validate without panicking;
    /// an `aws:` prefix is still refused whatever follows it.
    #[test]
    fn multi_byte_characters_at_every_offset() {
        for c in ['é', '日', '𐐷'] {
            for len in 1..=8 {
                for at in 0..len {
                    let key: String = (0..len).map(|i| if i == at { c } else { 'a' }).collect();
                    assert!(validate(&[tag(&key, &key)], "tags").is_ok(), "{key}");
                    let reserved = format!("aws:{key}");
                    let err = validate(&[tag(&reserved, "v")], "tags").unwrap_err();
                    assert_eq!(err.field(), "tags[0].key", "{reserved}");
                }
            }
        }
        assert!(validate(&[tag("abcé", "v")], "tags").is_ok());
        assert!(validate(&[tag("é", "v")], "tags").is_ok());
        assert!(validate(&[tag("aé", "v")], "tags").is_ok());
        let max: String = "é".repeat(128);
        assert!(validate(&[tag(&max, "v")], "tags").is_ok());
    }

    #[test]
    fn merge_and_remove() {
        let merged = merge(&[tag("a", "1"), tag("b", "2")], &[tag("b", "3"), tag("c", "4")]);
        assert_eq!(merged, vec![tag("a", "1"), tag("b", "3"), tag("c", "4")]);
        assert_eq!(remove(&merged, &["a".into(), "zz".into()]), vec![tag("b", "3"), tag("c", "4")]);
    }
}
