//! ECS's *cluster query language*: the expressions of `memberOf` placement constraints and of
//! `ListContainerInstances --filter`. [`Expr::parse`] parses an expression once into a tree with
//! every argument already converted (numbers, dates, versions, booleans) and every regular
//! expression compiled; [`Expr::eval`] then tests it against any [`QuerySubject`] without
//! allocating, compiling or parsing arguments, because it runs on the scheduler's hot path
//! (the only allocation is the `regex` crate's per-thread match cache, made once on first use).
//!
//! Source: the Amazon ECS developer guide, "Cluster query language"
//! (<https://docs.aws.amazon.com/AmazonECS/latest/developerguide/cluster-query-language.html>).
//!
//! # Grammar
//!
//! ```text
//! expression := or
//! or         := and { ("or" | "||") and }                 left-associative
//! and        := unary { ("and" | "&&") unary }            left-associative
//! unary      := ("not" | "!") unary | "(" or ")" | condition
//! condition  := subject operator [argument]
//! subject    := "agentConnected" | "agentVersion" | "attribute:" NAME | "ec2InstanceId"
//!             | "registeredAt" | "runningTasksCount" | "task:group"
//! argument   := literal | "[" literal { "," literal } "]"   (a list only for in / not_in)
//! literal    := bare word | 'single quoted' | "double quoted"
//! ```
//!
//! * Precedence is `not` > `and` > `or`; parentheses override it. The keywords `and`, `or`,
//!   `not` are case-sensitive lowercase. `not(...)` needs no space. A `!` where a condition is
//!   expected is `not`, so `!(a)`, `! a` and `!task:group == x` negate, while `!=`, `!~`, `!in`
//!   and `!exists` after a subject are operators.
//! * A subject ends at whitespace, at one of `( ) [ ] , ' "` or at an operator character
//!   `= ! < > ~`, so `runningTasksCount>2` parses; `NAME` is the rest of the subject.
//! * A bare word argument ends only at whitespace or one of `( ) [ ] ,`, so
//!   `service:production`, `t2.*` and `2018-06-18T22:28:28+00:00` are single words. A quoted
//!   literal runs to the next identical quote (no escapes) and may hold anything else. The bare
//!   words `and`, `or`, `not`, `&&`, `||` are not accepted as single values (quote them; inside
//!   a list they are plain values), and a bare value running into `(` is an error, since
//!   regular expressions with groups must be quoted: `=~ 't2.(micro|small)'`.
//! * Operators, symbol and word forms: `==` `equals`, `!=` `not_equals`, `>` `greater_than`,
//!   `>=` `greater_than_equal`, `<` `less_than`, `<=` `less_than_equal`, `exists`, `!exists`
//!   `not_exists`, `in`, `!in` `not_in`, `=~` `matches`, `!~` `not_matches`. `exists` and
//!   `not_exists` take no argument, `in` and `not_in` a non-empty list, the others one literal.
//!
//! | subject             | operators                                          | argument                |
//! |---------------------|----------------------------------------------------|-------------------------|
//! | `agentConnected`    | `==` `!=` `in` `not_in` `matches` `not_matches`    | `true`/`false`, any case |
//! | `agentVersion`      | `==` `!=` `>` `>=` `<` `<=`                        | version, e.g. `1.14.5`  |
//! | `attribute:NAME`    | all                                                | string                  |
//! | `ec2InstanceId`     | `==` `!=` `in` `not_in` `matches` `not_matches`    | string                  |
//! | `registeredAt`      | `==` `!=` `>` `>=` `<` `<=`                        | date, see below         |
//! | `runningTasksCount` | `==` `!=` `>` `>=` `<` `<=`                        | non-negative integer    |
//! | `task:group`        | `==` `!=` `in` `not_in` `matches` `not_matches` `exists` `not_exists` | string |
//!
//! Anything else is a parse error ([`QueryError`]) with the byte offset of the offending token
//! and a message naming it. Expressions longer than 2000 characters (ECS's limit) and
//! expressions nested more than 64 levels deep (parentheses plus `not`s) are rejected, so no
//! input can overflow the stack; no input panics.
//!
//! # Evaluation
//!
//! * **Absent means false.** A comparison on a subject the instance does not have is false,
//!   whatever the operator, negative ones included: `attribute:stack != prod` selects instances
//!   that *have* `stack` with a value other than `prod` (the developer guide documents exactly
//!   this for `list-container-instances --filter "attribute:stack != prod"`), and `not_in`,
//!   `not_matches`, `>`, ... likewise need the attribute. The same holds for an instance without
//!   `ec2InstanceId`, `agentVersion` (or an empty one) or `registeredAt`. Use `not (...)` to
//!   include instances that lack the subject.
//! * **Valueless attributes.** An attribute present without a value satisfies `exists` and
//!   fails `not_exists` and every value comparison (`!=` and `not_in` included).
//! * **Attributes** compare as strings, byte-wise and case-sensitively, for `==`, `!=`, `in`,
//!   `not_in`. The ordering operators compare numerically when both sides are decimal numbers
//!   (digits, sign, point, exponent; not `nan`/`inf`) and byte-wise lexicographically otherwise.
//! * **`matches`/`not_matches`** take a regular expression that must match the *whole* value,
//!   like Java's `String.matches`: `t2.*` matches `t2.small` but not `xt2.small`. The pattern is
//!   compiled with the `regex` crate as `^(?:PATTERN)$`, so Java-only features (backreferences,
//!   lookaround, possessive quantifiers) are parse errors.
//! * **`agentConnected`** is compared as the boolean; `matches` applies the regex to the string
//!   `true` or `false`.
//! * **`agentVersion`** compares as a version: components split on `.`; two all-digit
//!   components compare numerically (any length), any other pair byte-wise as strings; a
//!   missing component counts as `0`, so `1.14 == 1.14.0` and `1.14.5 < 1.14.10`.
//! * **`registeredAt`** accepts `2018-06-18T22:28:28+00:00` (any offset, RFC 3339, optional
//!   fraction), `2018-06-18T22:28:28Z`, `2018-06-18T22:28:28` (UTC) and `2018-06-18` (midnight
//!   UTC) and compares with the instance's registration time at millisecond resolution
//!   (sub-millisecond digits of the argument are truncated toward the past).
//! * **`runningTasksCount`** compares the integer.
//! * **`task:group`** is multi-valued: the distinct groups of the instance's non-stopped tasks.
//!   Each value operator is true when *any* group on the instance satisfies its per-value
//!   predicate: `==`, `in`, `matches` when some group equals / is in the list / matches, and
//!   `!=`, `not_in`, `not_matches` when some group differs / is outside the list / does not
//!   match. An instance without tasks is false for all six. `exists` is true when the instance
//!   has at least one task group and `not_exists` when it has none. Anti-affinity is therefore
//!   written `not(task:group == database)`, not `task:group != database`.
//! * `and`, `or` short-circuit left to right.
//!
//! [`Expr::is_static`] tells whether an expression reads only things that do not change while
//! tasks are placed, so callers can cache its result per instance.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// ECS's maximum expression length, in characters.
const MAX_LEN: usize = 2000;
/// Maximum nesting of parentheses and `not`.
const MAX_DEPTH: usize = 64;
/// Compiled size limit of one regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

const SUBJECTS: &str = "agentConnected, agentVersion, attribute:NAME, ec2InstanceId, registeredAt, \
                        runningTasksCount, task:group";

const DATE_FORMATS: &str =
    "2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, 2018-06-18T22:28:28 (UTC) or 2018-06-18";

/// A parsed, compiled cluster query language expression.
#[derive(Clone, Debug)]
pub struct Expr {
    source: Box<str>,
    root: Node,
    is_static: bool,
}

impl Expr {
    /// Parses and compiles `src`. See the module documentation for the grammar.
    pub fn parse(src: &str) -> Result<Expr, QueryError> {
        if let Some((pos, _)) = src.char_indices().nth(MAX_LEN) {
            return Err(err(
                pos,
                format!(
                    "expression is too long: {} characters, the limit is {MAX_LEN}",
                    src.chars().count()
                ),
            ));
        }
        if src.trim().is_empty() {
            return Err(err(0, "empty expression"));
        }
        let mut parser = Parser { src, pos: 0, depth: 0 };
        let root = parser.parse_or()?;
        parser.skip_ws();
        if !parser.at_end() {
            let at = parser.pos;
            return Err(if parser.peek() == Some(')') {
                err(at, "unbalanced parenthesis: ')' has no matching '('")
            } else {
                err(
                    at,
                    format!(
                        "expected 'and', 'or' or end of expression, found {}{}",
                        describe(src, at),
                        keyword_hint(src, at)
                    ),
                )
            });
        }
        Ok(Expr { is_static: root.is_static(), source: src.into(), root })
    }

    /// Evaluates against one instance.
    pub fn eval<S: QuerySubject + ?Sized>(&self, s: &S) -> bool {
        self.root.eval(s)
    }

    /// True when the expression reads only things that do not change while tasks are placed
    /// (attributes, ec2InstanceId, registeredAt, agentVersion, agentConnected) — i.e. it
    /// never mentions `task:group` or `runningTasksCount`. The scheduler caches the result of
    /// static expressions per instance.
    pub fn is_static(&self) -> bool {
        self.is_static
    }

    /// The source text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// What an expression can ask of a container instance.
pub trait QuerySubject {
    fn agent_connected(&self) -> bool;
    fn agent_version(&self) -> Option<&str>;
    /// `None`: the instance has no attribute `name`; `Some(None)`: it has it without a value.
    fn attribute(&self, name: &str) -> Option<Option<&str>>;
    fn ec2_instance_id(&self) -> Option<&str>;
    /// Registration time, epoch milliseconds.
    fn registered_at_ms(&self) -> Option<i64>;
    fn running_tasks_count(&self) -> u32;
    /// Calls `f` with each distinct task group on the instance until it returns true; returns
    /// whether it did.
    fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool;
}

/// Why an expression did not parse: `position` is the byte offset into the expression of the
/// offending token, `message` says what was expected and what was found. It displays as
/// `"{message} (at character {position + 1})"`, which is exact for ASCII expressions (ECS
/// subjects, operators and attribute names are ASCII; only quoted values may not be).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {})", position + 1)]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

fn err(position: usize, message: impl Into<String>) -> QueryError {
    QueryError { position, message: message.into() }
}

// ---------------------------------------------------------------------------------------------
// The compiled tree.

#[derive(Clone, Debug)]
enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Cond(Cond),
}

#[derive(Clone, Debug)]
enum Cond {
    /// The outcome for a connected and for a disconnected agent, decided at parse time.
    AgentConnected {
        if_connected: bool,
        if_disconnected: bool,
    },
    AgentVersion(Cmp, Version),
    Attribute {
        name: Box<str>,
        test: AttrTest,
    },
    Ec2InstanceId(StrTest),
    RegisteredAt(Cmp, i64),
    RunningTasksCount(Cmp, u64),
    TaskGroup(GroupTest),
}

#[derive(Clone, Debug)]
enum AttrTest {
    Exists,
    NotExists,
    Value(StrTest),
    Order(Cmp, Operand),
}

#[derive(Clone, Debug)]
enum GroupTest {
    Exists,
    NotExists,
    /// True when some group satisfies the test.
    Any(StrTest),
}

/// A per-value string predicate.
#[derive(Clone, Debug)]
enum StrTest {
    Eq(Box<str>),
    Ne(Box<str>),
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
    Matches(Regex),
    NotMatches(Regex),
}

/// An ordering operator; `holds` is given `instance_value.cmp(argument)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The argument of an attribute ordering comparison.
#[derive(Clone, Debug)]
struct Operand {
    text: Box<str>,
    number: Option<f64>,
}

/// A version argument, split into its `.`-separated components.
#[derive(Clone, Debug)]
struct Version {
    parts: Box<[Box<str>]>,
}

impl Node {
    fn eval<S: QuerySubject + ?Sized>(&self, s: &S) -> bool {
        match self {
            Node::All(nodes) => nodes.iter().all(|n| n.eval(s)),
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(s)),
            Node::Not(node) => !node.eval(s),
            Node::Cond(cond) => cond.eval(s),
        }
    }

    fn is_static(&self) -> bool {
        match self {
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().all(Node::is_static),
            Node::Not(node) => node.is_static(),
            Node::Cond(cond) => !matches!(cond, Cond::TaskGroup(_) | Cond::RunningTasksCount(..)),
        }
    }
}

impl Cond {
    fn eval<S: QuerySubject + ?Sized>(&self, s: &S) -> bool {
        match self {
            Cond::AgentConnected { if_connected, if_disconnected } => {
                if s.agent_connected() {
                    *if_connected
                } else {
                    *if_disconnected
                }
            }
            Cond::AgentVersion(cmp, version) => match s.agent_version() {
                Some(v) if !v.is_empty() => cmp.holds(compare_versions(v, &version.parts)),
                _ => false,
            },
            Cond::Attribute { name, test } => match test {
                AttrTest::Exists => s.attribute(name).is_some(),
                AttrTest::NotExists => s.attribute(name).is_none(),
                AttrTest::Value(t) => match s.attribute(name) {
                    Some(Some(v)) => t.test(v),
                    _ => false,
                },
                AttrTest::Order(cmp, operand) => match s.attribute(name) {
                    Some(Some(v)) => cmp.holds(operand.compare(v)),
                    _ => false,
                },
            },
            Cond::Ec2InstanceId(t) => s.ec2_instance_id().is_some_and(|v| t.test(v)),
            Cond::RegisteredAt(cmp, ms) => {
                s.registered_at_ms().is_some_and(|v| cmp.holds(v.cmp(ms)))
            }
            Cond::RunningTasksCount(cmp, n) => cmp.holds(u64::from(s.running_tasks_count()).cmp(n)),
            Cond::TaskGroup(GroupTest::Exists) => s.any_task_group(&mut |_| true),
            Cond::TaskGroup(GroupTest::NotExists) => !s.any_task_group(&mut |_| true),
            Cond::TaskGroup(GroupTest::Any(t)) => s.any_task_group(&mut |g| t.test(g)),
        }
    }
}

impl StrTest {
    fn test(&self, v: &str) -> bool {
        match self {
            StrTest::Eq(x) => v == &**x,
            StrTest::Ne(x) => v != &**x,
            StrTest::In(xs) => xs.iter().any(|x| v == &**x),
            StrTest::NotIn(xs) => !xs.iter().any(|x| v == &**x),
            StrTest::Matches(re) => re.is_match(v),
            StrTest::NotMatches(re) => !re.is_match(v),
        }
    }
}

impl Cmp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Eq => ord == Ordering::Equal,
            Cmp::Ne => ord != Ordering::Equal,
            Cmp::Gt => ord == Ordering::Greater,
            Cmp::Ge => ord != Ordering::Less,
            Cmp::Lt => ord == Ordering::Less,
            Cmp::Le => ord != Ordering::Greater,
        }
    }
}

impl Operand {
    /// `value` compared with the operand: numerically when both are numbers, else as strings.
    fn compare(&self, value: &str) -> Ordering {
        if let (Some(n), Some(v)) = (self.number, parse_number(value))
            && let Some(ord) = v.partial_cmp(&n)
        {
            return ord;
        }
        value.cmp(&self.text)
    }
}

/// A decimal number (sign, digits, point, exponent); `nan`, `inf` and the like are not.
fn parse_number(s: &str) -> Option<f64> {
    if s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        s.parse().ok()
    } else {
        None
    }
}

/// Compares an instance's version string with a parsed version argument, without allocating.
fn compare_versions(instance: &str, arg: &[Box<str>]) -> Ordering {
    let mut mine = instance.split('.');
    let mut theirs = arg.iter();
    loop {
        let (a, b) = match (mine.next(), theirs.next()) {
            (None, None) => return Ordering::Equal,
            (a, b) => (a.unwrap_or("0"), b.map_or("0", |b| &**b)),
        };
        let ord = compare_version_parts(a, b);
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

fn compare_version_parts(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if numeric(a) && numeric(b) {
        let a = a.trim_start_matches('0');
        let b = b.trim_start_matches('0');
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    } else {
        a.cmp(b)
    }
}

// ---------------------------------------------------------------------------------------------
// Operators and subjects.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

/// Each operator with its symbol and word forms.
const OPS: [(Op, &str, &str); 12] = [
    (Op::Eq, "==", "equals"),
    (Op::Ne, "!=", "not_equals"),
    (Op::Gt, ">", "greater_than"),
    (Op::Ge, ">=", "greater_than_equal"),
    (Op::Lt, "<", "less_than"),
    (Op::Le, "<=", "less_than_equal"),
    (Op::Exists, "exists", "exists"),
    (Op::NotExists, "!exists", "not_exists"),
    (Op::In, "in", "in"),
    (Op::NotIn, "!in", "not_in"),
    (Op::Matches, "=~", "matches"),
    (Op::NotMatches, "!~", "not_matches"),
];

const ORDER_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le];
const SET_OPS: &[Op] = &[Op::Eq, Op::Ne, Op::In, Op::NotIn, Op::Matches, Op::NotMatches];
const GROUP_OPS: &[Op] =
    &[Op::Eq, Op::Ne, Op::In, Op::NotIn, Op::Matches, Op::NotMatches, Op::Exists, Op::NotExists];
const ALL_OPS: &[Op] = &[
    Op::Eq,
    Op::Ne,
    Op::Gt,
    Op::Ge,
    Op::Lt,
    Op::Le,
    Op::Exists,
    Op::NotExists,
    Op::In,
    Op::NotIn,
    Op::Matches,
    Op::NotMatches,
];

impl Op {
    fn from_token(tok: &str) -> Option<Op> {
        OPS.iter().find(|(_, sym, word)| tok == *sym || tok == *word).map(|(op, _, _)| *op)
    }

    fn forms(self) -> (&'static str, &'static str) {
        OPS.iter().find(|(op, _, _)| *op == self).map_or(("?", "?"), |(_, s, w)| (*s, *w))
    }
}

fn op_list(ops: &[Op]) -> String {
    let forms: Vec<String> = ops
        .iter()
        .map(|op| match op.forms() {
            (sym, word) if sym == word => sym.to_string(),
            (sym, word) => format!("{sym} ({word})"),
        })
        .collect();
    forms.join(", ")
}

#[derive(Clone, Copy, Debug)]
enum Subject<'a> {
    AgentConnected,
    AgentVersion,
    Attribute(&'a str),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

impl Subject<'_> {
    fn valid_ops(self) -> &'static [Op] {
        match self {
            Subject::AgentConnected | Subject::Ec2InstanceId => SET_OPS,
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => ORDER_OPS,
            Subject::Attribute(_) => ALL_OPS,
            Subject::TaskGroup => GROUP_OPS,
        }
    }
}

const SUBJECT_NAMES: [(&str, Subject<'static>); 6] = [
    ("agentConnected", Subject::AgentConnected),
    ("agentVersion", Subject::AgentVersion),
    ("ec2InstanceId", Subject::Ec2InstanceId),
    ("registeredAt", Subject::RegisteredAt),
    ("runningTasksCount", Subject::RunningTasksCount),
    ("task:group", Subject::TaskGroup),
];

fn parse_subject(at: usize, word: &str) -> Result<Subject<'_>, QueryError> {
    if let Some((_, subject)) = SUBJECT_NAMES.iter().find(|(name, _)| *name == word) {
        return Ok(*subject);
    }
    if let Some(name) = word.strip_prefix("attribute:") {
        if name.is_empty() {
            return Err(err(at, "expected an attribute name after 'attribute:'"));
        }
        return Ok(Subject::Attribute(name));
    }
    let prefix = word.get(..10).filter(|p| p.eq_ignore_ascii_case("attribute:"));
    let hint = match prefix.map(|_| "attribute:").or_else(|| {
        SUBJECT_NAMES.iter().map(|(name, _)| *name).find(|name| word.eq_ignore_ascii_case(name))
    }) {
        Some(name) => format!(" (subjects are case-sensitive: '{name}')"),
        None if ["and", "or", "not"].iter().any(|k| word.eq_ignore_ascii_case(k)) => {
            " (keywords are lowercase: 'and', 'or', 'not')".to_string()
        }
        None => String::new(),
    };
    Err(err(at, format!("unknown subject '{}'{hint}; valid subjects: {SUBJECTS}", shorten(word))))
}

// ---------------------------------------------------------------------------------------------
// The parser: recursive descent over the source with a byte cursor.

/// One literal argument: its text (quotes removed) and where it starts.
struct Lit<'a> {
    text: &'a str,
    pos: usize,
}

/// An operator with its parsed, not yet typed, argument.
enum Test<'a> {
    Cmp(Cmp, Lit<'a>),
    In(Vec<Lit<'a>>),
    NotIn(Vec<Lit<'a>>),
    Matches(Lit<'a>),
    NotMatches(Lit<'a>),
    Exists,
    NotExists,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Connective {
    And,
    Or,
}

fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',')
}

fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~')
}

fn is_quote(c: char) -> bool {
    c == '\'' || c == '"'
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "and" | "or" | "not" | "&&" | "||")
}

/// At most 40 characters of `s`, for messages.
fn shorten(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((i, _)) => Cow::Owned(format!("{}...", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// The token at `pos`, quoted, or "end of expression".
fn describe(src: &str, pos: usize) -> String {
    let rest = src.get(pos..).unwrap_or("");
    let Some(c) = rest.chars().next() else {
        return "end of expression".to_string();
    };
    let tok = if matches!(c, '(' | ')' | '[' | ']' | ',') {
        &rest[..1]
    } else if is_quote(c) {
        rest[1..].find(c).map_or(rest, |i| &rest[..i + 2])
    } else {
        &rest[..rest.find(is_delim).unwrap_or(rest.len())]
    };
    format!("'{}'", shorten(tok))
}

/// A hint when the word at `pos` is a keyword in the wrong case.
fn keyword_hint(src: &str, pos: usize) -> &'static str {
    let rest = src.get(pos..).unwrap_or("");
    let word = &rest[..rest.find(is_delim).unwrap_or(rest.len())];
    if ["and", "or", "not"].iter().any(|k| word.eq_ignore_ascii_case(k)) {
        " (keywords are lowercase: 'and', 'or', 'not')"
    } else {
        ""
    }
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    fn found(&self) -> String {
        describe(self.src, self.pos)
    }

    /// The connective at the cursor and its length, without consuming it.
    fn connective(&self) -> Option<(Connective, usize)> {
        let rest = self.rest();
        if rest.starts_with("&&") {
            return Some((Connective::And, 2));
        }
        if rest.starts_with("||") {
            return Some((Connective::Or, 2));
        }
        match &rest[..rest.find(is_delim).unwrap_or(rest.len())] {
            "and" => Some((Connective::And, 3)),
            "or" => Some((Connective::Or, 2)),
            _ => None,
        }
    }

    fn parse_or(&mut self) -> Result<Node, QueryError> {
        self.parse_chain(Connective::Or)
    }

    /// `operand { connective operand }`, where an operand of `or` is an `and` chain and an
    /// operand of `and` is a unary.
    fn parse_chain(&mut self, kind: Connective) -> Result<Node, QueryError> {
        let operand = |p: &mut Self| match kind {
            Connective::Or => p.parse_chain(Connective::And),
            Connective::And => p.parse_unary(),
        };
        let first = operand(self)?;
        let mut more = Vec::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.connective() {
                Some((found, len)) if found == kind => {
                    self.pos += len;
                    let keyword = &self.src[at..at + len];
                    self.skip_ws();
                    if self.at_end() {
                        return Err(err(
                            at,
                            format!("unexpected '{keyword}' at end of expression"),
                        ));
                    }
                    if self.peek() == Some(')') {
                        return Err(err(
                            self.pos,
                            format!("expected a condition after '{keyword}', found ')'"),
                        ));
                    }
                    more.push(operand(self)?);
                }
                _ => break,
            }
        }
        if more.is_empty() {
            return Ok(first);
        }
        more.insert(0, first);
        let nodes = more.into_boxed_slice();
        Ok(match kind {
            Connective::Or => Node::Any(nodes),
            Connective::And => Node::All(nodes),
        })
    }

    fn enter(&mut self, at: usize) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                at,
                format!(
                    "expression nested too deeply: more than {MAX_DEPTH} levels of parentheses \
                     and 'not'"
                ),
            ));
        }
        Ok(())
    }

    fn parse_unary(&mut self) -> Result<Node, QueryError> {
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(err(start, "expected a condition, found end of expression"));
        };
        match c {
            '(' => {
                self.enter(start)?;
                self.pos += 1;
                self.skip_ws();
                if self.at_end() {
                    return Err(err(start, "unbalanced parenthesis: '(' is never closed"));
                }
                if self.peek() == Some(')') {
                    return Err(err(
                        self.pos,
                        "empty parentheses: expected a condition, found ')'",
                    ));
                }
                let inner = self.parse_or()?;
                self.skip_ws();
                match self.peek() {
                    Some(')') => {
                        self.pos += 1;
                        self.depth -= 1;
                        Ok(inner)
                    }
                    None => Err(err(start, "unbalanced parenthesis: '(' is never closed")),
                    Some(_) => Err(err(
                        self.pos,
                        format!(
                            "expected 'and', 'or' or ')', found {}{}",
                            self.found(),
                            keyword_hint(self.src, self.pos)
                        ),
                    )),
                }
            }
            '!' if !self.rest().starts_with("!=") && !self.rest().starts_with("!~") => {
                self.pos += 1;
                self.parse_not(start, "!")
            }
            _ => {
                let word = self.take_while(|c| !is_delim(c) && !is_quote(c) && !is_op_char(c));
                match word {
                    "" if is_quote(c) => Err(err(
                        start,
                        format!(
                            "expected a subject, found the quoted string {} (subjects are not \
                             quoted)",
                            self.found()
                        ),
                    )),
                    "" => Err(err(start, format!("expected a condition, found {}", self.found()))),
                    "not" => self.parse_not(start, "not"),
                    "and" | "or" | "&&" | "||" => {
                        Err(err(start, format!("expected a condition, found '{word}'")))
                    }
                    _ => self.parse_condition(start, word),
                }
            }
        }
    }

    fn parse_not(&mut self, at: usize, keyword: &str) -> Result<Node, QueryError> {
        self.enter(at)?;
        self.skip_ws();
        if self.at_end() {
            return Err(err(at, format!("unexpected '{keyword}' at end of expression")));
        }
        let inner = self.parse_unary()?;
        self.depth -= 1;
        Ok(Node::Not(Box::new(inner)))
    }

    /// The operator token at the cursor, consumed; empty when there is none.
    fn lex_operator(&mut self) -> &'a str {
        let start = self.pos;
        match self.peek() {
            Some(c) if is_op_char(c) => {
                if self.take_while(is_op_char) == "!" {
                    self.take_while(|c| c.is_alphanumeric() || c == '_');
                }
                &self.src[start..self.pos]
            }
            Some(_) => self.take_while(|c| !is_delim(c) && !is_quote(c)),
            None => "",
        }
    }

    fn parse_condition(&mut self, start: usize, word: &'a str) -> Result<Node, QueryError> {
        let subject = parse_subject(start, word)?;
        let valid = subject.valid_ops();
        self.skip_ws();
        let op_pos = self.pos;
        let tok = self.lex_operator();
        let found =
            if tok.is_empty() { describe(self.src, op_pos) } else { format!("'{}'", shorten(tok)) };
        let Some(op) = Op::from_token(tok) else {
            let hint = match tok {
                "=" => " (did you mean '=='?)",
                "~" | "~=" => " (did you mean '=~'?)",
                _ => "",
            };
            return Err(err(
                op_pos,
                format!(
                    "expected an operator after subject '{}', found {found}{hint}; valid \
                     operators: {}",
                    shorten(word),
                    op_list(valid)
                ),
            ));
        };
        let invalid = || {
            err(
                op_pos,
                format!(
                    "operator '{tok}' is not valid for subject '{}'; valid operators: {}",
                    shorten(word),
                    op_list(valid)
                ),
            )
        };
        if !valid.contains(&op) {
            return Err(invalid());
        }
        let test = match op {
            Op::Eq => Test::Cmp(Cmp::Eq, self.parse_literal(tok)?),
            Op::Ne => Test::Cmp(Cmp::Ne, self.parse_literal(tok)?),
            Op::Gt => Test::Cmp(Cmp::Gt, self.parse_literal(tok)?),
            Op::Ge => Test::Cmp(Cmp::Ge, self.parse_literal(tok)?),
            Op::Lt => Test::Cmp(Cmp::Lt, self.parse_literal(tok)?),
            Op::Le => Test::Cmp(Cmp::Le, self.parse_literal(tok)?),
            Op::In => Test::In(self.parse_list(tok)?),
            Op::NotIn => Test::NotIn(self.parse_list(tok)?),
            Op::Matches => Test::Matches(self.parse_literal(tok)?),
            Op::NotMatches => Test::NotMatches(self.parse_literal(tok)?),
            Op::Exists => Test::Exists,
            Op::NotExists => Test::NotExists,
        };
        compile(subject, test)?.map(Node::Cond).ok_or_else(invalid)
    }

    fn parse_quoted(&mut self) -> Result<Lit<'a>, QueryError> {
        let at = self.pos;
        let rest = self.rest();
        let Some(quote) = rest.chars().next() else {
            return Err(err(at, "expected a quoted string, found end of expression"));
        };
        let body = &rest[1..];
        match body.find(quote) {
            Some(i) => {
                self.pos += i + 2;
                Ok(Lit { text: &body[..i], pos: at })
            }
            None => Err(err(at, format!("unclosed quote: {quote} is never closed"))),
        }
    }

    /// The single literal argument of operator `op`.
    fn parse_literal(&mut self, op: &str) -> Result<Lit<'a>, QueryError> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            None => Err(err(at, format!("expected a value after '{op}', found end of expression"))),
            Some('[') => {
                Err(err(at, format!("operator '{op}' takes a single value, found a list")))
            }
            Some(c @ ('(' | ')' | ']' | ',')) => {
                let hint = if c == '(' { " (quote values that contain parentheses)" } else { "" };
                Err(err(at, format!("expected a value after '{op}', found '{c}'{hint}")))
            }
            Some(q) if is_quote(q) => self.parse_quoted(),
            Some(_) => {
                let word = self.take_while(|c| !is_delim(c));
                if self.peek() == Some('(') {
                    return Err(err(
                        at,
                        format!(
                            "value '{}' runs into '('; quote values that contain parentheses",
                            shorten(word)
                        ),
                    ));
                }
                if is_keyword(word) {
                    return Err(err(
                        at,
                        format!(
                            "expected a value after '{op}', found '{word}' (quote it to use it as \
                             a value)"
                        ),
                    ));
                }
                Ok(Lit { text: word, pos: at })
            }
        }
    }

    /// The `[a, b, ...]` argument of operator `op`.
    fn parse_list(&mut self, op: &str) -> Result<Vec<Lit<'a>>, QueryError> {
        self.skip_ws();
        let open = self.pos;
        if self.peek() != Some('[') {
            return Err(err(
                open,
                format!("operator '{op}' takes a list such as [a, b], found {}", self.found()),
            ));
        }
        self.pos += 1;
        let unclosed = || err(open, "unclosed '[': expected ']' to end the list");
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.peek() {
                None => return Err(unclosed()),
                Some(']') if items.is_empty() => {
                    return Err(err(at, format!("empty list: '{op}' needs at least one value")));
                }
                Some(']') => return Err(err(at, "trailing comma in list")),
                Some(q) if is_quote(q) => items.push(self.parse_quoted()?),
                Some(c @ ('(' | ')' | '[' | ',')) => {
                    return Err(err(at, format!("expected a value in list, found '{c}'")));
                }
                Some(_) => items.push(Lit { text: self.take_while(|c| !is_delim(c)), pos: at }),
            }
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => return Err(unclosed()),
                Some(_) => {
                    return Err(err(
                        self.pos,
                        format!("expected ',' or ']' in list, found {}", self.found()),
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Typing the arguments.

/// The compiled condition, or `None` when the operator does not apply to the subject.
fn compile(subject: Subject<'_>, test: Test<'_>) -> Result<Option<Cond>, QueryError> {
    Ok(match subject {
        Subject::AgentConnected => {
            let outcomes = |p: &dyn Fn(bool) -> bool| (p(true), p(false));
            let (if_connected, if_disconnected) = match &test {
                Test::Cmp(Cmp::Eq, lit) => {
                    let b = parse_bool(lit)?;
                    outcomes(&|v| v == b)
                }
                Test::Cmp(Cmp::Ne, lit) => {
                    let b = parse_bool(lit)?;
                    outcomes(&|v| v != b)
                }
                Test::In(lits) => {
                    let set = parse_bools(lits)?;
                    outcomes(&|v| set.contains(&v))
                }
                Test::NotIn(lits) => {
                    let set = parse_bools(lits)?;
                    outcomes(&|v| !set.contains(&v))
                }
                Test::Matches(lit) => {
                    let re = compile_regex(lit)?;
                    outcomes(&|v| re.is_match(if v { "true" } else { "false" }))
                }
                Test::NotMatches(lit) => {
                    let re = compile_regex(lit)?;
                    outcomes(&|v| !re.is_match(if v { "true" } else { "false" }))
                }
                _ => return Ok(None),
            };
            Some(Cond::AgentConnected { if_connected, if_disconnected })
        }
        Subject::AgentVersion => match &test {
            Test::Cmp(cmp, lit) => Some(Cond::AgentVersion(*cmp, parse_version(lit)?)),
            _ => None,
        },
        Subject::Attribute(name) => {
            let name: Box<str> = name.into();
            let test = match &test {
                Test::Exists => Some(AttrTest::Exists),
                Test::NotExists => Some(AttrTest::NotExists),
                Test::Cmp(cmp @ (Cmp::Gt | Cmp::Ge | Cmp::Lt | Cmp::Le), lit) => {
                    Some(AttrTest::Order(
                        *cmp,
                        Operand { text: lit.text.into(), number: parse_number(lit.text) },
                    ))
                }
                _ => string_test(&test)?.map(AttrTest::Value),
            };
            test.map(|test| Cond::Attribute { name, test })
        }
        Subject::Ec2InstanceId => string_test(&test)?.map(Cond::Ec2InstanceId),
        Subject::RegisteredAt => match &test {
            Test::Cmp(cmp, lit) => Some(Cond::RegisteredAt(*cmp, parse_date(lit)?)),
            _ => None,
        },
        Subject::RunningTasksCount => match &test {
            Test::Cmp(cmp, lit) => Some(Cond::RunningTasksCount(*cmp, parse_count(lit)?)),
            _ => None,
        },
        Subject::TaskGroup => match &test {
            Test::Exists => Some(GroupTest::Exists),
            Test::NotExists => Some(GroupTest::NotExists),
            _ => string_test(&test)?.map(GroupTest::Any),
        }
        .map(Cond::TaskGroup),
    })
}

/// The string predicate of `test`, or `None` for an ordering or presence test.
fn string_test(test: &Test<'_>) -> Result<Option<StrTest>, QueryError> {
    let texts = |lits: &[Lit<'_>]| lits.iter().map(|l| Box::from(l.text)).collect();
    Ok(Some(match test {
        Test::Cmp(Cmp::Eq, lit) => StrTest::Eq(lit.text.into()),
        Test::Cmp(Cmp::Ne, lit) => StrTest::Ne(lit.text.into()),
        Test::In(lits) => StrTest::In(texts(lits)),
        Test::NotIn(lits) => StrTest::NotIn(texts(lits)),
        Test::Matches(lit) => StrTest::Matches(compile_regex(lit)?),
        Test::NotMatches(lit) => StrTest::NotMatches(compile_regex(lit)?),
        _ => return Ok(None),
    }))
}

/// Compiles a whole-value (Java `String.matches`) regular expression.
fn compile_regex(lit: &Lit<'_>) -> Result<Regex, QueryError> {
    let build = |pattern: &str| {
        RegexBuilder::new(pattern).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
            err(lit.pos, format!("invalid regular expression '{}': {e}", shorten(lit.text)))
        })
    };
    // Checked alone first so that a pattern such as `a)|(b` cannot escape the anchoring group.
    build(lit.text)?;
    build(&format!("^(?:{})$", lit.text))
}

fn parse_bool(lit: &Lit<'_>) -> Result<bool, QueryError> {
    if lit.text.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if lit.text.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(err(
            lit.pos,
            format!("agentConnected compares with true or false, found '{}'", shorten(lit.text)),
        ))
    }
}

fn parse_bools(lits: &[Lit<'_>]) -> Result<Vec<bool>, QueryError> {
    lits.iter().map(parse_bool).collect()
}

fn parse_version(lit: &Lit<'_>) -> Result<Version, QueryError> {
    if lit.text.split('.').any(str::is_empty) {
        return Err(err(
            lit.pos,
            format!(
                "invalid version '{}': expected components separated by '.', such as 1.14.5",
                shorten(lit.text)
            ),
        ));
    }
    Ok(Version { parts: lit.text.split('.').map(Box::from).collect() })
}

fn parse_count(lit: &Lit<'_>) -> Result<u64, QueryError> {
    let digits = !lit.text.is_empty() && lit.text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| lit.text.parse().ok()).flatten().ok_or_else(|| {
        err(
            lit.pos,
            format!(
                "runningTasksCount compares with a non-negative integer, found '{}'",
                shorten(lit.text)
            ),
        )
    })
}

/// A `registeredAt` argument as epoch milliseconds.
fn parse_date(lit: &Lit<'_>) -> Result<i64, QueryError> {
    let s = lit.text;
    let utc_time = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let at = OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| PrimitiveDateTime::parse(s, utc_time).ok().map(PrimitiveDateTime::assume_utc))
        .or_else(|| {
            Date::parse(s, format_description!("[year]-[month]-[day]"))
                .ok()
                .map(|d| d.midnight().assume_utc())
        });
    at.and_then(|t| i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).ok()).ok_or_else(
        || {
            err(
                lit.pos,
                format!(
                    "invalid date '{}' for registeredAt; expected one of {DATE_FORMATS}",
                    shorten(s)
                ),
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug, Default)]
    struct Inst {
        connected: bool,
        version: Option<String>,
        attrs: BTreeMap<String, Option<String>>,
        ec2: Option<String>,
        registered: Option<i64>,
        running: u32,
        groups: Vec<String>,
    }

    impl QuerySubject for Inst {
        fn agent_connected(&self) -> bool {
            self.connected
        }
        fn agent_version(&self) -> Option<&str> {
            self.version.as_deref()
        }
        fn attribute(&self, name: &str) -> Option<Option<&str>> {
            self.attrs.get(name).map(|v| v.as_deref())
        }
        fn ec2_instance_id(&self) -> Option<&str> {
            self.ec2.as_deref()
        }
        fn registered_at_ms(&self) -> Option<i64> {
            self.registered
        }
        fn running_tasks_count(&self) -> u32 {
            self.running
        }
        fn any_task_group(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
            self.groups.iter().any(|g| f(g))
        }
    }

    /// 2018-06-18T22:28:28Z
    const JUNE_18: i64 = 1_529_360_908_000;
    /// 2018-02-12T00:00:00Z
    const FEB_12: i64 = 1_518_393_600_000;

    fn attrs(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect()
    }

    /// `a`: connected, t2.small in us-east-1a, tasks of two groups. `b`: disconnected, g2 in
    /// us-east-1d, no tasks. `c`: one `database` task, attributes but no values. `bare`:
    /// connected and nothing else.
    fn fleet() -> BTreeMap<&'static str, Inst> {
        let a = Inst {
            connected: true,
            version: Some("1.14.5".into()),
            attrs: attrs(&[
                ("ecs.instance-type", Some("t2.small")),
                ("ecs.availability-zone", Some("us-east-1a")),
                ("stack", Some("prod")),
                ("cpu", Some("4")),
                ("gpu", None),
            ]),
            ec2: Some("i-abcd1234".into()),
            registered: Some(JUNE_18),
            running: 1,
            groups: vec!["service:production".into(), "database".into()],
        };
        let b = Inst {
            connected: false,
            version: Some("1.14.10".into()),
            attrs: attrs(&[
                ("ecs.instance-type", Some("g2.2xlarge")),
                ("ecs.availability-zone", Some("us-east-1d")),
                ("stack", Some("dev")),
                ("cpu", Some("16")),
            ]),
            ec2: Some("i-wxyx7890".into()),
            registered: Some(FEB_12),
            running: 0,
            groups: vec![],
        };
        let c = Inst {
            connected: true,
            version: Some("1.14".into()),
            attrs: attrs(&[("stack", None), ("cpu", None)]),
            ec2: None,
            registered: Some(FEB_12 + 1),
            running: 3,
            groups: vec!["database".into()],
        };
        let bare = Inst { connected: true, ..Inst::default() };
        BTreeMap::from([("a", a), ("b", b), ("c", c), ("bare", bare)])
    }

    fn word_form(symbol: &str) -> &'static str {
        OPS.iter().find(|(_, s, _)| *s == symbol).map(|(_, _, w)| *w).expect("known operator")
    }

    /// (subject, operator symbol, argument, instance, expected): each case runs with the
    /// symbol and with the word form of the operator.
    #[rustfmt::skip]
    const OPERATOR_CASES: &[(&str, &str, &str, &str, bool)] = &[
        // agentConnected
        ("agentConnected", "==", "true", "a", true),
        ("agentConnected", "==", "TRUE", "b", false),
        ("agentConnected", "==", "false", "b", true),
        ("agentConnected", "!=", "true", "b", true),
        ("agentConnected", "!=", "True", "a", false),
        ("agentConnected", "in", "[true]", "a", true),
        ("agentConnected", "in", "[true]", "b", false),
        ("agentConnected", "in", "[false, TRUE]", "b", true),
        ("agentConnected", "!in", "[false]", "a", true),
        ("agentConnected", "!in", "[false]", "b", false),
        ("agentConnected", "=~", "t.*", "a", true),
        ("agentConnected", "=~", "t.*", "b", false),
        ("agentConnected", "=~", "rue", "a", false),
        ("agentConnected", "!~", "t.*", "b", true),
        ("agentConnected", "!~", "t.*", "a", false),
        // agentVersion
        ("agentVersion", "==", "1.14.5", "a", true),
        ("agentVersion", "==", "1.14.5.0", "a", true),
        ("agentVersion", "==", "1.14.0", "c", true),
        ("agentVersion", "==", "1.14.5", "b", false),
        ("agentVersion", "!=", "1.14.5", "b", true),
        ("agentVersion", "!=", "1.14.5", "a", false),
        ("agentVersion", "!=", "1.14.5", "bare", false),
        ("agentVersion", ">", "1.14.5", "b", true),
        ("agentVersion", ">", "1.14.5", "a", false),
        ("agentVersion", ">=", "1.14.5", "a", true),
        ("agentVersion", ">=", "1.14.6", "a", false),
        ("agentVersion", "<", "1.14.10", "a", true),
        ("agentVersion", "<", "1.14.5", "a", false),
        ("agentVersion", "<", "2", "bare", false),
        ("agentVersion", "<=", "1.14.5", "a", true),
        ("agentVersion", "<=", "1.14.9", "b", false),
        // ec2InstanceId
        ("ec2InstanceId", "==", "i-abcd1234", "a", true),
        ("ec2InstanceId", "==", "i-abcd1234", "b", false),
        ("ec2InstanceId", "==", "i-abcd1234", "bare", false),
        ("ec2InstanceId", "!=", "i-abcd1234", "b", true),
        ("ec2InstanceId", "!=", "i-abcd1234", "a", false),
        ("ec2InstanceId", "!=", "i-abcd1234", "bare", false),
        ("ec2InstanceId", "in", "['i-abcd1234', 'i-wxyx7890']", "b", true),
        ("ec2InstanceId", "in", "[i-abcd1234]", "b", false),
        ("ec2InstanceId", "in", "[i-abcd1234]", "bare", false),
        ("ec2InstanceId", "!in", "[i-abcd1234]", "b", true),
        ("ec2InstanceId", "!in", "[i-abcd1234]", "a", false),
        ("ec2InstanceId", "!in", "[i-abcd1234]", "bare", false),
        ("ec2InstanceId", "=~", "i-ab.*", "a", true),
        ("ec2InstanceId", "=~", "ab.*", "a", false),
        ("ec2InstanceId", "!~", "i-ab.*", "b", true),
        ("ec2InstanceId", "!~", "i-ab.*", "a", false),
        ("ec2InstanceId", "!~", "i-ab.*", "bare", false),
        // registeredAt, all four formats
        ("registeredAt", "==", "2018-06-18T22:28:28+00:00", "a", true),
        ("registeredAt", "==", "2018-06-19T00:28:28+02:00", "a", true),
        ("registeredAt", "==", "2018-06-18T22:28:28Z", "a", true),
        ("registeredAt", "==", "2018-06-18T22:28:28", "a", true),
        ("registeredAt", "==", "'2018-06-18T22:28:28.000Z'", "a", true),
        ("registeredAt", "==", "2018-02-12", "b", true),
        ("registeredAt", "==", "2018-02-12", "c", false),
        ("registeredAt", "!=", "2018-02-12", "c", true),
        ("registeredAt", "!=", "2018-02-12", "b", false),
        ("registeredAt", "!=", "2018-02-12", "bare", false),
        ("registeredAt", ">", "2018-06-18", "a", true),
        ("registeredAt", ">", "2018-06-18T22:28:28Z", "a", false),
        ("registeredAt", ">=", "2018-06-18T22:28:28Z", "a", true),
        ("registeredAt", ">=", "2018-06-18T22:28:29", "a", false),
        ("registeredAt", "<", "2018-02-13", "b", true),
        ("registeredAt", "<", "2018-02-13", "a", false),
        ("registeredAt", "<", "2018-02-13", "bare", false),
        ("registeredAt", "<=", "2018-02-12T00:00:00Z", "b", true),
        ("registeredAt", "<=", "2018-02-12T00:00:00Z", "c", false),
        // runningTasksCount
        ("runningTasksCount", "==", "1", "a", true),
        ("runningTasksCount", "==", "1", "b", false),
        ("runningTasksCount", "!=", "1", "b", true),
        ("runningTasksCount", "!=", "1", "a", false),
        ("runningTasksCount", ">", "0", "a", true),
        ("runningTasksCount", ">", "1", "a", false),
        ("runningTasksCount", ">=", "3", "c", true),
        ("runningTasksCount", ">=", "4", "c", false),
        ("runningTasksCount", "<", "1", "b", true),
        ("runningTasksCount", "<", "1", "a", false),
        ("runningTasksCount", "<=", "0", "bare", true),
        ("runningTasksCount", "<=", "2", "c", false),
        // task:group, "any" semantics
        ("task:group", "==", "service:production", "a", true),
        ("task:group", "==", "database", "a", true),
        ("task:group", "==", "web", "a", false),
        ("task:group", "==", "database", "b", false),
        ("task:group", "!=", "database", "a", true),
        ("task:group", "!=", "database", "c", false),
        ("task:group", "!=", "database", "b", false),
        ("task:group", "in", "[web, database]", "c", true),
        ("task:group", "in", "[web, 'service:x']", "a", false),
        ("task:group", "in", "[web]", "b", false),
        ("task:group", "!in", "[web]", "a", true),
        ("task:group", "!in", "[database, service:production]", "a", false),
        ("task:group", "!in", "[web]", "b", false),
        ("task:group", "=~", "service:.*", "a", true),
        ("task:group", "=~", "service:.*", "c", false),
        ("task:group", "=~", "data", "c", false),
        ("task:group", "!~", "service:.*", "a", true),
        ("task:group", "!~", "service:.*|database", "a", false),
        ("task:group", "!~", "service:.*", "b", false),
        ("task:group", "exists", "", "a", true),
        ("task:group", "exists", "", "b", false),
        ("task:group", "!exists", "", "b", true),
        ("task:group", "!exists", "", "c", false),
        // attribute:NAME
        ("attribute:ecs.instance-type", "==", "t2.small", "a", true),
        ("attribute:ecs.instance-type", "==", "t2.small", "b", false),
        ("attribute:ecs.instance-type", "==", "t2.small", "bare", false),
        ("attribute:ecs.instance-type", "==", "T2.SMALL", "a", false),
        ("attribute:stack", "!=", "prod", "b", true),
        ("attribute:stack", "!=", "prod", "a", false),
        ("attribute:stack", "!=", "prod", "bare", false),
        ("attribute:stack", "!=", "prod", "c", false),
        ("attribute:gpu", "!=", "x", "a", false),
        ("attribute:gpu", "==", "''", "a", false),
        ("attribute:cpu", ">", "9", "b", true),
        ("attribute:cpu", ">", "9", "a", false),
        ("attribute:cpu", ">", "9", "c", false),
        ("attribute:cpu", ">", "3.5", "a", true),
        ("attribute:cpu", ">=", "4", "a", true),
        ("attribute:cpu", ">=", "4.01", "a", false),
        ("attribute:cpu", "<", "1e1", "a", true),
        ("attribute:cpu", "<", "1e1", "b", false),
        ("attribute:cpu", "<=", "16.0", "b", true),
        ("attribute:cpu", "<=", "15", "b", false),
        ("attribute:stack", ">", "dev", "a", true),
        ("attribute:stack", ">", "dev", "b", false),
        ("attribute:stack", ">=", "dev", "b", true),
        ("attribute:stack", "<", "prod", "b", true),
        ("attribute:stack", "<", "prod", "bare", false),
        ("attribute:cpu", "<", "abc", "b", true),
        ("attribute:gpu", "exists", "", "a", true),
        ("attribute:gpu", "exists", "", "b", false),
        ("attribute:stack", "exists", "", "c", true),
        ("attribute:gpu", "!exists", "", "b", true),
        ("attribute:gpu", "!exists", "", "a", false),
        ("attribute:ecs.availability-zone", "in", "[us-east-1a, us-east-1b]", "a", true),
        ("attribute:ecs.availability-zone", "in", "[us-east-1a, us-east-1b]", "b", false),
        ("attribute:ecs.availability-zone", "in", "[us-east-1a]", "bare", false),
        ("attribute:ecs.availability-zone", "!in", "[us-east-1a, us-east-1b]", "b", true),
        ("attribute:ecs.availability-zone", "!in", "[us-east-1a, us-east-1b]", "a", false),
        ("attribute:ecs.availability-zone", "!in", "[us-east-1a]", "bare", false),
        ("attribute:stack", "!in", "[prod]", "c", false),
        ("attribute:ecs.instance-type", "=~", "g2.*", "b", true),
        ("attribute:ecs.instance-type", "=~", "g2.*", "a", false),
        ("attribute:ecs.instance-type", "=~", "2.*", "b", false),
        ("attribute:ecs.instance-type", "=~", "'t2.(micro|small)'", "a", true),
        ("attribute:ecs.instance-type", "!~", "g2.*", "a", true),
        ("attribute:ecs.instance-type", "!~", "g2.*", "b", false),
        ("attribute:ecs.instance-type", "!~", "g2.*", "bare", false),
        ("attribute:stack", "!~", "p.*", "c", false),
    ];

    #[test]
    fn every_operator_in_both_forms() {
        let fleet = fleet();
        let mut ran = 0;
        for &(subject, symbol, arg, inst, expected) in OPERATOR_CASES {
            for op in [symbol, word_form(symbol)] {
                let src = format!("{subject} {op} {arg}");
                let expr = Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
                assert_eq!(expr.eval(&fleet[inst]), expected, "{src} on {inst}");
                assert_eq!(expr.source(), src);
                ran += 1;
            }
        }
        assert_eq!(ran, OPERATOR_CASES.len() * 2);
    }

    #[test]
    fn every_valid_subject_operator_pair_is_covered() {
        let subjects: [(&str, Subject<'_>); 7] = [
            ("agentConnected", Subject::AgentConnected),
            ("agentVersion", Subject::AgentVersion),
            ("attribute:", Subject::Attribute("x")),
            ("ec2InstanceId", Subject::Ec2InstanceId),
            ("registeredAt", Subject::RegisteredAt),
            ("runningTasksCount", Subject::RunningTasksCount),
            ("task:group", Subject::TaskGroup),
        ];
        for (prefix, subject) in subjects {
            for op in subject.valid_ops() {
                let (symbol, _) = op.forms();
                let cases: Vec<bool> = OPERATOR_CASES
                    .iter()
                    .filter(|(s, o, ..)| s.starts_with(prefix) && *o == symbol)
                    .map(|c| c.4)
                    .collect();
                assert!(
                    cases.contains(&true) && cases.contains(&false),
                    "{prefix} {symbol} needs a true and a false case"
                );
            }
        }
    }

    #[test]
    fn documentation_examples() {
        let fleet = fleet();
        #[rustfmt::skip]
        let cases: &[(&str, &[&str])] = &[
            ("attribute:ecs.instance-type == t2.small", &["a"]),
            ("attribute:ecs.availability-zone in [us-east-1a, us-east-1b]", &["a"]),
            ("attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d", &[]),
            ("attribute:ecs.instance-type =~ g2.* or attribute:ecs.availability-zone != us-east-1d", &["a", "b"]),
            ("task:group == service:production", &["a"]),
            ("not(task:group == database)", &["b", "bare"]),
            ("runningTasksCount == 1", &["a"]),
            ("agentVersion < 1.14.5", &["c"]),
            ("registeredAt < 2018-02-13", &["b", "c"]),
            ("ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']", &["a", "b"]),
            ("attribute:stack != prod", &["b"]),
            ("attribute:ecs.instance-type =~ t2.*", &["a"]),
        ];
        for (src, expected) in cases {
            let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let got: Vec<&str> =
                fleet.iter().filter(|(_, i)| expr.eval(*i)).map(|(name, _)| *name).collect();
            let mut want = expected.to_vec();
            want.sort_unstable();
            assert_eq!(got, want, "{src}");
        }
    }

    #[test]
    fn whole_value_regex() {
        let inst = Inst { attrs: attrs(&[("t", Some("xt2.small"))]), ..Inst::default() };
        assert!(!Expr::parse("attribute:t =~ t2.*").unwrap().eval(&inst));
        assert!(Expr::parse("attribute:t =~ .t2.*").unwrap().eval(&inst));
        // Alternation stays inside the anchors.
        assert!(!Expr::parse("attribute:t =~ 'x|xt2'").unwrap().eval(&inst));
        assert!(Expr::parse("attribute:t =~ 'a|xt2.small'").unwrap().eval(&inst));
        // A pattern cannot break out of the anchoring group.
        let e = Expr::parse("attribute:t =~ 'x)|(.*'").unwrap_err();
        assert_eq!(e.position, 15);
        assert!(e.message.contains("invalid regular expression 'x)|(.*'"), "{}", e.message);
        // Flags stay scoped to the pattern.
        assert!(Expr::parse("attribute:t =~ '(?i)XT2.*'").unwrap().eval(&inst));
    }

    #[test]
    fn versions() {
        let cmp = |a: &str, b: &str| {
            let parts: Vec<Box<str>> = b.split('.').map(Box::from).collect();
            compare_versions(a, &parts)
        };
        assert_eq!(cmp("1.14.5", "1.14.10"), Ordering::Less);
        assert_eq!(cmp("1.14.10", "1.14.5"), Ordering::Greater);
        assert_eq!(cmp("1.14", "1.14.0"), Ordering::Equal);
        assert_eq!(cmp("1.14.0.0", "1.14"), Ordering::Equal);
        assert_eq!(cmp("1.014", "1.14"), Ordering::Equal);
        assert_eq!(cmp("1.14.1", "1.14"), Ordering::Greater);
        assert_eq!(
            cmp("99999999999999999999999.1", "99999999999999999999998.9"),
            Ordering::Greater
        );
        assert_eq!(cmp("1.14.5-beta", "1.14.5"), Ordering::Greater);
        assert_eq!(cmp("1.x", "1.y"), Ordering::Less);
        assert_eq!(cmp("2", "10"), Ordering::Less);
        let empty = Inst { version: Some(String::new()), ..Inst::default() };
        assert!(!Expr::parse("agentVersion != 1.0").unwrap().eval(&empty));
        assert!(!Expr::parse("agentVersion < 1.0").unwrap().eval(&empty));
    }

    #[test]
    fn dates() {
        let ms = |s: &str| parse_date(&Lit { text: s, pos: 0 });
        assert_eq!(ms("2018-06-18T22:28:28+00:00"), Ok(JUNE_18));
        assert_eq!(ms("2018-06-18T22:28:28Z"), Ok(JUNE_18));
        assert_eq!(ms("2018-06-18T22:28:28"), Ok(JUNE_18));
        assert_eq!(ms("2018-06-18T22:28:28.1239"), Ok(JUNE_18 + 123));
        assert_eq!(ms("2018-06-18"), Ok(JUNE_18 - (22 * 3600 + 28 * 60 + 28) * 1000));
        assert_eq!(ms("1969-12-31T23:59:59.9995Z"), Ok(-1));
        for bad in
            ["2018-06-18 22:28:28", "18-06-18", "2018-13-01", "yesterday", "2018-06-18T25:00"]
        {
            let e = ms(bad).unwrap_err();
            assert!(e.message.contains(bad) && e.message.contains(DATE_FORMATS), "{}", e.message);
        }
        let inst = Inst { registered: Some(JUNE_18 + 999), ..Inst::default() };
        assert!(Expr::parse("registeredAt > 2018-06-18T22:28:28Z").unwrap().eval(&inst));
        assert!(!Expr::parse("registeredAt < '2018-06-18T22:28:28.9995Z'").unwrap().eval(&inst));
        assert!(Expr::parse("registeredAt == '2018-06-18T22:28:28.999Z'").unwrap().eval(&inst));
    }

    /// Atoms `t` (true on the fixture) and `f`, `g` (false).
    fn logic(src: &str) -> bool {
        let inst = Inst { attrs: attrs(&[("t", Some("1"))]), ..Inst::default() };
        let src = src
            .replace('T', "attribute:t exists")
            .replace('F', "attribute:f exists")
            .replace('G', "attribute:g exists");
        Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}")).eval(&inst)
    }

    #[test]
    fn precedence_and_connectives() {
        #[rustfmt::skip]
        let cases: &[(&str, bool)] = &[
            ("T", true),
            ("F", false),
            ("T or F and G", true),          // T or (F and G)
            ("(T or F) and G", false),
            ("F and G or T", true),          // (F and G) or T
            ("F and (G or T)", false),
            ("not F and G", false),          // (not F) and G
            ("not (F and G)", true),
            ("not(F and G)", true),
            ("not not T", true),
            ("not T or T", true),            // (not T) or T
            ("not (T or T)", false),
            ("T && F || T", true),
            ("T && (F || G)", false),
            ("!F && T", true),
            ("! F", true),
            ("!(T)", false),
            ("!!T", true),
            ("! !T", true),
            ("!(F || G) && !F", true),
            ("T and T and T and F", false),
            ("F or F or F or T", true),
            ("((((T))))", true),
            ("( T )and( T )", true),
            ("(T)or(F)", true),
            ("T and not(F)", true),
            ("T\tand\nT", true),
            ("T &&T", true),
            ("T ||F", true),
        ];
        for &(src, expected) in cases {
            assert_eq!(logic(src), expected, "{src}");
        }
    }

    #[test]
    fn lexing_details() {
        let fleet = fleet();
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            ("runningTasksCount>0", "a", true),
            ("runningTasksCount>=1", "a", true),
            ("attribute:stack!=dev", "a", true),
            ("attribute:stack==prod", "a", true),
            ("attribute:stack=~p.*", "a", true),
            ("attribute:stack!~p.*", "b", true),
            ("attribute:gpu!exists", "b", true),
            ("task:group!in[web]", "a", true),
            ("task:group in[web,database]", "c", true),
            ("task:group in [ 'web' , \"database\" ]", "c", true),
            ("attribute:stack == \"prod\"", "a", true),
            ("attribute:stack == 'pr od'", "a", false),
            ("attribute:stack equals'prod'", "a", true),
            ("attribute:stack in ['and', or, not]", "a", false),
            ("attribute:stack == 'and'", "a", false),
            ("(attribute:stack==prod)", "a", true),
            ("task:group == service:production", "a", true),
            ("not(task:group == database) and runningTasksCount < 5", "b", true),
        ];
        for &(src, inst, expected) in cases {
            let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(expr.eval(&fleet[inst]), expected, "{src} on {inst}");
        }
    }

    #[test]
    fn quoted_values_may_hold_anything() {
        let inst = Inst { attrs: attrs(&[("n", Some("a (b), [c] and 'd'"))]), ..Inst::default() };
        assert!(Expr::parse(r#"attribute:n == "a (b), [c] and 'd'""#).unwrap().eval(&inst));
        assert!(Expr::parse(r#"attribute:n in ["x", "a (b), [c] and 'd'"]"#).unwrap().eval(&inst));
        let uni = Inst { attrs: attrs(&[("名", Some("値 ✓"))]), ..Inst::default() };
        assert!(Expr::parse("attribute:名 == '値 ✓'").unwrap().eval(&uni));
    }

    #[test]
    fn static_expressions() {
        for (src, expected) in [
            ("attribute:a exists", true),
            ("agentConnected == true and agentVersion > 1.0", true),
            ("ec2InstanceId == i-1 or registeredAt < 2018-01-01", true),
            ("not(task:group == database)", false),
            ("attribute:a exists and runningTasksCount == 0", false),
            ("attribute:a exists or (not (task:group exists))", false),
        ] {
            assert_eq!(Expr::parse(src).unwrap().is_static(), expected, "{src}");
        }
    }

    /// (expression, error position, text the message must contain)
    #[rustfmt::skip]
    const ERRORS: &[(&str, usize, &str)] = &[
        ("", 0, "empty expression"),
        ("   \t\n", 0, "empty expression"),
        ("attribute:ecs.instance-type equal t2.small", 28,
         "expected an operator after subject 'attribute:ecs.instance-type', found 'equal'"),
        ("attribute:ecs.instance-type", 27, "found end of expression"),
        ("attribute:x = y", 12, "did you mean '=='?"),
        ("attribute:x and y", 12, "found 'and'"),
        ("attribute:x == a and", 17, "unexpected 'and' at end of expression"),
        ("attribute:x == a or  ", 17, "unexpected 'or' at end of expression"),
        ("attribute:x == a &&", 17, "unexpected '&&' at end of expression"),
        ("attribute:x == a and )", 21, "expected a condition after 'and', found ')'"),
        ("not", 0, "unexpected 'not' at end of expression"),
        ("attribute:x exists and !", 23, "unexpected '!' at end of expression"),
        ("and attribute:x exists", 0, "expected a condition, found 'and'"),
        ("|| attribute:x exists", 0, "expected a condition, found '||'"),
        ("(attribute:x exists", 0, "unbalanced parenthesis"),
        ("((((", 3, "unbalanced parenthesis"),
        ("attribute:x exists)", 18, "unbalanced parenthesis: ')' has no matching '('"),
        ("()", 1, "empty parentheses"),
        (")", 0, "expected a condition, found ')'"),
        ("(attribute:x exists attribute:y exists)", 20, "expected 'and', 'or' or ')', found 'attribute:y'"),
        ("attribute:x exists attribute:y exists", 19, "expected 'and', 'or' or end of expression, found 'attribute:y'"),
        ("attribute:x exists AND attribute:y exists", 19, "keywords are lowercase"),
        ("NOT attribute:x exists", 0, "unknown subject 'NOT' (keywords are lowercase"),
        ("instanceType == t2", 0, "unknown subject 'instanceType'"),
        ("instanceType == t2", 0, "valid subjects: agentConnected, agentVersion, attribute:NAME"),
        ("taskGroup == x", 0, "unknown subject 'taskGroup'"),
        ("agentconnected == true", 0, "subjects are case-sensitive: 'agentConnected'"),
        ("Attribute:x exists", 0, "subjects are case-sensitive: 'attribute:'"),
        ("attribute: exists", 0, "expected an attribute name after 'attribute:'"),
        ("== x", 0, "expected a condition, found '=='"),
        ("!= x", 0, "expected a condition, found '!='"),
        ("'attribute:x' exists", 0, "expected a subject, found the quoted string ''attribute:x''"),
        ("runningTasksCount in [1]", 18, "operator 'in' is not valid for subject 'runningTasksCount'"),
        ("runningTasksCount matches 1", 18, "valid operators: == (equals), != (not_equals), > (greater_than)"),
        ("ec2InstanceId > i-1", 14, "operator '>' is not valid for subject 'ec2InstanceId'"),
        ("ec2InstanceId exists", 14, "operator 'exists' is not valid for subject 'ec2InstanceId'"),
        ("agentConnected >= true", 15, "operator '>=' is not valid for subject 'agentConnected'"),
        ("agentVersion =~ 1.*", 13, "operator '=~' is not valid for subject 'agentVersion'"),
        ("registeredAt not_in [x]", 13, "operator 'not_in' is not valid for subject 'registeredAt'"),
        ("task:group < x", 11, "operator '<' is not valid for subject 'task:group'"),
        ("task:group ==! x", 11, "found '==!'"),
        ("task:group === x", 11, "found '==='"),
        ("attribute:x ==", 14, "expected a value after '==', found end of expression"),
        ("attribute:x == )", 15, "expected a value after '==', found ')'"),
        ("attribute:x == (a)", 15, "quote values that contain parentheses"),
        ("attribute:x == and", 15, "found 'and' (quote it"),
        ("attribute:x == [a]", 15, "operator '==' takes a single value, found a list"),
        ("attribute:x in a", 15, "operator 'in' takes a list such as [a, b], found 'a'"),
        ("attribute:x not_in", 18, "operator 'not_in' takes a list such as [a, b], found end of expression"),
        ("attribute:x in []", 16, "empty list"),
        ("attribute:x in [a,]", 18, "trailing comma in list"),
        ("attribute:x in [a b]", 18, "expected ',' or ']' in list, found 'b'"),
        ("attribute:x in [a, (b)]", 19, "expected a value in list, found '('"),
        ("attribute:x in [a, [b]]", 19, "expected a value in list, found '['"),
        ("attribute:x in [a, b", 15, "unclosed '['"),
        ("attribute:x == 'abc", 15, "unclosed quote: ' is never closed"),
        ("attribute:x in [\"abc]", 16, "unclosed quote: \" is never closed"),
        ("attribute:x exists x", 19, "found 'x'"),
        ("attribute:x =~ '('", 15, "invalid regular expression '('"),
        ("attribute:x =~ a(", 15, "quote values"),
        ("attribute:x =~ '(?<=a)b'", 15, "invalid regular expression"),
        ("agentConnected == yes", 18, "agentConnected compares with true or false, found 'yes'"),
        ("agentConnected in [true, 1]", 25, "found '1'"),
        ("agentVersion > 1..2", 15, "invalid version '1..2'"),
        ("agentVersion > ''", 15, "invalid version ''"),
        ("runningTasksCount > -1", 20, "non-negative integer, found '-1'"),
        ("runningTasksCount > 1.5", 20, "non-negative integer, found '1.5'"),
        ("runningTasksCount > +1", 20, "non-negative integer, found '+1'"),
        ("runningTasksCount > 99999999999999999999999", 20, "non-negative integer"),
        ("registeredAt > 2018/06/18", 15, "invalid date '2018/06/18' for registeredAt; expected one of"),
        ("attribute:é == 'x' and é", 24, "unknown subject 'é'"),
    ];

    #[test]
    fn errors_point_at_the_offending_token() {
        for &(src, position, needle) in ERRORS {
            let e = match Expr::parse(src) {
                Ok(expr) => panic!("{src:?} parsed: {expr:?}"),
                Err(e) => e,
            };
            assert!(e.message.contains(needle), "{src:?}: {:?} lacks {needle:?}", e.message);
            assert_eq!(e.position, position, "{src:?}: {}", e.message);
            assert!(src.is_char_boundary(e.position));
            assert!(e.to_string().contains(&format!("(at character {})", position + 1)));
        }
    }

    #[test]
    fn length_and_depth_limits() {
        let atom = "attribute:x exists";
        let ok = format!("{atom}{}", " ".repeat(MAX_LEN - atom.len()));
        assert!(Expr::parse(&ok).is_ok());
        let long = format!("{ok} ");
        let e = Expr::parse(&long).unwrap_err();
        assert_eq!(e.position, MAX_LEN);
        assert!(e.message.contains("too long"), "{}", e.message);
        // Characters, not bytes.
        let wide = format!("attribute:x == '{}'", "é".repeat(1900));
        assert!(Expr::parse(&wide).is_ok());
        let e = Expr::parse(&"(".repeat(10_000)).unwrap_err();
        assert!(e.message.contains("too long"), "{}", e.message);

        let nested = |n: usize| format!("{}{atom}{}", "(".repeat(n), ")".repeat(n));
        assert!(Expr::parse(&nested(MAX_DEPTH)).is_ok());
        let e = Expr::parse(&nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(e.position, MAX_DEPTH);
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
        let e = Expr::parse(&"(".repeat(1500)).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
        for prefix in ["not ", "!", "! ", "not("] {
            let deep = format!("{}{atom}", prefix.repeat(MAX_DEPTH + 1));
            let e = Expr::parse(&deep).unwrap_err();
            assert!(e.message.contains("nested too deeply"), "{deep}: {}", e.message);
        }
        let ok = format!("{}{atom}", "not ".repeat(MAX_DEPTH));
        // An even number of negations of a false condition.
        assert!(!Expr::parse(&ok).unwrap().eval(&Inst::default()));
        // Depth is nesting, not count: many siblings are fine.
        let wide = vec!["(attribute:x exists)"; 80].join(" or ");
        assert!(Expr::parse(&wide).is_ok());
    }

    /// A tiny deterministic generator (xorshift64*), so the test needs no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const CONDITIONS: &[&str] = &[
        "attribute:x == a",
        "attribute:stack != prod",
        "attribute:cpu > 9",
        "attribute:gpu exists",
        "attribute:ecs.availability-zone not_in [us-east-1a, 'us-east-1b']",
        "attribute:ecs.instance-type =~ g2.*",
        "task:group in [database, web]",
        "task:group !~ 'service:.*'",
        "task:group not_exists",
        "runningTasksCount <= 1",
        "agentVersion >= 1.14.5",
        "agentConnected == true",
        "registeredAt < 2018-03-01",
        "ec2InstanceId matches i-ab.*",
    ];

    /// A random valid expression.
    fn generate(rng: &mut Rng, depth: usize, out: &mut String) {
        match rng.below(if depth >= 4 { 1 } else { 5 }) {
            0 | 1 => out.push_str(CONDITIONS[rng.below(CONDITIONS.len())]),
            2 => {
                out.push_str(["not ", "!", "! ", "not"][rng.below(4)]);
                out.push('(');
                generate(rng, depth + 1, out);
                out.push(')');
            }
            3 => {
                out.push('(');
                generate(rng, depth + 1, out);
                out.push(')');
            }
            _ => {
                generate(rng, depth + 1, out);
                out.push_str([" and ", " or ", " && ", " || "][rng.below(4)]);
                generate(rng, depth + 1, out);
            }
        }
    }

    #[test]
    fn generated_expressions_parse_and_evaluate_consistently() {
        let fleet = fleet();
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..1_000 {
            let mut src = String::new();
            generate(&mut rng, 0, &mut src);
            let expr = Expr::parse(&src).unwrap_or_else(|e| panic!("{src}: {e}"));
            let negated = Expr::parse(&format!("not ({src})")).unwrap();
            let doubled = Expr::parse(&format!("({src}) and ({src}) or ({src})")).unwrap();
            for inst in fleet.values() {
                let v = expr.eval(inst);
                assert_eq!(negated.eval(inst), !v, "{src}");
                assert_eq!(doubled.eval(inst), v, "{src}");
            }
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        const PIECES: &[&str] = &[
            "attribute:x",
            "attribute:",
            "task:group",
            "agentConnected",
            "agentVersion",
            "ec2InstanceId",
            "registeredAt",
            "runningTasksCount",
            " ",
            " ",
            "  ",
            "\t",
            "\n",
            "(",
            ")",
            "[",
            "]",
            ",",
            "'",
            "\"",
            "==",
            "!=",
            ">",
            ">=",
            "<",
            "<=",
            "=~",
            "!~",
            "!",
            "!in",
            "!exists",
            "in",
            "not_in",
            "exists",
            "not_exists",
            "matches",
            "equals",
            "not",
            "and",
            "or",
            "&&",
            "||",
            "AND",
            "a",
            "t2.*",
            "1",
            "1.14.5",
            "-1",
            "true",
            "2018-06-18",
            "2018-06-18T22:28:28Z",
            "é",
            "日本",
            "\u{0}",
            "\u{200b}",
            "\u{3000}",
            "🦀",
            "=",
            "~",
            "(?",
            ")*",
            "\\",
            "{9999}",
            ".",
            ":",
            "*",
        ];
        let fleet = fleet();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut parsed = 0;
        for round in 0..30_000 {
            let src = match round % 3 {
                // Arbitrary characters, biased toward ASCII.
                0 => (0..rng.below(40))
                    .map(|_| match rng.below(4) {
                        0 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'),
                        _ => char::from(b' ' + rng.below(95) as u8),
                    })
                    .collect::<String>(),
                // Random pieces of the language.
                1 => (0..rng.below(24)).map(|_| PIECES[rng.below(PIECES.len())]).collect(),
                // A valid expression, damaged a little.
                _ => {
                    let mut src = String::new();
                    generate(&mut rng, 0, &mut src);
                    for _ in 0..=rng.below(3) {
                        let boundaries: Vec<usize> =
                            (0..=src.len()).filter(|&i| src.is_char_boundary(i)).collect();
                        let at = boundaries[rng.below(boundaries.len())];
                        if rng.below(2) == 0 {
                            src.insert_str(at, PIECES[rng.below(PIECES.len())]);
                        } else {
                            let end = boundaries[rng.below(boundaries.len())].max(at);
                            src.replace_range(at..end, "");
                        }
                    }
                    src
                }
            };
            match Expr::parse(&src) {
                Ok(expr) => {
                    parsed += 1;
                    for inst in fleet.values() {
                        expr.eval(inst);
                    }
                }
                Err(e) => {
                    assert!(e.position <= src.len(), "{src:?}: {e:?}");
                    assert!(src.is_char_boundary(e.position), "{src:?}: {e:?}");
                    assert!(!e.message.is_empty());
                }
            }
        }
        // Some damaged expressions still parse, so evaluation is exercised too.
        assert!(parsed > 1_000, "only {parsed} parsed");
        for src in ["'", "\"", "'''", "[", "]", ",", "!", "!!", "&&", "(((()))", "é", "\u{0}"] {
            assert!(Expr::parse(src).is_err(), "{src:?}");
        }
    }

    #[test]
    fn expr_is_cheap_to_share() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Expr>();
        let e = Expr::parse("attribute:a =~ x.*").unwrap();
        let c = e.clone();
        assert_eq!(c.source(), e.source());
    }
}
