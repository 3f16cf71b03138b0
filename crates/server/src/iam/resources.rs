//! The resources (ARNs) and request condition keys of each operation, for authorization.
//!
//! ECS follows the Service Authorization Reference from the request body:
//! * cluster operations (Describe/Delete/Update/UpdateSettings/PutClusterCapacityProviders,
//!   ListContainerInstances, Register/Deregister/DescribeContainerInstances,
//!   UpdateContainerInstancesState, Put/List/DeleteAttributes, Submit*StateChange):
//!   `cluster/NAME` (DescribeClusters: each cluster named, `default` when none);
//! * tasks (DescribeTasks, StopTask, Update/GetTaskProtection): `task/CLUSTER/ID` each;
//! * services (Create/Update/Delete/DescribeServices, ListServiceDeployments, task sets):
//!   `service/CLUSTER/NAME` each;
//! * RunTask, StartTask: `task-definition/FAMILY:REV` (the latest revision when only a family
//!   is named: `FAMILY:*`);
//! * Tag/Untag/ListTagsForResource: the `resourceArn`;
//! * everything else (CreateCluster, List*, RegisterTaskDefinition, DescribeTaskDefinition,
//!   capacity providers, account settings...): `*`;
//! * `ecs:cluster` (the cluster's ARN) is set wherever the request names a cluster or acts in
//!   the default one.
//!
//! Other services: the resource a request names where it is obvious, else `*`:
//! * logs: `log-group:NAME` (`logGroupName`), `*` otherwise;
//! * ecr: `repository/NAME` (`repositoryName`, or each of `repositoryNames`), the
//!   `resourceArn` (tags), `*` otherwise;
//! * ssm: `parameter/NAME` for each of `Name`/`Names`;
//! * secretsmanager: the `SecretId` when it is an ARN, else `secret:NAME` (without the
//!   random suffix AWS's ARNs carry: a policy naming `secret:NAME-??????` does not match a
//!   request by name, `secret:NAME*` does);
//! * elasticloadbalancing: the `LoadBalancerArn`, `TargetGroupArn`, `ListenerArn` or
//!   `RuleArn` the form names, `*` otherwise;
//! * iam: `user/NAME`, `group/NAME`, `role/NAME` or the `PolicyArn` the form names (the
//!   account's users are looked up without their paths: a path-specific Resource does not
//!   match), GetUser without a name: the caller; Attach/Detach{User,Role,Group}Policy: the
//!   user, role or group, with the policy as `iam:PolicyARN` (as the Service Authorization
//!   Reference lists them);
//! * sts: AssumeRole: the `RoleArn`; ec2, autoscaling, servicediscovery and any other
//!   service: `*`.

use berth_wire::query::Form;
use serde_json::Value;

/// Where the ARNs are made: partition, region, account.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
}

/// A request's body as its front end parsed it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Body<'a> {
    Json(&'a [u8]),
    Form(&'a Form),
}

/// The resources and condition keys of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub arns: Vec<String>,
    pub keys: Vec<(String, String)>,
}

impl Resources {
    fn star() -> Self {
        Resources { arns: vec!["*".into()], keys: vec![] }
    }
}

fn str_of<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
    v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn list_of<'v>(v: &'v Value, k: &str) -> Vec<&'v str> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `cluster` as a name (from a name or an ARN).
fn cluster_name(c: &str) -> &str {
    if c.starts_with("arn:") { c.rsplit('/').next().unwrap_or(c) } else { c }
}

/// The resources of an ECS request.
pub(crate) fn ecs(s: Scope<'_>, operation: &str, body: &[u8]) -> Resources {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let base = format!("arn:{}:ecs:{}:{}", s.partition, s.region, s.account);
    let cluster = cluster_name(str_of(&v, "cluster").unwrap_or("default")).to_string();
    let cluster_arn = format!("{base}:cluster/{cluster}");
    let in_cluster = |kind: &str, id: &str| -> String {
        if id.starts_with("arn:") {
            id.to_string()
        } else {
            format!("{base}:{kind}/{cluster}/{id}")
        }
    };
    let cluster_key = vec![("ecs:cluster".to_string(), cluster_arn.clone())];
    let one = |arn: String| Resources { arns: vec![arn], keys: cluster_key.clone() };
    match operation {
        "DescribeClusters" => {
            let names = list_of(&v, "clusters");
            let names = if names.is_empty() { vec!["default"] } else { names };
            Resources {
                arns: names
                    .iter()
                    .map(|c| {
                        if c.starts_with("arn:") {
                            c.to_string()
                        } else {
                            format!("{base}:cluster/{c}")
                        }
                    })
                    .collect(),
                keys: vec![],
            }
        }
        "DeleteCluster"
        | "UpdateCluster"
        | "UpdateClusterSettings"
        | "PutClusterCapacityProviders"
        | "ListContainerInstances"
        | "RegisterContainerInstance"
        | "PutAttributes"
        | "ListAttributes"
        | "DeleteAttributes"
        | "SubmitTaskStateChange"
        | "SubmitContainerStateChange"
        | "SubmitAttachmentStateChanges" => one(cluster_arn.clone()),
        "DescribeContainerInstances" | "UpdateContainerInstancesState" => {
            let ids = list_of(&v, "containerInstances");
            Resources {
                arns: ids.iter().map(|i| in_cluster("container-instance", i)).collect(),
                keys: cluster_key,
            }
        }
        "DeregisterContainerInstance" | "UpdateContainerAgent" => {
            let id = str_of(&v, "containerInstance").unwrap_or("*");
            one(in_cluster("container-instance", id))
        }
        "DescribeTasks" | "UpdateTaskProtection" | "GetTaskProtection" => {
            let ids = list_of(&v, "tasks");
            Resources {
                arns: ids.iter().map(|i| in_cluster("task", i)).collect(),
                keys: cluster_key,
            }
        }
        "StopTask" => one(in_cluster("task", str_of(&v, "task").unwrap_or("*"))),
        "RunTask" | "StartTask" => {
            let td = str_of(&v, "taskDefinition").unwrap_or("*");
            let arn = if td.starts_with("arn:") {
                td.to_string()
            } else if td.contains(':') {
                format!("{base}:task-definition/{td}")
            } else {
                format!("{base}:task-definition/{td}:*")
            };
            one(arn)
        }
        "CreateService" => one(in_cluster("service", str_of(&v, "serviceName").unwrap_or("*"))),
        "UpdateService" | "DeleteService" => {
            one(in_cluster("service", str_of(&v, "service").unwrap_or("*")))
        }
        "DescribeServices" => {
            let ids = list_of(&v, "services");
            Resources {
                arns: ids.iter().map(|i| in_cluster("service", i)).collect(),
                keys: cluster_key,
            }
        }
        "ListServiceDeployments"
        | "CreateTaskSet"
        | "DeleteTaskSet"
        | "DescribeTaskSets"
        | "UpdateTaskSet"
        | "UpdateServicePrimaryTaskSet" => {
            one(in_cluster("service", str_of(&v, "service").unwrap_or("*")))
        }
        "ListTasks" | "ListServices" => Resources { arns: vec!["*".into()], keys: cluster_key },
        "TagResource" | "UntagResource" | "ListTagsForResource" => Resources {
            arns: vec![str_of(&v, "resourceArn").unwrap_or("*").to_string()],
            keys: vec![],
        },
        _ => Resources::star(),
    }
}

/// The roles an ECS request passes to tasks (each needs `iam:PassRole`): a task definition's
/// `taskRoleArn` / `executionRoleArn`, RunTask's and StartTask's `overrides`, CreateService's
/// and UpdateService's `role`.
pub(crate) fn ecs_passed_roles(operation: &str, body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut out = Vec::new();
    let mut take = |v: &Value, k: &str| {
        if let Some(r) = str_of(v, k) {
            out.push(r.to_string());
        }
    };
    match operation {
        "RegisterTaskDefinition" => {
            take(&v, "taskRoleArn");
            take(&v, "executionRoleArn");
        }
        "RunTask" | "StartTask" => {
            if let Some(o) = v.get("overrides") {
                take(o, "taskRoleArn");
                take(o, "executionRoleArn");
            }
        }
        "CreateService" | "UpdateService" => take(&v, "role"),
        _ => {}
    }
    out
}

/// The resources of a request to a JSON service other than ECS.
pub(crate) fn json(s: Scope<'_>, service: &str, _operation: &str, body: &[u8]) -> Resources {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let base = format!("arn:{}:{service}:{}:{}", s.partition, s.region, s.account);
    let arns: Vec<String> = match service {
        "logs" => str_of(&v, "logGroupName")
            .map(|g| vec![format!("{base}:log-group:{g}")])
            .unwrap_or_default(),
        "ecr" => {
            let mut names = list_of(&v, "repositoryNames");
            names.extend(str_of(&v, "repositoryName"));
            let mut arns: Vec<String> =
                names.iter().map(|r| format!("{base}:repository/{r}")).collect();
            arns.extend(str_of(&v, "resourceArn").map(str::to_string));
            arns
        }
        "ssm" => {
            let mut names: Vec<&str> = list_of(&v, "Names");
            names.extend(str_of(&v, "Name"));
            names
                .iter()
                .map(|n| {
                    if n.starts_with("arn:") {
                        n.to_string()
                    } else {
                        format!("{base}:parameter/{}", n.trim_start_matches('/'))
                    }
                })
                .collect()
        }
        "secretsmanager" => str_of(&v, "SecretId")
            .map(|id| {
                if id.starts_with("arn:") {
                    vec![id.to_string()]
                } else {
                    vec![format!("{base}:secret:{id}")]
                }
            })
            .unwrap_or_default(),
        _ => vec![],
    };
    if arns.is_empty() { Resources::star() } else { Resources { arns, keys: vec![] } }
}

/// The resources of a form-encoded request (EC2, Auto Scaling, ELBv2, IAM, STS).
pub(crate) fn form(
    s: Scope<'_>,
    service: &str,
    operation: &str,
    form: &Form,
    caller_arn: &str,
) -> Resources {
    let iam =
        |kind: &str, name: &str| format!("arn:{}:iam::{}:{kind}/{name}", s.partition, s.account);
    let mut keys = vec![];
    let arns: Vec<String> = match service {
        "elasticloadbalancing" => ["LoadBalancerArn", "TargetGroupArn", "ListenerArn", "RuleArn"]
            .iter()
            .find_map(|k| form.get(k))
            .map(|a| vec![a.to_string()])
            .unwrap_or_default(),
        "sts" => form.get("RoleArn").map(|a| vec![a.to_string()]).unwrap_or_default(),
        "iam" => {
            let principal = form
                .get("UserName")
                .map(|u| iam("user", u))
                .or_else(|| form.get("RoleName").map(|r| iam("role", r)))
                .or_else(|| form.get("GroupName").map(|g| iam("group", g)));
            if let (Some(p), Some(a)) = (&principal, form.get("PolicyArn")) {
                // Attach/Detach{User,Role,Group}Policy act on the principal; the policy is
                // the condition key `iam:PolicyARN`.
                keys.push(("iam:PolicyARN".to_string(), a.to_string()));
                vec![p.clone()]
            } else if let Some(a) = form.get("PolicyArn") {
                vec![a.to_string()]
            } else if let Some(u) = form.get("UserName") {
                vec![iam("user", u)]
            } else if let Some(r) = form.get("RoleName") {
                vec![iam("role", r)]
            } else if let Some(g) = form.get("GroupName") {
                vec![iam("group", g)]
            } else if operation == "CreatePolicy" {
                let path = form.get("Path").unwrap_or("/");
                vec![format!(
                    "arn:{}:iam::{}:policy{path}{}",
                    s.partition,
                    s.account,
                    form.get("PolicyName").unwrap_or("*")
                )]
            } else if matches!(
                operation,
                "GetUser"
                    | "CreateAccessKey"
                    | "ListAccessKeys"
                    | "UpdateAccessKey"
                    | "DeleteAccessKey"
                    | "ListGroupsForUser"
                    | "ListUserTags"
            ) && caller_arn.contains(":user/")
            {
                vec![caller_arn.to_string()]
            } else {
                vec![]
            }
        }
        _ => vec![],
    };
    if arns.is_empty() { Resources { keys, ..Resources::star() } } else { Resources { arns, keys } }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Scope<'static> =
        Scope { partition: "aws", region: "us-east-1", account: "123456789012" };
    const B: &str = "arn:aws:ecs:us-east-1:123456789012";

    fn ecs_arns(op: &str, body: &str) -> Resources {
        ecs(S, op, body.as_bytes())
    }

    #[test]
    fn ecs_operations_name_their_resources() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "DescribeClusters",
                r#"{"clusters":["a","arn:aws:ecs:us-east-1:123456789012:cluster/b"]}"#,
                &[
                    "arn:aws:ecs:us-east-1:123456789012:cluster/a",
                    "arn:aws:ecs:us-east-1:123456789012:cluster/b",
                ],
            ),
            ("DescribeClusters", "{}", &["arn:aws:ecs:us-east-1:123456789012:cluster/default"]),
            (
                "DeleteCluster",
                r#"{"cluster":"prod"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:cluster/prod"],
            ),
            (
                "ListContainerInstances",
                "{}",
                &["arn:aws:ecs:us-east-1:123456789012:cluster/default"],
            ),
            (
                "DescribeTasks",
                r#"{"cluster":"c","tasks":["t1"]}"#,
                &["arn:aws:ecs:us-east-1:123456789012:task/c/t1"],
            ),
            (
                "StopTask",
                r#"{"cluster":"arn:aws:ecs:us-east-1:123456789012:cluster/c","task":"t2"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:task/c/t2"],
            ),
            (
                "RunTask",
                r#"{"taskDefinition":"web:3"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:task-definition/web:3"],
            ),
            (
                "RunTask",
                r#"{"taskDefinition":"web"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:task-definition/web:*"],
            ),
            (
                "CreateService",
                r#"{"cluster":"c","serviceName":"s"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:service/c/s"],
            ),
            (
                "UpdateService",
                r#"{"service":"s"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:service/default/s"],
            ),
            (
                "DescribeServices",
                r#"{"cluster":"c","services":["a","b"]}"#,
                &[
                    "arn:aws:ecs:us-east-1:123456789012:service/c/a",
                    "arn:aws:ecs:us-east-1:123456789012:service/c/b",
                ],
            ),
            (
                "DescribeContainerInstances",
                r#"{"cluster":"c","containerInstances":["i"]}"#,
                &["arn:aws:ecs:us-east-1:123456789012:container-instance/c/i"],
            ),
            (
                "TagResource",
                r#"{"resourceArn":"arn:aws:ecs:us-east-1:123456789012:cluster/x"}"#,
                &["arn:aws:ecs:us-east-1:123456789012:cluster/x"],
            ),
            ("ListClusters", "{}", &["*"]),
            ("CreateCluster", r#"{"clusterName":"x"}"#, &["*"]),
            ("RegisterTaskDefinition", "{}", &["*"]),
            ("ListTasks", r#"{"cluster":"c"}"#, &["*"]),
        ];
        for (op, body, want) in cases {
            let got = ecs_arns(op, body);
            assert_eq!(
                got.arns,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{op} {body}"
            );
        }
        let r = ecs_arns("ListTasks", r#"{"cluster":"c"}"#);
        assert_eq!(r.keys, vec![("ecs:cluster".to_string(), format!("{B}:cluster/c"))]);
        let r = ecs_arns("RunTask", r#"{"taskDefinition":"web"}"#);
        assert_eq!(r.keys, vec![("ecs:cluster".to_string(), format!("{B}:cluster/default"))]);
        assert_eq!(ecs_arns("DescribeTasks", "not json").arns, Vec::<String>::new());
        assert_eq!(
            ecs_passed_roles("RegisterTaskDefinition", br#"{"taskRoleArn":"arn:aws:iam::1:role/t","executionRoleArn":"arn:aws:iam::1:role/e"}"#),
            vec!["arn:aws:iam::1:role/t", "arn:aws:iam::1:role/e"]
        );
        assert_eq!(
            ecs_passed_roles(
                "RunTask",
                br#"{"overrides":{"taskRoleArn":"arn:aws:iam::1:role/t"}}"#
            ),
            vec!["arn:aws:iam::1:role/t"]
        );
        assert!(ecs_passed_roles("RunTask", br#"{"taskDefinition":"x"}"#).is_empty());
    }

    #[test]
    fn other_services_name_what_is_obvious() {
        let r = json(S, "logs", "CreateLogGroup", br#"{"logGroupName":"/ecs/a"}"#);
        assert_eq!(r.arns, vec!["arn:aws:logs:us-east-1:123456789012:log-group:/ecs/a"]);
        let r = json(S, "ecr", "DescribeRepositories", b"{}");
        assert_eq!(r.arns, vec!["*"]);
        let r = json(S, "ecr", "DescribeRepositories", br#"{"repositoryNames":["a","b/c"]}"#);
        assert_eq!(
            r.arns,
            vec![
                "arn:aws:ecr:us-east-1:123456789012:repository/a",
                "arn:aws:ecr:us-east-1:123456789012:repository/b/c"
            ]
        );
        let arn = "arn:aws:ecr:us-east-1:123456789012:repository/x";
        let r = json(
            S,
            "ecr",
            "ListTagsForResource",
            format!(r#"{{"resourceArn":"{arn}"}}"#).as_bytes(),
        );
        assert_eq!(r.arns, vec![arn]);
        let r = json(S, "ssm", "GetParameters", br#"{"Names":["/a/b","c"]}"#);
        assert_eq!(
            r.arns,
            vec![
                "arn:aws:ssm:us-east-1:123456789012:parameter/a/b",
                "arn:aws:ssm:us-east-1:123456789012:parameter/c"
            ]
        );
        let f = Form::parse(b"Action=GetUser&UserName=bob", berth_wire::query::Flavor::Query);
        assert_eq!(
            form(S, "iam", "GetUser", &f, "x").arns,
            vec!["arn:aws:iam::123456789012:user/bob"]
        );
        let f = Form::parse(b"Action=GetUser", berth_wire::query::Flavor::Query);
        let me = "arn:aws:iam::123456789012:user/me";
        assert_eq!(form(S, "iam", "GetUser", &f, me).arns, vec![me]);
        let f = Form::parse(b"Action=DescribeVpcs", berth_wire::query::Flavor::Ec2);
        assert_eq!(form(S, "ec2", "DescribeVpcs", &f, me).arns, vec!["*"]);
        let f = Form::parse(
            b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fr",
            berth_wire::query::Flavor::Query,
        );
        assert_eq!(
            form(S, "sts", "AssumeRole", &f, me).arns,
            vec!["arn:aws:iam::123456789012:role/r"]
        );
        // Attaching a policy acts on the principal; the policy is a condition key.
        let policy = "arn:aws:iam::aws:policy/ReadOnlyAccess";
        for (op, who, arn) in [
            ("AttachRolePolicy", "RoleName=r", "arn:aws:iam::123456789012:role/r"),
            ("DetachUserPolicy", "UserName=u", "arn:aws:iam::123456789012:user/u"),
            ("AttachGroupPolicy", "GroupName=g", "arn:aws:iam::123456789012:group/g"),
        ] {
            let body = format!(
                "Action={op}&{who}&PolicyArn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess"
            );
            let f = Form::parse(body.as_bytes(), berth_wire::query::Flavor::Query);
            let r = form(S, "iam", op, &f, me);
            assert_eq!(r.arns, vec![arn], "{op}");
            assert_eq!(r.keys, vec![("iam:PolicyARN".to_string(), policy.to_string())], "{op}");
        }
        let f = Form::parse(
            b"Action=ListEntitiesForPolicy&PolicyArn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FReadOnlyAccess",
            berth_wire::query::Flavor::Query,
        );
        assert_eq!(form(S, "iam", "ListEntitiesForPolicy", &f, me).arns, vec![policy]);
    }
}
