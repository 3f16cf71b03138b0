//! The ECR-compatible registry end to end (issue #14), against the real `berth up`, the real
//! Docker CLI and the real AWS CLI: build an image, log in with `get-login-password`, push,
//! see it in `describe-images`, pull it back, an IMMUTABLE tag refuses an overwrite (docker
//! push and PutImage alike), a task runs from the pushed image (by its repositoryUri and in
//! ECR's own `ACCOUNT.dkr.ecr.REGION.amazonaws.com` form) and a missing tag stops a task
//! with `CannotPullContainerError`, then a delete and a garbage collection reclaim the space.
//! A second test checks the per-repository authorization of registry requests, a third that
//! of ECR API calls (repository policies).
//!
//! Docker's login is kept in a temporary `DOCKER_CONFIG`; every image tagged here is removed
//! (`docker rmi`) and every container by the `berth up` cleanup.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_testkit::{ACCOUNT_ID, REGION, ServerProc, UpCleanup, require_demo_image};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

/// Runs the Docker CLI with the test's own config directory.
struct DockerCli {
    config: tempfile::TempDir,
    /// Local tags to remove at the end.
    tagged: std::cell::RefCell<Vec<String>>,
}

impl DockerCli {
    fn new() -> Self {
        Self { config: tempfile::tempdir().expect("temp dir"), tagged: Default::default() }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_CONFIG", self.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("docker CLI");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().expect("docker CLI")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert!(o.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Builds an image from the demo image plus a layer of `payload_len` random bytes.
    fn build(&self, tag: &str, payload_len: usize) {
        let dir = tempfile::tempdir().unwrap();
        let mut payload = vec![0u8; payload_len];
        getrandom(&mut payload);
        std::fs::write(dir.path().join("payload"), &payload).unwrap();
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM berth-demo:latest\nCOPY payload /payload\n",
        )
        .unwrap();
        self.tagged.borrow_mut().push(tag.to_string());
        let id = self.ok(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
        // Removed by id at the end too: a pushed image keeps its repository digest after
        // its tags go.
        self.tagged.borrow_mut().push(id.trim().to_string());
    }

    fn tag(&self, from: &str, to: &str) {
        self.tagged.borrow_mut().push(to.to_string());
        self.ok(&["tag", from, to]);
    }
}

impl Drop for DockerCli {
    fn drop(&mut self) {
        for t in self.tagged.borrow().iter() {
            let _ = self.run(&["rmi", "-f", t], None);
        }
    }
}

/// Random bytes from the kernel (no extra crate for one test).
fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").unwrap().read_exact(buf).unwrap();
}

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    for e in entries.flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

#[test]
fn push_pull_run_and_collect() {
    require_demo_image();
    let tmp = tempfile::Builder::new().prefix("berth-ecr-").tempdir().unwrap();
    let data: PathBuf = tmp.path().join("data");
    let _cleanup = UpCleanup(data.clone());
    let s = ServerProc::start_up(bin(), &data, &[]).expect("berth up");
    let docker = DockerCli::new();
    let ok = |args: &[&str]| s.aws(args).json();

    // Repositories.
    let repo = ok(&["ecr", "create-repository", "--repository-name", "e2e/app"]);
    let uri = repo["repository"]["repositoryUri"].as_str().unwrap().to_string();
    let host = uri.split_once('/').unwrap().0.to_string();
    assert!(host.starts_with("127.0.0.1:"), "{uri}");
    assert_eq!(
        repo["repository"]["repositoryArn"],
        format!("arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/e2e/app")
    );
    s.aws(&["ecr", "create-repository", "--repository-name", "e2e/app"])
        .err("RepositoryAlreadyExistsException");
    let frozen = ok(&[
        "ecr",
        "create-repository",
        "--repository-name",
        "e2e/frozen",
        "--image-tag-mutability",
        "IMMUTABLE",
    ]);
    let frozen_uri = frozen["repository"]["repositoryUri"].as_str().unwrap().to_string();

    // Without logging in, the registry asks for credentials.
    docker.build(&format!("{uri}:v1"), 512 * 1024);
    let denied = docker.run(&["push", &format!("{uri}:v1")], None);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("no basic auth credentials"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    // Log in as ECR users do.
    let password = s.aws(&["ecr", "get-login-password"]);
    assert!(password.ok, "{}", password.stderr);
    let login = docker.run(
        &["login", "--username", "AWS", "--password-stdin", &host],
        Some(password.stdout.trim()),
    );
    assert!(login.status.success(), "docker login: {}", String::from_utf8_lossy(&login.stderr));
    let wrong =
        docker.run(&["login", "--username", "AWS", "--password-stdin", &host], Some("nope"));
    assert!(!wrong.status.success(), "a wrong password is refused");
    let login = docker.run(
        &["login", "--username", "AWS", "--password-stdin", &host],
        Some(password.stdout.trim()),
    );
    assert!(login.status.success());

    // Push, and see it through the ECR API.
    docker.ok(&["push", &format!("{uri}:v1")]);
    let images = ok(&["ecr", "describe-images", "--repository-name", "e2e/app"]);
    let detail = &images["imageDetails"][0];
    assert_eq!(detail["imageTags"], serde_json::json!(["v1"]), "{images}");
    assert!(detail["imageSizeInBytes"].as_i64().unwrap() > 512 * 1024, "{detail}");
    assert_eq!(
        detail["imageManifestMediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(detail["imagePushedAt"].is_number() || detail["imagePushedAt"].is_string());
    let digest = detail["imageDigest"].as_str().unwrap().to_string();
    let listed = ok(&["ecr", "list-images", "--repository-name", "e2e/app"]);
    assert_eq!(listed["imageIds"][0]["imageDigest"], digest.as_str());

    // Pull it back after removing it locally.
    docker.ok(&["rmi", &format!("{uri}:v1")]);
    docker.ok(&["pull", &format!("{uri}:v1")]);
    docker.ok(&["pull", &format!("{uri}@{digest}")]);

    // skopeo, a second client: copies the image out into an OCI layout and back in under a new
    // tag (now an OCI manifest), which ECR lists with its media type and skopeo reads back.
    match skopeo() {
        Some(skopeo) => {
            let layout = tempfile::tempdir().unwrap();
            let oci = format!("oci:{}:v1", layout.path().display());
            let creds = format!("AWS:{}", password.stdout.trim());
            let run = |args: &[&str]| {
                let o = Command::new(&skopeo).args(args).output().expect("skopeo");
                assert!(
                    o.status.success(),
                    "skopeo {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                String::from_utf8_lossy(&o.stdout).into_owned()
            };
            let src = format!("docker://{uri}:v1");
            run(&["copy", "--src-tls-verify=false", "--src-creds", &creds, &src, &oci]);
            let dst = format!("docker://{uri}:skopeo");
            run(&["copy", "--dest-tls-verify=false", "--dest-creds", &creds, &oci, &dst]);
            let inspected: serde_json::Value = serde_json::from_str(&run(&[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &creds,
                &dst,
            ]))
            .unwrap();
            let copied = ok(&[
                "ecr",
                "describe-images",
                "--repository-name",
                "e2e/app",
                "--image-ids",
                "imageTag=skopeo",
            ]);
            let d = &copied["imageDetails"][0];
            assert_eq!(d["imageManifestMediaType"], "application/vnd.oci.image.manifest.v1+json");
            assert_eq!(inspected["Digest"], d["imageDigest"], "{inspected} {copied}");
            assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(layers_of(&s)));
            // Wrong credentials are refused to skopeo as to docker.
            let denied = Command::new(&skopeo)
                .args(["inspect", "--tls-verify=false", "--creds", "AWS:nope", &dst])
                .output()
                .unwrap();
            assert!(!denied.status.success());
            ok(&[
                "ecr",
                "batch-delete-image",
                "--repository-name",
                "e2e/app",
                "--image-ids",
                "imageTag=skopeo",
            ]);
        }
        None => eprintln!("skipping the skopeo part: skopeo is not installed"),
    }

    // An IMMUTABLE tag refuses an overwrite, by docker push and by PutImage.
    docker.tag(&format!("{uri}:v1"), &format!("{frozen_uri}:v1"));
    docker.ok(&["push", &format!("{frozen_uri}:v1")]);
    docker.build(&format!("{frozen_uri}:v1"), 64 * 1024);
    let refused = docker.run(&["push", &format!("{frozen_uri}:v1")], None);
    assert!(!refused.status.success(), "pushing over an immutable tag must fail");
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("tag invalid") || err.contains("cannot be overwritten"), "{err}");
    docker.tag(&format!("{frozen_uri}:v1"), &format!("{frozen_uri}:v2"));
    docker.ok(&["push", &format!("{frozen_uri}:v2")]);
    let v2 = ok(&[
        "ecr",
        "batch-get-image",
        "--repository-name",
        "e2e/frozen",
        "--image-ids",
        "imageTag=v2",
    ]);
    let manifest = v2["images"][0]["imageManifest"].as_str().unwrap().to_string();
    s.aws(&[
        "ecr",
        "put-image",
        "--repository-name",
        "e2e/frozen",
        "--image-tag",
        "v1",
        "--image-manifest",
        &manifest,
    ])
    .err("ImageTagAlreadyExistsException");
    // A new tag on the same image is fine through PutImage.
    ok(&[
        "ecr",
        "put-image",
        "--repository-name",
        "e2e/frozen",
        "--image-tag",
        "v3",
        "--image-manifest",
        &manifest,
    ]);

    // Tags, a repository policy and a lifecycle policy preview: frozen holds v1 (pushed
    // first) and v2/v3 (one image), so "keep one v* image" expires v1's.
    let arn = frozen["repository"]["repositoryArn"].as_str().unwrap().to_string();
    ok(&["ecr", "tag-resource", "--resource-arn", &arn, "--tags", "Key=team,Value=e2e"]);
    let tags = ok(&["ecr", "list-tags-for-resource", "--resource-arn", &arn]);
    assert_eq!(tags["tags"], serde_json::json!([{"Key": "team", "Value": "e2e"}]));
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Sid":"pull","Effect":"Allow","Principal":"*","Action":["ecr:BatchGetImage"]}]}"#;
    ok(&[
        "ecr",
        "set-repository-policy",
        "--repository-name",
        "e2e/frozen",
        "--policy-text",
        policy,
    ]);
    let got = ok(&["ecr", "get-repository-policy", "--repository-name", "e2e/frozen"]);
    assert_eq!(got["policyText"], policy);
    let rules = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    s.aws(&[
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        "e2e/frozen",
        "--lifecycle-policy-text",
        &rules.replace("\"countNumber\":1", "\"countNumber\":0"),
    ])
    .err("InvalidParameterException");
    ok(&[
        "ecr",
        "put-lifecycle-policy",
        "--repository-name",
        "e2e/frozen",
        "--lifecycle-policy-text",
        rules,
    ]);
    ok(&["ecr", "start-lifecycle-policy-preview", "--repository-name", "e2e/frozen"]);
    let preview = ok(&["ecr", "get-lifecycle-policy-preview", "--repository-name", "e2e/frozen"]);
    assert_eq!(preview["status"], "COMPLETE", "{preview}");
    assert_eq!(preview["previewResults"][0]["imageDigest"], digest.as_str(), "{preview}");
    assert_eq!(preview["previewResults"][0]["appliedRulePriority"], 1);
    assert_eq!(preview["summary"]["expiringImageTotalCount"], 1);

    // Tasks pull from the registry with the agent's ECR token: by repositoryUri and in ECR's
    // own form. The images are not local any more.
    for r in [format!("{uri}:v1"), format!("{uri}@{digest}")] {
        let _ = docker.run(&["rmi", &r], None);
        assert!(
            !docker.run(&["image", "inspect", &r], None).status.success(),
            "{r} is still local"
        );
    }
    let ecr_form = format!("{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/e2e/app:v1");
    let td = s.register_task_definition(&serde_json::json!({
        "family": "ecr-app",
        "containerDefinitions": [
            {"name": "by-uri", "image": format!("{uri}:v1"), "memory": 64, "essential": true},
            {"name": "by-ecr-name", "image": ecr_form, "memory": 64, "essential": true},
        ],
    }));
    assert!(td["taskDefinition"]["taskDefinitionArn"].is_string(), "{td}");
    let run = ok(&["ecs", "run-task", "--task-definition", "ecr-app"]);
    let task = run["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{run}")).to_string();
    let waited = s.aws(&["ecs", "wait", "tasks-running", "--tasks", &task]);
    let described = ok(&["ecs", "describe-tasks", "--tasks", &task]);
    assert!(waited.ok, "the task did not run: {described}");
    assert_eq!(described["tasks"][0]["lastStatus"], "RUNNING");
    ok(&["ecs", "stop-task", "--task", &task]);

    // A missing tag stops the task with ECS's CannotPullContainerError.
    s.register_task_definition(&serde_json::json!({
        "family": "ecr-missing",
        "containerDefinitions": [{"name": "c", "image": format!("{uri}:nope"), "memory": 64}],
    }));
    let run = ok(&["ecs", "run-task", "--task-definition", "ecr-missing"]);
    let missing =
        run["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{run}")).to_string();
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &missing]).ok);
    let stopped = ok(&["ecs", "describe-tasks", "--tasks", &missing]);
    let reason = stopped["tasks"][0]["stoppedReason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{stopped}");
    assert_eq!(stopped["tasks"][0]["stopCode"], "TaskFailedToStart");
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &task]).ok);

    // A task with an execution role pulls as that role: the registry decides with the role's
    // policies (not the instance's pull-only token).
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = ok(&[
        "iam",
        "create-role",
        "--role-name",
        "pull-exec",
        "--assume-role-policy-document",
        trust,
    ]);
    let role_arn = role["Role"]["Arn"].as_str().unwrap_or_else(|| panic!("{role}")).to_string();
    let token_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"}]}"#;
    let put_policy = |name: &str, doc: &str| {
        let put = s.aws(&[
            "iam",
            "put-role-policy",
            "--role-name",
            "pull-exec",
            "--policy-name",
            name,
            "--policy-document",
            doc,
        ]);
        assert!(put.ok, "{}", put.stderr);
    };
    s.register_task_definition(&serde_json::json!({
        "family": "ecr-exec",
        "executionRoleArn": role_arn,
        "containerDefinitions": [{"name": "c", "image": format!("{uri}:v1"), "memory": 64}],
    }));
    let run_exec = || {
        for r in [format!("{uri}:v1"), format!("{uri}@{digest}")] {
            let _ = docker.run(&["rmi", "-f", &r], None);
        }
        let run = ok(&["ecs", "run-task", "--task-definition", "ecr-exec"]);
        run["tasks"][0]["taskArn"].as_str().unwrap_or_else(|| panic!("{run}")).to_string()
    };
    // Without ecr:GetAuthorizationToken the role gets no token at all.
    let no_token = run_exec();
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &no_token]).ok);
    let stopped = ok(&["ecs", "describe-tasks", "--tasks", &no_token]);
    let reason = stopped["tasks"][0]["stoppedReason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{stopped}");
    assert!(reason.contains("ecr:GetAuthorizationToken"), "{stopped}");
    // A token, but no right to pull from the repository: the registry refuses.
    put_policy("token", token_only);
    let denied = run_exec();
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &denied]).ok);
    let stopped = ok(&["ecs", "describe-tasks", "--tasks", &denied]);
    let reason = stopped["tasks"][0]["stoppedReason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{stopped}");
    assert!(reason.contains("denied"), "the role may not pull yet: {stopped}");
    let pull = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/e2e/app"}}]}}"#
    );
    put_policy("pull", &pull);
    let allowed = run_exec();
    let waited = s.aws(&["ecs", "wait", "tasks-running", "--tasks", &allowed]);
    let described = ok(&["ecs", "describe-tasks", "--tasks", &allowed]);
    assert!(waited.ok, "the role's task did not run: {described}");
    ok(&["ecs", "stop-task", "--task", &allowed]);
    assert!(s.aws(&["ecs", "wait", "tasks-stopped", "--tasks", &allowed]).ok);

    // Delete every image, then collect: the space comes back.
    let blobs = data.join("registry").join("blobs");
    let before = du(&blobs);
    s.aws(&["ecr", "delete-repository", "--repository-name", "e2e/frozen"])
        .err("RepositoryNotEmptyException");
    ok(&["ecr", "delete-repository", "--repository-name", "e2e/frozen", "--force"]);
    let deleted = ok(&[
        "ecr",
        "batch-delete-image",
        "--repository-name",
        "e2e/app",
        "--image-ids",
        "imageTag=v1",
    ]);
    assert_eq!(deleted["imageIds"][0]["imageDigest"], digest.as_str(), "{deleted}");
    let empty = ok(&["ecr", "list-images", "--repository-name", "e2e/app"]);
    assert_eq!(empty["imageIds"], serde_json::json!([]));
    let gc = Command::new(bin())
        .args(["registry", "gc", "--grace-secs", "0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(gc.status.success(), "berth registry gc: {}", String::from_utf8_lossy(&gc.stderr));
    let report: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert!(report["bytesFreed"].as_u64().unwrap() > 512 * 1024, "{report}");
    let after = du(&blobs);
    assert!(after + 512 * 1024 < before, "{before} -> {after} bytes");
    assert_eq!(after, 0, "no image is left, so no blob is");
    ok(&["ecr", "delete-repository", "--repository-name", "e2e/app"]);
}

/// Per-repository authorization of registry requests (boto3, and plain HTTP with the tokens
/// GetAuthorizationToken issues): a user allowed pull on one repository only, a repository
/// policy granting another user pull, explicit denies winning, a role session's token
/// (`py/test_ecr_auth.py`). A plain `berth server`: no agent, no Docker.
#[test]
fn registry_requests_are_authorized_per_repository() {
    let s = ServerProc::start(bin()).expect("berth server");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_ecr_auth.py");
    let out = s.python(&script, &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the AWS CLI against `s` as another principal (`(access key id, secret)`).
fn aws_as(s: &ServerProc, key: &(String, String), args: &[&str]) -> berth_testkit::AwsResult {
    let mut cmd = Command::new("aws");
    cmd.arg("--endpoint-url").arg(&s.endpoint).args(["--output", "json"]).args(args);
    s.client_env(&mut cmd);
    cmd.env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env_remove("AWS_SESSION_TOKEN");
    berth_testkit::AwsResult::from(cmd.output().expect("the AWS CLI (aws) must be installed"))
}

/// The ECR API consults repository policies as the registry does (the AWS CLI against a plain
/// `berth server`): a user with no policy of its own is denied DescribeImages until a
/// repository policy names it, and is still denied what that policy does not grant; an
/// explicit deny in a repository policy beats an identity `ecr:*`, on a repository named by
/// name, in a list of names, or by ARN; the administrator is bound by a repository policy's
/// deny but can always read, replace and delete that policy to get back in.
#[test]
fn api_calls_are_authorized_with_repository_policies() {
    let s = ServerProc::start(bin()).expect("berth server");
    let ok = |args: &[&str]| s.aws(args).json();
    let arn = |r: &str| format!("arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/{r}");
    for r in ["pol/a", "pol/b", "pol/c"] {
        ok(&["ecr", "create-repository", "--repository-name", r]);
    }
    let user = |name: &str| -> (String, String) {
        ok(&["iam", "create-user", "--user-name", name]);
        let k = ok(&["iam", "create-access-key", "--user-name", name]);
        let k = &k["AccessKey"];
        (k["AccessKeyId"].as_str().unwrap().into(), k["SecretAccessKey"].as_str().unwrap().into())
    };
    let policy = |statements: serde_json::Value| {
        serde_json::json!({"Version": "2012-10-17", "Statement": statements}).to_string()
    };
    let set_policy = |repo: &str, text: &str| {
        ok(&["ecr", "set-repository-policy", "--repository-name", repo, "--policy-text", text])
    };

    // A user with no identity policy: denied, until pol/a's policy names it.
    let viewer = user("viewer");
    let viewer_arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/viewer");
    let describe_a = ["ecr", "describe-images", "--repository-name", "pol/a"];
    let m = aws_as(&s, &viewer, &describe_a).err("AccessDeniedException").to_string();
    assert!(m.contains("ecr:DescribeImages") && m.contains(&arn("pol/a")), "{m}");
    set_policy(
        "pol/a",
        &policy(serde_json::json!([{
            "Sid": "viewer-describes", "Effect": "Allow",
            "Principal": {"AWS": viewer_arn}, "Action": "ecr:DescribeImages"
        }])),
    );
    let r = aws_as(&s, &viewer, &describe_a);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.json()["imageDetails"], serde_json::json!([]));
    // ... and nothing else there, nor anything on another repository.
    let delete_a =
        ["ecr", "batch-delete-image", "--repository-name", "pol/a", "--image-ids", "imageTag=v1"];
    let m = aws_as(&s, &viewer, &delete_a).err("AccessDeniedException").to_string();
    assert!(m.contains("ecr:BatchDeleteImage") && m.contains(&arn("pol/a")), "{m}");
    let m = aws_as(&s, &viewer, &["ecr", "get-repository-policy", "--repository-name", "pol/a"])
        .err("AccessDeniedException")
        .to_string();
    assert!(m.contains("ecr:GetRepositoryPolicy"), "{m}");
    let m = aws_as(&s, &viewer, &["ecr", "describe-images", "--repository-name", "pol/b"])
        .err("AccessDeniedException")
        .to_string();
    assert!(m.contains(&arn("pol/b")), "{m}");

    // An explicit deny in pol/b's policy beats the identity policy's ecr:* there (and only
    // there), whichever way the request names the repository.
    let ops = user("ops");
    ok(&[
        "iam",
        "put-user-policy",
        "--user-name",
        "ops",
        "--policy-name",
        "ecr-all",
        "--policy-document",
        &policy(serde_json::json!([{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}])),
    ]);
    let ops_arn = format!("arn:aws:iam::{ACCOUNT_ID}:user/ops");
    set_policy(
        "pol/b",
        &policy(serde_json::json!([{
            "Effect": "Deny", "Principal": {"AWS": ops_arn},
            "Action": ["ecr:DescribeImages", "ecr:DescribeRepositories", "ecr:ListTagsForResource"]
        }])),
    );
    let m = aws_as(&s, &ops, &["ecr", "describe-images", "--repository-name", "pol/b"])
        .err("AccessDeniedException")
        .to_string();
    assert!(m.contains("explicit deny in a resource-based policy"), "{m}");
    assert!(m.contains("ecr:DescribeImages") && m.contains(&arn("pol/b")), "{m}");
    let by_names = ["ecr", "describe-repositories", "--repository-names", "pol/a", "pol/b"];
    let m = aws_as(&s, &ops, &by_names).err("AccessDeniedException").to_string();
    assert!(m.contains(&arn("pol/b")), "{m}");
    let tags_b = ["ecr", "list-tags-for-resource", "--resource-arn", &arn("pol/b")];
    aws_as(&s, &ops, &tags_b).err("AccessDeniedException");
    let allowed: &[&[&str]] = &[
        &["ecr", "list-images", "--repository-name", "pol/b"],
        &["ecr", "describe-images", "--repository-name", "pol/a"],
        &["ecr", "describe-repositories", "--repository-names", "pol/a", "pol/c"],
        &["ecr", "describe-repositories"],
        &["ecr", "list-tags-for-resource", "--resource-arn", &arn("pol/a")],
    ];
    for args in allowed {
        let r = aws_as(&s, &ops, args);
        assert!(r.ok, "{args:?}: {}", r.stderr);
    }

    // The administrator: a deny of everything to everyone binds it too ...
    set_policy(
        "pol/c",
        &policy(serde_json::json!([{"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}])),
    );
    let delete_c =
        ["ecr", "batch-delete-image", "--repository-name", "pol/c", "--image-ids", "imageTag=v1"];
    let m = s.aws(&delete_c).err("AccessDeniedException").to_string();
    assert!(m.contains(&format!("arn:aws:iam::{ACCOUNT_ID}:root")), "{m}");
    assert!(m.contains("ecr:BatchDeleteImage") && m.contains(&arn("pol/c")), "{m}");
    assert!(m.contains("explicit deny in a resource-based policy"), "{m}");
    s.aws(&["ecr", "delete-repository", "--repository-name", "pol/c"]).err("AccessDeniedException");
    // ... but it can always read, replace and delete the policy: the way back in.
    ok(&["ecr", "get-repository-policy", "--repository-name", "pol/c"]);
    let deleted = ok(&["ecr", "delete-repository-policy", "--repository-name", "pol/c"]);
    assert!(deleted["policyText"].as_str().unwrap().contains("Deny"));
    let r = ok(&delete_c);
    assert_eq!(r["failures"][0]["failureCode"], "ImageNotFound", "{r}");
    ok(&["ecr", "delete-repository", "--repository-name", "pol/c"]);
}

/// skopeo's path; `None` (skip) outside CI when it is missing. `.ci/run` installs Debian's
/// package, so under CI a missing skopeo fails.
fn skopeo() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("skopeo")).find(|p| p.is_file()));
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("skopeo is missing: .ci/run installs Debian's skopeo package");
    }
    found
}

/// How many layers e2e/app:v1 has, read through BatchGetImage.
fn layers_of(s: &ServerProc) -> usize {
    let got = s
        .aws(&[
            "ecr",
            "batch-get-image",
            "--repository-name",
            "e2e/app",
            "--image-ids",
            "imageTag=v1",
        ])
        .json();
    let manifest: serde_json::Value =
        serde_json::from_str(got["images"][0]["imageManifest"].as_str().unwrap()).unwrap();
    manifest["layers"].as_array().unwrap().len()
}
