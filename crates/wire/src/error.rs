//! Errors as AWS answers them.
//!
//! Contract: an [`AwsError`] becomes an HTTP response with `status`, the header
//! `x-amzn-ErrorType: <code>` and the body `{"__type": "<code>", "message": "<message>"}`;
//! boto3 and the AWS CLI turn that into `ClientError` with `Error.Code == code`.
//!
//! An error shape with members besides `message` (ECS's `ConflictException` has
//! `resourceIds`) sends them as top-level members of the same body, as AWS JSON 1.1 does;
//! botocore parses them with the error shape into the top level of `ClientError.response`
//! (`e.response["resourceIds"]`).

use serde::Serialize;

/// One AWS error: a code from the service model (or [`common`]), a message for people, a status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    /// The `__type`, e.g. `ClusterNotFoundException`.
    pub code: &'static str,
    /// HTTP status: 4xx for client errors, 5xx for faults.
    pub status: u16,
    /// What went wrong and, where it helps, what to do next. Never contains secrets.
    pub message: String,
    /// The error shape's other members, by their wire names (empty for most errors).
    pub members: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "__type")]
    code: &'a str,
    message: &'a str,
    #[serde(flatten)]
    members: &'a serde_json::Map<String, serde_json::Value>,
}

impl AwsError {
    /// An error with an explicit code and status.
    pub fn new(code: &'static str, status: u16, message: impl Into<String>) -> Self {
        Self { code, status, message: message.into(), members: serde_json::Map::new() }
    }

    /// The same error with the member `name` of its shape set to `value`. `__type` and
    /// `message` are not members here and are ignored.
    pub fn with_member(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        if name != "__type" && name != "message" {
            self.members.insert(name.to_string(), value.into());
        }
        self
    }

    /// The operation exists in AWS's model but Berth does not implement it yet.
    pub fn not_implemented(code: &'static str, operation: &str) -> Self {
        Self::new(
            code,
            400,
            format!(
                "Berth does not implement the operation {operation} yet (see the Status section of Berth's README)."
            ),
        )
    }

    /// The JSON body AWS sends with an error.
    pub fn to_body(&self) -> Vec<u8> {
        let body = Body { code: self.code, message: &self.message, members: &self.members };
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::AwsError;

    #[test]
    fn members_of_the_error_shape_are_top_level_members_of_the_body() {
        let plain = AwsError::new("ClientException", 400, "no");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&plain.to_body()).unwrap(),
            serde_json::json!({"__type": "ClientException", "message": "no"})
        );
        let e = AwsError::new("ConflictException", 400, "used")
            .with_member("resourceIds", vec!["arn:a", "arn:b"])
            .with_member("message", "not a member");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&e.to_body()).unwrap(),
            serde_json::json!({
                "__type": "ConflictException", "message": "used", "resourceIds": ["arn:a", "arn:b"]
            })
        );
    }
}

/// Codes that belong to the AWS protocols themselves rather than to one service model.
pub mod common {
    use super::AwsError;

    /// Malformed JSON, or a member of the wrong type.
    pub fn serialization(message: impl Into<String>) -> AwsError {
        AwsError::new("SerializationException", 400, message)
    }
    /// `X-Amz-Target` names no operation of the service.
    pub fn unknown_operation(message: impl Into<String>) -> AwsError {
        AwsError::new("UnknownOperationException", 400, message)
    }
    /// The request carries no credentials at all.
    pub fn missing_authentication_token() -> AwsError {
        AwsError::new("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    }
    /// The access key is unknown.
    pub fn unrecognized_client() -> AwsError {
        AwsError::new(
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
    }
    /// A SigV4 failure, with the code the verifier chose.
    pub fn signature(code: &'static str, message: impl Into<String>) -> AwsError {
        AwsError::new(code, 403, message)
    }
    /// The body is over the size cap.
    pub fn request_too_large(limit_bytes: usize) -> AwsError {
        AwsError::new(
            "RequestEntityTooLargeException",
            413,
            format!("Request body is larger than the limit of {limit_bytes} bytes."),
        )
    }
    /// Wrong method, path or content type for an AWS JSON endpoint.
    pub fn invalid_request(message: impl Into<String>) -> AwsError {
        AwsError::new("InvalidRequestException", 400, message)
    }
    /// A fault on Berth's side; the message says what to do next.
    pub fn internal(message: impl Into<String>) -> AwsError {
        AwsError::new("InternalFailure", 500, message)
    }
}
