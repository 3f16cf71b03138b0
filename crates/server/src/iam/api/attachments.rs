//! Managed-policy attachments and inline policies of users, groups and roles (`wire::AttachmentsApi`, `wire::InlinePoliciesApi`), over one shared editor per entity kind.

use super::*;

/// Which kind of entity an attachment or inline policy belongs to.
#[derive(Clone, Copy)]
pub(super) enum Entity {
    User,
    Group,
    Role,
}

impl IamApi<'_> {
    /// Edits the policies of one user, group or role.
    pub(super) async fn edit_policies(
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

    pub(super) async fn policies_of(
        &self,
        entity: Entity,
        name: &str,
    ) -> Result<Attached, AwsError> {
        Ok(match entity {
            Entity::User => self.user(name).await?.policies,
            Entity::Group => self.group(name).await?.policies,
            Entity::Role => self.role(name).await?.policies,
        })
    }

    pub(super) async fn attach(
        &self,
        entity: Entity,
        name: &str,
        arn: &str,
    ) -> Result<wire::Empty, AwsError> {
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

    pub(super) async fn detach(
        &self,
        entity: Entity,
        name: &str,
        arn: &str,
    ) -> Result<wire::Empty, AwsError> {
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

    pub(super) async fn attached_list(
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

    pub(super) async fn put_inline(
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

    pub(super) async fn get_inline(
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

    pub(super) async fn delete_inline(
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

    pub(super) async fn inline_names(
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
