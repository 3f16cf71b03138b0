//! Access keys (`wire::AccessKeysApi`): create (the secret is shown once), list, activate or deactivate, delete; every change drops the key from the authenticator's cache.

use super::*;

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
