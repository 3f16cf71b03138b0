//! The model's constraints (`required`, `min`, `max`) as the generated `validate()` methods
//! check them. A [`Violation`] names the member by its dotted path from the request root, e.g.
//! `containerDefinitions[0].portMappings[1].containerPort`.

use std::fmt;

/// A value that can check itself against the service model.
pub trait Validate {
    /// The first violation found, in member order.
    fn validate(&self) -> Result<(), Violation>;
}

/// One broken model constraint.
#[derive(Clone, Debug, PartialEq)]
pub enum Violation {
    /// A `required` member is absent.
    Missing { path: String },
    /// A string, list or map whose length is outside `[min, max]`.
    Length { path: String, len: usize, min: usize, max: usize },
    /// A number outside `[min, max]`.
    Range { path: String, value: String, min: String, max: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Missing { path } => write!(f, "Missing required parameter: {path}"),
            Violation::Length { path, len, min, max } => {
                if *max == usize::MAX {
                    write!(
                        f,
                        "Invalid length for parameter {path}, value: {len}, valid min length: {min}"
                    )
                } else {
                    write!(
                        f,
                        "Invalid length for parameter {path}, value: {len}, valid range: {min}-{max}"
                    )
                }
            }
            Violation::Range { path, value, min, max } => {
                write!(
                    f,
                    "Invalid value for parameter {path}, value: {value}, valid range: {min}-{max}"
                )
            }
        }
    }
}

/// `parent.member`, or `member` at the root.
pub fn join(parent: &str, member: &str) -> String {
    if parent.is_empty() { member.to_string() } else { format!("{parent}.{member}") }
}

#[doc(hidden)]
pub fn check_len(path: &str, len: usize, min: usize, max: usize) -> Result<(), Violation> {
    if len < min || len > max {
        return Err(Violation::Length { path: path.to_string(), len, min, max });
    }
    Ok(())
}

#[doc(hidden)]
pub fn check_range(path: &str, value: i64, min: i64, max: i64) -> Result<(), Violation> {
    if value < min || value > max {
        return Err(Violation::Range {
            path: path.to_string(),
            value: value.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    Ok(())
}

#[doc(hidden)]
pub fn check_range_f64(path: &str, value: f64, min: f64, max: f64) -> Result<(), Violation> {
    if !(value >= min && value <= max) {
        return Err(Violation::Range {
            path: path.to_string(),
            value: value.to_string(),
            min: min.to_string(),
            max: max.to_string(),
        });
    }
    Ok(())
}
