//! Berth's domain model: resource names and ARNs, the records the store keeps, and the rules
//! that decide whether a request is valid, independent of HTTP and of the store's backend.
//!
//! Errors are [`ModelError`]s that name the field they concern; the server maps them to AWS
//! error codes in one place.
#![forbid(unsafe_code)]

pub mod arn;
pub mod elbv2;
pub mod network;
pub mod regions;
pub mod task_definition;

/// A request the model refuses. Each variant carries the field it concerns (dotted path from
/// the request root, e.g. `containerDefinitions[0].memory`) and AWS's wording in `message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Answered as `ClientException` (what ECS uses for most task definition rules).
    #[error("{message}")]
    Client { field: String, message: String },
    /// Answered as `InvalidParameterException`.
    #[error("{message}")]
    InvalidParameter { field: String, message: String },
}

impl ModelError {
    /// A `ClientException`-class refusal.
    pub fn client(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Client { field: field.into(), message: message.into() }
    }
    /// An `InvalidParameterException`-class refusal.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParameter { field: field.into(), message: message.into() }
    }
    /// The field the error concerns.
    pub fn field(&self) -> &str {
        match self {
            Self::Client { field, .. } | Self::InvalidParameter { field, .. } => field,
        }
    }
}

pub mod host_access;
pub mod iam;
pub mod keys;
pub mod lifecycle;
pub mod records;
pub mod service;
pub mod service_connect;
pub mod service_rules;
pub mod service_shift;
pub mod servicediscovery;
pub mod tags;
pub mod task_set;
