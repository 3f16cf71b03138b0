//! The SSM parameters ECS users read (issue #12): `GetParameter` and `GetParameters` (JSON 1.1,
//! `AmazonSSM.` target prefix, wire types generated from botocore's `ssm` model for just those
//! operations) answering the public parameters that name Berth's instance image.
//!
//! Contract: `/aws/service/ecs/optimized-ami/amazon-linux-2/recommended` is the JSON document
//! ECS publishes there ([`berth_instances::image::recommended_parameter`]) and `.../image_id`
//! is [`berth_instances::image::BERTH_IMAGE_ID`]; both are `String` parameters of version 1,
//! the same in every region. Any other name is `ParameterNotFound` (GetParameter) or listed
//! in `InvalidParameters` (GetParameters), as SSM answers for a name that does not exist; a
//! full Parameter Store is issue #16's. Requests are SigV4-signed for `ssm` like any other.

use berth_instances::image;
use berth_wire::AwsError;
use berth_wire::common;
use berth_wire::ssm as wire;

use crate::App;
use crate::auth::{self, Action};
use crate::ecs::RequestContext;

/// The public parameters this server answers, by name: `(value, region)` -> parameter.
fn lookup(name: &str, region: &str, partition: &str) -> Option<wire::Parameter> {
    let value = match name {
        image::RECOMMENDED_PARAMETER => image::recommended_parameter(env!("CARGO_PKG_VERSION")),
        image::RECOMMENDED_IMAGE_ID_PARAMETER => image::BERTH_IMAGE_ID.to_string(),
        _ => return None,
    };
    Some(wire::Parameter {
        name: Some(name.to_string()),
        r#type: Some(wire::ParameterType::String),
        value: Some(value),
        version: Some(1),
        last_modified_date: Some(0.0),
        arn: Some(format!("arn:{partition}:ssm:{region}::parameter{name}")),
        data_type: Some("text".into()),
        ..Default::default()
    })
}

/// The region's view of the public parameters.
struct Parameters {
    region: &'static str,
    partition: &'static str,
}

impl wire::ParametersApi<RequestContext> for Parameters {
    async fn get_parameter(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParameterRequest,
    ) -> Result<wire::GetParameterResult, AwsError> {
        let name = input.name.unwrap_or_default();
        match lookup(&name, self.region, self.partition) {
            Some(p) => Ok(wire::GetParameterResult { parameter: Some(p) }),
            None => {
                Err(wire::ErrorCode::ParameterNotFound.with(format!("Parameter {name} not found.")))
            }
        }
    }

    async fn get_parameters(
        &self,
        _ctx: &RequestContext,
        input: wire::GetParametersRequest,
    ) -> Result<wire::GetParametersResult, AwsError> {
        let mut found = vec![];
        let mut invalid = vec![];
        for name in input.names.unwrap_or_default() {
            match lookup(&name, self.region, self.partition) {
                Some(p) => found.push(p),
                None => invalid.push(name),
            }
        }
        Ok(wire::GetParametersResult { parameters: Some(found), invalid_parameters: Some(invalid) })
    }
}

impl wire::Api for Parameters {
    type Context = RequestContext;
    type Parameters = Parameters;
    fn parameters(&self) -> &Parameters {
        self
    }
}

/// Serves one SSM request (already routed here by its `ssm` credential scope).
pub(crate) async fn serve(
    app: &App,
    req: axum::extract::Request,
    request_id: &str,
) -> Result<Vec<u8>, AwsError> {
    let (parts, body) = req.into_parts();
    let body = crate::protocol::read_capped(body, app.max_body_bytes).await?;
    let signed = app.auth.authenticate(&parts, &body, wire::SIGNING_NAME).await?;
    auth::authorize_region(&signed.principal, signed.region)?;
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| common::unknown_operation("Missing X-Amz-Target header."))?;
    let (prefix, operation) = target.split_once('.').unwrap_or((target, ""));
    if prefix != wire::TARGET_PREFIX {
        return Err(common::unknown_operation(format!(
            "Unknown target '{target}': SSM requests name {}.<Operation>.",
            wire::TARGET_PREFIX
        )));
    }
    let op = wire::Operation::from_name(operation).ok_or_else(|| {
        common::unknown_operation(format!("{operation} is not an operation of AWS SSM."))
    })?;
    auth::authorize(
        &signed.principal,
        Action { service: wire::SIGNING_NAME, operation: op.name() },
    )?;
    let ctx = RequestContext { principal: signed.principal, request_id: request_id.to_string() };
    let api = Parameters { region: signed.region.name, partition: signed.region.partition };
    wire::dispatch(&api, &ctx, op, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recommended_parameters_name_berths_image() {
        let p = lookup(image::RECOMMENDED_PARAMETER, "eu-west-1", "aws").unwrap();
        let doc: serde_json::Value = serde_json::from_str(p.value.as_deref().unwrap()).unwrap();
        assert_eq!(doc["image_id"], image::BERTH_IMAGE_ID);
        assert_eq!(
            p.arn.as_deref(),
            Some(
                "arn:aws:ssm:eu-west-1::parameter/aws/service/ecs/optimized-ami/amazon-linux-2/recommended"
            )
        );
        let id = lookup(image::RECOMMENDED_IMAGE_ID_PARAMETER, "us-east-1", "aws").unwrap();
        assert_eq!(id.value.as_deref(), Some(image::BERTH_IMAGE_ID));
        assert!(
            lookup("/aws/service/ecs/optimized-ami/amazon-linux-2/nope", "us-east-1", "aws")
                .is_none()
        );
    }
}
