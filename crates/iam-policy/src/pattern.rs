//! Precompiled wildcard patterns with policy variables.
//!
//! A policy string is tokenized once, at parse time, into literal runs, `*`
//! (any run of characters, possibly empty), `?` (exactly one character) and
//! variables (`${aws:username}`, `${aws:PrincipalTag/team, 'default'}`).
//! `${*}`, `${?}` and `${$}` are the literal characters. Values substituted
//! for variables are literal: a `*` inside a tag value is not a wildcard, so a
//! variable can never widen what a statement matches.
//!
//! Matching is the classic linear-backtracking wildcard algorithm (one
//! backtrack point, the most recent `*`): O(pattern × value) in the worst case,
//! no recursion, no allocation when the pattern has no variables.
//!
//! Why not a crate: `glob`/`globset` implement path globbing (`/` is special,
//! `[...]` classes, `**`), which is not IAM's grammar; IAM's is two
//! metacharacters plus variables, and the matcher is ~40 lines.

use std::borrow::Cow;

use crate::context::RequestContext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Lit(Box<str>),
    Star,
    One,
    /// A policy variable; `key` is lowercased (key names are case-insensitive).
    Var {
        key: Box<str>,
        default: Option<Box<str>>,
    },
    /// A malformed `${...}`: IAM cannot substitute it, so it matches nothing.
    Never,
}

/// Whether `toks` hold a policy variable whose key starts with `prefix` (lowercase).
pub(crate) fn mentions(toks: &[Tok], prefix: &str) -> bool {
    toks.iter().any(|t| matches!(t, Tok::Var { key, .. } if key.starts_with(prefix)))
}

/// Options for [`tokenize`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (Resource, Action, `StringLike`, `ArnLike`).
    pub wildcards: bool,
    /// `${...}` are variables (only in `Version: 2012-10-17` policies).
    pub variables: bool,
    /// Lowercase literals (case-insensitive matching: actions, `...IgnoreCase`).
    pub lowercase: bool,
}

pub(crate) fn tokenize(s: &str, syn: Syntax) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut rest = s;
    let flush = |lit: &mut String, out: &mut Vec<Tok>| {
        if !lit.is_empty() {
            let l = if syn.lowercase { lit.to_lowercase() } else { std::mem::take(lit) };
            lit.clear();
            out.push(Tok::Lit(l.into_boxed_str()));
        }
    };
    while let Some(c) = rest.chars().next() {
        if syn.variables && rest.starts_with("${") {
            let (tok, used) = parse_variable(&rest[2..]);
            rest = &rest[2 + used..];
            match tok {
                VarTok::Literal(ch) => lit.push(ch),
                VarTok::Var { key, default } => {
                    flush(&mut lit, &mut out);
                    out.push(Tok::Var {
                        key: key.into_boxed_str(),
                        default: default.map(|d| {
                            if syn.lowercase {
                                d.to_lowercase().into_boxed_str()
                            } else {
                                d.into_boxed_str()
                            }
                        }),
                    });
                }
                VarTok::Never => {
                    flush(&mut lit, &mut out);
                    out.push(Tok::Never);
                }
            }
            continue;
        }
        rest = &rest[c.len_utf8()..];
        match c {
            '*' if syn.wildcards => {
                flush(&mut lit, &mut out);
                // `**` is the same as `*`.
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            '?' if syn.wildcards => {
                flush(&mut lit, &mut out);
                out.push(Tok::One);
            }
            _ => lit.push(c),
        }
    }
    flush(&mut lit, &mut out);
    out
}

enum VarTok {
    Literal(char),
    Var { key: String, default: Option<String> },
    Never,
}

/// Parses what follows `${`; returns the token and the bytes consumed
/// (through the closing `}`).
fn parse_variable(s: &str) -> (VarTok, usize) {
    // The default value may contain `}` inside quotes, so scan quote-aware.
    let mut in_quote = false;
    let mut end = None;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => {
                if in_quote && bytes.get(i + 1) == Some(&b'\'') {
                    i += 2;
                    continue;
                }
                in_quote = !in_quote;
            }
            b'}' if !in_quote => {
                end = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(end) = end else {
        // No closing brace: IAM cannot substitute; the rest of the string is lost.
        return (VarTok::Never, s.len());
    };
    let body = &s[..end];
    let used = end + 1;
    match body {
        "*" => return (VarTok::Literal('*'), used),
        "?" => return (VarTok::Literal('?'), used),
        "$" => return (VarTok::Literal('$'), used),
        _ => {}
    }
    let (key, default) = match body.split_once(',') {
        None => (body.trim(), None),
        Some((k, d)) => {
            let d = d.trim();
            if d.len() < 2 || !d.starts_with('\'') || !d.ends_with('\'') {
                return (VarTok::Never, used);
            }
            let inner = &d[1..d.len() - 1];
            // Inside the quotes, a quote is written twice.
            let mut value = String::with_capacity(inner.len());
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        return (VarTok::Never, used);
                    }
                }
                value.push(c);
            }
            (k.trim(), Some(value))
        }
    };
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return (VarTok::Never, used);
    }
    (VarTok::Var { key: key.to_lowercase(), default }, used)
}

pub(crate) fn has_vars(toks: &[Tok]) -> bool {
    toks.iter().any(|t| matches!(t, Tok::Var { .. } | Tok::Never))
}

/// Substitutes variables from the request context. `None` when a variable has
/// no (single) value and no default, or the pattern holds a malformed variable:
/// the pattern then matches nothing.
pub(crate) fn resolve<'a>(
    toks: &'a [Tok],
    ctx: &RequestContext,
    lowercase: bool,
) -> Option<Cow<'a, [Tok]>> {
    if !has_vars(toks) {
        return Some(Cow::Borrowed(toks));
    }
    let mut out = Vec::with_capacity(toks.len());
    for t in toks {
        match t {
            Tok::Var { key, default } => {
                let v: Cow<'_, str> = match ctx.single_value(key) {
                    Some(v) if lowercase => Cow::Owned(v.to_lowercase()),
                    Some(v) => Cow::Borrowed(v),
                    None => Cow::Borrowed(default.as_deref()?),
                };
                out.push(Tok::Lit(v.into_owned().into_boxed_str()));
            }
            Tok::Never => return None,
            other => out.push(other.clone()),
        }
    }
    Some(Cow::Owned(out))
}

/// `s[at..]` starts with `l`. Most comparisons fail on the first byte, so
/// check it before paying for a `memcmp` call.
#[inline]
fn lit_at(s: &[u8], at: usize, l: &[u8]) -> bool {
    let rest = &s[at..];
    rest.len() >= l.len() && (l.is_empty() || rest[0] == l[0]) && rest[..l.len()] == *l
}

/// Wildcard match of a whole value. Variables must have been resolved.
pub(crate) fn glob(toks: &[Tok], s: &str) -> bool {
    // Fast paths for the shapes policies use most.
    match toks {
        [] => return s.is_empty(),
        [Tok::Star] => return true,
        [Tok::Lit(l)] => return l.len() == s.len() && lit_at(s.as_bytes(), 0, l.as_bytes()),
        [Tok::Lit(l), Tok::Star] => return lit_at(s.as_bytes(), 0, l.as_bytes()),
        [Tok::Star, Tok::Lit(l)] => return s.ends_with(&**l),
        _ => {}
    }
    let (mut ti, mut si) = (0usize, 0usize);
    // (token index after the star, value index the star's match ends at)
    let mut star: Option<(usize, usize)> = None;
    loop {
        if ti < toks.len() {
            match &toks[ti] {
                Tok::Star => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Tok::One => {
                    if let Some(c) = s[si..].chars().next() {
                        si += c.len_utf8();
                        ti += 1;
                        continue;
                    }
                }
                Tok::Lit(l) => {
                    if lit_at(s.as_bytes(), si, l.as_bytes()) {
                        si += l.len();
                        ti += 1;
                        continue;
                    }
                }
                Tok::Var { .. } | Tok::Never => return false,
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more character.
        match star {
            Some((st, ss)) if ss < s.len() => {
                let ns = ss + s[ss..].chars().next().map_or(1, char::len_utf8);
                star = Some((st, ns));
                ti = st;
                si = ns;
            }
            _ => return false,
        }
    }
}

/// Splits a token list into ARN segments at the first five literal `:`; the
/// sixth segment (the resource) keeps any further colons.
pub(crate) fn split_arn_tokens(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut segs: Vec<Vec<Tok>> = vec![Vec::new()];
    for t in toks {
        match t {
            Tok::Lit(l) if segs.len() < 6 && l.contains(':') => {
                let mut rest: &str = l;
                while segs.len() < 6 {
                    match rest.split_once(':') {
                        Some((a, b)) => {
                            if !a.is_empty() {
                                segs.last_mut().expect("non-empty").push(Tok::Lit(a.into()));
                            }
                            segs.push(Vec::new());
                            rest = b;
                        }
                        None => break,
                    }
                }
                if !rest.is_empty() {
                    segs.last_mut().expect("non-empty").push(Tok::Lit(rest.into()));
                }
            }
            other => segs.last_mut().expect("non-empty").push(other.clone()),
        }
    }
    segs
}

/// Byte offsets where each of the six ARN segments starts, or `None` when the
/// value is not `arn:partition:service:region:account:resource`.
pub(crate) fn arn_starts(s: &str) -> Option<[usize; 6]> {
    if !s.starts_with("arn:") {
        return None;
    }
    let mut starts = [0usize; 6];
    let mut n = 1;
    for (i, b) in s.bytes().enumerate() {
        if b == b':' {
            starts[n] = i + 1;
            n += 1;
            if n == 6 {
                return Some(starts);
            }
        }
    }
    None
}

/// Matches ARN segments (from [`split_arn_tokens`]) against an ARN value whose
/// segment offsets are `starts`. Each segment is matched on its own, so
/// wildcards do not cross `:` except in the resource segment; a pattern with
/// fewer than six segments whose last segment ends in `*` lets that `*` run to
/// the end of the ARN (IAM's rule for a trailing `*`).
pub(crate) fn arn_match(segs: &[Vec<Tok>], value: &str, starts: &[usize; 6]) -> bool {
    let seg = |i: usize| -> &str {
        let end = if i == 5 { value.len() } else { starts[i + 1] - 1 };
        &value[starts[i]..end]
    };
    if segs.len() == 6 {
        return (0..6).all(|i| glob(&segs[i], seg(i)));
    }
    let Some((last, head)) = segs.split_last() else {
        return false;
    };
    if last.last() != Some(&Tok::Star) {
        return false;
    }
    head.iter().enumerate().all(|(i, p)| glob(p, seg(i)))
        && glob(last, &value[starts[head.len()]..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Syntax = Syntax { wildcards: true, variables: true, lowercase: false };

    fn m(p: &str, s: &str) -> bool {
        glob(&tokenize(p, W), s)
    }

    #[test]
    fn glob_table() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*c", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*a*", "bab", true),
            ("a**b", "ab", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("", "", true),
            ("", "a", false),
            ("?", "", false),
            ("*?", "", false),
            ("*?", "x", true),
            ("a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("${*}", "*", true),
            ("${*}", "x", false),
            ("${?}", "?", true),
            ("${$}{x}", "${x}", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(m(p, s), want, "pattern {p:?} value {s:?}");
        }
    }

    #[test]
    fn variables_parse() {
        let t = tokenize("a/${aws:username}/b", W);
        assert_eq!(
            t,
            vec![
                Tok::Lit("a/".into()),
                Tok::Var { key: "aws:username".into(), default: None },
                Tok::Lit("/b".into())
            ]
        );
        let t = tokenize("${ aws:PrincipalTag/Team , 'it''s }' }", W);
        assert_eq!(
            t,
            vec![Tok::Var { key: "aws:principaltag/team".into(), default: Some("it's }".into()) }]
        );
        assert_eq!(tokenize("${aws:x, nope}", W), vec![Tok::Never]);
        assert_eq!(tokenize("x${unterminated", W), vec![Tok::Lit("x".into()), Tok::Never]);
        assert_eq!(tokenize("${}", W), vec![Tok::Never]);
        // Without variables (Version 2008-10-17) `${...}` is literal text.
        let lit = Syntax { variables: false, ..W };
        assert_eq!(tokenize("${aws:username}", lit), vec![Tok::Lit("${aws:username}".into())]);
    }

    #[test]
    fn arn_segments() {
        let arn = "arn:aws:ecs:us-east-1:123456789012:cluster/prod:x";
        let starts = arn_starts(arn).unwrap();
        let am = |p: &str| arn_match(&split_arn_tokens(&tokenize(p, W)), arn, &starts);
        assert!(am("arn:aws:ecs:*:*:cluster/*"));
        assert!(am("arn:aws:ecs:us-east-1:123456789012:cluster/prod:x"));
        assert!(am("arn:aws:ecs:us-*:*:*"));
        assert!(am("arn:aws:ecs:*:123456789012:cluster/prod:?"));
        assert!(!am("arn:aws:ecs:*:123456789012:cluster/prod"));
        // A wildcard in the region segment does not swallow the account.
        assert!(!am("arn:aws:ecs:*:cluster/*"));
        assert!(!am("arn:aws:ecs:us-east-1*:cluster/prod:x"));
        // A trailing `*` in a short pattern runs to the end.
        assert!(am("arn:aws:ecs:*"));
        assert!(am("arn:*"));
        assert!(!am("arn:aws:s3:*"));
        // Case-sensitive.
        assert!(!am("arn:aws:ECS:*:*:*"));
        assert!(arn_starts("arn:aws:s3").is_none());
        assert!(arn_starts("*").is_none());
    }
}
