//! The mutations: hostile values, where they go in a seed, and how they are applied.

use super::*;

pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and mutations.

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Path(pub(crate) Vec<Seg>);

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<root>");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// Insert `text` at character `offset` of the string there (clamped to its length).
    Insert { text: &'static str, offset: usize },
    /// Replace the value.
    Replace { label: &'static str, value: fn() -> Value },
    /// Remove the member or element.
    Remove,
    /// Repeat the array's first element until the array holds `n`.
    Repeat { n: usize },
    /// Rename the member (its value stays).
    RenameKey { label: &'static str, to: fn(&str) -> String },
    /// The whole body, as bytes, rewritten (the path is the root).
    Raw { label: &'static str, to: fn(&[u8]) -> Vec<u8> },
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::Insert { text, offset } => write!(f, "insert {text:?} at char {offset}"),
            Mutation::Replace { label, .. } => write!(f, "replace with {label}"),
            Mutation::Remove => f.write_str("remove"),
            Mutation::Repeat { n } => write!(f, "repeat the first element to {n}"),
            Mutation::RenameKey { label, .. } => write!(f, "rename the member to {label}"),
            Mutation::Raw { label, .. } => write!(f, "body {label}"),
        }
    }
}

/// Multi-byte text: 2-, 3- and 4-byte characters, a combining mark, a zero-width joiner, a
/// right-to-left mark and a NUL.
pub(crate) const INSERTS: &[&str] =
    &["é", "€", "日本", "𝄞", "🧑‍🚀", "e\u{301}", "\u{200f}", "\u{0}", "\u{feff}"];
/// Offsets tried in a string longer than this: the first ones and the last.
pub(crate) const MAX_OFFSETS: usize = 24;

pub(crate) fn nested(depth: usize, array: bool) -> Value {
    let mut v = json!("x");
    for _ in 0..depth {
        v = if array { json!([v]) } else { json!({ "a": v }) };
    }
    v
}

pub(crate) fn r(label: &'static str, value: fn() -> Value) -> Mutation {
    Mutation::Replace { label, value }
}

/// Replacements for any value.
pub(crate) fn hostile_values() -> Vec<Mutation> {
    vec![
        r("\"\"", || json!("")),
        r("70,000 x", || json!("x".repeat(70_000))),
        r("70,000 ü (2-byte)", || json!("ü".repeat(70_000))),
        r("a space", || json!(" ")),
        r("a number", || json!(7)),
        r("a numeric string", || json!("7")),
        r("an object", || json!({"x": 1})),
        r("an array", || json!(["x"])),
        r("{}", || json!({})),
        r("[]", || json!([])),
        r("null", || Value::Null),
        r("true", || json!(true)),
        r("i64::MAX", || json!(i64::MAX)),
        r("i64::MIN", || json!(i64::MIN)),
        r("u64::MAX", || json!(u64::MAX)),
        r("-1", || json!(-1)),
        r("0", || json!(0)),
        r("i32::MAX", || json!(i32::MAX)),
        r("i32::MAX+1", || json!(i64::from(i32::MAX) + 1)),
        r("i32::MIN-1", || json!(i64::from(i32::MIN) - 1)),
        r("1e308", || json!(1e308)),
        r("-1e308", || json!(-1e308)),
        r("-0.0", || json!(-0.0)),
        r("0.5", || json!(0.5)),
        r("2^53+1", || json!(9_007_199_254_740_993_i64)),
        r("arrays nested 100 deep", || nested(100, true)),
        r("objects nested 100 deep", || nested(100, false)),
        r("arrays nested 200 deep", || nested(200, true)),
        r("objects nested 200 deep", || nested(200, false)),
    ]
}

/// Replacements for strings: well-typed values that parsers of names, ARNs, revisions,
/// numbers in strings, port ranges and the cluster query language must refuse cleanly.
pub(crate) fn hostile_strings() -> Vec<Mutation> {
    vec![
        r("\":\"", || json!(":")),
        r("\"fz:0\"", || json!("fz:0")),
        r("\"fz:-1\"", || json!("fz:-1")),
        r("\"fz:2^64\"", || json!("fz:18446744073709551616")),
        r("\"fz:1:2\"", || json!("fz:1:2")),
        r("\"/\"", || json!("/")),
        r("\"../x\"", || json!("../x")),
        r("\"*\"", || json!("*")),
        r("\"-1\"", || json!("-1")),
        r("\"65536\"", || json!("65536")),
        r("\"2^64\"", || json!("18446744073709551616")),
        r("\"1e9\"", || json!("1e9")),
        r("\"NaN\"", || json!("NaN")),
        r("\"9-1\"", || json!("9-1")),
        r("\"0-4294967296\"", || json!("0-4294967296")),
        r("\"1 vCPU\"", || json!("1 vCPU")),
        r("\"99999 GB\"", || json!("99999 GB")),
        r("an ARN with no resource", || json!("arn:aws:ecs:us-east-1:123456789012:")),
        r("a task ARN with no id", || json!("arn:aws:ecs:us-east-1:123456789012:task/fz/")),
        r("a task-definition ARN with a huge revision", || {
            json!("arn:aws:ecs:us-east-1:123456789012:task-definition/fz:99999999999999999999")
        }),
        r("an ARN of another account", || json!("arn:aws:ecs:us-east-1:999999999999:cluster/fz")),
        r("an ARN of another partition", || json!("arn:aws-cn:ecs:::cluster/fz")),
        r("an empty ARN", || json!("arn:::::")),
        r("a service-deployment ARN cut short", || {
            json!("arn:aws:ecs:us-east-1:123456789012:service-deployment/fz/")
        }),
        r("3,000 '('", || json!("(".repeat(3000))),
        r("1,000 nested parentheses", || {
            json!(format!("{}attribute:a == b{}", "(".repeat(1000), ")".repeat(1000)))
        }),
        r("'not' 1,000 times", || json!(format!("{}attribute:a == b", "not ".repeat(1000)))),
        r("a query with a bad regex", || json!("attribute:a =~ ((((")),
        r("a query with a huge count", || json!("runningTasksCount > 99999999999999999999")),
        r("a query with a bad date", || json!("registeredAt < 9999-99-99")),
        r("a query with a huge in-list", || {
            json!(format!("attribute:a in [{}]", vec!["x"; 900].join(",")))
        }),
        r("a 2,000-character query", || json!(format!("attribute:a == {}", "x".repeat(1990)))),
        r("a base64 token of garbage", || json!("AAAAAAAAAAAAAAAAAAAA")),
        r("a JSON token", || json!("{\"a\":1}")),
        r("invalid JSON text", || json!("{\"instanceId\":")),
        r("JSON text of an array", || json!("[1,2,3]")),
        r("JSON text with a huge number", || json!("{\"instanceId\":1e999}")),
    ]
}

/// Renames for object members.
pub(crate) fn key_renames() -> Vec<Mutation> {
    pub(crate) fn k(label: &'static str, to: fn(&str) -> String) -> Mutation {
        Mutation::RenameKey { label, to }
    }
    vec![
        k("\"\"", |_| String::new()),
        k("the name with é appended", |s| format!("{s}é")),
        k("the name in capitals", str::to_uppercase),
        k("70,000 x", |_| "x".repeat(70_000)),
    ]
}

/// Whole-body rewrites.
pub(crate) fn raw_bodies() -> Vec<Mutation> {
    pub(crate) fn raw(label: &'static str, to: fn(&[u8]) -> Vec<u8>) -> Mutation {
        Mutation::Raw { label, to }
    }
    vec![
        raw("cut at a third", |b| b[..b.len() / 3].to_vec()),
        raw("cut one byte short", |b| b[..b.len() - 1].to_vec()),
        raw("with an invalid UTF-8 byte in the first string", |b| {
            let mut v = b.to_vec();
            let at = v.iter().position(|&c| c == b'"').map_or(0, |i| i + 1);
            v.insert(at, 0xff);
            v
        }),
        raw("with a lone surrogate escape in the first string", |b| {
            let mut v = b.to_vec();
            let at = v.iter().position(|&c| c == b'"').map_or(0, |i| i + 1);
            v.splice(at..at, b"\\ud800".iter().copied());
            v
        }),
        raw("behind a byte-order mark", |b| [&[0xef, 0xbb, 0xbf][..], b].concat()),
        raw("twice", |b| [b, b].concat()),
        raw("inside an array", |b| [&b"["[..], b, b"]"].concat()),
        raw("as a JSON string", |b| serde_json::to_vec(&String::from_utf8_lossy(b)).unwrap()),
        raw("null", |_| b"null".to_vec()),
        raw("a number", |_| b"1e999".to_vec()),
        raw("with a duplicated first member", |b| {
            let v: Value = serde_json::from_slice(b).unwrap();
            let Some((k, first)) = v.as_object().and_then(|o| o.iter().next()) else {
                return b.to_vec();
            };
            let dup = format!("{{{}:{},", Value::from(k.as_str()), first);
            [dup.as_bytes(), &b[1..]].concat()
        }),
    ]
}

/// The extreme numbers the quick run puts in place of every number.
pub(crate) const EXTREMES: &[&str] =
    &["i64::MAX", "-1", "i32::MAX", "i32::MAX+1", "1e308", "-0.0", "2^53+1"];

pub(crate) fn value_at<'a>(v: &'a Value, path: &Path) -> Option<&'a Value> {
    path.0.iter().try_fold(v, |cur, seg| match seg {
        Seg::Key(k) => cur.get(k),
        Seg::Index(i) => cur.get(i),
    })
}

/// Every (path, mutation) of `seed`, in a fixed order.
pub(crate) fn mutations_of(seed: &Value) -> Vec<(Path, Mutation)> {
    let mut out: Vec<(Path, Mutation)> =
        raw_bodies().into_iter().map(|m| (Path(Vec::new()), m)).collect();
    walk(seed, &mut Vec::new(), &mut out);
    out
}

pub(crate) fn walk(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<(Path, Mutation)>) {
    if !at.is_empty() {
        let path = Path(at.clone());
        if let Value::String(s) = v {
            let chars = s.chars().count();
            let mut offsets: Vec<usize> = (0..=chars).collect();
            if offsets.len() > MAX_OFFSETS {
                offsets.drain(MAX_OFFSETS - 2..offsets.len() - 2);
            }
            for (i, &offset) in offsets.iter().enumerate() {
                // Every character at the ends; elsewhere one character per offset.
                let texts: Vec<&'static str> = if i == 0 || i + 1 == offsets.len() {
                    INSERTS.to_vec()
                } else {
                    vec![INSERTS[i % INSERTS.len()]]
                };
                for text in texts {
                    out.push((path.clone(), Mutation::Insert { text, offset }));
                }
            }
            for m in hostile_strings() {
                out.push((path.clone(), m));
            }
        }
        for m in hostile_values() {
            out.push((path.clone(), m));
        }
        out.push((path.clone(), Mutation::Remove));
        if matches!(at.last(), Some(Seg::Key(_))) {
            for m in key_renames() {
                out.push((path.clone(), m));
            }
        }
        if matches!(v, Value::Array(a) if !a.is_empty()) {
            for n in [2, 101, 1000] {
                out.push((path.clone(), Mutation::Repeat { n }));
            }
        }
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(Seg::Key(k.clone()));
                walk(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(Seg::Index(i));
                walk(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// The body `m` at `path` makes of `v`; `None` when the path is not there (the seed changed
/// shape since the mutation was listed).
pub(crate) fn render(mut v: Value, path: &Path, m: &Mutation) -> Option<Vec<u8>> {
    if let Mutation::Raw { to, .. } = m {
        return Some(to(v.to_string().as_bytes()));
    }
    apply(&mut v, path, m).then(|| v.to_string().into_bytes())
}

/// Applies `m` at `path`; false when the path is not there.
pub(crate) fn apply(v: &mut Value, path: &Path, m: &Mutation) -> bool {
    let Some((last, parents)) = path.0.split_last() else { return false };
    let mut cur = v;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Object(o)) => match o.get_mut(k) {
                Some(c) => c,
                None => return false,
            },
            (Seg::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(c) => c,
                None => return false,
            },
            _ => return false,
        };
    }
    match (m, last, &mut *cur) {
        (Mutation::Remove, Seg::Key(k), Value::Object(o)) => return o.remove(k).is_some(),
        (Mutation::Remove, Seg::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            return true;
        }
        (Mutation::RenameKey { to, .. }, Seg::Key(k), Value::Object(o)) => {
            let Some(value) = o.remove(k) else { return false };
            o.insert(to(k), value);
            return true;
        }
        (Mutation::Remove | Mutation::RenameKey { .. } | Mutation::Raw { .. }, _, _) => {
            return false;
        }
        _ => {}
    }
    let target = match (last, cur) {
        (Seg::Key(k), Value::Object(o)) => o.get_mut(k),
        (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    };
    let Some(target) = target else { return false };
    match m {
        Mutation::Insert { text, offset } => {
            let Value::String(s) = target else { return false };
            let at = s.char_indices().nth(*offset).map_or(s.len(), |(b, _)| b);
            s.insert_str(at, text);
        }
        Mutation::Replace { value, .. } => *target = value(),
        Mutation::Repeat { n } => {
            let Value::Array(a) = target else { return false };
            let Some(first) = a.first().cloned() else { return false };
            while a.len() < *n {
                a.push(first.clone());
            }
        }
        Mutation::Remove | Mutation::RenameKey { .. } | Mutation::Raw { .. } => return false,
    }
    true
}
