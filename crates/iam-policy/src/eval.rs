//! AWS's evaluation logic for a request within a single account.
//!
//! 1. An explicit `Deny` in any applicable policy (identity-based,
//!    resource-based, permissions boundary, session) decides: denied.
//! 2. A trust policy (or any resource policy marked
//!    [`required`](PolicySet::resource_policy_required)) that names no one
//!    matching the caller: denied ("no resource-based policy allows").
//! 3. The account root user: allowed.
//! 4. A resource-based `Allow` that names the caller itself (a user ARN, a
//!    role-session ARN, a service, `*`): allowed — within one account that is
//!    enough, whatever the identity policies, boundary or session policies say.
//! 5. Otherwise an `Allow` is needed from the identity-based policies or from a
//!    resource-based statement naming the caller's role, and then from the
//!    permissions boundary (when there is one) and from a session policy
//!    (when there are any): the effective permissions are the intersection.
//! 6. Anything else is an implicit deny, reported as the first missing piece:
//!    no identity-based allow, then no boundary allow, then no session allow.
//!
//! Out of scope: Organizations SCPs/RCPs and cross-account requests.

use std::fmt;

use crate::context::{PrincipalKind, RequestContext};
use crate::policy::{Effect, Policy, PrincipalMatch};

/// Which kind of policy a statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyType {
    IdentityBased,
    ResourceBased,
    PermissionsBoundary,
    Session,
}

impl PolicyType {
    /// As AWS names it in AccessDenied messages.
    fn article_name(self) -> &'static str {
        match self {
            PolicyType::IdentityBased => "an identity-based policy",
            PolicyType::ResourceBased => "a resource-based policy",
            PolicyType::PermissionsBoundary => "a permissions boundary",
            PolicyType::Session => "a session policy",
        }
    }

    fn no_name(self) -> &'static str {
        match self {
            PolicyType::IdentityBased => "identity-based policy",
            PolicyType::ResourceBased => "resource-based policy",
            PolicyType::PermissionsBoundary => "permissions boundary",
            PolicyType::Session => "session policy",
        }
    }
}

/// The statement a decision rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef {
    pub policy_type: PolicyType,
    /// The policy's [`label`](Policy::with_label), if it has one.
    pub policy: Option<String>,
    /// Index of the policy in its list ([`PolicySet::identity`] or
    /// [`PolicySet::session`]; 0 for the resource policy and the boundary).
    pub policy_index: usize,
    /// Index of the statement in the policy.
    pub statement: usize,
    pub sid: Option<String>,
}

/// Why a request was allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by this statement (an identity-based one, or a resource-based
    /// one naming the caller).
    Allow(StatementRef),
    /// The caller is the account root user.
    AllowRoot,
    /// An explicit `Deny` statement applied.
    ExplicitDeny(StatementRef),
    /// No policy of this type allows the request.
    ImplicitDeny(PolicyType),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_) | Decision::AllowRoot)
    }

    /// The message of AWS's `AccessDenied` / `AccessDeniedException`, `None`
    /// when allowed: `User: ARN is not authorized to perform: ACTION on
    /// resource: RESOURCE because no identity-based policy allows the ACTION
    /// action` / `... with an explicit deny in an identity-based policy[: ARN]`.
    pub fn access_denied_message(&self, ctx: &RequestContext) -> Option<String> {
        let head = format!(
            "User: {} is not authorized to perform: {} on resource: {}",
            ctx.principal().arn,
            ctx.action(),
            ctx.resource()
        );
        match self {
            Decision::Allow(_) | Decision::AllowRoot => None,
            Decision::ExplicitDeny(r) => {
                let mut m =
                    format!("{head} with an explicit deny in {}", r.policy_type.article_name());
                if let Some(label) = r.policy.as_deref().filter(|l| l.starts_with("arn:")) {
                    m.push_str(": ");
                    m.push_str(label);
                }
                Some(m)
            }
            Decision::ImplicitDeny(t) => Some(format!(
                "{head} because no {} allows the {} action",
                t.no_name(),
                ctx.action()
            )),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = |f: &mut fmt::Formatter<'_>, r: &StatementRef| {
            write!(f, "{}", r.policy_type.no_name())?;
            if let Some(p) = &r.policy {
                write!(f, " {p}")?;
            }
            write!(f, " statement {}", r.statement)?;
            if let Some(s) = &r.sid {
                write!(f, " ({s})")?;
            }
            Ok(())
        };
        match self {
            Decision::Allow(r) => {
                f.write_str("allowed by ")?;
                at(f, r)
            }
            Decision::AllowRoot => f.write_str("allowed: account root user"),
            Decision::ExplicitDeny(r) => {
                f.write_str("explicitly denied by ")?;
                at(f, r)
            }
            Decision::ImplicitDeny(t) => write!(f, "implicitly denied: no {} allows", t.no_name()),
        }
    }
}

/// Every policy that applies to one request.
#[derive(Debug, Clone, Default)]
pub struct PolicySet<'a> {
    /// The caller's identity-based policies: inline and managed, its groups'.
    pub identity: Vec<&'a Policy>,
    /// The resource's policy (for `sts:AssumeRole`, the role's trust policy).
    pub resource: Option<&'a Policy>,
    /// The caller's permissions boundary.
    pub boundary: Option<&'a Policy>,
    /// The session policies the caller's session was created with.
    pub session: Vec<&'a Policy>,
    /// The resource policy must name the caller (or its account, with an
    /// identity-based allow): true for trust policies.
    pub resource_policy_required: bool,
}

fn first_match(
    policy: &Policy,
    ctx: &RequestContext,
    effect: Effect,
    policy_type: PolicyType,
    policy_index: usize,
) -> Option<(PrincipalMatch, StatementRef)> {
    let mut best: Option<(PrincipalMatch, usize)> = None;
    for (i, st) in policy.statements().iter().enumerate() {
        if st.effect() != effect {
            continue;
        }
        if let Some(how) = st.applies(ctx)
            && best.is_none_or(|(b, _)| how > b)
        {
            best = Some((how, i));
            if how == PrincipalMatch::Direct {
                break;
            }
        }
    }
    best.map(|(how, i)| {
        (
            how,
            StatementRef {
                policy_type,
                policy: policy.label().map(str::to_string),
                policy_index,
                statement: i,
                sid: policy.statements()[i].sid().map(str::to_string),
            },
        )
    })
}

impl PolicySet<'_> {
    /// Decides one request.
    pub fn evaluate(&self, ctx: &RequestContext) -> Decision {
        // 1. Explicit deny anywhere.
        let deny = |p: &Policy, t, i| first_match(p, ctx, Effect::Deny, t, i).map(|(_, r)| r);
        for (i, p) in self.identity.iter().enumerate() {
            if let Some(r) = deny(p, PolicyType::IdentityBased, i) {
                return Decision::ExplicitDeny(r);
            }
        }
        if let Some(p) = self.resource
            && let Some(r) = deny(p, PolicyType::ResourceBased, 0)
        {
            return Decision::ExplicitDeny(r);
        }
        if let Some(p) = self.boundary
            && let Some(r) = deny(p, PolicyType::PermissionsBoundary, 0)
        {
            return Decision::ExplicitDeny(r);
        }
        for (i, p) in self.session.iter().enumerate() {
            if let Some(r) = deny(p, PolicyType::Session, i) {
                return Decision::ExplicitDeny(r);
            }
        }

        // 2. Resource-based allow.
        let resource_allow = self
            .resource
            .and_then(|p| first_match(p, ctx, Effect::Allow, PolicyType::ResourceBased, 0));
        if self.resource_policy_required && resource_allow.is_none() {
            return Decision::ImplicitDeny(PolicyType::ResourceBased);
        }

        // 3. Root.
        if ctx.principal().kind == PrincipalKind::Root {
            return Decision::AllowRoot;
        }

        // 4. A resource-based allow naming the caller itself is final.
        let mut role_grant = None;
        match resource_allow {
            Some((PrincipalMatch::Direct, r)) => return Decision::Allow(r),
            Some((PrincipalMatch::Role, r)) => role_grant = Some(r),
            _ => {}
        }

        // 5. Identity-based allow (or a grant to the role), within the
        //    boundary and the session policies.
        let identity_allow = self.identity.iter().enumerate().find_map(|(i, p)| {
            first_match(p, ctx, Effect::Allow, PolicyType::IdentityBased, i).map(|(_, r)| r)
        });
        let Some(grant) = identity_allow.or(role_grant) else {
            return Decision::ImplicitDeny(PolicyType::IdentityBased);
        };
        if let Some(b) = self.boundary
            && first_match(b, ctx, Effect::Allow, PolicyType::PermissionsBoundary, 0).is_none()
        {
            return Decision::ImplicitDeny(PolicyType::PermissionsBoundary);
        }
        if !self.session.is_empty()
            && !self
                .session
                .iter()
                .enumerate()
                .any(|(i, p)| first_match(p, ctx, Effect::Allow, PolicyType::Session, i).is_some())
        {
            return Decision::ImplicitDeny(PolicyType::Session);
        }
        Decision::Allow(grant)
    }
}

/// Shorthand: only identity-based policies.
pub fn evaluate_identity(policies: &[&Policy], ctx: &RequestContext) -> Decision {
    PolicySet { identity: policies.to_vec(), ..PolicySet::default() }.evaluate(ctx)
}
