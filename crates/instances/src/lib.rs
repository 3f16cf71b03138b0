//! Agent-backed EC2 instances (issue #12): an EC2 instance in Berth is a `berth agent` process
//! on the server's host, with its own data directory and identity, the instance type's CPU
//! and memory as its capacity, and the subnet's zone, joining the cluster its UserData names
//! as the ECS-optimized AMI does.
//!
//! ```text
//!  RunInstances ─▶ InstanceRecord (ec2/instances/<id>, + its address under ec2/eni-ips/)
//!                        │ desired state
//!                        ▼
//!  launcher::reconcile(desired, running) (pure) ─▶ start / stop ─▶ HostLauncher
//!                                                     (ProcessLauncher: one `berth agent`
//!                                                      child per instance)
//! ```
//!
//! Modules:
//! * [`types`]: the instance type table (real vCPU and memory) and the capacity an agent of a
//!   type registers;
//! * [`user_data`]: `ECS_CLUSTER=` and `ECS_INSTANCE_ATTRIBUTES=` from UserData, as the
//!   ECS-optimized AMI reads `/etc/ecs/ecs.config`;
//! * [`record`]: the stored instance record, its key, and the EC2 instance lifecycle (an
//!   ordered enum with explicit transitions);
//! * [`identity`]: the instance identity document and Berth's signature over it;
//! * [`image`]: Berth's image id and the SSM parameter that names it;
//! * [`launcher`]: what runs an agent per instance ([`launcher::HostLauncher`]), the pure
//!   [`launcher::reconcile`], a recording fake and the process implementation.
//!
//! Invariants every part keeps: ids are EC2-shaped (`i-` + 17 hex digits); an instance's
//! private address is taken in its subnet exactly like an ENI's (the `ec2/eni-ips/` key), so
//! instance and task addresses never collide; nothing here reads the clock (times are
//! passed in) except the process launcher's grace timer.
#![forbid(unsafe_code)]

pub mod identity;
pub mod image;
pub mod launcher;
pub mod record;
pub mod types;
pub mod user_data;

/// A request this crate refuses, or a launcher failure. [`InstanceError::code`] is the EC2
/// error code the server answers with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// `InvalidParameterValue`: a field's value is not acceptable; `field` names it as EC2's
    /// API does (`InstanceType`, `UserData`).
    #[error("{message}")]
    InvalidParameterValue { field: String, message: String },
    /// `IncorrectInstanceState`: the instance is not in a state that allows the request.
    #[error("{message}")]
    IncorrectInstanceState { instance_id: String, message: String },
    /// `InvalidAMIID.Malformed`: not an image id.
    #[error("Invalid id: \"{image_id}\" (expecting \"ami-...\")")]
    MalformedImageId { image_id: String },
    /// `InsufficientFreeAddressesInSubnet`: the subnet has no address left for an instance.
    #[error(
        "There are not enough free addresses in subnet '{subnet_id}' to satisfy the requested number of instances."
    )]
    InsufficientFreeAddresses { subnet_id: String },
    /// The launcher could not start or stop an agent (an internal error, not the user's).
    #[error("{0}")]
    Launch(String),
}

impl InstanceError {
    /// An `InvalidParameterValue` about `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidParameterValue { field: field.into(), message: message.into() }
    }

    /// The EC2 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidParameterValue { .. } => "InvalidParameterValue",
            Self::IncorrectInstanceState { .. } => "IncorrectInstanceState",
            Self::InsufficientFreeAddresses { .. } => "InsufficientFreeAddressesInSubnet",
            Self::MalformedImageId { .. } => "InvalidAMIID.Malformed",
            Self::Launch(_) => "InternalError",
        }
    }

    /// The field (or instance id) the error concerns; empty for launcher failures.
    pub fn field(&self) -> &str {
        match self {
            Self::InvalidParameterValue { field, .. } => field,
            Self::IncorrectInstanceState { instance_id, .. } => instance_id,
            Self::InsufficientFreeAddresses { subnet_id } => subnet_id,
            Self::MalformedImageId { image_id } => image_id,
            Self::Launch(_) => "",
        }
    }
}
