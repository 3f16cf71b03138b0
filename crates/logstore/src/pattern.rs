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
//!   field to exist, as in CloudWatch.
//!
//! Not supported (refused with an error naming it): space-delimited patterns (`[ip, user, ...]`).

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
            return Err(PatternError(
                "space-delimited patterns ([field, ...]) are not supported by Berth yet".into(),
            ));
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
            ("[ip, user]", "space-delimited"),
            ("%(%", "bad regular expression"),
            ("{ $.a = \"x }", "unterminated string"),
        ];
        for (pattern, why) in table {
            let e = Pattern::parse(pattern).expect_err(pattern);
            assert!(e.0.contains(why), "{pattern:?}: {e} should say {why:?}");
        }
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
