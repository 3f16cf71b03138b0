//! Access to a repository: the one decision both the registry's `/v2/` requests
//! ([`super::token::TokenAuthorizer`]) and the ECR JSON API's calls ([`authorize_call`], from
//! [`crate::auth::authorize_call`]) make, with the repository policy they share a parse cache
//! of.
//!
//! Contract:
//! * an action on one repository (every ECR action whose request names a repository: by
//!   `repositoryName`, each of `repositoryNames`, or a repository's ARN as `resourceArn`, see
//!   [`crate::iam::resources`]) is decided with AWS's same-account evaluation of the caller's
//!   identity policies AND the repository policy ([`crate::iam::Iam`]): an explicit deny in
//!   either wins; else an allow in either allows (a repository-policy statement whose
//!   `Principal` names the caller: its ARN, its role, `*`; naming only the account delegates
//!   to the identity policies, as in AWS). A request naming several repositories needs each
//!   one allowed, each under its own policy; a repository that does not exist has no policy;
//! * the account root (the administrator key) is allowed whatever its repository policies do
//!   not explicitly deny, EXCEPT that the policy-management actions
//!   ([`POLICY_MANAGEMENT`]: Get/Set/DeleteRepositoryPolicy) are always allowed to it, so an
//!   account can never lock itself out of a repository;
//! * a stored repository policy that does not parse (one stored before policies were checked)
//!   lets no one but the root in (the root then decides as if there were no policy): its
//!   owner sets a valid one;
//! * repository policies are parsed once per text: the cache is keyed by repository and
//!   holds the text it was parsed from, so a decision always applies the policy the store
//!   holds at that moment (any server's writes included);
//! * `aws:ResourceTag/*` of a repository are its tags (read with its policy), for every
//!   signed caller; `aws:RequestTag/*` and `aws:TagKeys` come with the request
//!   ([`crate::iam::tags`]);
//! * actions on no repository (CreateRepository aside, which names its future repository:
//!   GetAuthorizationToken, DescribeRepositories without names...) are decided by the
//!   identity policies alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_iam_policy::{Policy, PolicyKind};
use berth_wire::AwsError;

use super::records::EcrMetadata;
use crate::App;
use crate::auth::Principal;
use crate::iam::{self, Authz, Iam, Who};

/// The actions the root may always take on a repository (its way back in).
pub const POLICY_MANAGEMENT: [&str; 3] =
    ["ecr:SetRepositoryPolicy", "ecr:GetRepositoryPolicy", "ecr:DeleteRepositoryPolicy"];

/// Who asks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Caller<'a> {
    /// A signed caller (or a token's holder): the root, an IAM user, an STS session.
    Principal(&'a Principal),
    /// A role the agent acts as (a task's execution role): the role's own policies.
    Role(&'a str),
}

/// A repository's stored policy.
#[derive(Clone, Debug)]
pub(crate) enum Stored {
    None,
    Parsed(Arc<Policy>),
    /// Stored text that does not parse.
    Unparseable,
}

/// What remains to decide once the caller and the stored policy are known.
#[derive(Clone, Debug)]
pub(crate) enum Gate {
    /// Allowed without evaluating anything (the root managing the policy).
    Allow,
    /// Evaluate the identity policies with this repository policy.
    Evaluate(Option<Arc<Policy>>),
    /// Refused: the policy does not parse.
    Unparseable,
}

/// The part of the decision that is a table (see the module header).
pub(crate) fn gate(root: bool, action: &str, stored: Stored) -> Gate {
    if root && POLICY_MANAGEMENT.iter().any(|a| a.eq_ignore_ascii_case(action)) {
        return Gate::Allow;
    }
    match stored {
        Stored::None => Gate::Evaluate(None),
        Stored::Parsed(p) => Gate::Evaluate(Some(p)),
        Stored::Unparseable if root => Gate::Evaluate(None),
        Stored::Unparseable => Gate::Unparseable,
    }
}

/// A repository policy's text and what it parsed to (`None`: it does not parse).
type CachedPolicy = (String, Option<Arc<Policy>>);

/// The registry's repository decisions (see the module header).
pub(crate) struct RepositoryAccess {
    iam: Arc<Iam>,
    meta: Arc<EcrMetadata>,
    /// `arn:PARTITION:ecr:REGION:ACCOUNT:repository/`.
    repo_arn_prefix: String,
    policies: Mutex<HashMap<String, CachedPolicy>>,
}

impl RepositoryAccess {
    pub(crate) fn new(iam: Arc<Iam>, meta: Arc<EcrMetadata>, repo_arn_prefix: String) -> Self {
        Self { iam, meta, repo_arn_prefix, policies: Mutex::new(HashMap::new()) }
    }

    /// The ARN of repository `repo`.
    pub(crate) fn arn(&self, repo: &str) -> String {
        format!("{}{repo}", self.repo_arn_prefix)
    }

    /// The repository of this registry that `arn` names, if any.
    pub(crate) fn repository_of<'a>(&self, arn: &'a str) -> Option<&'a str> {
        arn.strip_prefix(&self.repo_arn_prefix)
            .filter(|n| berth_registry::digest::valid_repository(n).is_ok())
    }

    /// The repository policy of `repo`, parsed (cached while its text is unchanged), and the
    /// repository's tags (none when it does not exist).
    async fn stored(&self, repo: &str) -> Result<(Stored, Vec<(String, String)>), AwsError> {
        let (text, tags) = match self.meta.repo(repo).await? {
            Some((r, _)) => (r.repository_policy, r.tags),
            None => (None, vec![]),
        };
        let mut cache = self.policies.lock().expect("policy cache lock");
        let Some(text) = text else {
            cache.remove(repo);
            return Ok((Stored::None, tags));
        };
        let parsed = match cache.get(repo) {
            Some((t, p)) if *t == text => p.clone(),
            _ => {
                let p = Policy::parse(&text, PolicyKind::Resource)
                    .map(|p| Arc::new(p.with_label(self.arn(repo))))
                    .ok();
                cache.insert(repo.to_string(), (text, p.clone()));
                p
            }
        };
        Ok((parsed.map_or(Stored::Unparseable, Stored::Parsed), tags))
    }

    /// Decides `req.action` on repository `repo` for `caller` (`req.resources` is replaced
    /// by the repository's ARN). `AccessDeniedException` naming the action and the ARN.
    pub(crate) async fn decide(
        &self,
        caller: Caller<'_>,
        req: &Authz,
        repo: &str,
    ) -> Result<(), AwsError> {
        let resource = self.arn(repo);
        let root = matches!(caller, Caller::Principal(p) if iam::who(p) == Who::Root);
        let (stored, tags) = self.stored(repo).await?;
        let policy = match gate(root, &req.action, stored) {
            Gate::Allow => return Ok(()),
            Gate::Evaluate(policy) => policy,
            Gate::Unparseable => {
                let arn = match caller {
                    Caller::Principal(p) => p.arn.as_str(),
                    Caller::Role(arn) => arn,
                };
                return Err(iam::access_denied(format!(
                    "User: {arn} is not authorized to perform: {} on resource: {resource} because its repository policy does not parse; set a valid one with SetRepositoryPolicy",
                    req.action
                )));
            }
        };
        match caller {
            Caller::Role(role_arn) => {
                self.iam
                    .authorize_role_with_resource_policy(
                        role_arn,
                        &req.action,
                        &resource,
                        policy.as_deref(),
                    )
                    .await
            }
            Caller::Principal(p) => {
                // The repository's tags are at hand: `aws:ResourceTag/*` for free.
                let req = Authz {
                    resources: vec![resource.clone()],
                    resource_tags: vec![(resource, tags)],
                    ..req.clone()
                };
                self.iam.authorize_with_resource_policy(p, &req, policy.as_deref()).await
            }
        }
    }

    /// Decides an ECR API call: each resource of `req` that is one of this registry's
    /// repositories with [`RepositoryAccess::decide`], any other by the identity policies.
    pub(crate) async fn authorize(&self, p: &Principal, req: &Authz) -> Result<(), AwsError> {
        let star = ["*".to_string()];
        let resources: &[String] = if req.resources.is_empty() { &star } else { &req.resources };
        for resource in resources {
            match self.repository_of(resource) {
                Some(repo) => self.decide(Caller::Principal(p), req, repo).await?,
                None => {
                    let one = Authz { resources: vec![resource.clone()], ..req.clone() };
                    self.iam.authorize_with_resource_policy(p, &one, None).await?;
                }
            }
        }
        Ok(())
    }
}

/// The decision for an ECR API call of the root, an IAM user or a session (instance keys are
/// decided by [`crate::auth::authorize`]); without a registry, the identity policies alone.
pub(crate) async fn authorize_call(app: &App, p: &Principal, req: &Authz) -> Result<(), AwsError> {
    match app.ecr.as_ref() {
        Some(svc) => svc.access.authorize(p, req).await,
        None if iam::who(p) == Who::Root => Ok(()),
        None => app.iam.authorize(p, req).await,
    }
}

#[cfg(test)]
mod tests;
