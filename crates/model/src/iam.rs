//! IAM's records (issue #16): users, groups, roles, customer managed policies and STS
//! sessions, each under its own key in the account-wide `iam/` prefix (never per region: IAM
//! is a global service).
//!
//! Invariants:
//! * names are unique case-insensitively, as in IAM: a record's key carries the lowercased
//!   name, the record keeps the name as created;
//! * group membership is kept on the user (`groups`), so adding a user to a group writes one
//!   record; a group's members are found by scanning users (IAM's limits keep that small);
//! * a managed policy keeps its versions (at most 5) inside its record; exactly one of them
//!   is the default;
//! * policy documents are kept exactly as given (IAM answers them URL-encoded; the wire
//!   layer does that), and were parsed by `berth-iam-policy` before being stored;
//! * access keys of users are the ordinary [`crate::records::AccessKeyRecord`]s under
//!   `iam/access-keys/` with `principal_arn` the user's ARN; an STS session has one too
//!   (`ASIA...`), plus an [`IamSession`] beside it with what only a session has.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `iam/users/<lowercased name>`.
pub fn user_key(name: &str) -> String {
    format!("{USERS}{}", name.to_lowercase())
}
pub const USERS: &str = "iam/users/";

/// `iam/groups/<lowercased name>`.
pub fn group_key(name: &str) -> String {
    format!("{GROUPS}{}", name.to_lowercase())
}
pub const GROUPS: &str = "iam/groups/";

/// `iam/roles/<lowercased name>`.
pub fn role_key(name: &str) -> String {
    format!("{ROLES}{}", name.to_lowercase())
}
pub const ROLES: &str = "iam/roles/";

/// `iam/policies/<lowercased name>` (customer managed policies; names are unique per
/// account whatever their path).
pub fn policy_key(name: &str) -> String {
    format!("{POLICIES}{}", name.to_lowercase())
}
pub const POLICIES: &str = "iam/policies/";

/// `iam/sessions/<ASIA access key id>`.
pub fn session_key(access_key_id: &str) -> String {
    format!("{SESSIONS}{access_key_id}")
}
pub const SESSIONS: &str = "iam/sessions/";

/// What users, groups and roles share: their policies.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Attached {
    /// Managed policy ARNs, in attachment order.
    #[serde(default)]
    pub managed: Vec<String>,
    /// Inline policies by name: the document as given.
    #[serde(default)]
    pub inline: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamUser {
    pub name: String,
    /// `AIDA...`
    pub id: String,
    pub path: String,
    pub arn: String,
    pub created_at: f64,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policies: Attached,
    /// Groups, by name as created.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub boundary: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamGroup {
    pub name: String,
    /// `AGPA...`
    pub id: String,
    pub path: String,
    pub arn: String,
    pub created_at: f64,
    #[serde(default)]
    pub policies: Attached,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamRole {
    pub name: String,
    /// `AROA...`
    pub id: String,
    pub path: String,
    pub arn: String,
    pub created_at: f64,
    pub trust_policy: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Seconds, 3600..=43200.
    pub max_session_duration: i32,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub policies: Attached,
    #[serde(default)]
    pub boundary: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamPolicyVersion {
    /// `v1`, `v2`...
    pub id: String,
    pub document: String,
    pub created_at: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamManagedPolicy {
    pub name: String,
    /// `ANPA...`
    pub id: String,
    pub path: String,
    pub arn: String,
    #[serde(default)]
    pub description: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub default_version: String,
    /// Oldest first; at most 5.
    pub versions: Vec<IamPolicyVersion>,
    /// The number of the next version (`v{next_version}`).
    pub next_version: u32,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

impl IamManagedPolicy {
    /// The default version's document.
    pub fn default_document(&self) -> Option<&str> {
        self.versions.iter().find(|v| v.id == self.default_version).map(|v| v.document.as_str())
    }
}

/// An STS session (AssumeRole or GetSessionToken): what authentication and authorization
/// need beyond the access key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct IamSession {
    pub access_key_id: String,
    /// SHA-256 (hex) of the session token; the token itself is never stored.
    pub token_sha256: String,
    /// Epoch seconds.
    pub expires_at: f64,
    /// The session's ARN (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`), or the user's
    /// ARN for GetSessionToken.
    pub arn: String,
    /// The role assumed (`None`: a GetSessionToken session of a user).
    #[serde(default)]
    pub role_arn: Option<String>,
    /// `AROA...:SESSION` (the user's id for GetSessionToken).
    pub user_id: String,
    /// The inline session policy, as given.
    #[serde(default)]
    pub policy: Option<String>,
    /// Managed session policies (`PolicyArns`).
    #[serde(default)]
    pub policy_arns: Vec<String>,
    /// Session tags.
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}
