//! The one place where Berth's internal errors become AWS errors.
//!
//! Handlers return [`AwsError`]; domain ([`ModelError`]) and store ([`StoreError`]) errors
//! convert through the functions here, so every code choice is made once.

use berth_model::ModelError;
use berth_store::StoreError;
use berth_wire::AwsError;
use berth_wire::ecs::ErrorCode;

/// A domain rule refused the request.
pub fn model(e: ModelError) -> AwsError {
    match e {
        ModelError::Client { message, .. } => ErrorCode::ClientException.with(message),
        ModelError::InvalidParameter { message, .. } => {
            ErrorCode::InvalidParameterException.with(message)
        }
    }
}

/// The store failed: a fault on Berth's side. The details go to the log; the client is told
/// what happened and what to do. A full disk is told apart (`ServerException`, HTTP 500, as
/// AWS answers its own faults): the request was not applied, and what to free.
pub fn store(e: StoreError) -> AwsError {
    if let StoreError::DiskFull { path, filesystem, .. } = &e {
        let data_dir = path.parent().unwrap_or(path);
        tracing::warn!(error = %e, "write refused: disk full");
        return ErrorCode::ServerException.with(format!(
            "The filesystem holding Berth's data directory is full: free space on {} (the data directory is {}); the request was not applied. Retry it once there is space.",
            filesystem.display(),
            data_dir.display()
        ));
    }
    tracing::error!(error = %e, "store failure");
    let advice = match &e {
        // The message already says what to do.
        StoreError::EtcdNoSpace { .. }
        | StoreError::TooLarge { .. }
        | StoreError::TooManyOps { .. } => "",
        StoreError::Etcd { .. } => {
            " A write's outcome is unknown: read the resource back before retrying; if it persists, check that etcd is reachable and has a leader."
        }
        _ => {
            " Retry the request; if it persists, check the server's log and its data directory's disk."
        }
    };
    ErrorCode::ServerException.with(format!("Berth's state store failed ({e}).{advice}"))
}

/// A stored record could not be decoded: corruption or a downgrade.
pub fn corrupt(key: &str, e: serde_json::Error) -> AwsError {
    tracing::error!(key, error = %e, "undecodable record");
    ErrorCode::ServerException.with(format!(
        "Berth found an undecodable record at {key}; the data directory may come from a newer Berth."
    ))
}

/// A compare-and-set kept losing to concurrent writers.
pub fn contention(what: &str) -> AwsError {
    ErrorCode::ServerException
        .with(format!("Too many concurrent updates to {what}; retry the request."))
}

/// `InvalidParameterException` naming a field.
pub fn invalid(message: impl Into<String>) -> AwsError {
    ErrorCode::InvalidParameterException.with(message)
}

/// `ClientException`.
pub fn client(message: impl Into<String>) -> AwsError {
    ErrorCode::ClientException.with(message)
}

/// `ConflictException`: a RunTask `clientToken` reused with other parameters; `resource_ids`
/// are the tasks the token started (the shape's `resourceIds`).
pub fn token_conflict(token: &str, resource_ids: Vec<String>) -> AwsError {
    ErrorCode::ConflictException
        .with(format!(
            "The clientToken '{token}' was already used by a RunTask with different parameters; it started the tasks in resourceIds. Retry with the same parameters to get those tasks, or use a new clientToken for a new request."
        ))
        .with_member("resourceIds", resource_ids)
}

/// The agent channel: a poll for a container instance the server has no record of, live or
/// deregistered (HTTP 404; the agent registers again, keeping its containers).
pub fn instance_unknown(message: impl Into<String>) -> AwsError {
    AwsError::new(berth_agent_protocol::errors::INSTANCE_UNKNOWN, 404, message)
}

/// The agent channel: a report older than what the server holds (HTTP 409; the agent drops
/// it and polls again).
pub fn stale_report(message: impl Into<String>) -> AwsError {
    AwsError::new(berth_agent_protocol::errors::STALE_REPORT, 409, message)
}
