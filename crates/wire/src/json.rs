//! Request parsing and response serialisation for the AWS JSON protocols.
//!
//! Parsing reports the path of the member that failed, so errors name the field:
//! * malformed JSON, or a member of the wrong JSON type: `SerializationException`;
//! * a string outside a model `enum`, a missing `required` member, or a `min`/`max` violation:
//!   the service's validation code (`InvalidParameterException` for ECS).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::validate::Validate;
use crate::{AwsError, common};

/// Parses and validates an operation's input. An empty body counts as `{}`.
pub fn parse_input<T: DeserializeOwned + Validate>(
    body: &[u8],
    validation_code: &'static str,
) -> Result<T, AwsError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => return Err(classify(err, validation_code)),
    };
    if let Err(e) = de.end() {
        return Err(common::serialization(format!("Malformed JSON request body: {e}")));
    }
    value.validate().map_err(|v| AwsError::new(validation_code, 400, v.to_string()))?;
    Ok(value)
}

fn classify(
    err: serde_path_to_error::Error<serde_json::Error>,
    validation_code: &'static str,
) -> AwsError {
    let path = err.path().to_string();
    let inner = err.inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let msg = inner.to_string();
            // serde says "unknown variant `x`, expected one of `a`, `b` at line 1 column 9".
            if let Some(rest) = msg.strip_prefix("unknown variant ") {
                let rest = rest.split(" at line ").next().unwrap_or(rest);
                let (value, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
                let expected = expected.trim_start_matches("one of ").replace('`', "");
                return AwsError::new(
                    validation_code,
                    400,
                    format!(
                        "Invalid value {} for parameter {path}; valid values: {expected}",
                        value.replace('`', "'")
                    ),
                );
            }
            let detail = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            common::serialization(format!("Invalid value for member '{path}': {detail}"))
        }
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            common::serialization(format!("Malformed JSON request body: {inner}"))
        }
        serde_json::error::Category::Io => common::serialization(inner.to_string()),
    }
}

/// Serialises an output shape.
pub fn write_output<T: Serialize>(value: &T) -> Result<Vec<u8>, AwsError> {
    serde_json::to_vec(value)
        .map_err(|e| common::internal(format!("could not serialise the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::{ListClustersRequest, RegisterTaskDefinitionRequest};

    fn parse(body: &str) -> Result<RegisterTaskDefinitionRequest, AwsError> {
        parse_input(body.as_bytes(), "InvalidParameterException")
    }

    #[test]
    fn classifies_errors_and_names_the_member() {
        let cases: &[(&str, &str, &str)] = &[
            ("{not json", "SerializationException", "Malformed"),
            (r#"{"family": 3}"#, "SerializationException", "family"),
            (
                r#"{"family":"f","containerDefinitions":[{"name":"a","memory":"x"}]}"#,
                "SerializationException",
                "containerDefinitions[0].memory",
            ),
            (
                r#"{"family":"f","networkMode":"mesh","containerDefinitions":[]}"#,
                "InvalidParameterException",
                "networkMode",
            ),
            (r#"{"family":"f"}"#, "InvalidParameterException", "containerDefinitions"),
            (
                r#"{"family":"f","containerDefinitions":[],"tags":[{"key":""}]}"#,
                "InvalidParameterException",
                "tags[0].key",
            ),
            (r#"{"family":"f","containerDefinitions":[]} trailing"#, "SerializationException", ""),
        ];
        for (body, code, needle) in cases {
            let e = parse(body).unwrap_err();
            assert_eq!(e.code, *code, "{body}: {e}");
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }

    #[test]
    fn tag_limits_come_from_the_model() {
        let tags: Vec<String> = (0..51).map(|i| format!(r#"{{"key":"k{i}"}}"#)).collect();
        let body =
            format!(r#"{{"family":"f","containerDefinitions":[],"tags":[{}]}}"#, tags.join(","));
        let e = parse(&body).unwrap_err();
        assert_eq!(e.code, "InvalidParameterException");
        assert!(e.message.contains("tags"), "{}", e.message);
    }

    #[test]
    fn empty_body_is_an_empty_object_and_unknown_members_are_ignored() {
        let r: ListClustersRequest = parse_input(b"", "InvalidParameterException").unwrap();
        assert_eq!(r, ListClustersRequest::default());
        let r: ListClustersRequest =
            parse_input(br#"{"maxResults": 5, "futureMember": true}"#, "X").unwrap();
        assert_eq!(r.max_results, Some(5));
    }

    #[test]
    fn absent_members_are_not_serialised() {
        let out = write_output(&ListClustersRequest::default()).unwrap();
        assert_eq!(out, b"{}");
    }
}
