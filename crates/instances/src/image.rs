//! The one machine image agent-backed instances run: Berth's stand-in for the ECS-optimized
//! AMI, and the SSM parameters that name it.
//!
//! Contract: [`BERTH_IMAGE_ID`] is what `/aws/service/ecs/optimized-ami/amazon-linux-2/
//! recommended` names ([`recommended_parameter`], the JSON document ECS publishes there) and
//! what `.../recommended/image_id` holds. RunInstances accepts any well-formed image id
//! ([`validate_image_id`]: `ami-` and 8 or 17 hex digits, else `InvalidAMIID.Malformed`):
//! every image runs the same agent, so templates written for real AWS AMIs work unchanged.

use crate::InstanceError;

/// Berth's image id.
pub const BERTH_IMAGE_ID: &str = "ami-0be7000000000000a";
/// The image's name, as DescribeImages and the parameter show it.
pub const BERTH_IMAGE_NAME: &str = "berth-ecs-agent-hvm-x86_64";
/// The SSM parameter ECS users read the recommended image from.
pub const RECOMMENDED_PARAMETER: &str = "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended";
/// Its `image_id` sub-parameter.
pub const RECOMMENDED_IMAGE_ID_PARAMETER: &str =
    "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id";

/// The value of [`RECOMMENDED_PARAMETER`]: a JSON document as ECS publishes it.
pub fn recommended_parameter(agent_version: &str) -> String {
    serde_json::json!({
        "ecs_agent_version": agent_version,
        "ecs_runtime_version": "Docker",
        "image_id": BERTH_IMAGE_ID,
        "image_name": BERTH_IMAGE_NAME,
        "os": "Amazon Linux 2",
        "schema_version": 1,
        "source_image_name": BERTH_IMAGE_NAME,
    })
    .to_string()
}

/// `ami-` and 8 or 17 lowercase hex digits.
pub fn validate_image_id(id: &str) -> Result<(), InstanceError> {
    let ok = id.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok { Ok(()) } else { Err(InstanceError::MalformedImageId { image_id: id.to_string() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_names_berths_image() {
        validate_image_id(BERTH_IMAGE_ID).unwrap();
        let v: serde_json::Value = serde_json::from_str(&recommended_parameter("0.1.0")).unwrap();
        assert_eq!(v["image_id"], BERTH_IMAGE_ID);
        assert_eq!(v["schema_version"], 1);
        validate_image_id("ami-0abcdef1234567890").unwrap();
        validate_image_id("ami-12345678").unwrap();
        for bad in ["ami-xyz", "ami-", "i-0123456789abcdef0", "AMI-12345678", "ami-ABCDEF12"] {
            let e = validate_image_id(bad).unwrap_err();
            assert_eq!((e.code(), e.field()), ("InvalidAMIID.Malformed", bad));
            assert!(e.to_string().contains(bad));
        }
    }
}
