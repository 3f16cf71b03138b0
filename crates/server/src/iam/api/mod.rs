//! The IAM API (query protocol, botocore's `iam` 2010-05-08): users, groups, roles,
//! customer managed policies with versions, attachments, inline policies, access keys, tags
//! and permissions boundaries, with IAM's error codes (`NoSuchEntity`, `EntityAlreadyExists`,
//! `DeleteConflict`, `LimitExceeded`, `MalformedPolicyDocument`, `ValidationError`) and
//! `Marker` / `MaxItems` paging.
//!
//! Every policy document is parsed with `berth-iam-policy` before it is stored (identity,
//! trust or boundary grammar as it will be used); a refusal names the element. Every write
//! invalidates the authorization cache ([`super::Iam::invalidate`]); access key changes drop
//! the key from the authenticator's cache at once.

use std::collections::BTreeMap;

use berth_iam_policy as policy;
use berth_model::iam::{
    self as model, Attached, IamGroup, IamManagedPolicy, IamPolicyVersion, IamRole, IamUser,
};
use berth_model::keys;
use berth_model::records::AccessKeyRecord;
use berth_store::{Range, Txn};
use berth_wire::AwsError;
use berth_wire::iam as wire;
use rand::Rng;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::aws_managed;
use crate::App;
use crate::clock::epoch_seconds;
use crate::ecs::RequestContext;
use crate::records;

mod access_keys;
mod attachments;
mod policies;
mod roles;
mod users;

/// The IAM API for one request.
pub(crate) struct IamApi<'a> {
    pub app: &'a App,
}

fn err(code: &'static str, status: u16, message: impl Into<String>) -> AwsError {
    AwsError::new(code, status, message)
}

pub(crate) fn no_such(kind: &str, name: &str) -> AwsError {
    err("NoSuchEntity", 404, format!("The {kind} with name {name} cannot be found."))
}

fn exists(kind: &str, name: &str) -> AwsError {
    err("EntityAlreadyExists", 409, format!("{kind} with name {name} already exists."))
}

fn conflict(message: impl Into<String>) -> AwsError {
    err("DeleteConflict", 409, message)
}

fn invalid(message: impl Into<String>) -> AwsError {
    err("ValidationError", 400, message)
}

/// Parses a document as IAM would before storing it; the refusal names the element.
pub(crate) fn parse_document(doc: &str, kind: policy::PolicyKind) -> Result<(), AwsError> {
    if doc.len() > 131_072 {
        return Err(err(
            "LimitExceeded",
            409,
            "Cannot exceed quota for PolicySize: the document is over 128 KiB.",
        ));
    }
    policy::Policy::parse(doc, kind)
        .map(|_| ())
        .map_err(|e| err("MalformedPolicyDocument", 400, format!("{e} (element: {})", e.element())))
}

/// Percent-encodes a policy document as IAM answers it (botocore decodes it).
fn encode_doc(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len() * 2);
    for b in doc.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn random_id(prefix: &str) -> String {
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let tail: String = (0..17).map(|_| UPPER[rng.random_range(0..UPPER.len())] as char).collect();
    format!("{prefix}{tail}")
}

fn check_path(path: Option<String>) -> Result<String, AwsError> {
    let path = path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || !path.ends_with('/') || path.contains("//") && path != "/" {
        return Err(invalid(format!(
            "1 validation error detected: Value '{path}' at 'path' failed to satisfy constraint: a path begins and ends with '/'"
        )));
    }
    Ok(path)
}

fn tags_in(tags: Option<Vec<wire::Tag>>) -> Result<Vec<(String, String)>, AwsError> {
    let tags: Vec<(String, String)> = tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    if tags.len() > 50 {
        return Err(err("LimitExceeded", 409, "Cannot exceed quota for TagsPerResource: 50"));
    }
    Ok(tags)
}

fn merge_tags(
    into: &mut Vec<(String, String)>,
    tags: Vec<(String, String)>,
) -> Result<(), AwsError> {
    for (k, v) in tags {
        into.retain(|(tk, _)| tk != &k);
        into.push((k, v));
    }
    if into.len() > 50 {
        return Err(err("LimitExceeded", 409, "Cannot exceed quota for TagsPerResource: 50"));
    }
    Ok(())
}

fn tags_out(tags: &[(String, String)]) -> Option<Vec<wire::Tag>> {
    (!tags.is_empty()).then(|| {
        tags.iter()
            .map(|(k, v)| wire::Tag { key: Some(k.clone()), value: Some(v.clone()) })
            .collect()
    })
}

/// One page of `items` (sorted by `key`) after `marker`.
fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    marker: Option<String>,
    max_items: Option<i32>,
) -> (Vec<T>, bool, Option<String>) {
    items.sort_by_key(|a| key(a));
    let max = max_items.unwrap_or(100).clamp(1, 1000) as usize;
    let start = match &marker {
        Some(m) => items.iter().position(|i| key(i) > *m).unwrap_or(items.len()),
        None => 0,
    };
    let mut rest: Vec<T> = items.into_iter().skip(start).collect();
    let truncated = rest.len() > max;
    rest.truncate(max);
    let next = if truncated { rest.last().map(&key) } else { None };
    (rest, truncated, next)
}

fn boundary_out(arn: &Option<String>) -> Option<wire::AttachedPermissionsBoundary> {
    arn.as_ref().map(|a| wire::AttachedPermissionsBoundary {
        permissions_boundary_type: Some(
            wire::PermissionsBoundaryAttachmentType::PermissionsBoundaryPolicy,
        ),
        permissions_boundary_arn: Some(a.clone()),
    })
}

fn user_out(u: &IamUser) -> wire::User {
    wire::User {
        path: Some(u.path.clone()),
        user_name: Some(u.name.clone()),
        user_id: Some(u.id.clone()),
        arn: Some(u.arn.clone()),
        create_date: Some(u.created_at),
        password_last_used: None,
        permissions_boundary: boundary_out(&u.boundary),
        tags: tags_out(&u.tags),
    }
}

fn group_out(g: &IamGroup) -> wire::Group {
    wire::Group {
        path: Some(g.path.clone()),
        group_name: Some(g.name.clone()),
        group_id: Some(g.id.clone()),
        arn: Some(g.arn.clone()),
        create_date: Some(g.created_at),
    }
}

fn role_out(r: &IamRole) -> wire::Role {
    wire::Role {
        path: Some(r.path.clone()),
        role_name: Some(r.name.clone()),
        role_id: Some(r.id.clone()),
        arn: Some(r.arn.clone()),
        create_date: Some(r.created_at),
        assume_role_policy_document: Some(encode_doc(&r.trust_policy)),
        description: r.description.clone(),
        max_session_duration: Some(r.max_session_duration),
        permissions_boundary: boundary_out(&r.boundary),
        tags: tags_out(&r.tags),
        role_last_used: None,
    }
}

fn policy_out(p: &IamManagedPolicy, attachments: i32) -> wire::Policy {
    wire::Policy {
        policy_name: Some(p.name.clone()),
        policy_id: Some(p.id.clone()),
        arn: Some(p.arn.clone()),
        path: Some(p.path.clone()),
        default_version_id: Some(p.default_version.clone()),
        attachment_count: Some(attachments),
        permissions_boundary_usage_count: Some(0),
        is_attachable: Some(true),
        description: p.description.clone(),
        create_date: Some(p.created_at),
        update_date: Some(p.updated_at),
        tags: tags_out(&p.tags),
    }
}

fn version_out(p: &IamManagedPolicy, v: &IamPolicyVersion, with_doc: bool) -> wire::PolicyVersion {
    wire::PolicyVersion {
        document: with_doc.then(|| encode_doc(&v.document)),
        version_id: Some(v.id.clone()),
        is_default_version: Some(v.id == p.default_version),
        create_date: Some(v.created_at),
    }
}

impl IamApi<'_> {
    fn now(&self) -> f64 {
        epoch_seconds(self.app.iam.clock.now())
    }

    fn arn(&self, kind: &str, path: &str, name: &str) -> String {
        format!("arn:aws:iam::{}:{kind}{path}{name}", self.app.iam.account_id)
    }

    async fn list<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>, AwsError> {
        let recs =
            self.app.iam.store.range(Range::prefix(prefix)).await.map_err(crate::error::store)?;
        Ok(records::decode_all::<T>(recs)?.into_iter().map(|(t, _)| t).collect())
    }

    async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AwsError> {
        Ok(records::get::<T>(&*self.app.iam.store, key).await?.map(|(t, _)| t))
    }

    async fn create<T: Serialize>(&self, key: &str, rec: &T) -> Result<bool, AwsError> {
        let ok = records::commit(
            &*self.app.iam.store,
            Txn::new().when(key, 0).put(key, records::encode(rec)),
        )
        .await?;
        self.app.iam.invalidate();
        Ok(ok)
    }

    async fn update<T, F>(&self, key: &str, kind: &str, name: &str, f: F) -> Result<T, AwsError>
    where
        T: Serialize + DeserializeOwned + PartialEq + Clone,
        F: FnMut(&mut T) -> Result<(), AwsError>,
    {
        let out = records::update::<T, F>(&*self.app.iam.store, key, kind, f).await?;
        self.app.iam.invalidate();
        out.ok_or_else(|| no_such(kind, name))
    }

    async fn delete(&self, key: &str) -> Result<(), AwsError> {
        records::commit(&*self.app.iam.store, Txn::new().delete(key)).await?;
        self.app.iam.invalidate();
        Ok(())
    }

    async fn user(&self, name: &str) -> Result<IamUser, AwsError> {
        self.get(&model::user_key(name)).await?.ok_or_else(|| no_such("user", name))
    }

    async fn group(&self, name: &str) -> Result<IamGroup, AwsError> {
        self.get(&model::group_key(name)).await?.ok_or_else(|| no_such("group", name))
    }

    async fn role(&self, name: &str) -> Result<IamRole, AwsError> {
        self.get(&model::role_key(name)).await?.ok_or_else(|| no_such("role", name))
    }

    /// The managed policy `arn`: an AWS managed one from the built-in catalog, else the
    /// account's customer managed one.
    async fn policy(&self, arn: &str) -> Result<IamManagedPolicy, AwsError> {
        let missing = || {
            err("NoSuchEntity", 404, format!("Policy {arn} does not exist or is not attachable."))
        };
        if aws_managed::is_aws_arn(arn) {
            return aws_managed::get(arn).map(|p| p.record.clone()).ok_or_else(missing);
        }
        let name = arn.rsplit('/').next().unwrap_or("");
        match self.get::<IamManagedPolicy>(&model::policy_key(name)).await? {
            Some(p) if p.arn == arn => Ok(p),
            _ => Err(missing()),
        }
    }

    /// The customer managed policy `arn`, for `operation` to change: an AWS managed policy
    /// is refused (after NoSuchEntity if the catalog has no such policy).
    async fn own_policy(&self, arn: &str, operation: &str) -> Result<IamManagedPolicy, AwsError> {
        let p = self.policy(arn).await?;
        if aws_managed::is_aws_arn(arn) {
            return Err(aws_managed::read_only(arn, operation));
        }
        Ok(p)
    }

    async fn user_keys(&self, user_arn: &str) -> Result<Vec<AccessKeyRecord>, AwsError> {
        let all: Vec<AccessKeyRecord> = self.list(keys::ACCESS_KEYS).await?;
        Ok(all.into_iter().filter(|k| k.principal_arn == user_arn).collect())
    }

    /// The user a request names, else the caller (when it is a user).
    fn user_name_or_caller(
        &self,
        ctx: &RequestContext,
        name: Option<String>,
    ) -> Result<String, AwsError> {
        if let Some(n) = name {
            return Ok(n);
        }
        match super::who(&ctx.principal) {
            super::Who::User(n) => Ok(n.to_string()),
            _ => Err(invalid(
                "Berth keeps no access keys or user record for the account root or a role session here: name an IAM user with UserName.",
            )),
        }
    }

    /// How many users, groups and roles attach `arn`.
    async fn attachments(
        &self,
        arn: &str,
    ) -> Result<(Vec<IamUser>, Vec<IamGroup>, Vec<IamRole>), AwsError> {
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        let groups: Vec<IamGroup> = self.list(model::GROUPS).await?;
        let roles: Vec<IamRole> = self.list(model::ROLES).await?;
        let has = |a: &Attached| a.managed.iter().any(|m| m == arn);
        Ok((
            users.into_iter().filter(|u| has(&u.policies)).collect(),
            groups.into_iter().filter(|g| has(&g.policies)).collect(),
            roles.into_iter().filter(|r| has(&r.policies)).collect(),
        ))
    }

    async fn boundary_arn(&self, arn: Option<String>) -> Result<Option<String>, AwsError> {
        match arn {
            None => Ok(None),
            Some(a) => {
                self.policy(&a).await.map_err(|_| {
                    invalid(format!("Invalid permissions boundary: policy {a} does not exist."))
                })?;
                Ok(Some(a))
            }
        }
    }
}

fn delete_conflicts(a: &Attached) -> Result<(), AwsError> {
    if !a.managed.is_empty() {
        return Err(conflict("Cannot delete entity, must detach all policies first."));
    }
    if !a.inline.is_empty() {
        return Err(conflict("Cannot delete entity, must delete policies first."));
    }
    Ok(())
}

impl wire::Api for IamApi<'_> {
    type Context = RequestContext;
    type Users = Self;
    type Groups = Self;
    type Roles = Self;
    type Policies = Self;
    type Attachments = Self;
    type InlinePolicies = Self;
    type AccessKeys = Self;
    fn users(&self) -> &Self {
        self
    }
    fn groups(&self) -> &Self {
        self
    }
    fn roles(&self) -> &Self {
        self
    }
    fn policies(&self) -> &Self {
        self
    }
    fn attachments(&self) -> &Self {
        self
    }
    fn inline_policies(&self) -> &Self {
        self
    }
    fn access_keys(&self) -> &Self {
        self
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_resumes_after_the_marker() {
        let items: Vec<String> = (0..7).map(|i| format!("u{i}")).collect();
        let (p1, t1, m1) = page(items.clone(), |s| s.clone(), None, Some(3));
        assert_eq!((p1.len(), t1), (3, true));
        let (p2, _, m2) = page(items.clone(), |s| s.clone(), m1, Some(3));
        assert_eq!(p2, vec!["u3", "u4", "u5"]);
        let (p3, t3, m3) = page(items, |s| s.clone(), m2, Some(3));
        assert_eq!((p3, t3, m3), (vec!["u6".to_string()], false, None));
    }

    #[test]
    fn documents_are_answered_percent_encoded_and_refusals_name_the_element() {
        assert_eq!(encode_doc(r#"{"a": 1}"#), "%7B%22a%22%3A%201%7D");
        let e = parse_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            policy::PolicyKind::Identity,
        )
        .unwrap_err();
        assert_eq!(e.code, "MalformedPolicyDocument");
        assert!(e.message.contains("Statement[0]"), "{}", e.message);
        assert!(check_path(Some("nope".into())).is_err());
        assert_eq!(check_path(None).unwrap(), "/");
    }
}
