//! The compiled tree of an expression, and the typing that builds it. By the time a tree
//! exists every argument is in the form evaluation compares with (booleans folded into
//! outcomes, versions split, dates in epoch milliseconds, counts as integers, regular
//! expressions compiled and anchored), so evaluating never parses, compiles or allocates. A
//! subject and operator pair that has no typed form is refused here with `None`.

use regex::{Regex, RegexBuilder};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::eval::parse_number;
use super::lexer::{Lit, shorten};
use super::parser::{Subject, Test};
use super::{QueryError, REGEX_SIZE_LIMIT, err};

pub(super) const DATE_FORMATS: &str =
    "2018-06-18T22:28:28+00:00, 2018-06-18T22:28:28Z, 2018-06-18T22:28:28 (UTC) or 2018-06-18";

#[derive(Clone, Debug)]
pub(super) enum Node {
    All(Box<[Node]>),
    Any(Box<[Node]>),
    Not(Box<Node>),
    Cond(Cond),
}

#[derive(Clone, Debug)]
pub(super) enum Cond {
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
pub(super) enum AttrTest {
    Exists,
    NotExists,
    Value(StrTest),
    Order(Cmp, Operand),
}

#[derive(Clone, Debug)]
pub(super) enum GroupTest {
    Exists,
    NotExists,
    /// True when some group satisfies the test.
    Any(StrTest),
}

/// A per-value string predicate.
#[derive(Clone, Debug)]
pub(super) enum StrTest {
    Eq(Box<str>),
    Ne(Box<str>),
    In(Box<[Box<str>]>),
    NotIn(Box<[Box<str>]>),
    Matches(Regex),
    NotMatches(Regex),
}

/// An ordering operator; `holds` is given `instance_value.cmp(argument)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The argument of an attribute ordering comparison.
#[derive(Clone, Debug)]
pub(super) struct Operand {
    pub(super) text: Box<str>,
    pub(super) number: Option<f64>,
}

/// A version argument, split into its `.`-separated components.
#[derive(Clone, Debug)]
pub(super) struct Version {
    pub(super) parts: Box<[Box<str>]>,
}

impl Node {
    pub(super) fn is_static(&self) -> bool {
        match self {
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().all(Node::is_static),
            Node::Not(node) => node.is_static(),
            Node::Cond(cond) => !matches!(cond, Cond::TaskGroup(_) | Cond::RunningTasksCount(..)),
        }
    }
}

/// The compiled condition, or `None` when the operator does not apply to the subject.
pub(super) fn compile(subject: Subject<'_>, test: Test<'_>) -> Result<Option<Cond>, QueryError> {
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
pub(super) fn parse_date(lit: &Lit<'_>) -> Result<i64, QueryError> {
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
