//! Metric math for GetMetricData: a parser and evaluator for the subset Berth serves.
//!
//! Contract:
//! * grammar: numbers, query ids, `+ - * /` with the usual precedence and parentheses, unary
//!   minus, arrays `[a, b]`, and the functions `SUM`, `AVG`, `MIN`, `MAX` (upper case, as
//!   CloudWatch spells them);
//! * values are scalars, time series (timestamp -> value) or arrays of time series; a function
//!   of one series is a scalar (its sum, average...), of an array a series (per timestamp, over
//!   the series that have a value there);
//! * series combine per timestamp present in both; a division by zero yields no value at that
//!   timestamp (CloudWatch drops it too);
//! * anything else is an [`Error`] naming what was not understood, which GetMetricData answers
//!   as a `ValidationError` naming the query id.

use std::collections::BTreeMap;

/// A time series: period start (epoch ms) -> value.
pub type Series = BTreeMap<i64, f64>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Series(Series),
    Array(Vec<Series>),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Num(f64),
    Id(String),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
    Array(Vec<Expr>),
}

impl Expr {
    /// The query ids the expression reads.
    pub fn ids(&self, out: &mut Vec<String>) {
        match self {
            Expr::Num(_) => {}
            Expr::Id(i) => out.push(i.clone()),
            Expr::Neg(e) => e.ids(out),
            Expr::Bin(_, a, b) => {
                a.ids(out);
                b.ids(out);
            }
            Expr::Call(_, args) | Expr::Array(args) => args.iter().for_each(|a| a.ids(out)),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, Error> {
    let mut p = Parser { s: src.as_bytes(), i: 0 };
    let e = p.expr()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(Error(format!("unexpected '{}' at position {}", &src[p.i..], p.i + 1)));
    }
    Ok(e)
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Result<Expr, Error> {
        let mut left = self.term()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            left = Expr::Bin(c as char, Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }
    fn term(&mut self) -> Result<Expr, Error> {
        let mut left = self.unary()?;
        while let Some(c @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            left = Expr::Bin(c as char, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Result<Expr, Error> {
        if self.eat(b'-') {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.primary()
    }
    fn list(&mut self, close: u8) -> Result<Vec<Expr>, Error> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            if !self.eat(b',') {
                return Err(Error(format!(
                    "expected ',' or '{}' at position {}",
                    close as char,
                    self.i + 1
                )));
            }
        }
    }
    fn primary(&mut self) -> Result<Expr, Error> {
        match self.peek() {
            None => Err(Error("the expression ends too soon".into())),
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat(b')') {
                    return Err(Error(format!("expected ')' at position {}", self.i + 1)));
                }
                Ok(e)
            }
            Some(b'[') => {
                self.i += 1;
                Ok(Expr::Array(self.list(b']')?))
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit()
                        || matches!(self.s[self.i], b'.' | b'e' | b'E'))
                {
                    self.i += 1;
                }
                let text = String::from_utf8_lossy(&self.s[start..self.i]);
                text.parse().map(Expr::Num).map_err(|_| Error(format!("'{text}' is not a number")))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                if self.eat(b'(') {
                    if !matches!(name.as_str(), "SUM" | "AVG" | "MIN" | "MAX") {
                        return Err(Error(format!(
                            "Berth's metric math does not know the function {name} (it serves SUM, AVG, MIN, MAX)"
                        )));
                    }
                    return Ok(Expr::Call(name, self.list(b')')?));
                }
                Ok(Expr::Id(name))
            }
            Some(c) => Err(Error(format!("unexpected '{}' at position {}", c as char, self.i + 1))),
        }
    }
}

fn apply(op: char, a: f64, b: f64) -> Option<f64> {
    let v = match op {
        '+' => a + b,
        '-' => a - b,
        '*' => a * b,
        _ if b == 0.0 => return None,
        _ => a / b,
    };
    v.is_finite().then_some(v)
}

fn map_series(s: &Series, f: impl Fn(f64) -> Option<f64>) -> Series {
    s.iter().filter_map(|(t, v)| f(*v).map(|x| (*t, x))).collect()
}

fn fold(name: &str, values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    Some(match name {
        "SUM" => values.iter().sum(),
        "AVG" => values.iter().sum::<f64>() / values.len() as f64,
        "MIN" => values.iter().copied().fold(f64::INFINITY, f64::min),
        _ => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Evaluates `e` with each id's series from `lookup`.
pub fn eval(e: &Expr, lookup: &dyn Fn(&str) -> Option<Value>) -> Result<Value, Error> {
    Ok(match e {
        Expr::Num(n) => Value::Scalar(*n),
        Expr::Id(id) => lookup(id).ok_or_else(|| {
            Error(format!("the expression names '{id}', which no query has as its Id"))
        })?,
        Expr::Neg(e) => match eval(e, lookup)? {
            Value::Scalar(v) => Value::Scalar(-v),
            Value::Series(s) => Value::Series(map_series(&s, |v| Some(-v))),
            Value::Array(a) => {
                Value::Array(a.iter().map(|s| map_series(s, |v| Some(-v))).collect())
            }
        },
        Expr::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                match eval(i, lookup)? {
                    Value::Series(s) => out.push(s),
                    Value::Array(a) => out.extend(a),
                    Value::Scalar(_) => {
                        return Err(Error("an array holds time series, not numbers".into()));
                    }
                }
            }
            Value::Array(out)
        }
        Expr::Call(name, args) => {
            if args.len() != 1 {
                return Err(Error(format!("{name} takes one argument")));
            }
            match eval(&args[0], lookup)? {
                Value::Scalar(v) => Value::Scalar(v),
                Value::Series(s) => match fold(name, &s.values().copied().collect::<Vec<_>>()) {
                    Some(v) => Value::Scalar(v),
                    None => Value::Series(Series::new()),
                },
                Value::Array(a) => {
                    let mut by_time: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                    for s in &a {
                        for (t, v) in s {
                            by_time.entry(*t).or_default().push(*v);
                        }
                    }
                    Value::Series(
                        by_time
                            .into_iter()
                            .filter_map(|(t, vs)| fold(name, &vs).map(|v| (t, v)))
                            .collect(),
                    )
                }
            }
        }
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, lookup)?, eval(b, lookup)?);
            let op = *op;
            match (a, b) {
                (Value::Scalar(x), Value::Scalar(y)) => {
                    Value::Scalar(apply(op, x, y).unwrap_or(f64::NAN))
                }
                (Value::Series(s), Value::Scalar(y)) => {
                    Value::Series(map_series(&s, |x| apply(op, x, y)))
                }
                (Value::Scalar(x), Value::Series(s)) => {
                    Value::Series(map_series(&s, |y| apply(op, x, y)))
                }
                (Value::Series(s), Value::Series(r)) => Value::Series(
                    s.iter()
                        .filter_map(|(t, x)| {
                            r.get(t).and_then(|y| apply(op, *x, *y)).map(|v| (*t, v))
                        })
                        .collect(),
                ),
                (Value::Array(a), Value::Scalar(y)) => {
                    Value::Array(a.iter().map(|s| map_series(s, |x| apply(op, x, y))).collect())
                }
                (Value::Scalar(x), Value::Array(a)) => {
                    Value::Array(a.iter().map(|s| map_series(s, |y| apply(op, x, y))).collect())
                }
                _ => {
                    return Err(Error(format!(
                        "'{op}' between an array and a time series is not supported; use SUM, AVG, MIN or MAX of the array"
                    )));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(i64, f64)]) -> Series {
        points.iter().copied().collect()
    }

    fn run(src: &str) -> Result<Value, Error> {
        let m1 = series(&[(0, 1.0), (60, 2.0), (120, 3.0)]);
        let m2 = series(&[(0, 10.0), (60, 20.0)]);
        eval(&parse(src)?, &|id| match id {
            "m1" => Some(Value::Series(m1.clone())),
            "m2" => Some(Value::Series(m2.clone())),
            _ => None,
        })
    }

    #[test]
    fn arithmetic_and_functions() {
        assert_eq!(run("m1 + m2").unwrap(), Value::Series(series(&[(0, 11.0), (60, 22.0)])));
        assert_eq!(
            run("m1 * 2 + 1").unwrap(),
            Value::Series(series(&[(0, 3.0), (60, 5.0), (120, 7.0)]))
        );
        assert_eq!(run("(m2 - m1) / m1").unwrap(), Value::Series(series(&[(0, 9.0), (60, 9.0)])));
        assert_eq!(run("-m1 / 0").unwrap(), Value::Series(Series::new()));
        assert_eq!(
            run("SUM([m1, m2])").unwrap(),
            Value::Series(series(&[(0, 11.0), (60, 22.0), (120, 3.0)]))
        );
        assert_eq!(
            run("AVG([m1,m2])").unwrap(),
            Value::Series(series(&[(0, 5.5), (60, 11.0), (120, 3.0)]))
        );
        assert_eq!(
            run("MAX([m1, m2])").unwrap(),
            Value::Series(series(&[(0, 10.0), (60, 20.0), (120, 3.0)]))
        );
        assert_eq!(run("MIN(m1)").unwrap(), Value::Scalar(1.0));
        assert_eq!(run("SUM(m1) / 2").unwrap(), Value::Scalar(3.0));
        assert_eq!(run("2 * 3 - 4 / 2").unwrap(), Value::Scalar(4.0));
    }

    #[test]
    fn errors_name_what_is_wrong() {
        assert!(run("m3 + 1").unwrap_err().0.contains("'m3'"));
        assert!(run("RATE(m1)").unwrap_err().0.contains("RATE"));
        assert!(run("m1 +").is_err());
        assert!(run("m1 m2").unwrap_err().0.contains("position"));
        assert!(run("SUM([m1, 2])").is_err());
    }
}
