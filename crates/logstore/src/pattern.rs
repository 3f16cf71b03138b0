//! CloudWatch Logs filter patterns: parsing and matching, pure (no IO, no clock).
//!
//! Contract: [`Pattern::parse`] accepts the syntax FilterLogEvents takes and refuses anything
//! else with a [`PatternError`] naming what it could not read; [`Pattern::matches`] decides one
//! event message. The forms:
//! * empty (or only blanks): every event matches;
//! * terms: `ERROR`, `"quoted phrase"`, `-excluded`, `?optional`. An event matches when it
//!   contains every plain term, none of the `-` terms, and (when there are `?` terms) at least
//!   one `?` term. Terms match as case-sensitive substrings, as CloudWatch's do;
//! * a regular expression between `%` signs: `%ERROR [0-9]+%` (searched anywhere in the message);
//! * JSON: `{ SELECTOR OP VALUE }` joined with `&&` and `||` (`&&` binds tighter) and grouped
//!   with parentheses. SELECTOR is `$` followed by `.field` and `[N]` steps. OP is `=`, `!=`
//!   (strings, with `*` wildcards, or numbers), `<`, `>`, `<=`, `>=` (numbers); also
//!   `IS NULL`, `IS TRUE`, `IS FALSE`, `NOT EXISTS`. VALUE is a number, a `"quoted string"` or a
//!   bare word. A message that is not a JSON object matches no JSON pattern; `!=` needs the
//!   field to exist, as in CloudWatch;
//! * space-delimited: `[ip, user, ..., status = 4* || status = 5*, bytes > 1000]`. A message
//!   splits into fields at runs of blanks; text between `"` quotes or `[` `]` brackets is one
//!   field (without them). Each pattern field names one message field (`...` stands for any
//!   number of them, zero included); the counts must agree. A field's conditions (`=`, `!=`
//!   with `*` wildcards or numbers, `<`, `>`, `<=`, `>=` on numbers) are joined with `&&` and
//!   `||` (`&&` binds tighter) and may repeat the field's name (`status = 4* || status = 5*`).
//!
//! [`Pattern::extract`] answers the values a matching event carries: the JSON document (for
//! `$.field` selectors) or the named fields of a space-delimited pattern (for `$name`), which
//! metric filters publish ([`crate::metric_filter`]).

use serde_json::Value;

/// Why a filter pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid filter pattern: {0}")]
pub struct PatternError(pub String);

/// A parsed filter pattern.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Every event.
    All,
    Terms {
        required: Vec<String>,
        excluded: Vec<String>,
        optional: Vec<String>,
    },
    Regex(regex::Regex),
    Json(Expr),
    Delimited(Vec<Field>),
}

/// One field of a space-delimited pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `...`: any number of message fields.
    Ellipsis,
    /// One message field, named, meeting `any` of the `&&`-joined groups (none: any value).
    One { name: String, any: Vec<Vec<Test>> },
}

/// The values a matching event carries ([`Pattern::extract`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Extracted {
    /// Term and regular expression patterns extract nothing.
    Nothing,
    Json(Value),
    /// A space-delimited pattern's named fields, in pattern order.
    Fields(Vec<(String, String)>),
}

/// A reference to an extracted value: `$.a.b[0]` (JSON) or `$name` (space-delimited).
#[derive(Debug, Clone, PartialEq)]
pub enum FieldRef {
    Json(Vec<Step>),
    Named(String),
}

impl FieldRef {
    /// Parses `$.selector` or `$name`; `None` for anything else.
    pub fn parse(s: &str) -> Option<FieldRef> {
        let s = s.trim();
        if s.starts_with("$.") || s.starts_with("$[") {
            return match lex(s).ok()?.as_slice() {
                [Tok::Selector(steps)] if !steps.is_empty() => Some(FieldRef::Json(steps.clone())),
                _ => None,
            };
        }
        let name = s.strip_prefix('$')?;
        (!name.is_empty() && name.chars().all(is_name_char))
            .then(|| FieldRef::Named(name.to_string()))
    }

    /// Whether `pattern` can ever extract this value.
    pub fn fits(&self, pattern: &Pattern) -> bool {
        match (self, pattern) {
            (FieldRef::Json(_), Pattern::Json(_)) => true,
            (FieldRef::Named(n), Pattern::Delimited(fields)) => {
                fields.iter().any(|f| matches!(f, Field::One { name, .. } if name == n))
            }
            _ => false,
        }
    }
}

impl Extracted {
    /// The referenced value as text (JSON strings unquoted, other JSON values as JSON).
    pub fn get(&self, r: &FieldRef) -> Option<String> {
        match (self, r) {
            (Extracted::Json(v), FieldRef::Json(path)) => select(v, path).map(json_text),
            (Extracted::Fields(f), FieldRef::Named(n)) => {
                f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
            }
            _ => None,
        }
    }
}

fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A JSON pattern's expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp { path: Vec<Step>, test: Test },
}

/// One step of a selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
}

/// What a selected value is tested for.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Eq(Literal),
    Ne(Literal),
    Lt(f64),
    Gt(f64),
    Le(f64),
    Ge(f64),
    IsNull,
    IsTrue,
    IsFalse,
    NotExists,
}

/// A value on the right of `=` or `!=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    /// May hold `*` wildcards.
    Text(String),
}

impl Pattern {
    /// Parses a FilterLogEvents `filterPattern`.
    pub fn parse(src: &str) -> Result<Pattern, PatternError> {
        let s = src.trim();
        if s.is_empty() {
            return Ok(Pattern::All);
        }
        if s.starts_with('{') {
            return parse_json(s).map(Pattern::Json);
        }
        if s.starts_with('[') {
            return parse_delimited(s).map(Pattern::Delimited);
        }
        if s.len() >= 2 && s.starts_with('%') && s.ends_with('%') {
            let re = regex::Regex::new(&s[1..s.len() - 1])
                .map_err(|e| PatternError(format!("bad regular expression: {e}")))?;
            return Ok(Pattern::Regex(re));
        }
        parse_terms(s)
    }

    /// Whether an event with this message matches.
    pub fn matches(&self, message: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Terms { required, excluded, optional } => {
                required.iter().all(|t| message.contains(t.as_str()))
                    && !excluded.iter().any(|t| message.contains(t.as_str()))
                    && (optional.is_empty()
                        || optional.iter().any(|t| message.contains(t.as_str())))
            }
            Pattern::Regex(re) => re.is_match(message),
            Pattern::Json(expr) => {
                let Ok(v) = serde_json::from_str::<Value>(message.trim()) else { return false };
                v.is_object() && eval(expr, &v)
            }
            Pattern::Delimited(fields) => match_delimited(fields, &split_fields(message)).is_some(),
        }
    }

    /// The values of a matching event; `None` when it does not match.
    pub fn extract(&self, message: &str) -> Option<Extracted> {
        match self {
            Pattern::Json(expr) => {
                let v = serde_json::from_str::<Value>(message.trim()).ok()?;
                (v.is_object() && eval(expr, &v)).then_some(Extracted::Json(v))
            }
            Pattern::Delimited(fields) => {
                match_delimited(fields, &split_fields(message)).map(Extracted::Fields)
            }
            p => p.matches(message).then_some(Extracted::Nothing),
        }
    }

    /// What TestMetricFilter shows of a match: the pattern's selectors (`$.a.b`) or fields
    /// (`$name`) with the values the event holds for them.
    pub fn shown_values(
        &self,
        extracted: &Extracted,
    ) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        match (self, extracted) {
            (Pattern::Json(expr), Extracted::Json(v)) => {
                let mut paths = vec![];
                selectors(expr, &mut paths);
                for path in paths {
                    if let Some(x) = select(v, path) {
                        out.insert(selector_text(path), json_text(x));
                    }
                }
            }
            (_, Extracted::Fields(f)) => {
                for (k, v) in f {
                    out.insert(format!("${k}"), v.clone());
                }
            }
            _ => {}
        }
        out
    }
}

fn selectors<'a>(e: &'a Expr, out: &mut Vec<&'a [Step]>) {
    match e {
        Expr::And(a, b) | Expr::Or(a, b) => {
            selectors(a, out);
            selectors(b, out);
        }
        Expr::Cmp { path, .. } => out.push(path),
    }
}

fn selector_text(path: &[Step]) -> String {
    let mut s = String::from("$");
    for step in path {
        match step {
            Step::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// A message's space-delimited fields (see the module header).
pub fn split_fields(message: &str) -> Vec<String> {
    let mut out = vec![];
    let mut chars = message.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { return out };
        let mut field = String::new();
        let close = match first {
            '"' => Some('"'),
            '[' => Some(']'),
            _ => None,
        };
        if let Some(close) = close {
            chars.next();
            for c in chars.by_ref() {
                if c == close {
                    break;
                }
                field.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                field.push(c);
                chars.next();
            }
        }
        out.push(field);
    }
}

/// The named values when `fields` match `values` (a backtracking walk over the ellipses).
fn match_delimited(fields: &[Field], values: &[String]) -> Option<Vec<(String, String)>> {
    fn walk(fields: &[Field], values: &[String], out: &mut Vec<(String, String)>) -> bool {
        match fields.split_first() {
            None => values.is_empty(),
            Some((Field::Ellipsis, rest)) => {
                (0..=values.len()).any(|skip| walk(rest, &values[skip..], out))
            }
            Some((Field::One { name, any }, rest)) => {
                let Some((v, more)) = values.split_first() else { return false };
                if !any.is_empty() && !any.iter().any(|all| all.iter().all(|t| test_text(t, v))) {
                    return false;
                }
                let at = out.len();
                out.push((name.clone(), v.clone()));
                if walk(rest, more, out) {
                    return true;
                }
                out.truncate(at);
                false
            }
        }
    }
    let mut out = vec![];
    walk(fields, values, &mut out).then_some(out)
}

/// A space-delimited condition on a field's text.
fn test_text(t: &Test, v: &str) -> bool {
    let n = || v.parse::<f64>().ok().filter(|x| x.is_finite());
    match t {
        Test::Eq(lit) => text_equals(v, lit),
        Test::Ne(lit) => !text_equals(v, lit),
        Test::Lt(x) => n().is_some_and(|n| n < *x),
        Test::Gt(x) => n().is_some_and(|n| n > *x),
        Test::Le(x) => n().is_some_and(|n| n <= *x),
        Test::Ge(x) => n().is_some_and(|n| n >= *x),
        Test::IsNull | Test::IsTrue | Test::IsFalse | Test::NotExists => false,
    }
}

fn text_equals(v: &str, lit: &Literal) -> bool {
    match lit {
        Literal::Number(n) => v.parse::<f64>().ok() == Some(*n),
        Literal::Text(t) => wildcard(t, v),
    }
}

fn parse_delimited(s: &str) -> Result<Vec<Field>, PatternError> {
    let fail = |m: String| PatternError(format!("{m} in '{s}'"));
    let inner = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| fail("a space-delimited pattern ends with ']'".into()))?;
    // Commas inside quoted values do not split fields.
    let mut parts = vec![];
    let (mut cur, mut quoted) = (String::new(), false);
    for c in inner.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err(fail("an unterminated string".into()));
    }
    parts.push(cur);
    let mut fields = vec![];
    let mut names = std::collections::HashSet::new();
    for (i, part) in parts.iter().enumerate() {
        let p = part.trim();
        if p == "..." {
            fields.push(Field::Ellipsis);
            continue;
        }
        let name: String = p.chars().take_while(|c| is_name_char(*c)).collect();
        if name.is_empty() {
            return Err(fail(format!("field {} has no name", i + 1)));
        }
        if !names.insert(name.clone()) {
            return Err(fail(format!("the field name '{name}' is used twice")));
        }
        let rest = p[name.len()..].trim();
        let any = if rest.is_empty() { vec![] } else { parse_conditions(&name, rest, s)? };
        fields.push(Field::One { name, any });
    }
    Ok(fields)
}

/// `OP VALUE [&&|| [NAME] OP VALUE]...` of one space-delimited field.
fn parse_conditions(name: &str, src: &str, whole: &str) -> Result<Vec<Vec<Test>>, PatternError> {
    let fail = |m: String| PatternError(format!("{m} in '{whole}'"));
    let mut any: Vec<Vec<Test>> = vec![vec![]];
    let mut rest = src;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(name)
            && r.trim_start().starts_with(['=', '!', '<', '>'])
        {
            rest = r.trim_start();
        }
        let op = ["!=", "<=", ">=", "=", "<", ">"]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| fail(format!("field '{name}': expected =, !=, <, >, <= or >=")))?;
        rest = rest[op.len()..].trim_start();
        let (value, quoted, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or_else(|| fail("an unterminated string".into()))?;
            (&r[..end], true, &r[end + 1..])
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '&' || c == '|')
                .unwrap_or(rest.len());
            (&rest[..end], false, &rest[end..])
        };
        if value.is_empty() && !quoted {
            return Err(fail(format!("field '{name}': expected a value after '{op}'")));
        }
        let number =
            (!quoted).then(|| value.parse::<f64>().ok()).flatten().filter(|n| n.is_finite());
        let test = match op {
            "=" | "!=" => {
                let lit = match number {
                    Some(n) => Literal::Number(n),
                    None => Literal::Text(value.to_string()),
                };
                if op == "=" { Test::Eq(lit) } else { Test::Ne(lit) }
            }
            _ => {
                let Some(n) = number else {
                    return Err(fail(format!("field '{name}': '{op}' compares numbers only")));
                };
                match op {
                    "<" => Test::Lt(n),
                    ">" => Test::Gt(n),
                    "<=" => Test::Le(n),
                    _ => Test::Ge(n),
                }
            }
        };
        any.last_mut().expect("one group at least").push(test);
        rest = after.trim_start();
        if rest.is_empty() {
            return Ok(any);
        } else if let Some(r) = rest.strip_prefix("&&") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("||") {
            any.push(vec![]);
            rest = r;
        } else {
            return Err(fail(format!("field '{name}': unexpected '{rest}'")));
        }
    }
}

fn parse_terms(s: &str) -> Result<Pattern, PatternError> {
    let (mut required, mut excluded, mut optional) = (vec![], vec![], vec![]);
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let kind = match first {
            '-' | '?' => {
                chars.next();
                first
            }
            _ => ' ',
        };
        let mut term = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some(n) => term.push(n),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => term.push(c),
                }
            }
            if !closed {
                return Err(PatternError(format!("unterminated quoted term in '{s}'")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                term.push(c);
                chars.next();
            }
        }
        if term.is_empty() {
            return Err(PatternError(format!("an empty term in '{s}'")));
        }
        match kind {
            '-' => excluded.push(term),
            '?' => optional.push(term),
            _ => required.push(term),
        }
    }
    Ok(Pattern::Terms { required, excluded, optional })
}

/// A token of a JSON pattern.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrace,
    RBrace,
    LParen,
    RParen,
    And,
    Or,
    Op(&'static str),
    Selector(Vec<Step>),
    Str(String),
    Word(String),
    Num(f64),
}

fn lex(s: &str) -> Result<Vec<Tok>, PatternError> {
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = vec![];
    let err = |m: String| Err(PatternError(m));
    while i < b.len() {
        let c = b[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '{' => (out.push(Tok::LBrace), i += 1).1,
            '}' => (out.push(Tok::RBrace), i += 1).1,
            '(' => (out.push(Tok::LParen), i += 1).1,
            ')' => (out.push(Tok::RParen), i += 1).1,
            '&' if b.get(i + 1) == Some(&'&') => (out.push(Tok::And), i += 2).1,
            '|' if b.get(i + 1) == Some(&'|') => (out.push(Tok::Or), i += 2).1,
            '!' if b.get(i + 1) == Some(&'=') => (out.push(Tok::Op("!=")), i += 2).1,
            '<' | '>' => {
                if b.get(i + 1) == Some(&'=') {
                    out.push(Tok::Op(if c == '<' { "<=" } else { ">=" }));
                    i += 2;
                } else {
                    out.push(Tok::Op(if c == '<' { "<" } else { ">" }));
                    i += 1;
                }
            }
            '=' => {
                out.push(Tok::Op("="));
                i += if b.get(i + 1) == Some(&'=') { 2 } else { 1 };
            }
            '"' => {
                let mut t = String::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return err(format!("unterminated string in '{s}'")),
                        Some('\\') => {
                            if let Some(n) = b.get(i + 1) {
                                t.push(*n);
                            }
                            i += 2;
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            t.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(t));
            }
            '$' => {
                i += 1;
                let mut steps = vec![];
                loop {
                    match b.get(i) {
                        Some('.') => {
                            i += 1;
                            let start = i;
                            while b.get(i).is_some_and(|c| {
                                c.is_alphanumeric() || matches!(c, '_' | '-' | '@' | ':')
                            }) {
                                i += 1;
                            }
                            if start == i {
                                return err(format!("a selector step without a name in '{s}'"));
                            }
                            steps.push(Step::Field(b[start..i].iter().collect()));
                        }
                        Some('[') => {
                            i += 1;
                            let start = i;
                            while b.get(i).is_some_and(|c| c.is_ascii_digit()) {
                                i += 1;
                            }
                            let n: String = b[start..i].iter().collect();
                            if b.get(i) != Some(&']') || n.is_empty() {
                                return err(format!("a selector index must be [N] in '{s}'"));
                            }
                            i += 1;
                            steps.push(Step::Index(
                                n.parse()
                                    .map_err(|_| PatternError(format!("index {n} too large")))?,
                            ));
                        }
                        _ => break,
                    }
                }
                out.push(Tok::Selector(steps));
            }
            _ => {
                let start = i;
                while b.get(i).is_some_and(|c| {
                    !c.is_whitespace()
                        && !matches!(
                            c,
                            '{' | '}' | '(' | ')' | '=' | '!' | '<' | '>' | '&' | '|' | '"'
                        )
                }) {
                    i += 1;
                }
                if start == i {
                    return err(format!("unexpected '{c}' in '{s}'"));
                }
                let w: String = b[start..i].iter().collect();
                match w.parse::<f64>() {
                    Ok(n) if n.is_finite() => out.push(Tok::Num(n)),
                    _ => out.push(Tok::Word(w)),
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
    src: String,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn fail<T>(&self, what: &str) -> Result<T, PatternError> {
        Err(PatternError(format!("{what} in '{}'", self.src)))
    }
    fn expr(&mut self) -> Result<Expr, PatternError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, PatternError> {
        let mut left = self.atom()?;
        while self.peek() == Some(&Tok::And) {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }
    fn atom(&mut self) -> Result<Expr, PatternError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.expr()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => self.fail("a missing ')'"),
                }
            }
            Some(Tok::Selector(path)) => {
                let test = self.test()?;
                Ok(Expr::Cmp { path, test })
            }
            _ => self.fail("expected a selector ($.field) or '('"),
        }
    }
    fn word_is(t: &Option<Tok>, w: &str) -> bool {
        matches!(t, Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w))
    }
    fn test(&mut self) -> Result<Test, PatternError> {
        let op = self.next();
        if Self::word_is(&op, "IS") {
            let what = self.next();
            return if Self::word_is(&what, "NULL") {
                Ok(Test::IsNull)
            } else if Self::word_is(&what, "TRUE") {
                Ok(Test::IsTrue)
            } else if Self::word_is(&what, "FALSE") {
                Ok(Test::IsFalse)
            } else {
                self.fail("IS must be followed by NULL, TRUE or FALSE")
            };
        }
        if Self::word_is(&op, "NOT") {
            let what = self.next();
            return if Self::word_is(&what, "EXISTS") {
                Ok(Test::NotExists)
            } else {
                self.fail("NOT must be followed by EXISTS")
            };
        }
        let Some(Tok::Op(op)) = op else {
            return self.fail("expected a comparison (=, !=, <, >, <=, >=, IS, NOT EXISTS)");
        };
        let value = self.next();
        match op {
            "=" | "!=" => {
                let lit = match value {
                    Some(Tok::Num(n)) => Literal::Number(n),
                    Some(Tok::Str(s)) | Some(Tok::Word(s)) => Literal::Text(s),
                    _ => return self.fail(&format!("expected a value after '{op}'")),
                };
                Ok(if op == "=" { Test::Eq(lit) } else { Test::Ne(lit) })
            }
            _ => {
                let Some(Tok::Num(n)) = value else {
                    return self.fail(&format!("'{op}' compares numbers only"));
                };
                Ok(match op {
                    "<" => Test::Lt(n),
                    ">" => Test::Gt(n),
                    "<=" => Test::Le(n),
                    _ => Test::Ge(n),
                })
            }
        }
    }
}

fn parse_json(s: &str) -> Result<Expr, PatternError> {
    let toks = lex(s)?;
    let mut p = Parser { toks, at: 0, src: s.to_string() };
    if p.next() != Some(Tok::LBrace) {
        return p.fail("a JSON pattern starts with '{'");
    }
    let e = p.expr()?;
    if p.next() != Some(Tok::RBrace) {
        return p.fail("a JSON pattern ends with '}' after its conditions");
    }
    if p.peek().is_some() {
        return p.fail("text after the closing '}'");
    }
    Ok(e)
}

fn select<'a>(v: &'a Value, path: &[Step]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, step| match step {
        Step::Field(f) => v.get(f.as_str()),
        Step::Index(i) => v.get(*i),
    })
}

fn eval(e: &Expr, v: &Value) -> bool {
    match e {
        Expr::And(a, b) => eval(a, v) && eval(b, v),
        Expr::Or(a, b) => eval(a, v) || eval(b, v),
        Expr::Cmp { path, test } => {
            let found = select(v, path);
            match test {
                Test::NotExists => found.is_none(),
                Test::IsNull => found.is_some_and(Value::is_null),
                Test::IsTrue => found == Some(&Value::Bool(true)),
                Test::IsFalse => found == Some(&Value::Bool(false)),
                Test::Eq(lit) => found.is_some_and(|f| equals(f, lit)),
                Test::Ne(lit) => found.is_some_and(|f| !equals(f, lit)),
                Test::Lt(n) => number(found).is_some_and(|x| x < *n),
                Test::Gt(n) => number(found).is_some_and(|x| x > *n),
                Test::Le(n) => number(found).is_some_and(|x| x <= *n),
                Test::Ge(n) => number(found).is_some_and(|x| x >= *n),
            }
        }
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn equals(v: &Value, lit: &Literal) -> bool {
    match (lit, v) {
        (Literal::Number(n), Value::Number(x)) => x.as_f64() == Some(*n),
        (Literal::Number(n), Value::String(s)) => s.parse::<f64>().ok() == Some(*n),
        (Literal::Number(_), _) => false,
        (Literal::Text(t), Value::String(s)) => wildcard(t, s),
        (Literal::Text(t), Value::Number(x)) => wildcard(t, &x.to_string()),
        (Literal::Text(t), Value::Bool(b)) => wildcard(t, if *b { "true" } else { "false" }),
        (Literal::Text(_), _) => false,
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_as_cloudwatch_does() {
        let json = r#"{"level":"error","code":503,"latency":1.5,"user":{"name":"ann","roles":["admin","dev"]},"ok":false,"gone":null,"count":"7"}"#;
        let table: &[(&str, &str, bool)] = &[
            ("", "anything", true),
            ("   ", "anything", true),
            ("ERROR", "[ERROR] disk full", true),
            ("ERROR", "[error] disk full", false),
            ("ERROR disk", "[ERROR] disk full", true),
            ("ERROR memory", "[ERROR] disk full", false),
            ("\"disk full\"", "[ERROR] disk full", true),
            ("\"full disk\"", "[ERROR] disk full", false),
            ("ERROR -disk", "[ERROR] disk full", false),
            ("ERROR -memory", "[ERROR] disk full", true),
            ("-\"disk full\"", "[ERROR] disk full", false),
            ("?ERROR ?WARN", "WARN low", true),
            ("?ERROR ?WARN", "INFO fine", false),
            ("disk ?ERROR ?WARN", "INFO disk", false),
            ("disk ?ERROR ?WARN", "WARN disk", true),
            ("\"say \\\"hi\\\"\"", "they say \"hi\" here", true),
            ("%ERROR [0-9]+%", "ERROR 42 happened", true),
            ("%ERROR [0-9]+%", "ERROR x happened", false),
            (r#"{ $.level = "error" }"#, json, true),
            (r#"{ $.level = "warn" }"#, json, false),
            (r#"{$.level="err*"}"#, json, true),
            (r#"{ $.level = *ror }"#, json, true),
            (r#"{ $.level = error }"#, json, true),
            (r#"{ $.level != "warn" }"#, json, true),
            (r#"{ $.level != "error" }"#, json, false),
            (r#"{ $.missing != "x" }"#, json, false),
            ("{ $.code = 503 }", json, true),
            ("{ $.code = 504 }", json, false),
            ("{ $.code >= 500 }", json, true),
            ("{ $.code < 500 }", json, false),
            ("{ $.latency > 1 && $.latency <= 1.5 }", json, true),
            ("{ $.latency > 2 || $.code = 503 }", json, true),
            ("{ ($.latency > 2 || $.code = 503) && $.level = \"warn\" }", json, false),
            ("{ $.latency > 2 || $.code = 503 && $.level = \"warn\" }", json, false),
            ("{ $.code = 503 || $.latency > 2 && $.level = \"warn\" }", json, true),
            ("{ $.user.name = \"ann\" }", json, true),
            ("{ $.user.roles[1] = \"dev\" }", json, true),
            ("{ $.user.roles[2] = \"dev\" }", json, false),
            ("{ $.ok IS FALSE }", json, true),
            ("{ $.ok IS TRUE }", json, false),
            ("{ $.gone IS NULL }", json, true),
            ("{ $.nothing NOT EXISTS }", json, true),
            ("{ $.level NOT EXISTS }", json, false),
            ("{ $.count = 7 }", json, true),
            ("{ $.count > 5 }", json, false),
            ("{ $.level > 5 }", json, false),
            (r#"{ $.level = "error" }"#, "level=error, not json", false),
            (r#"{ $.level = "error" }"#, "[1,2]", false),
        ];
        for (pattern, message, want) in table {
            let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(p.matches(message), *want, "pattern {pattern:?} on {message:?}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused_naming_the_problem() {
        let table: &[(&str, &str)] = &[
            ("{ $.a = 1", "ends with '}'"),
            ("{ a = 1 }", "expected a selector"),
            ("{ $.a ~ 1 }", "expected a comparison"),
            ("{ $.a }", "expected a comparison"),
            ("{ $.a > \"x\" }", "compares numbers only"),
            ("{ $.a IS MAYBE }", "IS must be followed"),
            ("{ $. = 1 }", "without a name"),
            ("{ $.a[x] = 1 }", "[N]"),
            ("{ ($.a = 1 }", "missing ')'"),
            ("{ $.a = 1 } extra", "after the closing"),
            ("\"open", "unterminated quoted term"),
            ("[ip, user", "ends with ']'"),
            ("[ip, = 3]", "has no name"),
            ("[ip, ip]", "used twice"),
            ("[ip, st ~ 3]", "expected =, !="),
            ("[ip, st > x]", "numbers only"),
            ("[ip, st = 4 ^ 5]", "unexpected"),
            ("[ip, st = \"4]", "unterminated string"),
            ("%(%", "bad regular expression"),
            ("{ $.a = \"x }", "unterminated string"),
        ];
        for (pattern, why) in table {
            let e = Pattern::parse(pattern).expect_err(pattern);
            assert!(e.0.contains(why), "{pattern:?}: {e} should say {why:?}");
        }
    }

    #[test]
    fn space_delimited_patterns_match_and_extract() {
        let line =
            r#"127.0.0.1 - frank [10/Oct/2000:13:25:15 -0700] "GET /index.html HTTP/1.0" 404 1534"#;
        assert_eq!(
            split_fields(line),
            [
                "127.0.0.1",
                "-",
                "frank",
                "10/Oct/2000:13:25:15 -0700",
                "GET /index.html HTTP/1.0",
                "404",
                "1534"
            ]
        );
        let table: &[(&str, bool)] = &[
            ("[ip, identity, user, time, request, status, bytes]", true),
            ("[ip, identity, user, time, request, status]", false),
            ("[ip, identity, user, time, request, status, bytes, more]", false),
            ("[..., status = 404, bytes]", true),
            ("[..., status=404, bytes]", true),
            ("[..., status = 4*, bytes > 1000]", true),
            ("[..., status = 5*, bytes]", false),
            ("[..., status = 5* || status = 4*, bytes]", true),
            ("[..., status = 5* || = 4*, bytes]", true),
            ("[..., status >= 400 && status < 500, bytes]", true),
            ("[..., status >= 400 && status != 404, bytes]", false),
            ("[ip, ..., request = \"GET *\", ..., bytes < 2000]", true),
            ("[ip = 10.*, ...]", false),
            ("[ip, ..., user = frank, ...]", true),
            ("[...]", true),
            ("[..., bytes, extra]", true),
        ];
        for (pattern, want) in table {
            let p = Pattern::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(p.matches(line), *want, "{pattern}");
        }
        let p = Pattern::parse("[ip, ..., status = 404, bytes]").unwrap();
        let x = p.extract(line).expect("matches");
        assert_eq!(x.get(&FieldRef::parse("$bytes").unwrap()).as_deref(), Some("1534"));
        assert_eq!(x.get(&FieldRef::parse("$ip").unwrap()).as_deref(), Some("127.0.0.1"));
        assert_eq!(x.get(&FieldRef::parse("$nope").unwrap()), None);
        let shown = p.shown_values(&x);
        assert_eq!(shown.get("$status").map(String::as_str), Some("404"));
        assert_eq!(shown.len(), 3, "{shown:?}");
        assert!(p.extract("1.2.3.4 500 10").is_none());
    }

    #[test]
    fn json_and_term_extraction() {
        let p = Pattern::parse("{ $.status = 500 && $.req.path = \"/a*\" }").unwrap();
        let msg = r#"{"status":500,"latency":12.5,"req":{"path":"/api","tags":["x"]}}"#;
        let x = p.extract(msg).expect("matches");
        assert_eq!(x.get(&FieldRef::parse("$.latency").unwrap()).as_deref(), Some("12.5"));
        assert_eq!(x.get(&FieldRef::parse("$.req.tags[0]").unwrap()).as_deref(), Some("x"));
        assert_eq!(x.get(&FieldRef::parse("$.missing").unwrap()), None);
        let shown = p.shown_values(&x);
        assert_eq!(shown.get("$.status").map(String::as_str), Some("500"));
        assert_eq!(shown.get("$.req.path").map(String::as_str), Some("/api"));
        assert!(p.extract(r#"{"status":200}"#).is_none());
        let t = Pattern::parse("ERROR").unwrap();
        assert_eq!(t.extract("an ERROR"), Some(Extracted::Nothing));
        assert_eq!(t.extract("fine"), None);
        for bad in ["$", "$.", "x", "$a b", "$.a = 1", "1"] {
            assert_eq!(FieldRef::parse(bad), None, "{bad}");
        }
        assert!(FieldRef::parse("$.a").unwrap().fits(&p));
        assert!(!FieldRef::parse("$a").unwrap().fits(&p));
        assert!(!FieldRef::parse("$.a").unwrap().fits(&t));
    }

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("a*c", "abc", true),
            ("a*c", "ac", true),
            ("a*c", "ab", false),
            ("*", "", true),
            ("a**b", "ab", true),
            ("*x*y*", "1x2y3", true),
            ("*x*y*", "1y2x3", false),
            ("ab*ba", "aba", false),
        ] {
            assert_eq!(wildcard(p, t), want, "{p} {t}");
        }
    }
}
