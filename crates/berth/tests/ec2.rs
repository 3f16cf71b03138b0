//! The EC2 networking API and STS behind the one endpoint (issue #12), end to end against the
//! real `berth server`: the AWS CLI (its flat `--protocol/--port/--cidr` flags, `--ip-permissions`
//! JSON, waiters, error codes), then the boto3 suite tests/py/test_ec2.py (botocore's own EC2
//! serializer and parser, signed GET requests, a signed-garbage sample that must never 500).
//! Needs no Docker.

use std::path::Path;

use berth_testkit::ServerProc;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_berth"))
}

#[test]
fn ec2_with_the_aws_cli() {
    let s = ServerProc::start(bin()).expect("server");
    let text = |args: &[&str]| -> String {
        let mut a = args.to_vec();
        a.extend(["--output", "text"]);
        let r = s.aws(&a);
        assert!(r.ok, "aws {args:?} failed: {}", r.stderr);
        r.stdout.trim().to_string()
    };

    // The default VPC appears on first use, with one default subnet per zone.
    let default =
        s.aws(&["ec2", "describe-vpcs", "--filters", "Name=is-default,Values=true"]).json();
    let vpcs = default["Vpcs"].as_array().expect("Vpcs");
    assert_eq!(vpcs.len(), 1, "{default}");
    assert_eq!(vpcs[0]["CidrBlock"], "172.31.0.0/16");
    let dvpc = vpcs[0]["VpcId"].as_str().unwrap().to_string();
    let zones = text(&[
        "ec2",
        "describe-subnets",
        "--filters",
        &format!("Name=vpc-id,Values={dvpc}"),
        "--query",
        "sort_by(Subnets,&AvailabilityZone)[].[AvailabilityZone,CidrBlock,DefaultForAz]",
    ]);
    assert_eq!(
        zones,
        "us-east-1a\t172.31.0.0/20\tTrue\nus-east-1b\t172.31.16.0/20\tTrue\nus-east-1c\t172.31.32.0/20\tTrue"
    );

    // A VPC, subnets, waiters and the errors that guard them.
    let vpc = text(&["ec2", "create-vpc", "--cidr-block", "10.0.0.0/16", "--query", "Vpc.VpcId"]);
    assert!(vpc.starts_with("vpc-") && vpc.len() == 21, "{vpc}");
    assert!(s.aws(&["ec2", "wait", "vpc-available", "--vpc-ids", &vpc]).ok);
    let sub = text(&[
        "ec2",
        "create-subnet",
        "--vpc-id",
        &vpc,
        "--cidr-block",
        "10.0.1.0/24",
        "--availability-zone",
        "us-east-1b",
        "--query",
        "Subnet.SubnetId",
    ]);
    assert!(s.aws(&["ec2", "wait", "subnet-available", "--subnet-ids", &sub]).ok);
    s.aws(&["ec2", "create-subnet", "--vpc-id", &vpc, "--cidr-block", "10.0.1.64/26"])
        .err("InvalidSubnet.Conflict");
    s.aws(&["ec2", "create-subnet", "--vpc-id", &vpc, "--cidr-block", "192.168.0.0/24"])
        .err("InvalidSubnet.Range");
    s.aws(&[
        "ec2",
        "create-subnet",
        "--vpc-id",
        "vpc-0000000000000000a",
        "--cidr-block",
        "10.0.2.0/24",
    ])
    .err("InvalidVpcID.NotFound");
    s.aws(&["ec2", "describe-subnets", "--subnet-ids", "subnet-0000000000000000a"])
        .err("InvalidSubnetID.NotFound");
    s.aws(&["ec2", "delete-vpc", "--vpc-id", &vpc]).err("DependencyViolation");

    // Security groups: the CLI's flat flags and --ip-permissions JSON.
    let sg = text(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "web tier",
        "--vpc-id",
        &vpc,
        "--query",
        "GroupId",
    ]);
    assert!(s.aws(&["ec2", "wait", "security-group-exists", "--group-ids", &sg]).ok);
    s.aws(&[
        "ec2",
        "create-security-group",
        "--group-name",
        "web",
        "--description",
        "x",
        "--vpc-id",
        &vpc,
    ])
    .err("InvalidGroup.Duplicate");
    let flat = ["--group-id", &sg, "--protocol", "tcp", "--port", "8080", "--cidr", "0.0.0.0/0"];
    let added = s.aws(&[&["ec2", "authorize-security-group-ingress"][..], &flat].concat()).json();
    let rule = &added["SecurityGroupRules"][0];
    assert_eq!(
        (rule["IpProtocol"].as_str(), rule["FromPort"].as_i64(), rule["CidrIpv4"].as_str()),
        (Some("tcp"), Some(8080), Some("0.0.0.0/0")),
        "{added}"
    );
    s.aws(&[&["ec2", "authorize-security-group-ingress"][..], &flat].concat())
        .err("InvalidPermission.Duplicate");
    let perms = format!(
        r#"[{{"IpProtocol":"tcp","FromPort":5432,"ToPort":5433,"UserIdGroupPairs":[{{"GroupId":"{sg}","Description":"peers"}}],"IpRanges":[{{"CidrIp":"10.0.0.0/16"}}]}}]"#
    );
    let two = s
        .aws(&[
            "ec2",
            "authorize-security-group-ingress",
            "--group-id",
            &sg,
            "--ip-permissions",
            &perms,
        ])
        .json();
    assert_eq!(two["SecurityGroupRules"].as_array().map(Vec::len), Some(2), "{two}");
    s.aws(&[
        "ec2",
        "authorize-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "1-2",
        "--source-group",
        "sg-0000000000000000a",
    ])
    .err("InvalidGroup.NotFound");
    let ingress = text(&[
        "ec2",
        "describe-security-groups",
        "--group-ids",
        &sg,
        "--query",
        "SecurityGroups[0].IpPermissions[].[IpProtocol,FromPort,ToPort,length(IpRanges),length(UserIdGroupPairs)]",
    ]);
    assert_eq!(ingress, "tcp\t8080\t8080\t1\t0\ntcp\t5432\t5433\t1\t1");
    s.aws(&[
        "ec2",
        "revoke-security-group-ingress",
        "--group-id",
        &sg,
        "--protocol",
        "tcp",
        "--port",
        "9999",
        "--cidr",
        "0.0.0.0/0",
    ])
    .err("InvalidPermission.NotFound");
    assert!(s.aws(&[&["ec2", "revoke-security-group-ingress"][..], &flat].concat()).ok);
    assert!(
        s.aws(&[
            "ec2",
            "revoke-security-group-ingress",
            "--group-id",
            &sg,
            "--ip-permissions",
            &perms
        ])
        .ok
    );
    let left = text(&[
        "ec2",
        "describe-security-groups",
        "--group-ids",
        &sg,
        "--query",
        "length(SecurityGroups[0].IpPermissions)",
    ]);
    assert_eq!(left, "0");
    let dsg = text(&[
        "ec2",
        "describe-security-groups",
        "--filters",
        &format!("Name=vpc-id,Values={vpc}"),
        "Name=group-name,Values=default",
        "--query",
        "SecurityGroups[0].GroupId",
    ]);
    s.aws(&["ec2", "delete-security-group", "--group-id", &dsg]).err("CannotDelete");

    // Tags and filters.
    assert!(
        s.aws(&[
            "ec2",
            "create-tags",
            "--resources",
            &vpc,
            &sub,
            &sg,
            "--tags",
            "Key=env,Value=prod"
        ])
        .ok
    );
    let tagged = text(&[
        "ec2",
        "describe-tags",
        "--filters",
        "Name=key,Values=env",
        "--query",
        "length(Tags)",
    ]);
    assert_eq!(tagged, "3");
    let found = text(&[
        "ec2",
        "describe-vpcs",
        "--filters",
        "Name=tag:env,Values=pr*",
        "--query",
        "Vpcs[].VpcId",
    ]);
    assert_eq!(found, vpc);

    // Another region: its own default VPC, and none of this region's.
    let eu = s.aws(&["--region", "eu-west-1", "ec2", "describe-vpcs"]).json();
    let eu_vpcs = eu["Vpcs"].as_array().unwrap();
    assert_eq!(eu_vpcs.len(), 1, "{eu}");
    assert_eq!(eu_vpcs[0]["IsDefault"], true);
    assert_ne!(eu_vpcs[0]["VpcId"].as_str(), Some(dvpc.as_str()));

    // STS, an operation Berth does not implement, and a service it does not serve.
    let me = s.aws(&["sts", "get-caller-identity"]).json();
    assert_eq!(me["Arn"], "arn:aws:iam::123456789012:root");
    s.aws(&["ec2", "describe-key-pairs"]).err("UnsupportedOperation");
    let msg = s.aws(&["cloudformation", "list-stacks"]).err("InvalidAction").to_string();
    assert!(msg.contains("`cloudformation`") && msg.contains("ec2"), "{msg}");

    // Teardown in dependency order: everything goes.
    assert!(s.aws(&["ec2", "delete-security-group", "--group-id", &sg]).ok);
    assert!(s.aws(&["ec2", "delete-subnet", "--subnet-id", &sub]).ok);
    assert!(s.aws(&["ec2", "delete-vpc", "--vpc-id", &vpc]).ok);
    s.aws(&["ec2", "describe-vpcs", "--vpc-ids", &vpc]).err("InvalidVpcID.NotFound");
}

#[test]
fn ec2_with_boto3() {
    let s = ServerProc::start(bin()).expect("server");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/test_ec2.py");
    let out = s.python(&script, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ec2 boto3 suite failed:\n{stderr}");
    assert!(stderr.contains("Ran 14 tests") && stderr.contains("\nOK"), "{stderr}");
    let log = std::fs::read_to_string(s.data_dir.with_extension("log")).unwrap_or_default();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
}
