//! Policy documents: parsed from JSON as IAM accepts them and compiled into
//! matchers once.
//!
//! Grammar (IAM JSON policy elements reference):
//! * top level: `Version` (`2012-10-17` or `2008-10-17`; absent means
//!   `2008-10-17`, where `${...}` is literal text), `Id`, `Statement` (an
//!   object or an array of objects);
//! * statement: `Sid`, `Effect` (`Allow` | `Deny`), exactly one of `Action` /
//!   `NotAction`, at most one of `Resource` / `NotResource`, at most one of
//!   `Principal` / `NotPrincipal`, `Condition`; strings or arrays of strings.
//!
//! What is required or prohibited depends on the [`PolicyKind`]: identity-based
//! documents (identity, permissions boundary, session) need a resource and may
//! not name a principal; resource-based and trust documents need a principal;
//! trust documents may not name a resource; a resource-based statement without
//! `Resource` applies to the resource the policy is attached to. Element names
//! and `Effect` values are case-sensitive, as in IAM. Size limits are the
//! caller's.

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::condition::{self, Condition};
use crate::context::{Principal, PrincipalKind, RequestContext};
use crate::error::PolicyError;
use crate::pattern::{Syntax, Tok, arn_match, glob, has_vars, resolve, split_arn_tokens, tokenize};

/// What the document is used as; decides which elements are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Attached to a user, group or role (managed or inline).
    Identity,
    /// Attached to a resource (a secret, a repository, ...).
    Resource,
    /// A role's trust policy (`AssumeRolePolicyDocument`).
    Trust,
    /// A permissions boundary (identity-based grammar).
    PermissionsBoundary,
    /// A session policy passed to `AssumeRole` (identity-based grammar).
    Session,
}

impl PolicyKind {
    fn identity_grammar(self) -> bool {
        matches!(self, PolicyKind::Identity | PolicyKind::PermissionsBoundary | PolicyKind::Session)
    }
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V2012_10_17,
    V2008_10_17,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// How a statement's `Principal` matched the caller; the order is the
/// strength of a resource-based `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PrincipalMatch {
    /// Only the caller's account is named: its identity policies must allow too.
    Account,
    /// The role of a role session is named: boundary and session policies
    /// still apply.
    Role,
    /// The caller itself (or everyone) is named.
    Direct,
}

#[derive(Debug, Clone, Default)]
struct PrincipalSet {
    any: bool,
    arns: Vec<String>,
    accounts: Vec<String>,
    services: Vec<String>,
    federated: Vec<String>,
}

impl PrincipalSet {
    fn matches(&self, p: &Principal) -> Option<PrincipalMatch> {
        if self.any {
            return Some(PrincipalMatch::Direct);
        }
        match &p.kind {
            PrincipalKind::Service => self
                .services
                .iter()
                .any(|s| s.eq_ignore_ascii_case(&p.arn))
                .then_some(PrincipalMatch::Direct),
            PrincipalKind::Federated => {
                self.federated.contains(&p.arn).then_some(PrincipalMatch::Direct)
            }
            PrincipalKind::Anonymous => None,
            kind => {
                if self.arns.contains(&p.arn) {
                    return Some(PrincipalMatch::Direct);
                }
                if let PrincipalKind::AssumedRole { role_arn } = kind
                    && self.arns.contains(role_arn)
                {
                    return Some(PrincipalMatch::Role);
                }
                if !p.account.is_empty() && self.accounts.contains(&p.account) {
                    return Some(if *kind == PrincipalKind::Root {
                        PrincipalMatch::Direct
                    } else {
                        PrincipalMatch::Account
                    });
                }
                None
            }
        }
    }

    /// `NotPrincipal`: the caller is excluded only when every identity in its
    /// chain (account, role, session / user) is listed, which is why AWS tells
    /// you to list the account and the role along with a session.
    fn excludes(&self, p: &Principal) -> bool {
        if self.any {
            return true;
        }
        let account = || !p.account.is_empty() && self.accounts.contains(&p.account);
        match &p.kind {
            PrincipalKind::Root => account(),
            PrincipalKind::User { .. } | PrincipalKind::Role => {
                account() && self.arns.contains(&p.arn)
            }
            PrincipalKind::AssumedRole { role_arn } => {
                account() && self.arns.contains(role_arn) && self.arns.contains(&p.arn)
            }
            PrincipalKind::Service => self.services.iter().any(|s| s.eq_ignore_ascii_case(&p.arn)),
            PrincipalKind::Federated => self.federated.contains(&p.arn),
            PrincipalKind::Anonymous => false,
        }
    }
}

#[derive(Debug, Clone)]
struct ResourcePattern {
    any: bool,
    toks: Vec<Tok>,
    /// Segments, precomputed when the pattern has no variables.
    segs: Option<Vec<Vec<Tok>>>,
}

impl ResourcePattern {
    fn matches(&self, ctx: &RequestContext) -> bool {
        if self.any {
            return true;
        }
        let value = ctx.resource();
        match (&self.segs, ctx.resource_arn()) {
            (Some(segs), Some(starts)) => arn_match(segs, value, starts),
            (Some(_), None) => glob(&self.toks, value),
            (None, starts) => match resolve(&self.toks, ctx, false) {
                None => false,
                Some(t) => match starts {
                    Some(starts) => arn_match(&split_arn_tokens(&t), value, starts),
                    None => glob(&t, value),
                },
            },
        }
    }
}

/// One compiled statement.
#[derive(Debug, Clone)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    not_action: bool,
    /// Lowercased action patterns.
    actions: Vec<Vec<Tok>>,
    /// `None`: no Resource element (resource-based and trust policies).
    resources: Option<(bool, Vec<ResourcePattern>)>,
    /// `None`: no Principal element (identity-based policies).
    principals: Option<(bool, PrincipalSet)>,
    conditions: Vec<Condition>,
}

impl Statement {
    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// See [`Policy::mentions_key`].
    fn mentions_key(&self, prefix: &str) -> bool {
        let in_resources = self.resources.as_ref().is_some_and(|(_, pats)| {
            pats.iter().any(|p| crate::pattern::mentions(&p.toks, prefix))
        });
        in_resources || self.conditions.iter().any(|c| c.mentions(prefix))
    }

    /// Whether the statement applies to the request, and how its principal
    /// matched (`Direct` when it names no principal).
    pub(crate) fn applies(&self, ctx: &RequestContext) -> Option<PrincipalMatch> {
        let action = ctx.action_lc();
        let matched = if self.effect == Effect::Allow && ctx.explicit_grants() {
            // Only a pattern naming the action's service literally grants it.
            !self.not_action
                && self.actions.iter().any(|p| names_service(p, action) && glob(p, action))
        } else {
            self.actions.iter().any(|p| glob(p, action)) != self.not_action
        };
        if !matched {
            return None;
        }
        if let Some((not, pats)) = &self.resources
            && pats.iter().any(|p| p.matches(ctx)) == *not
        {
            return None;
        }
        let how = match &self.principals {
            None => PrincipalMatch::Direct,
            Some((false, set)) => set.matches(ctx.principal())?,
            Some((true, set)) => {
                if set.excludes(ctx.principal()) {
                    return None;
                }
                PrincipalMatch::Direct
            }
        };
        self.conditions.iter().all(|c| c.evaluate(ctx)).then_some(how)
    }
}

/// Whether an (lowercased) action pattern starts with the literal service prefix of
/// `action` (`berth:` for `berth:runprivileged`): `berth:*` does, `*` and `ber*:*` do not.
fn names_service(pattern: &[Tok], action: &str) -> bool {
    let Some(colon) = action.find(':') else { return false };
    matches!(pattern.first(), Some(Tok::Lit(l)) if l.starts_with(&action[..=colon]))
}

/// A parsed, compiled policy document. Cheap to evaluate, immutable, `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Policy {
    kind: PolicyKind,
    version: Version,
    id: Option<String>,
    label: Option<String>,
    statements: Vec<Statement>,
}

impl Policy {
    /// Parses and compiles a policy document.
    pub fn parse(json: &str, kind: PolicyKind) -> Result<Policy, PolicyError> {
        let v: Value = serde_json::from_str(json)
            .map_err(|e| PolicyError::InvalidJson { detail: e.to_string() })?;
        Policy::from_value(&v, kind)
    }

    /// Compiles an already-parsed JSON document.
    pub fn from_value(v: &Value, kind: PolicyKind) -> Result<Policy, PolicyError> {
        let Value::Object(top) = v else {
            return Err(PolicyError::syntax("Policy", "the policy must be a JSON object"));
        };
        for k in top.keys() {
            if !matches!(k.as_str(), "Version" | "Id" | "Statement") {
                return Err(PolicyError::syntax(k.as_str(), format!("unknown element {k}")));
            }
        }
        let version = match top.get("Version") {
            None => Version::V2008_10_17,
            Some(Value::String(s)) if s == "2012-10-17" => Version::V2012_10_17,
            Some(Value::String(s)) if s == "2008-10-17" => Version::V2008_10_17,
            Some(other) => {
                return Err(PolicyError::InvalidVersion {
                    value: match other {
                        Value::String(s) => s.clone(),
                        o => o.to_string(),
                    },
                });
            }
        };
        let id = match top.get("Id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(PolicyError::syntax("Id", "Id must be a string")),
        };
        let stmts: Vec<&Map<String, Value>> = match top.get("Statement") {
            None => {
                return Err(PolicyError::syntax("Statement", "missing required element Statement"));
            }
            Some(Value::Object(o)) => vec![o],
            Some(Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, s) in a.iter().enumerate() {
                    match s {
                        Value::Object(o) => out.push(o),
                        _ => {
                            return Err(PolicyError::syntax(
                                format!("Statement[{i}]"),
                                "a statement must be a JSON object",
                            ));
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(PolicyError::syntax(
                    "Statement",
                    "Statement must be an object or an array of objects",
                ));
            }
        };
        let mut sids = HashSet::new();
        let mut statements = Vec::with_capacity(stmts.len());
        for (i, s) in stmts.into_iter().enumerate() {
            let st = parse_statement(s, &format!("Statement[{i}]"), kind, version)?;
            if let Some(sid) = &st.sid
                && !sid.is_empty()
                && !sids.insert(sid.clone())
            {
                return Err(PolicyError::DuplicateSid {
                    element: format!("Statement[{i}].Sid"),
                    sid: sid.clone(),
                });
            }
            statements.push(st);
        }
        Ok(Policy { kind, version, id, label: None, statements })
    }

    /// Names the policy in decisions (a managed policy's ARN, or
    /// `user/NAME/inline/POLICY`). An ARN label is quoted in AccessDenied
    /// messages, as AWS does for managed policies.
    pub fn with_label(mut self, label: impl Into<String>) -> Policy {
        self.label = Some(label.into());
        self
    }

    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Whether any statement reads a condition key whose name starts with `prefix` (any
    /// case; `aws:ResourceTag/` for every resource tag key): as a condition's key, or as a
    /// policy variable in a `Resource`/`NotResource` pattern or a condition value. Lets a
    /// caller skip computing keys no policy reads.
    pub fn mentions_key(&self, prefix: &str) -> bool {
        let prefix = prefix.to_lowercase();
        self.statements.iter().any(|s| s.mentions_key(&prefix))
    }
}

const STATEMENT_ELEMENTS: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

fn parse_statement(
    s: &Map<String, Value>,
    path: &str,
    kind: PolicyKind,
    version: Version,
) -> Result<Statement, PolicyError> {
    for k in s.keys() {
        if !STATEMENT_ELEMENTS.contains(&k.as_str()) {
            return Err(PolicyError::syntax(format!("{path}.{k}"), format!("unknown element {k}")));
        }
    }
    let variables = version == Version::V2012_10_17;
    let sid = match s.get("Sid") {
        None => None,
        Some(Value::String(sid)) => {
            if kind != PolicyKind::Resource && !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(PolicyError::SidNotAlphanumeric {
                    element: format!("{path}.Sid"),
                    sid: sid.clone(),
                });
            }
            Some(sid.clone())
        }
        Some(_) => return Err(PolicyError::syntax(format!("{path}.Sid"), "Sid must be a string")),
    };
    let effect = match s.get("Effect") {
        Some(Value::String(e)) if e == "Allow" => Effect::Allow,
        Some(Value::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(PolicyError::syntax(
                format!("{path}.Effect"),
                format!("Effect must be \"Allow\" or \"Deny\", not {other}"),
            ));
        }
        None => {
            return Err(PolicyError::syntax(
                format!("{path}.Effect"),
                "missing required element Effect",
            ));
        }
    };

    // Action / NotAction.
    let (not_action, raw_actions) = one_of(s, path, "Action", "NotAction")?;
    let Some(raw_actions) = raw_actions.filter(|a| !a.is_empty()) else {
        return Err(PolicyError::MissingActions { element: format!("{path}.Action") });
    };
    let action_syntax = Syntax { wildcards: true, variables: false, lowercase: true };
    let mut actions = Vec::with_capacity(raw_actions.len());
    for a in &raw_actions {
        let ok = a == "*"
            || matches!(a.split_once(':'), Some((vendor, name)) if !vendor.is_empty() && !name.is_empty());
        if !ok {
            return Err(PolicyError::VendorPrefix {
                element: format!("{path}.{}", if not_action { "NotAction" } else { "Action" }),
                value: a.clone(),
            });
        }
        actions.push(tokenize(a, action_syntax));
    }

    // Resource / NotResource.
    let (not_resource, raw_resources) = one_of(s, path, "Resource", "NotResource")?;
    let res_name = if not_resource { "NotResource" } else { "Resource" };
    let resources = match raw_resources {
        Some(_) if kind == PolicyKind::Trust => {
            return Err(PolicyError::ProhibitedField {
                element: format!("{path}.{res_name}"),
                field: res_name.to_string(),
            });
        }
        Some(list) if list.is_empty() => {
            return Err(PolicyError::MissingResources { element: format!("{path}.{res_name}") });
        }
        Some(list) => {
            let syn = Syntax { wildcards: true, variables, lowercase: false };
            let mut pats = Vec::with_capacity(list.len());
            for r in &list {
                if r != "*" && !r.starts_with("arn:") {
                    return Err(PolicyError::ResourceNotArn {
                        element: format!("{path}.{res_name}"),
                        value: r.clone(),
                    });
                }
                let toks = tokenize(r, syn);
                let segs = (!has_vars(&toks)).then(|| split_arn_tokens(&toks));
                pats.push(ResourcePattern { any: r == "*", toks, segs });
            }
            Some((not_resource, pats))
        }
        None if kind.identity_grammar() => {
            return Err(PolicyError::MissingResources { element: format!("{path}.Resource") });
        }
        None => None,
    };

    // Principal / NotPrincipal.
    let has_p = s.contains_key("Principal");
    let has_np = s.contains_key("NotPrincipal");
    let principals = if kind.identity_grammar() {
        if has_p || has_np {
            return Err(PolicyError::PrincipalNotAllowed {
                element: format!("{path}.{}", if has_p { "Principal" } else { "NotPrincipal" }),
            });
        }
        None
    } else {
        if has_p && has_np {
            return Err(PolicyError::syntax(
                path,
                "a statement cannot have both Principal and NotPrincipal",
            ));
        }
        let (name, v) = match (s.get("Principal"), s.get("NotPrincipal")) {
            (Some(v), _) => ("Principal", v),
            (None, Some(v)) => ("NotPrincipal", v),
            (None, None) => {
                return Err(PolicyError::MissingPrincipal { element: format!("{path}.Principal") });
            }
        };
        Some((has_np, parse_principal(v, &format!("{path}.{name}"))?))
    };

    let conditions = match s.get("Condition") {
        None => Vec::new(),
        Some(c) => condition::parse_block(c, &format!("{path}.Condition"), variables)?,
    };

    Ok(Statement { sid, effect, not_action, actions, resources, principals, conditions })
}

/// Reads exactly-one-of `a` / `b` as a string list; `(true, ..)` when `b`.
fn one_of(
    s: &Map<String, Value>,
    path: &str,
    a: &str,
    b: &str,
) -> Result<(bool, Option<Vec<String>>), PolicyError> {
    match (s.get(a), s.get(b)) {
        (Some(_), Some(_)) => {
            Err(PolicyError::syntax(path, format!("a statement cannot have both {a} and {b}")))
        }
        (Some(v), None) => Ok((false, Some(string_list(v, &format!("{path}.{a}"))?))),
        (None, Some(v)) => Ok((true, Some(string_list(v, &format!("{path}.{b}"))?))),
        (None, None) => Ok((false, None)),
    }
}

fn string_list(v: &Value, path: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                _ => Err(PolicyError::syntax(path, "every entry must be a string")),
            })
            .collect(),
        _ => Err(PolicyError::syntax(path, "must be a string or an array of strings")),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_principal(v: &Value, path: &str) -> Result<PrincipalSet, PolicyError> {
    let mut set = PrincipalSet::default();
    let map = match v {
        Value::String(s) if s == "*" => {
            set.any = true;
            return Ok(set);
        }
        Value::Object(m) if !m.is_empty() => m,
        other => {
            return Err(PolicyError::syntax(
                path,
                format!(
                    "a principal must be \"*\" or an object such as {{\"AWS\": ...}}, not {other}"
                ),
            ));
        }
    };
    for (kind, vals) in map {
        let elem = format!("{path}.{kind}");
        let invalid = |value: &str| PolicyError::InvalidPrincipal {
            element: elem.clone(),
            kind: kind.clone(),
            value: value.to_string(),
        };
        let list = string_list(vals, &elem)?;
        if list.is_empty() {
            return Err(invalid(""));
        }
        for p in list {
            match kind.as_str() {
                "AWS" => {
                    if p == "*" {
                        set.any = true;
                    } else if is_account_id(&p) {
                        set.accounts.push(p);
                    } else if p.contains('*') || p.contains('?') || !p.starts_with("arn:") {
                        return Err(invalid(&p));
                    } else {
                        let parts: Vec<&str> = p.splitn(6, ':').collect();
                        if parts.len() != 6 || !is_account_id(parts[4]) || parts[5].is_empty() {
                            return Err(invalid(&p));
                        }
                        if parts[2] == "iam" && parts[5] == "root" {
                            set.accounts.push(parts[4].to_string());
                        } else {
                            set.arns.push(p);
                        }
                    }
                }
                "Service" => {
                    if p.is_empty() || p.contains('*') || p.contains(char::is_whitespace) {
                        return Err(invalid(&p));
                    }
                    set.services.push(p.to_ascii_lowercase());
                }
                "Federated" => {
                    if p.is_empty() || p.contains('*') {
                        return Err(invalid(&p));
                    }
                    set.federated.push(p);
                }
                "CanonicalUser" => {
                    if p.is_empty() {
                        return Err(invalid(&p));
                    }
                    // No canonical users exist here: kept so the document
                    // parses, matches no caller.
                    set.arns.push(format!("canonical-user:{p}"));
                }
                _ => return Err(invalid(&p)),
            }
        }
    }
    Ok(set)
}
