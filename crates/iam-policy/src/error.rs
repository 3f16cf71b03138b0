//! Parse errors: every one is IAM's `MalformedPolicyDocument`, with the
//! message IAM gives where IAM has a specific one, and always the path of the
//! offending element (`Statement[1].Condition.StringLike`) in
//! [`PolicyError::element`].

use thiserror::Error;

/// A policy document IAM would refuse. `Display` is the message IAM answers
/// with (its wording where it has one; "Syntax errors in policy." followed by
/// what is wrong otherwise). [`element`](PolicyError::element) names the
/// element by its path in the document.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyError {
    /// Not JSON at all, or JSON with trailing garbage.
    #[error("This policy contains invalid Json")]
    InvalidJson { detail: String },
    /// A structural problem IAM reports generically.
    #[error("Syntax errors in policy. {element}: {problem}")]
    Syntax { element: String, problem: String },
    /// `Version` is neither `2012-10-17` nor `2008-10-17`.
    #[error("The policy must contain a valid version string")]
    InvalidVersion { value: String },
    /// A statement without `Action` / `NotAction` (or with an empty list).
    #[error("Policy statement must contain actions.")]
    MissingActions { element: String },
    /// An identity-based statement without `Resource` / `NotResource`.
    #[error("Policy statement must contain resources.")]
    MissingResources { element: String },
    /// `Principal` / `NotPrincipal` in an identity-based policy, a permissions
    /// boundary or a session policy.
    #[error("Policy document should not specify a principal.")]
    PrincipalNotAllowed { element: String },
    /// A resource-based or trust policy statement without a principal.
    #[error("Missing required field Principal")]
    MissingPrincipal { element: String },
    /// `Resource` / `NotResource` in a trust policy.
    #[error("Has prohibited field {field}")]
    ProhibitedField { element: String, field: String },
    /// An action or condition key without a `vendor:` prefix.
    #[error("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.")]
    VendorPrefix { element: String, value: String },
    /// A resource that is neither an ARN nor `*`.
    #[error("Resource {value} must be in ARN format or \"*\".")]
    ResourceNotArn { element: String, value: String },
    /// A principal IAM cannot interpret.
    #[error("Invalid principal in policy: \"{kind}\":\"{value}\"")]
    InvalidPrincipal { element: String, kind: String, value: String },
    /// A `Sid` with characters IAM refuses in the policies it stores.
    #[error(
        "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"
    )]
    SidNotAlphanumeric { element: String, sid: String },
    /// Two statements with the same `Sid`.
    #[error("Statement IDs (SID) in a single policy must be unique.")]
    DuplicateSid { element: String, sid: String },
}

impl PolicyError {
    /// The AWS error code for every parse error.
    pub fn aws_code(&self) -> &'static str {
        "MalformedPolicyDocument"
    }

    /// The path of the offending element (`Version`, `Statement[0].Effect`,
    /// `Statement[2].Condition.StringEquals.aws:username`, ...).
    pub fn element(&self) -> &str {
        match self {
            PolicyError::InvalidJson { .. } => "Policy",
            PolicyError::InvalidVersion { .. } => "Version",
            PolicyError::Syntax { element, .. }
            | PolicyError::MissingActions { element }
            | PolicyError::MissingResources { element }
            | PolicyError::PrincipalNotAllowed { element }
            | PolicyError::MissingPrincipal { element }
            | PolicyError::ProhibitedField { element, .. }
            | PolicyError::VendorPrefix { element, .. }
            | PolicyError::ResourceNotArn { element, .. }
            | PolicyError::InvalidPrincipal { element, .. }
            | PolicyError::SidNotAlphanumeric { element, .. }
            | PolicyError::DuplicateSid { element, .. } => element,
        }
    }

    pub(crate) fn syntax(element: impl Into<String>, problem: impl Into<String>) -> Self {
        PolicyError::Syntax { element: element.into(), problem: problem.into() }
    }
}
