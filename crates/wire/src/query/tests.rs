use super::*;
use crate::ec2;

fn form(pairs: &[(&str, &str)]) -> Form {
    Form::from_pairs(pairs.iter().copied(), Flavor::Ec2)
}

#[test]
fn ec2_input_reads_flattened_lists_and_nested_structures_by_serialized_name() {
    let f = form(&[
        ("Action", "AuthorizeSecurityGroupIngress"),
        ("GroupId", "sg-1"),
        ("IpPermissions.1.IpProtocol", "tcp"),
        ("IpPermissions.1.FromPort", "80"),
        ("IpPermissions.1.ToPort", "81"),
        ("IpPermissions.1.IpRanges.1.CidrIp", "10.0.0.0/8"),
        ("IpPermissions.1.IpRanges.2.CidrIp", "0.0.0.0/0"),
        ("IpPermissions.1.IpRanges.2.Description", "a <b> & 'c'"),
        ("IpPermissions.10.IpProtocol", "-1"),
        ("IpPermissions.2.Groups.1.GroupId", "sg-2"),
    ]);
    let r = ec2::AuthorizeSecurityGroupIngressRequest::from_form(&f, "").unwrap().unwrap();
    assert_eq!(r.group_id.as_deref(), Some("sg-1"));
    let p = r.ip_permissions.unwrap();
    assert_eq!(p.len(), 3, "indices 1, 2, 10 in numeric order");
    assert_eq!(p[0].from_port, Some(80));
    let ranges = p[0].ip_ranges.as_ref().unwrap();
    assert_eq!(ranges[1].description.as_deref(), Some("a <b> & 'c'"));
    assert_eq!(p[1].user_id_group_pairs.as_ref().unwrap()[0].group_id.as_deref(), Some("sg-2"));
    assert_eq!(p[2].ip_protocol.as_deref(), Some("-1"));
}

#[test]
fn errors_name_the_parameter() {
    let f = form(&[("IpPermissions.1.FromPort", "eighty")]);
    let e = ec2::AuthorizeSecurityGroupIngressRequest::from_form(&f, "").unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("IpPermissions.1.FromPort"), "{}", e.message);
    let e =
        ec2::CreateSecurityGroupRequest::from_form(&form(&[("GroupName", "x")]), "").unwrap_err();
    assert_eq!(e.code, "MissingParameter");
    assert!(e.message.contains("GroupDescription"), "{}", e.message);
    let e = ec2::DescribeVpcsRequest::from_form(&form(&[("DryRun", "maybe")]), "").unwrap_err();
    assert!(e.message.contains("DryRun"), "{}", e.message);
    let e =
        ec2::CreateVpcRequest::from_form(&form(&[("InstanceTenancy", "shared")]), "").unwrap_err();
    assert!(e.message.contains("InstanceTenancy") && e.message.contains("dedicated"), "{e}");
    assert_eq!(
        ec2::Operation::lookup("DescribeKeyPairs").unwrap_err().code,
        "UnsupportedOperation"
    );
    assert_eq!(ec2::Operation::lookup("FlyToTheMoon").unwrap_err().code, "InvalidAction");
    assert_eq!(ec2::Operation::lookup("CreateVpc").unwrap(), ec2::Operation::CreateVpc);
}

#[test]
fn query_lists_use_member_and_an_empty_list_is_the_bare_name() {
    let f = Form::from_pairs([("L.member.2", "b"), ("L.member.1", "a"), ("E", "")], Flavor::Query);
    let read = |f: &Form, k: &str| Ok(f.string(k));
    assert_eq!(f.list("L", Some("member"), read).unwrap(), Some(vec!["a".into(), "b".into()]));
    assert_eq!(f.list("E", Some("member"), read).unwrap(), Some(vec![]));
    assert_eq!(f.list("Absent", Some("member"), read).unwrap(), None);
    let m = Form::from_pairs(
        [("M.entry.1.key", "k"), ("M.entry.1.value", "v"), ("M.entry.2.key", "k2")],
        Flavor::Query,
    );
    let e = m.map("M", Some("entry"), "key", "value", read, read).unwrap_err();
    assert!(e.message.contains("M.entry.2.value"), "{}", e.message);
}

#[test]
fn ec2_output_and_errors_are_escaped_xml() {
    let out = ec2::CreateSecurityGroupResult {
        group_id: Some("sg-1".into()),
        tags: Some(vec![ec2::Tag { key: Some("k&".into()), value: Some("<v>".into()) }]),
        security_group_arn: None,
    };
    let body =
        Flavor::Ec2.response("CreateSecurityGroup", ec2::XML_NAMESPACE, None, true, "r1", &out);
    let s = String::from_utf8(body).unwrap();
    assert!(s.contains(r#"<CreateSecurityGroupResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId><groupId>sg-1</groupId><tagSet><item><key>k&amp;</key><value>&lt;v&gt;</value></item></tagSet></CreateSecurityGroupResponse>"#), "{s}");
    let none =
        Flavor::Ec2.response("DeleteVpc", ec2::XML_NAMESPACE, None, false, "r", &ec2::Empty {});
    assert!(String::from_utf8(none).unwrap().contains("<return>true</return>"));
    let e = AwsError::new("InvalidVpcID.NotFound", 400, "The vpc ID 'vpc-<x>' does not exist");
    let s = String::from_utf8(Flavor::Ec2.error_body(&e, "", "r2")).unwrap();
    assert!(s.contains("<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID &apos;vpc-&lt;x&gt;&apos; does not exist</Message></Error></Errors><RequestID>r2</RequestID></Response>") || s.contains("<Message>The vpc ID 'vpc-&lt;x&gt;' does not exist</Message>"), "{s}");
    let s = String::from_utf8(Flavor::Query.error_body(&e, "ns", "r3")).unwrap();
    assert!(s.contains("<ErrorResponse xmlns=\"ns\"><Error><Type>Sender</Type><Code>InvalidVpcID.NotFound</Code>"), "{s}");
}

#[test]
fn timestamps_are_iso8601() {
    assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso8601(1_796_163_258.5), "2026-12-01T22:14:18.500Z");
    assert_eq!(parse_timestamp("2026-12-01T22:14:18.500Z"), Some(1_796_163_258.5));
    assert_eq!(parse_timestamp("2026-12-01T23:14:18+01:00"), Some(1_796_163_258.0));
    assert_eq!(parse_timestamp("1796163258"), Some(1_796_163_258.0));
    for bad in ["", "2026-13-01T00:00:00Z", "yesterday", "2026-12-01T22:14:18.Z", "NaN"] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
    }
}

#[test]
fn query_responses_wrap_the_result_and_carry_response_metadata() {
    let out = crate::sts::GetCallerIdentityResponse {
        user_id: Some("AID".into()),
        account: Some("123456789012".into()),
        arn: Some("arn:aws:iam::123456789012:root".into()),
    };
    let body = Flavor::Query.response(
        "GetCallerIdentity",
        crate::sts::XML_NAMESPACE,
        Some("GetCallerIdentityResult"),
        true,
        "r9",
        &out,
    );
    let s = String::from_utf8(body).unwrap();
    assert!(
        s.ends_with(r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><UserId>AID</UserId><Account>123456789012</Account><Arn>arn:aws:iam::123456789012:root</Arn></GetCallerIdentityResult><ResponseMetadata><RequestId>r9</RequestId></ResponseMetadata></GetCallerIdentityResponse>"#),
        "{s}"
    );
    assert_eq!(
        crate::sts::Operation::lookup("GetFederationToken").unwrap_err().code,
        "InvalidAction"
    );
    assert!(
        crate::sts::Operation::lookup("GetFederationToken")
            .unwrap_err()
            .message
            .contains("GetFederationToken")
    );
}

#[test]
fn model_bounds_are_checked_by_parameter() {
    let e = ec2::DescribeVpcsRequest::from_form(&form(&[("MaxResults", "2")]), "").unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(e.message.contains("MaxResults") && e.message.contains("between 5 and 1000"), "{e}");
    let ok = ec2::DescribeVpcsRequest::from_form(&form(&[("MaxResults", "5")]), "").unwrap();
    assert_eq!(ok.unwrap().max_results, Some(5));
    let f = form(&[("K", "abcd")]);
    assert!(f.string_len("K", 1, 3).is_err());
    assert_eq!(f.string_len("K", 1, 4).unwrap().as_deref(), Some("abcd"));
}
