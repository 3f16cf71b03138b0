//! Roles (`wire::RolesApi`): trust policies are parsed with the trust grammar before they are stored.

use super::*;

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
