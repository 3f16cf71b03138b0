//! Shared by the criterion bench and the `eval_latency` example: twenty
//! attached policies of five statements each (wildcard actions, per-segment
//! resource wildcards, a policy variable, tag, ARN, IP and Bool conditions),
//! and requests that are allowed only by the last policy or not at all.

use berth_iam_policy::{Policy, PolicyKind, Principal, RequestContext};
use time::macros::datetime;

pub const POLICIES: usize = 20;

pub fn policies() -> Vec<Policy> {
    (0..POLICIES)
        .map(|i| {
            let doc = format!(
                r#"{{"Version": "2012-10-17", "Statement": [
  {{"Sid": "Read{i}", "Effect": "Allow", "Action": ["ecs:Describe*", "ecs:List*"],
    "Resource": "arn:aws:ecs:us-east-1:123456789012:cluster/team{i}-*",
    "Condition": {{"StringEquals": {{"aws:PrincipalTag/team": "team{i}"}}}}}},
  {{"Sid": "Run{i}", "Effect": "Allow", "Action": ["ecs:RunTask", "ecs:StartTask"],
    "Resource": "arn:aws:ecs:*:123456789012:task-definition/app{i}:*",
    "Condition": {{"ArnEquals": {{"ecs:cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/team{i}-*"}}}}}},
  {{"Sid": "Home{i}", "Effect": "Allow", "Action": "s3:*",
    "Resource": "arn:aws:s3:::bucket{i}/home/${{aws:username}}/*"}},
  {{"Sid": "DenyOutside{i}", "Effect": "Deny", "Action": "ecs:Delete*", "Resource": "*",
    "Condition": {{"NotIpAddress": {{"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}}}},
  {{"Sid": "Tls{i}", "Effect": "Deny", "Action": "*", "Resource": "*",
    "Condition": {{"Bool": {{"aws:SecureTransport": "false"}}}}}}
]}}"#
            );
            Policy::parse(&doc, PolicyKind::Identity)
                .expect("fixture policy parses")
                .with_label(format!("arn:aws:iam::123456789012:policy/p{i}"))
        })
        .collect()
}

/// `allowed`: DescribeClusters on a cluster only the last policy covers;
/// otherwise CreateCluster, which no policy allows (every statement is tried).
pub fn request(allowed: bool) -> RequestContext {
    let (action, resource) = if allowed {
        ("ecs:DescribeClusters", "arn:aws:ecs:us-east-1:123456789012:cluster/team19-prod")
    } else {
        ("ecs:CreateCluster", "*")
    };
    RequestContext::new(Principal::from_arn("arn:aws:iam::123456789012:user/bob"), action, resource)
        .with_principal_tags([("team", "team19")])
        .with_source_ip([10, 1, 2, 3].into())
        .with_secure_transport(true)
        .with_time(datetime!(2026-12-01 12:00:00 UTC))
}
