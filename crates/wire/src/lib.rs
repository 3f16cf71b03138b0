//! AWS wire types and the AWS error mapping.
//!
//! Only this crate knows AWS's JSON shapes. Each service module (`ecs`, later `ecr`, `logs`...)
//! is generated from botocore's service model by `codegen/gen_wire.py` and checked in; the
//! hand-written parts here are what every AWS JSON-protocol service shares:
//! * [`AwsError`]: an error as AWS answers it (`__type`, message, HTTP status), with the codes
//!   that belong to the protocol rather than to any one model ([`common`]);
//! * [`json`]: request parsing that names the failing member (`containerDefinitions[0].cpu`) and
//!   output serialisation;
//! * [`validate`]: the checks the generated `validate()` methods call;
//! * [`query`]: the query and EC2 protocols (form-encoded requests, XML responses and error
//!   envelopes) that the generated `ec2` and `sts` modules read and write through.
#![forbid(unsafe_code)]

pub mod ecs {
    //! Amazon ECS (`AmazonEC2ContainerServiceV20141113`).
    mod generated;
    pub use generated::*;
}
pub mod ec2 {
    //! Amazon EC2 (`ec2` protocol): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod sts {
    //! AWS STS (`query` protocol): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod iam {
    //! AWS IAM (`query` protocol, a global service): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod autoscaling {
    //! Amazon EC2 Auto Scaling (`query` protocol): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod elbv2 {
    //! Elastic Load Balancing v2 (`query` protocol): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod ssm {
    //! AWS Systems Manager (`AmazonSSM`, JSON 1.1): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod logs {
    //! Amazon CloudWatch Logs (`Logs_20140328`, JSON 1.1): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod ecr {
    //! Amazon ECR (`AmazonEC2ContainerRegistry_V20150921`, JSON 1.1): the operations Berth
    //! implements.
    mod generated;
    pub use generated::*;
}
pub mod servicediscovery {
    //! AWS Cloud Map (`Route53AutoNaming_v20170314`, JSON 1.1): the operations Berth
    //! implements.
    mod generated;
    pub use generated::*;
}
pub mod appautoscaling {
    //! Application Auto Scaling (`AnyScaleFrontendService`, JSON 1.1).
    mod generated;
    pub use generated::*;
}
pub mod cloudwatch {
    //! Amazon CloudWatch metrics and alarms (`GraniteServiceVersion20100801`): the JSON 1.0
    //! protocol botocore sends (query-compatible errors), for the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod secretsmanager {
    //! AWS Secrets Manager (`secretsmanager`, JSON 1.1): the operations Berth implements.
    mod generated;
    pub use generated::*;
}
pub mod cloudtrail {
    //! AWS CloudTrail (`CloudTrail_20131101`, JSON 1.1): LookupEvents over Berth's audit trail.
    mod generated;
    pub use generated::*;
}
mod error;
pub mod json;
pub mod query;
pub mod sensitive;
pub mod validate;

pub use error::{AwsError, common};

/// Timestamps travel as epoch seconds with a fractional part, as AWS JSON services send them.
pub type Timestamp = f64;
