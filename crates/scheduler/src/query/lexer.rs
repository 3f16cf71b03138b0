//! Characters and tokens of the cluster query language, and the cursor methods of [`Parser`]
//! that read them. The cursor only moves forward, over whole characters, so every position
//! it reports (and every error position) is a char boundary of the source. Messages name a
//! token with [`describe`] (quoted, at most 40 characters via [`shorten`]). Nothing here
//! decides grammar beyond recognising a connective.

use std::borrow::Cow;

use super::parser::Parser;
use super::{QueryError, err};

/// One literal argument: its text (quotes removed) and where it starts.
pub(super) struct Lit<'a> {
    pub(super) text: &'a str,
    pub(super) pos: usize,
}

/// `and` / `&&`, or `or` / `||`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Connective {
    And,
    Or,
}

pub(super) fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',')
}

pub(super) fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '!' | '<' | '>' | '~')
}

pub(super) fn is_quote(c: char) -> bool {
    c == '\'' || c == '"'
}

pub(super) fn is_keyword(word: &str) -> bool {
    matches!(word, "and" | "or" | "not" | "&&" | "||")
}

/// At most 40 characters of `s`, for messages.
pub(super) fn shorten(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((i, _)) => Cow::Owned(format!("{}...", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

/// The token at `pos`, quoted, or "end of expression".
pub(super) fn describe(src: &str, pos: usize) -> String {
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
pub(super) fn keyword_hint(src: &str, pos: usize) -> &'static str {
    let rest = src.get(pos..).unwrap_or("");
    let word = &rest[..rest.find(is_delim).unwrap_or(rest.len())];
    if ["and", "or", "not"].iter().any(|k| word.eq_ignore_ascii_case(k)) {
        " (keywords are lowercase: 'and', 'or', 'not')"
    } else {
        ""
    }
}

impl<'a> Parser<'a> {
    pub(super) fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub(super) fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    pub(super) fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c| !keep(c)).unwrap_or(rest.len());
        self.pos += end;
        &rest[..end]
    }

    pub(super) fn found(&self) -> String {
        describe(self.src, self.pos)
    }

    /// The connective at the cursor and its length, without consuming it.
    pub(super) fn connective(&self) -> Option<(Connective, usize)> {
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

    /// The operator token at the cursor, consumed; empty when there is none.
    pub(super) fn lex_operator(&mut self) -> &'a str {
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

    pub(super) fn parse_quoted(&mut self) -> Result<Lit<'a>, QueryError> {
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
}
