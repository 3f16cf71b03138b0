//! Users and groups (`wire::UsersApi`, `wire::GroupsApi`): create, get, list, update, delete, tags, permissions boundaries and group membership.

use super::*;

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
            None => match crate::iam::who(&ctx.principal) {
                crate::iam::Who::User(n) => self.user(n).await?,
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
