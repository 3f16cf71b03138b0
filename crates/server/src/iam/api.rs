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

use crate::App;
use crate::clock::epoch_seconds;
use crate::ecs::RequestContext;
use crate::records;

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

    /// The customer managed policy `arn`.
    async fn policy(&self, arn: &str) -> Result<IamManagedPolicy, AwsError> {
        let name = arn.rsplit('/').next().unwrap_or("");
        match self.get::<IamManagedPolicy>(&model::policy_key(name)).await? {
            Some(p) if p.arn == arn => Ok(p),
            _ => Err(err(
                "NoSuchEntity",
                404,
                format!("Policy {arn} does not exist or is not attachable."),
            )),
        }
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

impl wire::UsersApi<RequestContext> for IamApi<'_> {
    async fn create_user(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateUserRequest,
    ) -> Result<wire::CreateUserResponse, AwsError> {
        let name = input.user_name.unwrap_or_default();
        let path = check_path(input.path)?;
        let rec = IamUser {
            arn: self.arn("user", &path, &name),
            id: random_id("AIDA"),
            name: name.clone(),
            path,
            created_at: self.now(),
            tags: tags_in(input.tags)?,
            policies: Attached::default(),
            groups: vec![],
            boundary: self.boundary_arn(input.permissions_boundary).await?,
        };
        if !self.create(&model::user_key(&name), &rec).await? {
            return Err(exists("User", &name));
        }
        Ok(wire::CreateUserResponse { user: Some(user_out(&rec)) })
    }

    async fn get_user(
        &self,
        ctx: &RequestContext,
        input: wire::GetUserRequest,
    ) -> Result<wire::GetUserResponse, AwsError> {
        let user = match input.user_name {
            Some(n) => self.user(&n).await?,
            None => match super::who(&ctx.principal) {
                super::Who::User(n) => self.user(n).await?,
                _ => {
                    // The account root, as IAM answers it.
                    let p = &ctx.principal;
                    return Ok(wire::GetUserResponse {
                        user: Some(wire::User {
                            path: None,
                            user_name: None,
                            user_id: Some(p.account_id.clone()),
                            arn: Some(p.arn.clone()),
                            create_date: Some(0.0),
                            ..Default::default()
                        }),
                    });
                }
            },
        };
        Ok(wire::GetUserResponse { user: Some(user_out(&user)) })
    }

    async fn list_users(
        &self,
        _ctx: &RequestContext,
        input: wire::ListUsersRequest,
    ) -> Result<wire::ListUsersResponse, AwsError> {
        let prefix = input.path_prefix.unwrap_or_else(|| "/".into());
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        let users: Vec<IamUser> =
            users.into_iter().filter(|u| u.path.starts_with(&prefix)).collect();
        let (users, truncated, marker) =
            page(users, |u| u.name.to_lowercase(), input.marker, input.max_items);
        Ok(wire::ListUsersResponse {
            users: Some(users.iter().map(|u| wire::User { tags: None, ..user_out(u) }).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn delete_user(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteUserRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        let user = self.user(&name).await?;
        delete_conflicts(&user.policies)?;
        if !user.groups.is_empty() {
            return Err(conflict("Cannot delete entity, must remove users from group first."));
        }
        if !self.user_keys(&user.arn).await?.is_empty() {
            return Err(conflict("Cannot delete entity, must delete access keys first."));
        }
        self.delete(&model::user_key(&name)).await?;
        Ok(wire::Empty {})
    }

    async fn update_user(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateUserRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        if input.new_user_name.as_ref().is_some_and(|n| n != &name) {
            return Err(err(
                "ServiceFailure",
                500,
                "Berth does not rename IAM users yet (NewUserName): create a new user instead.",
            ));
        }
        let account = self.app.iam.account_id.clone();
        let new_path = input.new_path.map(|p| check_path(Some(p))).transpose()?;
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            if let Some(p) = &new_path {
                u.path = p.clone();
                u.arn = format!("arn:aws:iam::{account}:user{p}{}", u.name);
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn tag_user(
        &self,
        _ctx: &RequestContext,
        input: wire::TagUserRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        let tags = tags_in(input.tags)?;
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            merge_tags(&mut u.tags, tags.clone())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn untag_user(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagUserRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        let keys = input.tag_keys.unwrap_or_default();
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            u.tags.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn list_user_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::ListUserTagsRequest,
    ) -> Result<wire::ListUserTagsResponse, AwsError> {
        let user = self.user(&input.user_name.unwrap_or_default()).await?;
        let (tags, truncated, marker) =
            page(user.tags, |t| t.0.clone(), input.marker, input.max_items);
        Ok(wire::ListUserTagsResponse {
            tags: Some(tags_out(&tags).unwrap_or_default()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn put_user_permissions_boundary(
        &self,
        _ctx: &RequestContext,
        input: wire::PutUserPermissionsBoundaryRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        let b = self.boundary_arn(input.permissions_boundary).await?;
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            u.boundary = b.clone();
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn delete_user_permissions_boundary(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteUserPermissionsBoundaryRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.user_name.unwrap_or_default();
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            u.boundary = None;
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }
}

impl wire::GroupsApi<RequestContext> for IamApi<'_> {
    async fn create_group(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateGroupRequest,
    ) -> Result<wire::CreateGroupResponse, AwsError> {
        let name = input.group_name.unwrap_or_default();
        let path = check_path(input.path)?;
        let rec = IamGroup {
            arn: self.arn("group", &path, &name),
            id: random_id("AGPA"),
            name: name.clone(),
            path,
            created_at: self.now(),
            policies: Attached::default(),
        };
        if !self.create(&model::group_key(&name), &rec).await? {
            return Err(exists("Group", &name));
        }
        Ok(wire::CreateGroupResponse { group: Some(group_out(&rec)) })
    }

    async fn get_group(
        &self,
        _ctx: &RequestContext,
        input: wire::GetGroupRequest,
    ) -> Result<wire::GetGroupResponse, AwsError> {
        let group = self.group(&input.group_name.unwrap_or_default()).await?;
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        let members: Vec<IamUser> = users
            .into_iter()
            .filter(|u| u.groups.iter().any(|g| g.eq_ignore_ascii_case(&group.name)))
            .collect();
        let (members, truncated, marker) =
            page(members, |u| u.name.to_lowercase(), input.marker, input.max_items);
        Ok(wire::GetGroupResponse {
            group: Some(group_out(&group)),
            users: Some(members.iter().map(|u| wire::User { tags: None, ..user_out(u) }).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn list_groups(
        &self,
        _ctx: &RequestContext,
        input: wire::ListGroupsRequest,
    ) -> Result<wire::ListGroupsResponse, AwsError> {
        let prefix = input.path_prefix.unwrap_or_else(|| "/".into());
        let groups: Vec<IamGroup> = self.list(model::GROUPS).await?;
        let groups: Vec<IamGroup> =
            groups.into_iter().filter(|g| g.path.starts_with(&prefix)).collect();
        let (groups, truncated, marker) =
            page(groups, |g| g.name.to_lowercase(), input.marker, input.max_items);
        Ok(wire::ListGroupsResponse {
            groups: Some(groups.iter().map(group_out).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn delete_group(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.group_name.unwrap_or_default();
        let group = self.group(&name).await?;
        delete_conflicts(&group.policies)?;
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        if users.iter().any(|u| u.groups.iter().any(|g| g.eq_ignore_ascii_case(&name))) {
            return Err(conflict("Cannot delete entity, must remove users from group first."));
        }
        self.delete(&model::group_key(&name)).await?;
        Ok(wire::Empty {})
    }

    async fn add_user_to_group(
        &self,
        _ctx: &RequestContext,
        input: wire::AddUserToGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = self.group(&input.group_name.unwrap_or_default()).await?;
        let name = input.user_name.unwrap_or_default();
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            if !u.groups.iter().any(|g| g.eq_ignore_ascii_case(&group.name)) {
                if u.groups.len() >= 10 {
                    return Err(err(
                        "LimitExceeded",
                        409,
                        "Cannot exceed quota for GroupsPerUser: 10",
                    ));
                }
                u.groups.push(group.name.clone());
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn remove_user_from_group(
        &self,
        _ctx: &RequestContext,
        input: wire::RemoveUserFromGroupRequest,
    ) -> Result<wire::Empty, AwsError> {
        let group = self.group(&input.group_name.unwrap_or_default()).await?;
        let name = input.user_name.unwrap_or_default();
        self.update::<IamUser, _>(&model::user_key(&name), "user", &name, |u| {
            u.groups.retain(|g| !g.eq_ignore_ascii_case(&group.name));
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn list_groups_for_user(
        &self,
        _ctx: &RequestContext,
        input: wire::ListGroupsForUserRequest,
    ) -> Result<wire::ListGroupsForUserResponse, AwsError> {
        let user = self.user(&input.user_name.unwrap_or_default()).await?;
        let mut groups = Vec::new();
        for g in &user.groups {
            if let Some(g) = self.get::<IamGroup>(&model::group_key(g)).await? {
                groups.push(g);
            }
        }
        let (groups, truncated, marker) =
            page(groups, |g| g.name.to_lowercase(), input.marker, input.max_items);
        Ok(wire::ListGroupsForUserResponse {
            groups: Some(groups.iter().map(group_out).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }
}

impl wire::RolesApi<RequestContext> for IamApi<'_> {
    async fn create_role(
        &self,
        _ctx: &RequestContext,
        input: wire::CreateRoleRequest,
    ) -> Result<wire::CreateRoleResponse, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let path = check_path(input.path)?;
        let trust = input.assume_role_policy_document.unwrap_or_default();
        parse_document(&trust, policy::PolicyKind::Trust)?;
        let max = input.max_session_duration.unwrap_or(3600);
        if !(3600..=43200).contains(&max) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{max}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200"
            )));
        }
        let rec = IamRole {
            arn: self.arn("role", &path, &name),
            id: random_id("AROA"),
            name: name.clone(),
            path,
            created_at: self.now(),
            trust_policy: trust,
            description: input.description,
            max_session_duration: max,
            tags: tags_in(input.tags)?,
            policies: Attached::default(),
            boundary: self.boundary_arn(input.permissions_boundary).await?,
        };
        if !self.create(&model::role_key(&name), &rec).await? {
            return Err(exists("Role", &name));
        }
        Ok(wire::CreateRoleResponse { role: Some(role_out(&rec)) })
    }

    async fn get_role(
        &self,
        _ctx: &RequestContext,
        input: wire::GetRoleRequest,
    ) -> Result<wire::GetRoleResponse, AwsError> {
        let role = self.role(&input.role_name.unwrap_or_default()).await?;
        Ok(wire::GetRoleResponse { role: Some(role_out(&role)) })
    }

    async fn list_roles(
        &self,
        _ctx: &RequestContext,
        input: wire::ListRolesRequest,
    ) -> Result<wire::ListRolesResponse, AwsError> {
        let prefix = input.path_prefix.unwrap_or_else(|| "/".into());
        let roles: Vec<IamRole> = self.list(model::ROLES).await?;
        let roles: Vec<IamRole> =
            roles.into_iter().filter(|r| r.path.starts_with(&prefix)).collect();
        let (roles, truncated, marker) =
            page(roles, |r| r.name.to_lowercase(), input.marker, input.max_items);
        Ok(wire::ListRolesResponse {
            roles: Some(roles.iter().map(|r| wire::Role { tags: None, ..role_out(r) }).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn update_role(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateRoleRequest,
    ) -> Result<wire::UpdateRoleResponse, AwsError> {
        let name = input.role_name.unwrap_or_default();
        if let Some(max) = input.max_session_duration
            && !(3600..=43200).contains(&max)
        {
            return Err(invalid(format!(
                "1 validation error detected: Value '{max}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200"
            )));
        }
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            if let Some(d) = &input.description {
                r.description = Some(d.clone());
            }
            if let Some(m) = input.max_session_duration {
                r.max_session_duration = m;
            }
            Ok(())
        })
        .await?;
        Ok(wire::UpdateRoleResponse {})
    }

    async fn update_assume_role_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::UpdateAssumeRolePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let doc = input.policy_document.unwrap_or_default();
        parse_document(&doc, policy::PolicyKind::Trust)?;
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            r.trust_policy = doc.clone();
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn delete_role(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRoleRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let role = self.role(&name).await?;
        delete_conflicts(&role.policies)?;
        self.delete(&model::role_key(&name)).await?;
        Ok(wire::Empty {})
    }

    async fn tag_role(
        &self,
        _ctx: &RequestContext,
        input: wire::TagRoleRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let tags = tags_in(input.tags)?;
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            merge_tags(&mut r.tags, tags.clone())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn untag_role(
        &self,
        _ctx: &RequestContext,
        input: wire::UntagRoleRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let keys = input.tag_keys.unwrap_or_default();
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            r.tags.retain(|(k, _)| !keys.contains(k));
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn list_role_tags(
        &self,
        _ctx: &RequestContext,
        input: wire::ListRoleTagsRequest,
    ) -> Result<wire::ListRoleTagsResponse, AwsError> {
        let role = self.role(&input.role_name.unwrap_or_default()).await?;
        let (tags, truncated, marker) =
            page(role.tags, |t| t.0.clone(), input.marker, input.max_items);
        Ok(wire::ListRoleTagsResponse {
            tags: Some(tags_out(&tags).unwrap_or_default()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn put_role_permissions_boundary(
        &self,
        _ctx: &RequestContext,
        input: wire::PutRolePermissionsBoundaryRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        let b = self.boundary_arn(input.permissions_boundary).await?;
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            r.boundary = b.clone();
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn delete_role_permissions_boundary(
        &self,
        _ctx: &RequestContext,
        input: wire::DeleteRolePermissionsBoundaryRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = input.role_name.unwrap_or_default();
        self.update::<IamRole, _>(&model::role_key(&name), "role", &name, |r| {
            r.boundary = None;
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }
}

impl wire::PoliciesApi<RequestContext> for IamApi<'_> {
    async fn create_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePolicyRequest,
    ) -> Result<wire::CreatePolicyResponse, AwsError> {
        let name = input.policy_name.unwrap_or_default();
        let path = check_path(input.path)?;
        let doc = input.policy_document.unwrap_or_default();
        parse_document(&doc, policy::PolicyKind::Identity)?;
        let now = self.now();
        let rec = IamManagedPolicy {
            arn: self.arn("policy", &path, &name),
            id: random_id("ANPA"),
            name: name.clone(),
            path,
            description: input.description,
            created_at: now,
            updated_at: now,
            default_version: "v1".into(),
            versions: vec![IamPolicyVersion { id: "v1".into(), document: doc, created_at: now }],
            next_version: 2,
            tags: tags_in(input.tags)?,
        };
        if !self.create(&model::policy_key(&name), &rec).await? {
            return Err(err(
                "EntityAlreadyExists",
                409,
                format!("A policy called {name} already exists. Duplicate names are not allowed."),
            ));
        }
        Ok(wire::CreatePolicyResponse { policy: Some(policy_out(&rec, 0)) })
    }

    async fn get_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::GetPolicyRequest,
    ) -> Result<wire::GetPolicyResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let (u, g, r) = self.attachments(&arn).await?;
        Ok(wire::GetPolicyResponse {
            policy: Some(policy_out(&p, (u.len() + g.len() + r.len()) as i32)),
        })
    }

    async fn list_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::ListPoliciesRequest,
    ) -> Result<wire::ListPoliciesResponse, AwsError> {
        // Berth has no AWS managed policies: scope AWS lists nothing.
        let aws_only = matches!(input.scope, Some(wire::PolicyScopeType::Aws));
        let prefix = input.path_prefix.unwrap_or_else(|| "/".into());
        let all: Vec<IamManagedPolicy> =
            if aws_only { vec![] } else { self.list(model::POLICIES).await? };
        let users: Vec<IamUser> = self.list(model::USERS).await?;
        let groups: Vec<IamGroup> = self.list(model::GROUPS).await?;
        let roles: Vec<IamRole> = self.list(model::ROLES).await?;
        let mut counts: BTreeMap<&str, i32> = BTreeMap::new();
        for a in users
            .iter()
            .map(|u| &u.policies)
            .chain(groups.iter().map(|g| &g.policies))
            .chain(roles.iter().map(|r| &r.policies))
        {
            for m in &a.managed {
                *counts.entry(m.as_str()).or_default() += 1;
            }
        }
        let only_attached = input.only_attached.unwrap_or(false);
        let mut listed = Vec::new();
        for p in &all {
            let n = counts.get(p.arn.as_str()).copied().unwrap_or(0);
            if p.path.starts_with(&prefix) && (!only_attached || n > 0) {
                listed.push(policy_out(p, n));
            }
        }
        let (listed, truncated, marker) = page(
            listed,
            |p| p.policy_name.clone().unwrap_or_default().to_lowercase(),
            input.marker,
            input.max_items,
        );
        Ok(wire::ListPoliciesResponse {
            policies: Some(listed.into_iter().map(|p| wire::Policy { tags: None, ..p }).collect()),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn delete_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DeletePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let (u, g, r) = self.attachments(&arn).await?;
        if !(u.is_empty() && g.is_empty() && r.is_empty()) {
            return Err(conflict("Cannot delete a policy attached to entities."));
        }
        if p.versions.len() > 1 {
            return Err(conflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.",
            ));
        }
        self.delete(&model::policy_key(&p.name)).await?;
        Ok(wire::Empty {})
    }

    async fn create_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::CreatePolicyVersionRequest,
    ) -> Result<wire::CreatePolicyVersionResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let doc = input.policy_document.unwrap_or_default();
        parse_document(&doc, policy::PolicyKind::Identity)?;
        let p = self.policy(&arn).await?;
        let now = self.now();
        let default = input.set_as_default.unwrap_or(false);
        let mut made = None;
        let after = self
            .update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
                if p.versions.len() >= 5 {
                    return Err(err(
                        "LimitExceeded",
                        409,
                        "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.",
                    ));
                }
                let id = format!("v{}", p.next_version);
                p.next_version += 1;
                p.versions.push(IamPolicyVersion { id: id.clone(), document: doc.clone(), created_at: now });
                p.updated_at = now;
                if default {
                    p.default_version = id.clone();
                }
                made = Some(id);
                Ok(())
            })
            .await?;
        let id = made.unwrap_or_default();
        let v = after.versions.iter().find(|v| v.id == id).expect("the version just made");
        Ok(wire::CreatePolicyVersionResponse {
            policy_version: Some(version_out(&after, v, false)),
        })
    }

    async fn get_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::GetPolicyVersionRequest,
    ) -> Result<wire::GetPolicyVersionResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let v = p.versions.iter().find(|v| v.id == id).ok_or_else(|| {
            err(
                "NoSuchEntity",
                404,
                format!("Policy {arn} version {id} does not exist or is not attachable."),
            )
        })?;
        Ok(wire::GetPolicyVersionResponse { policy_version: Some(version_out(&p, v, true)) })
    }

    async fn list_policy_versions(
        &self,
        _ctx: &RequestContext,
        input: wire::ListPolicyVersionsRequest,
    ) -> Result<wire::ListPolicyVersionsResponse, AwsError> {
        let p = self.policy(&input.policy_arn.unwrap_or_default()).await?;
        let mut versions: Vec<wire::PolicyVersion> =
            p.versions.iter().map(|v| version_out(&p, v, false)).collect();
        versions.reverse();
        let (versions, truncated, marker) = page(
            versions,
            |v| format!("{:>10}", v.version_id.clone().unwrap_or_default().trim_start_matches('v')),
            input.marker,
            input.max_items,
        );
        Ok(wire::ListPolicyVersionsResponse {
            versions: Some(versions),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn set_default_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::SetDefaultPolicyVersionRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.policy(&arn).await?;
        let now = self.now();
        self.update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
            if !p.versions.iter().any(|v| v.id == id) {
                return Err(err(
                    "NoSuchEntity",
                    404,
                    format!("Policy {arn} version {id} does not exist or is not attachable."),
                ));
            }
            p.default_version = id.clone();
            p.updated_at = now;
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn delete_policy_version(
        &self,
        _ctx: &RequestContext,
        input: wire::DeletePolicyVersionRequest,
    ) -> Result<wire::Empty, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        let id = input.version_id.unwrap_or_default();
        let p = self.policy(&arn).await?;
        self.update::<IamManagedPolicy, _>(&model::policy_key(&p.name), "policy", &arn, |p| {
            if p.default_version == id {
                return Err(conflict("Cannot delete the default version of a policy."));
            }
            let before = p.versions.len();
            p.versions.retain(|v| v.id != id);
            if p.versions.len() == before {
                return Err(err(
                    "NoSuchEntity",
                    404,
                    format!("Policy {arn} version {id} does not exist or is not attachable."),
                ));
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn list_entities_for_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::ListEntitiesForPolicyRequest,
    ) -> Result<wire::ListEntitiesForPolicyResponse, AwsError> {
        let arn = input.policy_arn.unwrap_or_default();
        self.policy(&arn).await?;
        let (u, g, r) = self.attachments(&arn).await?;
        Ok(wire::ListEntitiesForPolicyResponse {
            policy_users: Some(
                u.iter()
                    .map(|u| wire::PolicyUser {
                        user_name: Some(u.name.clone()),
                        user_id: Some(u.id.clone()),
                    })
                    .collect(),
            ),
            policy_groups: Some(
                g.iter()
                    .map(|g| wire::PolicyGroup {
                        group_name: Some(g.name.clone()),
                        group_id: Some(g.id.clone()),
                    })
                    .collect(),
            ),
            policy_roles: Some(
                r.iter()
                    .map(|r| wire::PolicyRole {
                        role_name: Some(r.name.clone()),
                        role_id: Some(r.id.clone()),
                    })
                    .collect(),
            ),
            is_truncated: Some(false),
            marker: None,
        })
    }
}

/// Which kind of entity an attachment or inline policy belongs to.
#[derive(Clone, Copy)]
enum Entity {
    User,
    Group,
    Role,
}

impl IamApi<'_> {
    /// Edits the policies of one user, group or role.
    async fn edit_policies(
        &self,
        entity: Entity,
        name: &str,
        f: impl Fn(&mut Attached) -> Result<(), AwsError>,
    ) -> Result<(), AwsError> {
        match entity {
            Entity::User => {
                self.update::<IamUser, _>(&model::user_key(name), "user", name, |u| {
                    f(&mut u.policies)
                })
                .await?;
            }
            Entity::Group => {
                self.update::<IamGroup, _>(&model::group_key(name), "group", name, |g| {
                    f(&mut g.policies)
                })
                .await?;
            }
            Entity::Role => {
                self.update::<IamRole, _>(&model::role_key(name), "role", name, |r| {
                    f(&mut r.policies)
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn policies_of(&self, entity: Entity, name: &str) -> Result<Attached, AwsError> {
        Ok(match entity {
            Entity::User => self.user(name).await?.policies,
            Entity::Group => self.group(name).await?.policies,
            Entity::Role => self.role(name).await?.policies,
        })
    }

    async fn attach(&self, entity: Entity, name: &str, arn: &str) -> Result<wire::Empty, AwsError> {
        self.policy(arn).await?;
        self.edit_policies(entity, name, |a| {
            if !a.managed.iter().any(|m| m == arn) {
                if a.managed.len() >= 20 {
                    return Err(err(
                        "LimitExceeded",
                        409,
                        "Cannot exceed quota for PoliciesPerUser/Group/Role: 20",
                    ));
                }
                a.managed.push(arn.to_string());
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn detach(&self, entity: Entity, name: &str, arn: &str) -> Result<wire::Empty, AwsError> {
        self.edit_policies(entity, name, |a| {
            if !a.managed.iter().any(|m| m == arn) {
                return Err(err("NoSuchEntity", 404, format!("Policy {arn} was not found.")));
            }
            a.managed.retain(|m| m != arn);
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn attached_list(
        &self,
        entity: Entity,
        name: &str,
        marker: Option<String>,
        max_items: Option<i32>,
    ) -> Result<(Vec<wire::AttachedPolicy>, bool, Option<String>), AwsError> {
        let a = self.policies_of(entity, name).await?;
        let list: Vec<wire::AttachedPolicy> = a
            .managed
            .iter()
            .map(|arn| wire::AttachedPolicy {
                policy_name: arn.rsplit('/').next().map(str::to_string),
                policy_arn: Some(arn.clone()),
            })
            .collect();
        Ok(page(list, |p| p.policy_arn.clone().unwrap_or_default(), marker, max_items))
    }

    async fn put_inline(
        &self,
        entity: Entity,
        name: &str,
        policy: &str,
        doc: &str,
    ) -> Result<wire::Empty, AwsError> {
        parse_document(doc, policy::PolicyKind::Identity)?;
        self.edit_policies(entity, name, |a| {
            a.inline.insert(policy.to_string(), doc.to_string());
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn get_inline(
        &self,
        entity: Entity,
        name: &str,
        policy: &str,
    ) -> Result<String, AwsError> {
        let a = self.policies_of(entity, name).await?;
        a.inline.get(policy).map(|d| encode_doc(d)).ok_or_else(|| {
            err("NoSuchEntity", 404, format!("The policy with name {policy} cannot be found."))
        })
    }

    async fn delete_inline(
        &self,
        entity: Entity,
        name: &str,
        policy: &str,
    ) -> Result<wire::Empty, AwsError> {
        self.edit_policies(entity, name, |a| {
            if a.inline.remove(policy).is_none() {
                return Err(err(
                    "NoSuchEntity",
                    404,
                    format!("The policy with name {policy} cannot be found."),
                ));
            }
            Ok(())
        })
        .await?;
        Ok(wire::Empty {})
    }

    async fn inline_names(
        &self,
        entity: Entity,
        name: &str,
        marker: Option<String>,
        max_items: Option<i32>,
    ) -> Result<(Vec<String>, bool, Option<String>), AwsError> {
        let a = self.policies_of(entity, name).await?;
        Ok(page(a.inline.into_keys().collect(), |n| n.clone(), marker, max_items))
    }
}

impl wire::AttachmentsApi<RequestContext> for IamApi<'_> {
    async fn attach_user_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::AttachUserPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.attach(
            Entity::User,
            &input.user_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn detach_user_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DetachUserPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.detach(
            Entity::User,
            &input.user_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn list_attached_user_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::ListAttachedUserPoliciesRequest,
    ) -> Result<wire::ListAttachedUserPoliciesResponse, AwsError> {
        let (l, t, m) = self
            .attached_list(
                Entity::User,
                &input.user_name.unwrap_or_default(),
                input.marker,
                input.max_items,
            )
            .await?;
        Ok(wire::ListAttachedUserPoliciesResponse {
            attached_policies: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
    async fn attach_group_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::AttachGroupPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.attach(
            Entity::Group,
            &input.group_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn detach_group_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DetachGroupPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.detach(
            Entity::Group,
            &input.group_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn list_attached_group_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::ListAttachedGroupPoliciesRequest,
    ) -> Result<wire::ListAttachedGroupPoliciesResponse, AwsError> {
        let (l, t, m) = self
            .attached_list(
                Entity::Group,
                &input.group_name.unwrap_or_default(),
                input.marker,
                input.max_items,
            )
            .await?;
        Ok(wire::ListAttachedGroupPoliciesResponse {
            attached_policies: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
    async fn attach_role_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::AttachRolePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.attach(
            Entity::Role,
            &input.role_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn detach_role_policy(
        &self,
        _ctx: &RequestContext,
        input: wire::DetachRolePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.detach(
            Entity::Role,
            &input.role_name.unwrap_or_default(),
            &input.policy_arn.unwrap_or_default(),
        )
        .await
    }
    async fn list_attached_role_policies(
        &self,
        _ctx: &RequestContext,
        input: wire::ListAttachedRolePoliciesRequest,
    ) -> Result<wire::ListAttachedRolePoliciesResponse, AwsError> {
        let (l, t, m) = self
            .attached_list(
                Entity::Role,
                &input.role_name.unwrap_or_default(),
                input.marker,
                input.max_items,
            )
            .await?;
        Ok(wire::ListAttachedRolePoliciesResponse {
            attached_policies: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
}

impl wire::InlinePoliciesApi<RequestContext> for IamApi<'_> {
    async fn put_user_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::PutUserPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.put_inline(
            Entity::User,
            &i.user_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
            &i.policy_document.unwrap_or_default(),
        )
        .await
    }
    async fn get_user_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::GetUserPolicyRequest,
    ) -> Result<wire::GetUserPolicyResponse, AwsError> {
        let (n, p) = (i.user_name.unwrap_or_default(), i.policy_name.unwrap_or_default());
        let doc = self.get_inline(Entity::User, &n, &p).await?;
        Ok(wire::GetUserPolicyResponse {
            user_name: Some(n),
            policy_name: Some(p),
            policy_document: Some(doc),
        })
    }
    async fn delete_user_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::DeleteUserPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.delete_inline(
            Entity::User,
            &i.user_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
        )
        .await
    }
    async fn list_user_policies(
        &self,
        _ctx: &RequestContext,
        i: wire::ListUserPoliciesRequest,
    ) -> Result<wire::ListUserPoliciesResponse, AwsError> {
        let (l, t, m) = self
            .inline_names(Entity::User, &i.user_name.unwrap_or_default(), i.marker, i.max_items)
            .await?;
        Ok(wire::ListUserPoliciesResponse {
            policy_names: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
    async fn put_group_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::PutGroupPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.put_inline(
            Entity::Group,
            &i.group_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
            &i.policy_document.unwrap_or_default(),
        )
        .await
    }
    async fn get_group_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::GetGroupPolicyRequest,
    ) -> Result<wire::GetGroupPolicyResponse, AwsError> {
        let (n, p) = (i.group_name.unwrap_or_default(), i.policy_name.unwrap_or_default());
        let doc = self.get_inline(Entity::Group, &n, &p).await?;
        Ok(wire::GetGroupPolicyResponse {
            group_name: Some(n),
            policy_name: Some(p),
            policy_document: Some(doc),
        })
    }
    async fn delete_group_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::DeleteGroupPolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.delete_inline(
            Entity::Group,
            &i.group_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
        )
        .await
    }
    async fn list_group_policies(
        &self,
        _ctx: &RequestContext,
        i: wire::ListGroupPoliciesRequest,
    ) -> Result<wire::ListGroupPoliciesResponse, AwsError> {
        let (l, t, m) = self
            .inline_names(Entity::Group, &i.group_name.unwrap_or_default(), i.marker, i.max_items)
            .await?;
        Ok(wire::ListGroupPoliciesResponse {
            policy_names: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
    async fn put_role_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::PutRolePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.put_inline(
            Entity::Role,
            &i.role_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
            &i.policy_document.unwrap_or_default(),
        )
        .await
    }
    async fn get_role_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::GetRolePolicyRequest,
    ) -> Result<wire::GetRolePolicyResponse, AwsError> {
        let (n, p) = (i.role_name.unwrap_or_default(), i.policy_name.unwrap_or_default());
        let doc = self.get_inline(Entity::Role, &n, &p).await?;
        Ok(wire::GetRolePolicyResponse {
            role_name: Some(n),
            policy_name: Some(p),
            policy_document: Some(doc),
        })
    }
    async fn delete_role_policy(
        &self,
        _ctx: &RequestContext,
        i: wire::DeleteRolePolicyRequest,
    ) -> Result<wire::Empty, AwsError> {
        self.delete_inline(
            Entity::Role,
            &i.role_name.unwrap_or_default(),
            &i.policy_name.unwrap_or_default(),
        )
        .await
    }
    async fn list_role_policies(
        &self,
        _ctx: &RequestContext,
        i: wire::ListRolePoliciesRequest,
    ) -> Result<wire::ListRolePoliciesResponse, AwsError> {
        let (l, t, m) = self
            .inline_names(Entity::Role, &i.role_name.unwrap_or_default(), i.marker, i.max_items)
            .await?;
        Ok(wire::ListRolePoliciesResponse {
            policy_names: Some(l),
            is_truncated: Some(t),
            marker: m,
        })
    }
}

impl wire::AccessKeysApi<RequestContext> for IamApi<'_> {
    async fn create_access_key(
        &self,
        ctx: &RequestContext,
        input: wire::CreateAccessKeyRequest,
    ) -> Result<wire::CreateAccessKeyResponse, AwsError> {
        let name = self.user_name_or_caller(ctx, input.user_name)?;
        let user = self.user(&name).await?;
        if self.user_keys(&user.arn).await?.len() >= 2 {
            return Err(err("LimitExceeded", 409, "Cannot exceed quota for AccessKeysPerUser: 2"));
        }
        let (akid, secret, rec) = crate::auth::tokens::new_key(
            &*self.app.iam.store,
            &*self.app.iam.clock,
            &self.app.iam.master_key,
            "AKIA",
            &user.arn,
        )
        .await?;
        Ok(wire::CreateAccessKeyResponse {
            access_key: Some(wire::AccessKey {
                user_name: Some(user.name),
                access_key_id: Some(akid),
                status: Some(wire::StatusType::Active),
                secret_access_key: Some(secret),
                create_date: Some(rec.created_at),
            }),
        })
    }

    async fn list_access_keys(
        &self,
        ctx: &RequestContext,
        input: wire::ListAccessKeysRequest,
    ) -> Result<wire::ListAccessKeysResponse, AwsError> {
        let name = self.user_name_or_caller(ctx, input.user_name)?;
        let user = self.user(&name).await?;
        let keys = self.user_keys(&user.arn).await?;
        let (keys, truncated, marker) =
            page(keys, |k| k.access_key_id.clone(), input.marker, input.max_items);
        Ok(wire::ListAccessKeysResponse {
            access_key_metadata: Some(
                keys.iter()
                    .map(|k| wire::AccessKeyMetadata {
                        user_name: Some(user.name.clone()),
                        access_key_id: Some(k.access_key_id.clone()),
                        status: wire::StatusType::from_str(&k.status),
                        create_date: Some(k.created_at),
                    })
                    .collect(),
            ),
            is_truncated: Some(truncated),
            marker,
        })
    }

    async fn update_access_key(
        &self,
        ctx: &RequestContext,
        input: wire::UpdateAccessKeyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = self.user_name_or_caller(ctx, input.user_name)?;
        let user = self.user(&name).await?;
        let akid = input.access_key_id.unwrap_or_default();
        let status = match input.status {
            Some(wire::StatusType::Active) => "Active",
            Some(wire::StatusType::Inactive) => "Inactive",
            other => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]",
                    other.map(|s| s.as_str()).unwrap_or("")
                )));
            }
        };
        let missing =
            || err("NoSuchEntity", 404, format!("The Access Key with id {akid} cannot be found."));
        let out = records::update::<AccessKeyRecord, _>(
            &*self.app.iam.store,
            &keys::access_key(&akid),
            "access key",
            |k| {
                if k.principal_arn != user.arn {
                    return Err(missing());
                }
                k.status = status.to_string();
                Ok(())
            },
        )
        .await?;
        self.app.auth.forget(&akid);
        out.ok_or_else(missing)?;
        Ok(wire::Empty {})
    }

    async fn delete_access_key(
        &self,
        ctx: &RequestContext,
        input: wire::DeleteAccessKeyRequest,
    ) -> Result<wire::Empty, AwsError> {
        let name = self.user_name_or_caller(ctx, input.user_name)?;
        let user = self.user(&name).await?;
        let akid = input.access_key_id.unwrap_or_default();
        let key = keys::access_key(&akid);
        match records::get::<AccessKeyRecord>(&*self.app.iam.store, &key).await? {
            Some((k, rev)) if k.principal_arn == user.arn => {
                records::commit(&*self.app.iam.store, Txn::new().when(&key, rev).delete(&key))
                    .await?;
                self.app.auth.forget(&akid);
                Ok(wire::Empty {})
            }
            _ => Err(err(
                "NoSuchEntity",
                404,
                format!("The Access Key with id {akid} cannot be found."),
            )),
        }
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
