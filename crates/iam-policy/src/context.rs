//! The request context: who asks, for what action, on which resource, and the
//! condition keys the caller knows about the request.
//!
//! Key names are case-insensitive (stored lowercased); values are kept exactly
//! as given. A key is single-valued ([`ContextValue::Single`]) or multivalued
//! ([`ContextValue::Multi`], e.g. `aws:TagKeys`); a multivalued key with no
//! values is treated as absent by `Null` and by the set qualifiers.

use std::collections::HashMap;
use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pattern::arn_starts;

type Keys = HashMap<String, ContextValue>;

/// The value of one condition key in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextValue {
    Single(String),
    Multi(Vec<String>),
}

impl ContextValue {
    pub fn values(&self) -> &[String] {
        match self {
            ContextValue::Single(v) => std::slice::from_ref(v),
            ContextValue::Multi(v) => v,
        }
    }
}

/// What kind of principal makes the request; decides how `Principal`
/// elements match it and what a resource-based `Allow` is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account root user (`arn:aws:iam::ACCOUNT:root`): allowed unless
    /// explicitly denied.
    Root,
    /// An IAM user.
    User { name: String },
    /// An IAM role used as itself (rare: evaluating a role's own permissions).
    Role,
    /// A role session (`arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION`);
    /// `role_arn` is the role's IAM ARN (with its path).
    AssumedRole { role_arn: String },
    /// An AWS service principal (`ecs-tasks.amazonaws.com`).
    Service,
    /// A federated identity provider (`cognito-identity.amazonaws.com`, a SAML
    /// or OIDC provider ARN).
    Federated,
    /// An unauthenticated caller.
    Anonymous,
}

/// The caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The ARN the caller is known by (the session ARN for a role session), the
    /// service name for a service, the provider for a federated identity.
    pub arn: String,
    /// The caller's account (empty for services, federated and anonymous).
    pub account: String,
    pub kind: PrincipalKind,
}

impl Principal {
    /// From an IAM / STS ARN: `...:root`, `...:user/path/NAME`, `...:role/...`.
    /// For role sessions use [`Principal::assumed_role`] (the session ARN does
    /// not carry the role's path). Anything else is taken as a user-like ARN.
    pub fn from_arn(arn: &str) -> Principal {
        let account = account_of(arn);
        let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
        let kind = if resource == "root" {
            PrincipalKind::Root
        } else if let Some(rest) = resource.strip_prefix("user/") {
            PrincipalKind::User { name: rest.rsplit('/').next().unwrap_or(rest).to_string() }
        } else if resource.starts_with("role/") {
            PrincipalKind::Role
        } else if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let role = rest.split('/').next().unwrap_or("");
            PrincipalKind::AssumedRole { role_arn: format!("arn:aws:iam::{account}:role/{role}") }
        } else {
            PrincipalKind::User {
                name: resource.rsplit('/').next().unwrap_or(resource).to_string(),
            }
        };
        Principal { arn: arn.to_string(), account, kind }
    }

    /// A role session: `session_arn` as STS issued it, `role_arn` the role.
    pub fn assumed_role(session_arn: &str, role_arn: &str) -> Principal {
        Principal {
            arn: session_arn.to_string(),
            account: account_of(session_arn),
            kind: PrincipalKind::AssumedRole { role_arn: role_arn.to_string() },
        }
    }

    /// A service principal such as `ecs-tasks.amazonaws.com`.
    pub fn service(name: &str) -> Principal {
        Principal { arn: name.to_string(), account: String::new(), kind: PrincipalKind::Service }
    }

    /// A federated principal (the identity provider).
    pub fn federated(provider: &str) -> Principal {
        Principal {
            arn: provider.to_string(),
            account: String::new(),
            kind: PrincipalKind::Federated,
        }
    }

    pub fn anonymous() -> Principal {
        Principal { arn: "*".to_string(), account: String::new(), kind: PrincipalKind::Anonymous }
    }

    /// `aws:PrincipalType` as AWS sets it.
    pub fn principal_type(&self) -> &'static str {
        match self.kind {
            PrincipalKind::Root => "Account",
            PrincipalKind::User { .. } => "User",
            PrincipalKind::Role => "Role",
            PrincipalKind::AssumedRole { .. } => "AssumedRole",
            PrincipalKind::Service => "Service",
            PrincipalKind::Federated => "FederatedUser",
            PrincipalKind::Anonymous => "Anonymous",
        }
    }
}

fn account_of(arn: &str) -> String {
    arn.split(':').nth(4).unwrap_or("").to_string()
}

/// One request to authorize.
#[derive(Debug, Clone)]
pub struct RequestContext {
    principal: Principal,
    action: String,
    action_lc: String,
    resource: String,
    resource_arn: Option<[usize; 6]>,
    keys: Keys,
    explicit_grants: bool,
}

impl RequestContext {
    /// A context for `action` (`service:Operation`) on `resource` (an ARN, or
    /// `*` for actions without resource-level permissions). Sets the keys that
    /// follow from the principal: `aws:PrincipalArn` (the role's ARN for a
    /// role session), `aws:PrincipalAccount`, `aws:PrincipalType`,
    /// `aws:username` for IAM users, `aws:PrincipalServiceName` for services.
    pub fn new(principal: Principal, action: &str, resource: &str) -> RequestContext {
        let mut ctx = RequestContext {
            action: action.to_string(),
            action_lc: action.to_lowercase(),
            resource: resource.to_string(),
            resource_arn: arn_starts(resource),
            keys: Keys::default(),
            explicit_grants: false,
            principal: principal.clone(),
        };
        let principal_arn = match &principal.kind {
            PrincipalKind::AssumedRole { role_arn } => role_arn.clone(),
            _ => principal.arn.clone(),
        };
        match principal.kind {
            PrincipalKind::Service => {
                ctx.set("aws:PrincipalServiceName", principal.arn.clone());
            }
            PrincipalKind::Federated | PrincipalKind::Anonymous => {}
            _ => {
                ctx.set("aws:PrincipalArn", principal_arn);
            }
        }
        if !principal.account.is_empty() {
            ctx.set("aws:PrincipalAccount", principal.account.clone());
        }
        ctx.set("aws:PrincipalType", principal.principal_type());
        if let PrincipalKind::User { name } = &principal.kind {
            ctx.set("aws:username", name.clone());
        }
        ctx
    }

    /// Sets a single-valued key (replacing any value).
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.keys.insert(key.to_lowercase(), ContextValue::Single(value.into()));
        self
    }

    /// Sets a multivalued key (replacing any value).
    pub fn set_multi<I, S>(&mut self, key: &str, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keys.insert(
            key.to_lowercase(),
            ContextValue::Multi(values.into_iter().map(Into::into).collect()),
        );
        self
    }

    /// Builder form of [`set`](Self::set).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.set(key, value);
        self
    }

    /// Builder form of [`set_multi`](Self::set_multi).
    pub fn with_multi<I, S>(mut self, key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.set_multi(key, values);
        self
    }

    /// `aws:CurrentTime` (ISO 8601, UTC) and `aws:EpochTime` (seconds).
    pub fn with_time(mut self, now: OffsetDateTime) -> Self {
        let now = now.to_offset(time::UtcOffset::UTC);
        let now = now.replace_nanosecond(0).unwrap_or(now);
        if let Ok(s) = now.format(&Rfc3339) {
            self.set("aws:CurrentTime", s);
        }
        self.set("aws:EpochTime", now.unix_timestamp().to_string());
        self
    }

    /// `aws:SourceIp`.
    pub fn with_source_ip(self, ip: IpAddr) -> Self {
        self.with("aws:SourceIp", ip.to_string())
    }

    /// `aws:SecureTransport`.
    pub fn with_secure_transport(self, tls: bool) -> Self {
        self.with("aws:SecureTransport", if tls { "true" } else { "false" })
    }

    /// `aws:userid` (the unique id of the user or `ROLEID:session`).
    pub fn with_userid(self, id: &str) -> Self {
        self.with("aws:userid", id)
    }

    /// Tags of the principal: `aws:PrincipalTag/KEY` each.
    pub fn with_principal_tags<'a>(
        mut self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (k, v) in tags {
            self.set(&format!("aws:PrincipalTag/{k}"), v);
        }
        self
    }

    /// Tags of the resource: `aws:ResourceTag/KEY` each.
    pub fn with_resource_tags<'a>(
        mut self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        for (k, v) in tags {
            self.set(&format!("aws:ResourceTag/{k}"), v);
        }
        self
    }

    /// Tags in the request: `aws:RequestTag/KEY` each and `aws:TagKeys`.
    pub fn with_request_tags<'a>(
        mut self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut keys = Vec::new();
        for (k, v) in tags {
            self.set(&format!("aws:RequestTag/{k}"), v);
            keys.push(k.to_string());
        }
        self.set_multi("aws:TagKeys", keys);
        self
    }

    /// Marks the action as one a policy must grant by name: an `Allow` statement (identity,
    /// boundary, session or resource policy alike) applies only through an `Action` pattern
    /// that starts with the action's service prefix literally (`berth:*`, `berth:Run*`,
    /// `berth:RunPrivileged`); `*`, `ber*:*` and `NotAction` never grant it. `Deny` statements
    /// match as usual, so `"Deny" "*"` still denies it. Used for Berth's host-access actions.
    pub fn with_explicit_grants(mut self) -> Self {
        self.explicit_grants = true;
        self
    }

    /// See [`Self::with_explicit_grants`].
    pub fn explicit_grants(&self) -> bool {
        self.explicit_grants
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn action(&self) -> &str {
        &self.action
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The value of a key (any case).
    pub fn get(&self, key: &str) -> Option<&ContextValue> {
        if key.bytes().any(|b| b.is_ascii_uppercase()) {
            self.keys.get(&key.to_lowercase())
        } else {
            self.keys.get(key)
        }
    }

    pub(crate) fn action_lc(&self) -> &str {
        &self.action_lc
    }

    pub(crate) fn resource_arn(&self) -> Option<&[usize; 6]> {
        self.resource_arn.as_ref()
    }

    /// `key` must be lowercase.
    pub(crate) fn get_lc(&self, key: &str) -> Option<&ContextValue> {
        self.keys.get(key)
    }

    /// The value of a single-valued key; multivalued keys cannot be used as
    /// policy variables. `key` must be lowercase.
    pub(crate) fn single_value(&self, key: &str) -> Option<&str> {
        match self.keys.get(key)? {
            ContextValue::Single(v) => Some(v),
            ContextValue::Multi(_) => None,
        }
    }
}
