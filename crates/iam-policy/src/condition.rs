//! The `Condition` element: operators, the `IfExists` suffix and the
//! `ForAnyValue:` / `ForAllValues:` set qualifiers.
//!
//! Semantics (IAM's "Condition operators" page):
//! * A block is the AND of its operators, an operator the AND of its keys, a
//!   key the OR of its policy values.
//! * A negated operator (`StringNotEquals`, `NotIpAddress`, `ArnNotLike`, ...)
//!   is the negation of its positive form over the same values; so a missing
//!   key makes a positive operator false and a negated one true.
//! * `...IfExists`: a missing key makes the condition true.
//! * `ForAnyValue:` true when at least one request value satisfies the
//!   operator (false on a missing or empty key); `ForAllValues:` true when
//!   every request value does (true on a missing or empty key).
//! * Without a qualifier, a multivalued key matches a positive operator when
//!   any of its values does.
//! * Values that do not parse for the operator (a non-number for `Numeric*`,
//!   a bad CIDR, a bad date) match nothing, on either side.

use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::context::{ContextValue, RequestContext};
use crate::error::PolicyError;
use crate::pattern::{Syntax, Tok, arn_starts, glob, resolve, split_arn_tokens, tokenize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    StringEquals,
    StringEqualsIgnoreCase,
    StringLike,
    NumericEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    IpAddress,
    Arn,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

/// Operator name (without qualifier and `IfExists`) → (base, negated).
fn base_of(name: &str) -> Option<(Base, bool)> {
    use Base::*;
    Some(match name {
        "StringEquals" => (StringEquals, false),
        "StringNotEquals" => (StringEquals, true),
        "StringEqualsIgnoreCase" => (StringEqualsIgnoreCase, false),
        "StringNotEqualsIgnoreCase" => (StringEqualsIgnoreCase, true),
        "StringLike" => (StringLike, false),
        "StringNotLike" => (StringLike, true),
        "NumericEquals" => (NumericEquals, false),
        "NumericNotEquals" => (NumericEquals, true),
        "NumericLessThan" => (NumericLessThan, false),
        "NumericLessThanEquals" => (NumericLessThanEquals, false),
        "NumericGreaterThan" => (NumericGreaterThan, false),
        "NumericGreaterThanEquals" => (NumericGreaterThanEquals, false),
        "DateEquals" => (DateEquals, false),
        "DateNotEquals" => (DateEquals, true),
        "DateLessThan" => (DateLessThan, false),
        "DateLessThanEquals" => (DateLessThanEquals, false),
        "DateGreaterThan" => (DateGreaterThan, false),
        "DateGreaterThanEquals" => (DateGreaterThanEquals, false),
        "Bool" => (Bool, false),
        "BinaryEquals" => (BinaryEquals, false),
        "IpAddress" => (IpAddress, false),
        "NotIpAddress" => (IpAddress, true),
        "ArnEquals" | "ArnLike" => (Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Arn, true),
        "Null" => (Null, false),
        _ => return None,
    })
}

/// Compiled policy values of one (operator, key) pair.
#[derive(Debug, Clone)]
enum Values {
    /// String operators; tokens are literal for `StringEquals*`, wildcards for
    /// `StringLike`; lowercased for `IgnoreCase`.
    Str(Vec<Vec<Tok>>),
    Num(Vec<Option<f64>>),
    Date(Vec<Option<i128>>),
    Bool(Vec<Option<bool>>),
    Binary(Vec<Vec<u8>>),
    Ip(Vec<Option<IpNet>>),
    /// ARN patterns: the token list (with variables), split per segment when
    /// there are no variables.
    Arn(Vec<ArnValue>),
    Null(Vec<Option<bool>>),
}

/// An ARN condition value: its tokens, and its segments when it has no
/// variables (split once at parse time).
type ArnValue = (Vec<Tok>, Option<Vec<Vec<Tok>>>);

/// One `"Operator": { "key": values }` entry.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    base: Base,
    negated: bool,
    if_exists: bool,
    qualifier: Qualifier,
    /// Lowercased key name.
    key: Box<str>,
    values: Values,
}

/// Parses a whole `Condition` block.
pub(crate) fn parse_block(
    v: &Value,
    path: &str,
    variables: bool,
) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return Err(PolicyError::syntax(path, "Condition must be an object"));
    };
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let op_path = format!("{path}.{op_name}");
        let (qualifier, rest) = if let Some(r) = op_name.strip_prefix("ForAnyValue:") {
            (Qualifier::ForAnyValue, r)
        } else if let Some(r) = op_name.strip_prefix("ForAllValues:") {
            (Qualifier::ForAllValues, r)
        } else {
            (Qualifier::None, op_name.as_str())
        };
        let (name, if_exists) = match rest.strip_suffix("IfExists") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        let Some((base, negated)) = base_of(name) else {
            return Err(PolicyError::syntax(
                op_path,
                format!("Invalid Condition type : {op_name}"),
            ));
        };
        if base == Base::Null && (if_exists || qualifier != Qualifier::None) {
            return Err(PolicyError::syntax(
                op_path,
                format!("Invalid Condition type : {op_name}"),
            ));
        }
        let Value::Object(keys) = keys else {
            return Err(PolicyError::syntax(
                op_path,
                "a condition operator must map keys to values",
            ));
        };
        if keys.is_empty() {
            return Err(PolicyError::syntax(op_path, "condition operator has no keys"));
        }
        for (key, vals) in keys {
            let key_path = format!("{op_path}.{key}");
            match key.split_once(':') {
                Some((vendor, name)) if !vendor.is_empty() && !name.is_empty() => {}
                _ => {
                    return Err(PolicyError::VendorPrefix {
                        element: key_path,
                        value: key.clone(),
                    });
                }
            }
            let raw = scalar_list(vals, &key_path)?;
            let values = compile_values(base, &raw, variables);
            out.push(Condition {
                base,
                negated,
                if_exists,
                qualifier,
                key: key.to_lowercase().into_boxed_str(),
                values,
            });
        }
    }
    Ok(out)
}

/// A condition value: a string, number or boolean, or an array of them.
fn scalar_list(v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| -> Result<String, PolicyError> {
        match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(PolicyError::syntax(
                path,
                "a condition value must be a string, number or boolean",
            )),
        }
    };
    match v {
        Value::Array(a) => a.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn compile_values(base: Base, raw: &[String], variables: bool) -> Values {
    use Base::*;
    let syn = |wildcards, lowercase| Syntax { wildcards, variables, lowercase };
    match base {
        StringEquals => Values::Str(raw.iter().map(|s| tokenize(s, syn(false, false))).collect()),
        StringEqualsIgnoreCase => {
            Values::Str(raw.iter().map(|s| tokenize(s, syn(false, true))).collect())
        }
        StringLike => Values::Str(raw.iter().map(|s| tokenize(s, syn(true, false))).collect()),
        NumericEquals
        | NumericLessThan
        | NumericLessThanEquals
        | NumericGreaterThan
        | NumericGreaterThanEquals => Values::Num(raw.iter().map(|s| parse_num(s)).collect()),
        DateEquals
        | DateLessThan
        | DateLessThanEquals
        | DateGreaterThan
        | DateGreaterThanEquals => Values::Date(raw.iter().map(|s| parse_date(s)).collect()),
        Bool => Values::Bool(raw.iter().map(|s| parse_bool(s)).collect()),
        BinaryEquals => Values::Binary(raw.iter().map(|s| decode_binary(s)).collect()),
        IpAddress => Values::Ip(raw.iter().map(|s| parse_cidr(s)).collect()),
        Arn => Values::Arn(
            raw.iter()
                .map(|s| {
                    let toks = tokenize(s, syn(true, false));
                    let segs = (!crate::pattern::has_vars(&toks)).then(|| split_arn_tokens(&toks));
                    (toks, segs)
                })
                .collect(),
        ),
        Null => Values::Null(raw.iter().map(|s| parse_bool(s)).collect()),
    }
}

fn parse_num(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn decode_binary(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_else(|_| s.as_bytes().to_vec())
}

/// A CIDR block, or a bare address (a /32 or /128).
fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n);
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A date as IAM accepts it: ISO 8601 (`2026-01-01T00:00:00Z`, with offset or
/// fractional seconds, or a bare date `2026-01-01`) or epoch seconds.
/// Returns Unix nanoseconds.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().ok()?;
        return Some(i128::from(secs) * 1_000_000_000);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = Date::parse(s, &date_fmt) {
        return Some(
            PrimitiveDateTime::new(d, Time::MIDNIGHT)
                .assume_offset(UtcOffset::UTC)
                .unix_timestamp_nanos(),
        );
    }
    // `2026-01-01T00:00:00` without a zone: UTC.
    let dt_fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(s, &dt_fmt)
        .ok()
        .map(|t| t.assume_offset(UtcOffset::UTC).unix_timestamp_nanos())
}

impl Condition {
    /// Whether the condition reads a key starting with `prefix` (lowercase): as its key or
    /// as a policy variable in its values.
    pub(crate) fn mentions(&self, prefix: &str) -> bool {
        if self.key.starts_with(prefix) {
            return true;
        }
        match &self.values {
            Values::Str(pats) => pats.iter().any(|p| crate::pattern::mentions(p, prefix)),
            Values::Arn(pats) => pats.iter().any(|(p, _)| crate::pattern::mentions(p, prefix)),
            _ => false,
        }
    }

    pub(crate) fn evaluate(&self, ctx: &RequestContext) -> bool {
        let present: Option<&[String]> = ctx.get_lc(&self.key).map(ContextValue::values);
        if self.base == Base::Null {
            // Null: "true" means the key must be absent (or an empty set).
            let absent = present.is_none_or(<[String]>::is_empty);
            let Values::Null(want) = &self.values else {
                return false;
            };
            return want.contains(&Some(absent));
        }
        match self.qualifier {
            Qualifier::None => {
                let Some(vals) = present else {
                    return self.if_exists || self.negated;
                };
                let any = vals.iter().any(|v| self.positive(v, ctx));
                any != self.negated
            }
            Qualifier::ForAnyValue => match present {
                None => self.if_exists,
                Some(vals) => vals.iter().any(|v| self.positive(v, ctx) != self.negated),
            },
            Qualifier::ForAllValues => match present {
                None => true,
                Some(vals) => vals.iter().all(|v| self.positive(v, ctx) != self.negated),
            },
        }
    }

    /// Whether one request value matches any policy value (the positive form).
    fn positive(&self, v: &str, ctx: &RequestContext) -> bool {
        use Base::*;
        match &self.values {
            Values::Str(pats) => {
                let lower = self.base == StringEqualsIgnoreCase;
                let owned;
                let v = if lower {
                    owned = v.to_lowercase();
                    owned.as_str()
                } else {
                    v
                };
                pats.iter().any(|p| match resolve(p, ctx, lower) {
                    Some(p) => glob(&p, v),
                    None => false,
                })
            }
            Values::Num(ns) => {
                let Some(x) = parse_num(v) else { return false };
                ns.iter().flatten().any(|&n| match self.base {
                    NumericEquals => x == n,
                    NumericLessThan => x < n,
                    NumericLessThanEquals => x <= n,
                    NumericGreaterThan => x > n,
                    NumericGreaterThanEquals => x >= n,
                    _ => false,
                })
            }
            Values::Date(ds) => {
                let Some(x) = parse_date(v) else { return false };
                ds.iter().flatten().any(|&d| match self.base {
                    DateEquals => x == d,
                    DateLessThan => x < d,
                    DateLessThanEquals => x <= d,
                    DateGreaterThan => x > d,
                    DateGreaterThanEquals => x >= d,
                    _ => false,
                })
            }
            Values::Bool(bs) => {
                let Some(x) = parse_bool(v) else { return false };
                bs.contains(&Some(x))
            }
            Values::Binary(bs) => {
                let x = decode_binary(v);
                bs.contains(&x)
            }
            Values::Ip(nets) => {
                let Ok(ip) = v.trim().parse::<IpAddr>() else {
                    return false;
                };
                nets.iter().flatten().any(|n| n.contains(&ip))
            }
            Values::Arn(pats) => {
                let Some(starts) = arn_starts(v) else {
                    return false;
                };
                pats.iter().any(|(toks, segs)| match segs {
                    Some(segs) => crate::pattern::arn_match(segs, v, &starts),
                    None => match resolve(toks, ctx, false) {
                        Some(t) => crate::pattern::arn_match(&split_arn_tokens(&t), v, &starts),
                        None => false,
                    },
                })
            }
            Values::Null(_) => false,
        }
    }
}
