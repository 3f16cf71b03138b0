//! The grammar of the cluster query language (see the module documentation), by recursive
//! descent over the source. Every error carries the byte offset of the offending token and
//! names what was expected and what was found; nesting (parentheses and `not`) is counted so
//! that no input recurses deeper than [`MAX_DEPTH`]. Each condition's subject and operator are
//! checked against the table of valid pairs here; its argument is typed by [`compile`].

use super::ast::{Cmp, Node, compile};
use super::lexer::{
    Connective, Lit, describe, is_delim, is_keyword, is_op_char, is_quote, keyword_hint, shorten,
};
use super::{MAX_DEPTH, QueryError, err};

const SUBJECTS: &str = "agentConnected, agentVersion, attribute:NAME, ec2InstanceId, registeredAt, \
                        runningTasksCount, task:group";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
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
pub(super) const OPS: [(Op, &str, &str); 12] = [
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

    pub(super) fn forms(self) -> (&'static str, &'static str) {
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
pub(super) enum Subject<'a> {
    AgentConnected,
    AgentVersion,
    Attribute(&'a str),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

impl Subject<'_> {
    pub(super) fn valid_ops(self) -> &'static [Op] {
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

/// An operator with its parsed, not yet typed, argument.
pub(super) enum Test<'a> {
    Cmp(Cmp, Lit<'a>),
    In(Vec<Lit<'a>>),
    NotIn(Vec<Lit<'a>>),
    Matches(Lit<'a>),
    NotMatches(Lit<'a>),
    Exists,
    NotExists,
}

pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
    pub(super) depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn parse_or(&mut self) -> Result<Node, QueryError> {
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
