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
//!
//! The language is read in four steps, one file each: `lexer` (characters and tokens, and how
//! a token is named in a message), `parser` (the grammar, by recursive descent, and which
//! operators each subject accepts), `ast` (the compiled tree, and the typing of every argument
//! into it at parse time) and `eval` (the tree against a [`QuerySubject`]).

mod ast;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use ast::Node;
use lexer::{describe, keyword_hint};
use parser::Parser;

/// ECS's maximum expression length, in characters.
const MAX_LEN: usize = 2000;
/// Maximum nesting of parentheses and `not`.
const MAX_DEPTH: usize = 64;
/// Compiled size limit of one regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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
