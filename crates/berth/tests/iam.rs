//! IAM, STS and authorization on every call (issue #16), end to end against the real `berth
//! server` with the real AWS CLI (and boto3 in `py/test_iam.py`): users, groups, roles,
//! managed and inline policies, access keys; a user limited to one cluster; an explicit deny
//! over an attached allow; group policies; an inactive key refused; AssumeRole into a role
//! whose policy then governs, an untrusted principal refused; iam:PassRole; tag conditions
//! (`aws:RequestTag`, `aws:TagKeys`, `aws:ResourceTag` on ECS here, on CloudWatch Logs,
//! Secrets Manager, ECR and IAM in `py/test_iam.py`); IAM's error codes
//! and paging; AWS managed policies (attached, read, refused changes); Berth's host-access
//! actions (`py/test_host_permissions.py`). One server for the whole file.

use std::path::Path;
use std::process::Command;

use berth_testkit::{AwsResult, ServerProc};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

const ACCOUNT: &str = "123456789012";

/// Credentials other than the administrator's.
#[derive(Clone, Debug)]
struct Creds {
    id: String,
    secret: String,
    token: Option<String>,
}

/// Runs the AWS CLI against `s` with `c`'s credentials.
fn aws_as(s: &ServerProc, c: &Creds, args: &[&str]) -> AwsResult {
    let mut cmd = Command::new("aws");
    cmd.arg("--endpoint-url").arg(&s.endpoint).args(["--output", "json"]).args(args);
    s.client_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", &c.id).env("AWS_SECRET_ACCESS_KEY", &c.secret);
    match &c.token {
        Some(t) => cmd.env("AWS_SESSION_TOKEN", t),
        None => cmd.env_remove("AWS_SESSION_TOKEN"),
    };
    AwsResult::from(cmd.output().expect("the AWS CLI (aws) must be installed"))
}

fn ok(s: &ServerProc, args: &[&str]) -> Value {
    let r = s.aws(args);
    assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
    r.json()
}

fn ok_as(s: &ServerProc, c: &Creds, args: &[&str]) -> Value {
    let r = aws_as(s, c, args);
    assert!(r.ok, "aws {args:?} as {} failed: {}", c.id, r.stderr);
    r.json()
}

fn doc(statements: Value) -> String {
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn new_user(s: &ServerProc, name: &str) -> Creds {
    ok(s, &["iam", "create-user", "--user-name", name]);
    let k = ok(s, &["iam", "create-access-key", "--user-name", name]);
    Creds {
        id: k["AccessKey"]["AccessKeyId"].as_str().unwrap().to_string(),
        secret: k["AccessKey"]["SecretAccessKey"].as_str().unwrap().to_string(),
        token: None,
    }
}

fn cluster_arn(name: &str) -> String {
    format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/{name}")
}

#[test]
fn iam_users_roles_and_authorization_with_the_aws_cli() {
    let s = ServerProc::start(bin()).expect("server");
    ok(&s, &["ecs", "create-cluster", "--cluster-name", "dev"]);
    ok(&s, &["ecs", "create-cluster", "--cluster-name", "prod"]);

    // --- A user limited to one cluster (a customer managed policy, attached).
    let alice = new_user(&s, "alice");
    let dev_only = doc(json!([
        {"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": cluster_arn("dev")},
        {"Effect": "Allow", "Action": ["ecs:List*"], "Resource": "*"}
    ]));
    let p = ok(
        &s,
        &["iam", "create-policy", "--policy-name", "dev-only", "--policy-document", &dev_only],
    );
    let dev_only_arn = p["Policy"]["Arn"].as_str().unwrap().to_string();
    assert_eq!(dev_only_arn, format!("arn:aws:iam::{ACCOUNT}:policy/dev-only"));
    // Before any policy: denied.
    aws_as(&s, &alice, &["ecs", "list-clusters"]).err("AccessDeniedException");
    ok(&s, &["iam", "attach-user-policy", "--user-name", "alice", "--policy-arn", &dev_only_arn]);
    let d = ok_as(&s, &alice, &["ecs", "describe-clusters", "--clusters", "dev"]);
    assert_eq!(d["clusters"][0]["clusterName"], "dev");
    let r = aws_as(&s, &alice, &["ecs", "describe-clusters", "--clusters", "prod"]);
    let msg = r.err("AccessDeniedException");
    let want = format!(
        "User: arn:aws:iam::{ACCOUNT}:user/alice is not authorized to perform: ecs:DescribeClusters on resource: {} because no identity-based policy allows the ecs:DescribeClusters action",
        cluster_arn("prod")
    );
    assert!(msg.contains(&want), "{msg}");
    // Another service is denied too (nothing allows ec2:*), in EC2's envelope.
    aws_as(&s, &alice, &["ec2", "describe-vpcs"]).err("UnauthorizedOperation");

    // --- An explicit deny beats the attached allow.
    let deny =
        doc(json!([{"Effect": "Deny", "Action": "ecs:Describe*", "Resource": cluster_arn("dev")}]));
    let put_user_policy = |name: &str, document: &str| {
        ok(
            &s,
            &[
                "iam",
                "put-user-policy",
                "--user-name",
                "alice",
                "--policy-name",
                name,
                "--policy-document",
                document,
            ],
        );
    };
    put_user_policy("no-dev", &deny);
    let r = aws_as(&s, &alice, &["ecs", "describe-clusters", "--clusters", "dev"]);
    let msg = r.err("AccessDeniedException");
    assert!(msg.contains("with an explicit deny in an identity-based policy"), "{msg}");
    ok(&s, &["iam", "delete-user-policy", "--user-name", "alice", "--policy-name", "no-dev"]);

    // --- Group policies apply to members; policy variables resolve.
    ok(&s, &["iam", "create-group", "--group-name", "ops"]);
    let ops = doc(json!([
        {"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": cluster_arn("prod")},
        {"Effect": "Allow", "Action": "iam:GetUser",
         "Resource": format!("arn:aws:iam::{ACCOUNT}:user/${{aws:username}}")}
    ]));
    ok(
        &s,
        &[
            "iam",
            "put-group-policy",
            "--group-name",
            "ops",
            "--policy-name",
            "ops",
            "--policy-document",
            &ops,
        ],
    );
    ok(&s, &["iam", "add-user-to-group", "--group-name", "ops", "--user-name", "alice"]);
    ok_as(&s, &alice, &["ecs", "describe-clusters", "--clusters", "dev", "prod"]);
    let me = ok_as(&s, &alice, &["iam", "get-user"]);
    assert_eq!(me["User"]["UserName"], "alice");

    // --- An inactive key is refused as AWS does, in each protocol; active again, accepted.
    let set_status = |status: &str| {
        ok(
            &s,
            &[
                "iam",
                "update-access-key",
                "--user-name",
                "alice",
                "--access-key-id",
                &alice.id,
                "--status",
                status,
            ],
        );
    };
    set_status("Inactive");
    aws_as(&s, &alice, &["sts", "get-caller-identity"]).err("InvalidClientTokenId");
    aws_as(&s, &alice, &["ecs", "list-clusters"]).err("UnrecognizedClientException");
    set_status("Active");
    let me = ok_as(&s, &alice, &["sts", "get-caller-identity"]);
    assert_eq!(me["Arn"], format!("arn:aws:iam::{ACCOUNT}:user/alice"));

    // --- AssumeRole: a role trusting alice, whose own policy then governs.
    let trust = doc(json!([{"Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:user/alice")}}]));
    let role = ok(
        &s,
        &["iam", "create-role", "--role-name", "deployer", "--assume-role-policy-document", &trust],
    );
    let role_arn = role["Role"]["Arn"].as_str().unwrap().to_string();
    let role_policy = doc(
        json!([{"Effect": "Allow", "Action": "ecs:DescribeClusters", "Resource": cluster_arn("prod")}]),
    );
    ok(
        &s,
        &[
            "iam",
            "put-role-policy",
            "--role-name",
            "deployer",
            "--policy-name",
            "prod",
            "--policy-document",
            &role_policy,
        ],
    );
    let a = ok_as(
        &s,
        &alice,
        &["sts", "assume-role", "--role-arn", &role_arn, "--role-session-name", "s1"],
    );
    let session = Creds {
        id: a["Credentials"]["AccessKeyId"].as_str().unwrap().to_string(),
        secret: a["Credentials"]["SecretAccessKey"].as_str().unwrap().to_string(),
        token: Some(a["Credentials"]["SessionToken"].as_str().unwrap().to_string()),
    };
    assert!(session.id.starts_with("ASIA"), "{a}");
    let session_arn = format!("arn:aws:sts::{ACCOUNT}:assumed-role/deployer/s1");
    assert_eq!(a["AssumedRoleUser"]["Arn"], session_arn);
    let me = ok_as(&s, &session, &["sts", "get-caller-identity"]);
    assert_eq!(me["Arn"], session_arn);
    assert!(me["UserId"].as_str().unwrap().ends_with(":s1"), "{me}");
    ok_as(&s, &session, &["ecs", "describe-clusters", "--clusters", "prod"]);
    let r = aws_as(&s, &session, &["ecs", "describe-clusters", "--clusters", "dev"]);
    let msg = r.err("AccessDeniedException");
    assert!(
        msg.contains(&format!(
            "User: {session_arn} is not authorized to perform: ecs:DescribeClusters"
        )),
        "{msg}"
    );

    // An untrusted principal (even one allowed everything) is refused.
    let bob = new_user(&s, "bob");
    let all = doc(json!([{"Effect": "Allow", "Action": "*", "Resource": "*"}]));
    ok(
        &s,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "bob",
            "--policy-name",
            "all",
            "--policy-document",
            &all,
        ],
    );
    let r = aws_as(
        &s,
        &bob,
        &["sts", "assume-role", "--role-arn", &role_arn, "--role-session-name", "bob"],
    );
    let msg = r.err("AccessDenied");
    assert!(msg.contains("sts:AssumeRole") && msg.contains("user/bob"), "{msg}");

    // --- iam:PassRole is required to hand a role to tasks.
    let td = json!({"family": "web", "taskRoleArn": role_arn,
        "containerDefinitions": [{"name": "web", "image": "berth-demo:latest", "memory": 64}]});
    let td_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(td_file.path(), td.to_string()).unwrap();
    let td_arg = format!("file://{}", td_file.path().display());
    put_user_policy(
        "register",
        &doc(json!([{"Effect": "Allow", "Action": "ecs:RegisterTaskDefinition", "Resource": "*"}])),
    );
    let r = aws_as(&s, &alice, &["ecs", "register-task-definition", "--cli-input-json", &td_arg]);
    let msg = r.err("AccessDeniedException");
    assert!(msg.contains(&format!("iam:PassRole on resource: {role_arn}")), "{msg}");
    put_user_policy(
        "register",
        &doc(json!([
            {"Effect": "Allow", "Action": "ecs:RegisterTaskDefinition", "Resource": "*"},
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role_arn,
             "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}
        ])),
    );
    let t = ok_as(&s, &alice, &["ecs", "register-task-definition", "--cli-input-json", &td_arg]);
    assert_eq!(t["taskDefinition"]["taskRoleArn"], role_arn.as_str());

    // --- IAM's errors through the CLI (the rest, with paging and policy versions, in boto3).
    let msg = s.aws(&["iam", "get-user", "--user-name", "nobody"]).err("NoSuchEntity").to_string();
    assert!(msg.contains("The user with name nobody cannot be found."), "{msg}");
    s.aws(&["iam", "delete-user", "--user-name", "bob"]).err("DeleteConflict");

    // --- AWS managed policies (the built-in catalog): attached, they decide; they read as
    // AWS answers them; they cannot be changed.
    let ecr_ro = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly";
    let viewer = new_user(&s, "registry-viewer");
    ok(&s, &["ecr", "create-repository", "--repository-name", "team/app"]);
    aws_as(&s, &viewer, &["ecr", "describe-repositories"]).err("AccessDeniedException");
    ok(
        &s,
        &["iam", "attach-user-policy", "--user-name", "registry-viewer", "--policy-arn", ecr_ro],
    );
    let d = ok_as(&s, &viewer, &["ecr", "describe-repositories"]);
    assert_eq!(d["repositories"][0]["repositoryName"], "team/app", "{d}");
    let r = aws_as(&s, &viewer, &["ecr", "create-repository", "--repository-name", "team/new"]);
    let msg = r.err("AccessDeniedException");
    assert!(
        msg.contains("registry-viewer is not authorized to perform: ecr:CreateRepository"),
        "{msg}"
    );
    let p = ok(&s, &["iam", "get-policy", "--policy-arn", ecr_ro]);
    assert_eq!(p["Policy"]["PolicyId"], "ANPAIFYZPA37OOHVIH7KQ", "{p}");
    assert_eq!(p["Policy"]["DefaultVersionId"], "v3", "{p}");
    assert_eq!(p["Policy"]["AttachmentCount"], 1, "{p}");
    assert!(p["Policy"]["CreateDate"].as_str().unwrap().starts_with("2015-12-21T17:04:15"), "{p}");
    let v = ok(&s, &["iam", "get-policy-version", "--policy-arn", ecr_ro, "--version-id", "v3"]);
    let actions = &v["PolicyVersion"]["Document"]["Statement"][0]["Action"];
    assert!(actions.as_array().unwrap().contains(&json!("ecr:DescribeRepositories")), "{v}");
    let e = ok(&s, &["iam", "list-entities-for-policy", "--policy-arn", ecr_ro]);
    assert_eq!(e["PolicyUsers"][0]["UserName"], "registry-viewer", "{e}");
    let names = |scope: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["iam", "list-policies", "--scope", scope];
        args.extend_from_slice(extra);
        ok(&s, &args)["Policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["Arn"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("AWS", &["--only-attached"]), vec![ecr_ro.to_string()]);
    let aws = names("AWS", &[]);
    assert!(aws.len() >= 16 && aws.iter().all(|a| a.starts_with("arn:aws:iam::aws:policy/")));
    assert!(aws.contains(&"arn:aws:iam::aws:policy/AdministratorAccess".to_string()));
    assert_eq!(names("Local", &[]), vec![dev_only_arn.clone()]);
    assert_eq!(names("All", &[]).len(), aws.len() + 1);
    let path = names("AWS", &["--path-prefix", "/service-role/"]);
    assert!(path.contains(
        &"arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy".to_string()
    ));
    for args in [
        vec!["delete-policy"],
        vec!["create-policy-version", "--policy-document", all.as_str()],
        vec!["set-default-policy-version", "--version-id", "v3"],
        vec!["delete-policy-version", "--version-id", "v3"],
    ] {
        let mut cmd = vec!["iam"];
        cmd.extend_from_slice(&args);
        cmd.extend_from_slice(&["--policy-arn", ecr_ro]);
        let r = s.aws(&cmd);
        assert!(r.err("InvalidInput").contains("AWS managed policy"), "{args:?}: {}", r.stderr);
    }
    let msg = s
        .aws(&["iam", "get-policy", "--policy-arn", "arn:aws:iam::aws:policy/NoSuchPolicy"])
        .err("NoSuchEntity")
        .to_string();
    assert!(msg.contains("does not exist or is not attachable"), "{msg}");
    ok(
        &s,
        &["iam", "detach-user-policy", "--user-name", "registry-viewer", "--policy-arn", ecr_ro],
    );
    aws_as(&s, &viewer, &["ecr", "describe-repositories"]).err("AccessDeniedException");
    assert!(names("AWS", &["--only-attached"]).is_empty());

    // --- Tags decide: aws:RequestTag on creation, aws:ResourceTag (looked up from Berth's
    // records) on deletion.
    let tagger = new_user(&s, "tagger");
    let by_tag = doc(json!([
        {"Effect": "Allow", "Action": "ecs:CreateCluster", "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}}},
        {"Effect": "Allow", "Action": ["ecs:DeleteCluster", "ecs:TagResource"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/team": "blue"}}}
    ]));
    ok(
        &s,
        &[
            "iam",
            "put-user-policy",
            "--user-name",
            "tagger",
            "--policy-name",
            "by-tag",
            "--policy-document",
            &by_tag,
        ],
    );
    let create = |name: &str, tags: &[&str]| {
        let mut args = vec!["ecs", "create-cluster", "--cluster-name", name];
        if !tags.is_empty() {
            args.push("--tags");
            args.extend_from_slice(tags);
        }
        aws_as(&s, &tagger, &args)
    };
    let c = create("team-blue", &["key=team,value=blue", "key=env,value=dev"]);
    assert!(c.ok, "{}", c.stderr);
    assert_eq!(c.json()["cluster"]["tags"][0]["value"], "blue");
    let msg = create("team-red", &["key=team,value=red"]).err("AccessDeniedException").to_string();
    assert!(msg.contains("tagger is not authorized to perform: ecs:CreateCluster"), "{msg}");
    create("team-none", &[]).err("AccessDeniedException");
    ok(&s, &["ecs", "create-cluster", "--cluster-name", "team-admin"]);
    let delete = |name: &str| aws_as(&s, &tagger, &["ecs", "delete-cluster", "--cluster", name]);
    let msg = delete("team-admin").err("AccessDeniedException").to_string();
    assert!(msg.contains(&format!("ecs:DeleteCluster on resource: {}", cluster_arn("team-admin"))));
    let d = delete("team-blue");
    assert!(d.ok, "{}", d.stderr);
    assert_eq!(d.json()["cluster"]["status"], "INACTIVE");
    ok(&s, &["ecs", "delete-cluster", "--cluster", "team-admin"]);
    // A task definition revision's tags.
    let container = r#"[{"name":"c","image":"berth-demo:latest","memory":64}]"#;
    let mut revisions = vec![];
    for (family, tags) in [("td-blue", "key=team,value=blue"), ("td-plain", "key=env,value=dev")] {
        let t = ok(
            &s,
            &[
                "ecs",
                "register-task-definition",
                "--family",
                family,
                "--container-definitions",
                container,
                "--tags",
                tags,
            ],
        );
        revisions.push(t["taskDefinition"]["taskDefinitionArn"].as_str().unwrap().to_string());
    }
    let tag = |arn: &str| {
        aws_as(
            &s,
            &tagger,
            &["ecs", "tag-resource", "--resource-arn", arn, "--tags", "key=x,value=y"],
        )
    };
    let t = tag(&revisions[0]);
    assert!(t.ok, "{}", t.stderr);
    let msg = tag(&revisions[1]).err("AccessDeniedException").to_string();
    assert!(msg.contains(&format!("ecs:TagResource on resource: {}", revisions[1])), "{msg}");
    let listed = ok(&s, &["ecs", "list-tags-for-resource", "--resource-arn", &revisions[0]]);
    assert_eq!(listed["tags"].as_array().unwrap().len(), 2, "{listed}");

    // --- boto3: the same API through botocore's models and parsers (py/test_iam.py).
    let out =
        s.python(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/test_iam.py")), &[]);
    assert!(
        out.status.success(),
        "test_iam.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // --- Host safety: Berth's own IAM actions for privileged / host-reaching task
    // definitions (py/test_host_permissions.py).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/test_host_permissions.py");
    let out = s.python(Path::new(script), &[]);
    assert!(
        out.status.success(),
        "test_host_permissions.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
