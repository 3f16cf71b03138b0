//! AWS STS, as much as Berth serves: `GetCallerIdentity` answers who signed the request
//! (account, ARN, user id), as `aws sts get-caller-identity` shows it. Account-wide: every
//! region's scope reaches it.

use berth_wire::AwsError;
use berth_wire::sts as wire;

use crate::ecs::RequestContext;

/// The STS API (stateless).
pub(crate) struct Sts;

impl wire::Api for Sts {
    type Context = RequestContext;
    type Identity = Sts;
    fn identity(&self) -> &Sts {
        self
    }
}

impl wire::IdentityApi<RequestContext> for Sts {
    async fn get_caller_identity(
        &self,
        ctx: &RequestContext,
        _input: wire::GetCallerIdentityRequest,
    ) -> Result<wire::GetCallerIdentityResponse, AwsError> {
        let p = &ctx.principal;
        // The account's root user's id is the account id; any other principal's, its key.
        let user_id =
            if p.arn.ends_with(":root") { p.account_id.clone() } else { p.access_key_id.clone() };
        Ok(wire::GetCallerIdentityResponse {
            user_id: Some(user_id),
            account: Some(p.account_id.clone()),
            arn: Some(p.arn.clone()),
        })
    }
}
