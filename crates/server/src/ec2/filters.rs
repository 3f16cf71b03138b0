//! EC2's `Filter.N.Name` / `Filter.N.Value.M` matching and `MaxResults` / `NextToken` paging,
//! shared by every Describe call.
//!
//! Contract: a resource matches when every filter matches (AND); a filter matches when any
//! of its values matches any of the resource's values for that name (OR); values may use
//! `*` (any run) and `?` (any one character). `tag:KEY` matches the value of tag KEY,
//! `tag-key` any tag's key, `tag-value` any tag's value. A filter name the call does not know
//! is `InvalidParameterValue` naming it (EC2 answers the same). Pages are in id order;
//! `NextToken` is the last id of the previous page.

use berth_model::network::Tag;
use berth_wire::AwsError;
use berth_wire::ec2 as wire;

use super::codes;

/// A filter, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

/// Checks the request's filters: each needs a name, and (for fields) a name in `known`.
pub(super) fn parse(
    filters: Option<Vec<wire::Filter>>,
    known: &[&str],
) -> Result<Vec<Filter>, AwsError> {
    let mut out = Vec::new();
    for (i, f) in filters.unwrap_or_default().into_iter().enumerate() {
        let Some(name) = f.name else {
            return Err(codes::missing(&format!("Filter.{}.Name", i + 1)));
        };
        let tag = name.starts_with("tag:") || name == "tag-key" || name == "tag-value";
        if !tag && !known.contains(&name.as_str()) {
            return Err(codes::invalid(format!(
                "The filter '{name}' is invalid; this call filters on: {}, tag:<key>, tag-key, tag-value.",
                known.join(", ")
            )));
        }
        out.push(Filter { name, values: f.values.unwrap_or_default() });
    }
    Ok(out)
}

/// Whether a resource with `tags`, whose field values `field(name)` gives, passes every filter.
pub(super) fn matches(
    filters: &[Filter],
    tags: &[Tag],
    field: impl Fn(&str) -> Vec<String>,
) -> bool {
    filters.iter().all(|f| {
        let have: Vec<String> = if let Some(key) = f.name.strip_prefix("tag:") {
            tags.iter().filter(|t| t.key == key).map(|t| t.value.clone()).collect()
        } else if f.name == "tag-key" {
            tags.iter().map(|t| t.key.clone()).collect()
        } else if f.name == "tag-value" {
            tags.iter().map(|t| t.value.clone()).collect()
        } else {
            field(&f.name)
        };
        f.values.iter().any(|pattern| have.iter().any(|v| glob(pattern, v)))
    })
}

/// EC2's wildcard match: `*` any run of characters, `?` any one.
pub(super) fn glob(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// One page of `items` (sorted by `id`): those after `next_token`, at most `max_results`
/// (`min..=1000` when given, as EC2 checks it), and the token of the next page.
pub(super) fn page<T>(
    mut items: Vec<T>,
    id: impl Fn(&T) -> &str,
    max_results: Option<i32>,
    min: i32,
    next_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), AwsError> {
    items.sort_by(|a, b| id(a).cmp(id(b)));
    if let Some(token) = next_token.filter(|t| !t.is_empty()) {
        items.retain(|x| id(x) > token);
    }
    let Some(max) = max_results else { return Ok((items, None)) };
    if !(min..=1000).contains(&max) {
        return Err(codes::invalid(format!(
            "Value ({max}) for parameter MaxResults is invalid. Expecting a value between {min} and 1000."
        )));
    }
    let max = max as usize;
    if items.len() <= max {
        return Ok((items, None));
    }
    items.truncate(max);
    let token = items.last().map(|x| id(x).to_string());
    Ok((items, token))
}

/// `true`/`false` as EC2 filters compare booleans.
pub(super) fn b(v: bool) -> Vec<String> {
    vec![v.to_string()]
}

/// One value.
pub(super) fn one(v: impl Into<String>) -> Vec<String> {
    vec![v.into()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(k: &str, v: &str) -> Tag {
        Tag { key: k.into(), value: v.into() }
    }

    #[test]
    fn wildcards() {
        for (p, v, want) in [
            ("*", "", true),
            ("vpc-*", "vpc-123", true),
            ("vpc-?23", "vpc-123", true),
            ("vpc-?3", "vpc-123", false),
            ("*-1*", "us-east-1a", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(p, v), want, "{p} ~ {v}");
        }
    }

    #[test]
    fn filters_and_across_names_or_within_values() {
        let f = |name: &str, values: &[&str]| wire::Filter {
            name: Some(name.into()),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        };
        let known = ["vpc-id", "is-default"];
        let tags = [tag("Name", "web-prod"), tag("team", "a")];
        let field = |n: &str| match n {
            "vpc-id" => one("vpc-1"),
            "is-default" => b(false),
            _ => vec![],
        };
        let check =
            |fs: Vec<wire::Filter>| matches(&parse(Some(fs), &known).unwrap(), &tags, field);
        assert!(check(vec![f("vpc-id", &["vpc-2", "vpc-1"])]));
        assert!(!check(vec![f("vpc-id", &["vpc-1"]), f("is-default", &["true"])]));
        assert!(check(vec![f("tag:Name", &["web-*"]), f("tag-key", &["team"])]));
        assert!(!check(vec![f("tag:Name", &["db-*"])]));
        assert!(!check(vec![f("tag:absent", &["*"])]), "a missing tag matches nothing");
        assert!(check(vec![f("tag-value", &["a"])]));
        let e = parse(Some(vec![f("colour", &["red"])]), &known).unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("colour"));
        let e = parse(Some(vec![wire::Filter { name: None, values: None }]), &known).unwrap_err();
        assert_eq!(e.code, "MissingParameter");
    }

    #[test]
    fn pages_follow_ids() {
        let items: Vec<String> = ["c", "a", "b", "d", "e"].iter().map(|s| s.to_string()).collect();
        let (p, t) = page(items.clone(), |s| s, Some(5), 5, None).unwrap();
        assert_eq!((p.len(), t), (5, None));
        let (p, t) = page(items.clone(), |s| s, None, 5, Some("b")).unwrap();
        assert_eq!((p, t), (vec!["c".to_string(), "d".into(), "e".into()], None));
        let small: Vec<String> = (0..12).map(|i| format!("{i:02}")).collect();
        let (p, t) = page(small.clone(), |s| s, Some(5), 5, None).unwrap();
        assert_eq!((p.len(), t.as_deref()), (5, Some("04")));
        let (p, t) = page(small.clone(), |s| s, Some(5), 5, Some("04")).unwrap();
        assert_eq!((p[0].as_str(), t.as_deref()), ("05", Some("09")));
        let (p, t) = page(small.clone(), |s| s, Some(5), 5, Some("09")).unwrap();
        assert_eq!((p.len(), t), (2, None));
        assert_eq!(page(small, |s| s, Some(4), 5, None).unwrap_err().code, "InvalidParameterValue");
    }
}
