//! IAM policy evaluation, pure: no I/O, no clock, no dependency on the server.
//!
//! # Contract
//!
//! * **Parse once, evaluate many.** [`Policy::parse`] takes a JSON document
//!   and a [`PolicyKind`] (identity-based, resource-based, trust, permissions
//!   boundary, session) and either refuses it with a [`PolicyError`] — IAM's
//!   `MalformedPolicyDocument` with IAM's message and the path of the
//!   offending element — or compiles it: action and resource wildcards are
//!   tokenized and ARN patterns split into segments up front, condition values
//!   parsed to numbers, dates, CIDRs and booleans. Evaluation allocates only
//!   to substitute policy variables, to lowercase values for `...IgnoreCase`,
//!   and for the [`StatementRef`] of the decision.
//! * **The request** is a [`RequestContext`]: the [`Principal`], the action
//!   (`service:Operation`), the resource ARN (or `*`), and condition keys
//!   (single- or multivalued, names case-insensitive). The caller supplies the
//!   keys it knows (`aws:SourceIp`, `aws:CurrentTime` via
//!   [`RequestContext::with_time`], tags, `ecs:cluster`, ...); the principal
//!   keys are derived.
//! * **The decision** comes from [`PolicySet::evaluate`] following AWS's
//!   single-account flowchart (see [`eval`]): explicit deny wins; a
//!   resource-based allow naming the caller suffices; otherwise an
//!   identity-based allow intersected with the permissions boundary and the
//!   session policies; otherwise implicit deny. The [`Decision`] names the
//!   statement or the missing policy type, and
//!   [`Decision::access_denied_message`] renders AWS's AccessDenied text.
//! * **Matching** follows IAM: actions case-insensitive with `*`/`?`;
//!   resources and ARN conditions case-sensitive, wildcards per ARN segment
//!   (only the resource segment's wildcards cross `:`); policy variables
//!   (`${aws:username}`, `${aws:PrincipalTag/k}`, defaults
//!   `${key, 'default'}`, `${*}` `${?}` `${$}`) in `Resource`/`NotResource`
//!   and string and ARN condition values of `2012-10-17` documents; a
//!   variable without a value makes its pattern match nothing.
//! * **Explicit grants**: a request marked
//!   [`with_explicit_grants`](RequestContext::with_explicit_grants) is allowed
//!   only by `Allow` statements whose `Action` names its service literally
//!   (`berth:*`, `berth:RunPrivileged`); `*`, `ber*:*` and `NotAction` do not
//!   grant it, in any policy type; `Deny` matches as always.
//! * **Limits**: document size and statement counts are the caller's to
//!   enforce before parsing; matching is linear-backtracking (no exponential
//!   blow-up on `*a*a*a*` patterns).
//!
//! ```
//! use berth_iam_policy::{Policy, PolicyKind, PolicySet, Principal, RequestContext};
//!
//! let policy = Policy::parse(
//!     r#"{"Version": "2012-10-17", "Statement": [
//!         {"Effect": "Allow", "Action": "ecs:Describe*", "Resource": "arn:aws:ecs:*:*:cluster/dev-*"},
//!         {"Effect": "Deny", "Action": "*", "Resource": "*",
//!          "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}"#,
//!     PolicyKind::Identity,
//! )?;
//! let bob = Principal::from_arn("arn:aws:iam::123456789012:user/bob");
//! let set = PolicySet { identity: vec![&policy], ..PolicySet::default() };
//!
//! let ctx = RequestContext::new(bob.clone(), "ecs:DescribeClusters",
//!     "arn:aws:ecs:us-east-1:123456789012:cluster/dev-1").with_secure_transport(true);
//! assert!(set.evaluate(&ctx).is_allowed());
//!
//! let ctx = RequestContext::new(bob, "ecs:DescribeClusters",
//!     "arn:aws:ecs:us-east-1:123456789012:cluster/prod").with_secure_transport(true);
//! assert_eq!(
//!     set.evaluate(&ctx).access_denied_message(&ctx).unwrap(),
//!     "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: \
//!      ecs:DescribeClusters on resource: arn:aws:ecs:us-east-1:123456789012:cluster/prod \
//!      because no identity-based policy allows the ecs:DescribeClusters action"
//! );
//! # Ok::<(), berth_iam_policy::PolicyError>(())
//! ```
//!
//! Not modelled: Organizations SCPs/RCPs, cross-account evaluation, the
//! per-service catalogue of valid actions and condition keys (any
//! `vendor:name` is accepted), size limits.

#![forbid(unsafe_code)]

mod condition;
mod context;
mod error;
pub mod eval;
mod pattern;
mod policy;

pub use context::{ContextValue, Principal, PrincipalKind, RequestContext};
pub use error::PolicyError;
pub use eval::{Decision, PolicySet, PolicyType, StatementRef, evaluate_identity};
pub use policy::{Effect, Policy, PolicyKind, Statement, Version};

#[cfg(test)]
mod tests;
