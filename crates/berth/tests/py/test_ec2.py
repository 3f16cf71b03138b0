"""The EC2 networking API and STS (issue #12), driven by boto3 against one real `berth server`.

botocore builds every request with its own EC2 serializer and parses every answer (and error)
with its own EC2 parser, so a passing suite means Berth's form parsing and XML match
botocore's model exactly. Run by the Rust test `ec2_suite` (tests/ec2.rs), which sets
BERTH_ENDPOINT and the AWS_* variables.
"""

import os
import random
import unittest
import urllib.error
import urllib.parse
import urllib.request

import boto3
import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ACCOUNT = "123456789012"  # the account the test harness starts the server with


def ec2(region=REGION):
    return boto3.client("ec2", endpoint_url=ENDPOINT, region_name=region)


def code(ctx):
    return ctx.exception.response["Error"]["Code"]


def signed(params, method="POST", service="ec2", region=REGION):
    """A raw request signed as botocore signs it; returns (status, body)."""
    creds = botocore.session.get_session().get_credentials()
    body = urllib.parse.urlencode(params)
    if method == "GET":
        req = AWSRequest(method="GET", url=f"{ENDPOINT}/?{body}")
    else:
        req = AWSRequest(method="POST", url=f"{ENDPOINT}/", data=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(creds, service, region).add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=prepared.body, method=method,
                               headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class DefaultVpc(unittest.TestCase):
    def test_default_vpc_has_a_subnet_per_zone_and_a_default_group(self):
        c = ec2()
        vpcs = c.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
        self.assertEqual(len(vpcs), 1)
        vpc = vpcs[0]
        self.assertEqual((vpc["CidrBlock"], vpc["State"], vpc["OwnerId"]),
                         ("172.31.0.0/16", "available", ACCOUNT))
        subnets = c.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])["Subnets"]
        by_zone = sorted((s["AvailabilityZone"], s["CidrBlock"]) for s in subnets)
        self.assertEqual(by_zone, [(f"{REGION}a", "172.31.0.0/20"), (f"{REGION}b", "172.31.16.0/20"),
                                   (f"{REGION}c", "172.31.32.0/20")])
        for s in subnets:
            self.assertTrue(s["DefaultForAz"] and s["MapPublicIpOnLaunch"])
            self.assertEqual(s["AvailableIpAddressCount"], 4091)
        groups = c.describe_security_groups(
            Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]},
                     {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"]
        self.assertEqual(len(groups), 1)
        g = groups[0]
        self.assertEqual(g["IpPermissions"][0]["IpProtocol"], "-1")
        self.assertEqual(g["IpPermissions"][0]["UserIdGroupPairs"][0]["GroupId"], g["GroupId"])
        self.assertEqual(g["IpPermissionsEgress"][0]["IpRanges"][0]["CidrIp"], "0.0.0.0/0")
        with self.assertRaises(ClientError) as e:
            c.delete_security_group(GroupId=g["GroupId"])
        self.assertEqual(code(e), "CannotDelete")
        # By name, a group of the default VPC.
        self.assertEqual(c.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"],
                         g["GroupId"])

    def test_every_region_has_its_own_default_vpc(self):
        here = ec2().describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
        there_client = ec2("eu-west-1")
        there = there_client.describe_vpcs()["Vpcs"]
        self.assertEqual(len([v for v in there if v["IsDefault"]]), 1)
        self.assertNotEqual(here["VpcId"], there[0]["VpcId"])
        zones = sorted(s["AvailabilityZone"] for s in there_client.describe_subnets()["Subnets"])
        self.assertEqual(zones, ["eu-west-1a", "eu-west-1b", "eu-west-1c"])
        with self.assertRaises(ClientError) as e:
            there_client.describe_vpcs(VpcIds=[here["VpcId"]])
        self.assertEqual(code(e), "InvalidVpcID.NotFound")

    def test_zones(self):
        zones = ec2().describe_availability_zones()["AvailabilityZones"]
        self.assertEqual([z["ZoneName"] for z in zones], [f"{REGION}{x}" for x in "abc"])
        self.assertTrue(all(z["State"] == "available" and z["RegionName"] == REGION for z in zones))
        one = ec2().describe_availability_zones(Filters=[{"Name": "zone-id", "Values": ["*-az2"]}])
        self.assertEqual([z["ZoneName"] for z in one["AvailabilityZones"]], [f"{REGION}b"])
        with self.assertRaises(ClientError) as e:
            ec2().describe_availability_zones(ZoneNames=["mars-1a"])
        self.assertEqual(code(e), "InvalidParameterValue")


class VpcsAndSubnets(unittest.TestCase):
    def test_lifecycle_and_errors(self):
        c = ec2()
        vpc = c.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "lifecycle"}]}])["Vpc"]
        vid = vpc["VpcId"]
        self.assertEqual(vpc["Tags"], [{"Key": "Name", "Value": "lifecycle"}])
        self.assertFalse(vpc["IsDefault"])
        c.get_waiter("vpc_available").wait(VpcIds=[vid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        s1 = c.create_subnet(VpcId=vid, CidrBlock="10.20.1.0/24", AvailabilityZone=f"{REGION}b")["Subnet"]
        self.assertEqual((s1["AvailabilityZone"], s1["AvailableIpAddressCount"]), (f"{REGION}b", 251))
        zone_c = c.describe_availability_zones(ZoneNames=[f"{REGION}c"])["AvailabilityZones"][0]
        s2 = c.create_subnet(VpcId=vid, CidrBlock="10.20.2.0/28", AvailabilityZoneId=zone_c["ZoneId"])
        self.assertEqual(s2["Subnet"]["AvailabilityZone"], f"{REGION}c")
        self.assertEqual(s2["Subnet"]["AvailableIpAddressCount"], 11)
        c.get_waiter("subnet_available").wait(SubnetIds=[s1["SubnetId"], s2["Subnet"]["SubnetId"]],
                                              WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        cases = [
            (dict(VpcId=vid, CidrBlock="10.20.1.128/25"), "InvalidSubnet.Conflict"),
            (dict(VpcId=vid, CidrBlock="10.20.0.0/16"), "InvalidSubnet.Conflict"),
            (dict(VpcId=vid, CidrBlock="10.99.0.0/24"), "InvalidSubnet.Range"),
            (dict(VpcId=vid, CidrBlock="10.20.3.0/29"), "InvalidSubnet.Range"),
            (dict(VpcId=vid, CidrBlock="not-a-cidr"), "InvalidParameterValue"),
            (dict(VpcId=vid, CidrBlock="10.20.4.0/24", AvailabilityZone="us-west-9z"), "InvalidParameterValue"),
            (dict(VpcId="vpc-00000000000000000", CidrBlock="10.20.5.0/24"), "InvalidVpcID.NotFound"),
        ]
        for kwargs, want in cases:
            with self.subTest(kwargs=kwargs), self.assertRaises(ClientError) as e:
                c.create_subnet(**kwargs)
            self.assertEqual(code(e), want)
        for cidr, want in [("10.0.0.0/8", "InvalidVpc.Range"), ("10.0.0.0/29", "InvalidVpc.Range"),
                           ("x", "InvalidParameterValue")]:
            with self.subTest(cidr=cidr), self.assertRaises(ClientError) as e:
                c.create_vpc(CidrBlock=cidr)
            self.assertEqual(code(e), want)
        with self.assertRaises(ClientError) as e:
            c.delete_vpc(VpcId=vid)
        self.assertEqual(code(e), "DependencyViolation")
        for s in (s1["SubnetId"], s2["Subnet"]["SubnetId"]):
            c.delete_subnet(SubnetId=s)
        with self.assertRaises(ClientError) as e:
            c.delete_subnet(SubnetId=s1["SubnetId"])
        self.assertEqual(code(e), "InvalidSubnetID.NotFound")
        sg = c.create_security_group(GroupName="blocker", Description="blocks deletion", VpcId=vid)
        with self.assertRaises(ClientError) as e:
            c.delete_vpc(VpcId=vid)
        self.assertEqual(code(e), "DependencyViolation")
        c.delete_security_group(GroupId=sg["GroupId"])
        c.delete_vpc(VpcId=vid)
        with self.assertRaises(ClientError) as e:
            c.describe_vpcs(VpcIds=[vid])
        self.assertEqual(code(e), "InvalidVpcID.NotFound")
        # Its default group went with it.
        left = c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vid]}])["SecurityGroups"]
        self.assertEqual(left, [])

    def test_filters_and_pages(self):
        c = ec2()
        made = [c.create_vpc(CidrBlock=f"10.{100 + i}.0.0/16", TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "suite", "Value": f"pages-{i}"}]}])["Vpc"]["VpcId"]
            for i in range(7)]
        try:
            f = [{"Name": "tag:suite", "Values": ["pages-*"]}]
            self.assertEqual(sorted(v["VpcId"] for v in c.describe_vpcs(Filters=f)["Vpcs"]), sorted(made))
            first = c.describe_vpcs(Filters=f, MaxResults=5)
            self.assertEqual(len(first["Vpcs"]), 5)
            rest = c.describe_vpcs(Filters=f, MaxResults=5, NextToken=first["NextToken"])
            self.assertEqual(len(rest["Vpcs"]), 2)
            self.assertNotIn("NextToken", rest)
            pages = c.get_paginator("describe_vpcs").paginate(Filters=f, PaginationConfig={"PageSize": 5})
            self.assertEqual(sorted(v["VpcId"] for p in pages for v in p["Vpcs"]), sorted(made))
            one = c.describe_vpcs(Filters=[{"Name": "tag:suite", "Values": ["pages-3", "pages-4"]},
                                           {"Name": "cidr", "Values": ["10.103.*"]}])["Vpcs"]
            self.assertEqual([v["VpcId"] for v in one], [made[3]])
            self.assertEqual(c.describe_vpcs(Filters=[{"Name": "tag-key", "Values": ["suite"]},
                                                      {"Name": "is-default", "Values": ["true"]}])["Vpcs"], [])
            with self.assertRaises(ClientError) as e:
                c.describe_vpcs(Filters=[{"Name": "colour", "Values": ["red"]}])
            self.assertEqual(code(e), "InvalidParameterValue")
            self.assertIn("colour", str(e.exception))
            # botocore refuses it before sending; Berth refuses it too.
            status, body = signed({"Action": "DescribeVpcs", "Version": "2016-11-15", "MaxResults": "2"})
            self.assertEqual(status, 400)
            self.assertIn("<Code>InvalidParameterValue</Code>", body)
            self.assertIn("MaxResults", body)
        finally:
            for v in made:
                c.delete_vpc(VpcId=v)


class SecurityGroups(unittest.TestCase):
    def setUp(self):
        self.c = ec2()
        self.vpc = self.c.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]

    def tearDown(self):
        c = self.c
        groups = c.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [self.vpc]}])["SecurityGroups"]
        mine = [g["GroupId"] for g in groups if g["GroupName"] != "default"]
        for gid in mine:
            rules = c.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [gid]}])
            ingress = [r["SecurityGroupRuleId"] for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
            if ingress:
                c.revoke_security_group_ingress(GroupId=gid, SecurityGroupRuleIds=ingress)
        for gid in mine:
            c.delete_security_group(GroupId=gid)
        c.delete_vpc(VpcId=self.vpc)

    def test_rules(self):
        c = self.c
        web = c.create_security_group(GroupName="web", Description="web tier", VpcId=self.vpc,
                                      TagSpecifications=[{"ResourceType": "security-group",
                                                          "Tags": [{"Key": "tier", "Value": "web"}]}])
        db = c.create_security_group(GroupName="db", Description="db tier", VpcId=self.vpc)["GroupId"]
        wid = web["GroupId"]
        self.assertTrue(web["SecurityGroupArn"].endswith(f":security-group/{wid}"))
        c.get_waiter("security_group_exists").wait(GroupIds=[wid], WaiterConfig={"Delay": 1, "MaxAttempts": 5})
        with self.assertRaises(ClientError) as e:
            c.create_security_group(GroupName="web", Description="again", VpcId=self.vpc)
        self.assertEqual(code(e), "InvalidGroup.Duplicate")
        for kwargs, want in [
            (dict(GroupName="sg-bad", Description="d", VpcId=self.vpc), "InvalidParameterValue"),
            (dict(GroupName="ok", Description="naïve", VpcId=self.vpc), "InvalidParameterValue"),
            (dict(GroupName="ok", Description="d", VpcId="vpc-00000000000000000"), "InvalidVpcID.NotFound"),
        ]:
            with self.subTest(kwargs=kwargs), self.assertRaises(ClientError) as e:
                c.create_security_group(**kwargs)
            self.assertEqual(code(e), want)
        added = c.authorize_security_group_ingress(GroupId=wid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
             "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "http"}, {"CidrIp": "10.1.2.3/16"}]},
            {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "UserIdGroupPairs": [{"GroupId": db}]},
        ])["SecurityGroupRules"]
        self.assertEqual(len(added), 3)
        self.assertTrue(all(r["SecurityGroupRuleId"].startswith("sgr-") for r in added))
        self.assertEqual(sorted(r.get("CidrIpv4", "") for r in added), ["", "0.0.0.0/0", "10.1.0.0/16"])
        with self.assertRaises(ClientError) as e:
            c.authorize_security_group_ingress(GroupId=wid, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.assertEqual(code(e), "InvalidPermission.Duplicate")
        with self.assertRaises(ClientError) as e:
            c.authorize_security_group_ingress(GroupId=wid, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 1,
                 "UserIdGroupPairs": [{"GroupId": "sg-00000000000000000"}]}])
        self.assertEqual(code(e), "InvalidGroup.NotFound")
        with self.assertRaises(ClientError) as e:
            c.authorize_security_group_ingress(GroupId=wid, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 90, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.assertEqual(code(e), "InvalidParameterValue")
        g = c.describe_security_groups(GroupIds=[wid])["SecurityGroups"][0]
        http = [p for p in g["IpPermissions"] if p["IpProtocol"] == "tcp"][0]
        self.assertEqual((http["FromPort"], http["ToPort"]), (80, 80))
        self.assertEqual(sorted(r["CidrIp"] for r in http["IpRanges"]), ["0.0.0.0/0", "10.1.0.0/16"])
        self.assertEqual(g["Tags"], [{"Key": "tier", "Value": "web"}])
        # Filters over rules.
        hit = c.describe_security_groups(Filters=[{"Name": "ip-permission.from-port", "Values": ["80"]},
                                                  {"Name": "vpc-id", "Values": [self.vpc]}])["SecurityGroups"]
        self.assertEqual([x["GroupId"] for x in hit], [wid])
        hit = c.describe_security_groups(Filters=[{"Name": "ip-permission.group-id", "Values": [db]}])
        self.assertEqual([x["GroupId"] for x in hit["SecurityGroups"]], [wid])
        # A group another group's rule references cannot go.
        with self.assertRaises(ClientError) as e:
            c.delete_security_group(GroupId=db)
        self.assertEqual(code(e), "DependencyViolation")
        # Revoke: by permission, by rule id; a rule that is not there.
        c.revoke_security_group_ingress(GroupId=wid, IpPermissions=[
            {"IpProtocol": "udp", "FromPort": 53, "ToPort": 53, "UserIdGroupPairs": [{"GroupId": db}]}])
        c.delete_security_group(GroupId=db)
        rid = [r["SecurityGroupRuleId"] for r in added if r.get("CidrIpv4") == "0.0.0.0/0"][0]
        gone = c.revoke_security_group_ingress(GroupId=wid, SecurityGroupRuleIds=[rid])
        self.assertEqual([r["SecurityGroupRuleId"] for r in gone["RevokedSecurityGroupRules"]], [rid])
        with self.assertRaises(ClientError) as e:
            c.revoke_security_group_ingress(GroupId=wid, SecurityGroupRuleIds=[rid])
        self.assertEqual(code(e), "InvalidSecurityGroupRuleId.NotFound")
        with self.assertRaises(ClientError) as e:
            c.revoke_security_group_ingress(GroupId=wid, IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        self.assertEqual(code(e), "InvalidPermission.NotFound")
        # Egress: a new group allows everything out; replace that with one port.
        rules = c.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [wid]}])["SecurityGroupRules"]
        egress = [r for r in rules if r["IsEgress"]]
        self.assertEqual([(r["IpProtocol"], r["CidrIpv4"]) for r in egress], [("-1", "0.0.0.0/0")])
        c.authorize_security_group_egress(GroupId=wid, IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        c.revoke_security_group_egress(GroupId=wid, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        out = c.describe_security_groups(GroupIds=[wid])["SecurityGroups"][0]["IpPermissionsEgress"]
        self.assertEqual([(p["IpProtocol"], p["FromPort"]) for p in out], [("tcp", 443)])
        with self.assertRaises(ClientError) as e:
            c.describe_security_group_rules(SecurityGroupRuleIds=["sgr-00000000000000000"])
        self.assertEqual(code(e), "InvalidSecurityGroupRuleId.NotFound")
        with self.assertRaises(ClientError) as e:
            c.describe_security_groups(GroupIds=["sg-00000000000000000"])
        self.assertEqual(code(e), "InvalidGroup.NotFound")


class Tags(unittest.TestCase):
    def test_create_describe_delete(self):
        c = ec2()
        vpc = c.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        sub = c.create_subnet(VpcId=vpc, CidrBlock="10.40.0.0/24")["Subnet"]["SubnetId"]
        try:
            c.create_tags(Resources=[vpc, sub], Tags=[{"Key": "team", "Value": "blue"},
                                                      {"Key": "Name", "Value": "x & <y>"}])
            got = c.describe_tags(Filters=[{"Name": "resource-id", "Values": [vpc, sub]}])["Tags"]
            self.assertEqual(sorted((t["ResourceType"], t["Key"], t["Value"]) for t in got),
                             [("subnet", "Name", "x & <y>"), ("subnet", "team", "blue"),
                              ("vpc", "Name", "x & <y>"), ("vpc", "team", "blue")])
            c.delete_tags(Resources=[sub], Tags=[{"Key": "team", "Value": "red"}])  # value differs: kept
            c.delete_tags(Resources=[vpc], Tags=[{"Key": "team"}])
            got = c.describe_tags(Filters=[{"Name": "key", "Values": ["team"]},
                                           {"Name": "resource-id", "Values": [vpc, sub]}])["Tags"]
            self.assertEqual([t["ResourceId"] for t in got], [sub])
            s = c.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["x & <y>"]}])["Subnets"]
            self.assertEqual([x["SubnetId"] for x in s], [sub])
            for resources, tags, want in [
                (["vpc-00000000000000000"], [{"Key": "a", "Value": "b"}], "InvalidVpcID.NotFound"),
                (["i-0123"], [{"Key": "a", "Value": "b"}], "InvalidID"),
                ([vpc], [{"Key": "aws:x", "Value": "b"}], "InvalidParameterValue"),
            ]:
                with self.subTest(resources=resources), self.assertRaises(ClientError) as e:
                    c.create_tags(Resources=resources, Tags=tags)
                self.assertEqual(code(e), want)
        finally:
            c.delete_subnet(SubnetId=sub)
            c.delete_vpc(VpcId=vpc)


class NetworkInterfaces(unittest.TestCase):
    def test_describe(self):
        c = ec2()
        enis = c.describe_network_interfaces(Filters=[{"Name": "vpc-id", "Values": ["vpc-none"]}])
        self.assertEqual(enis["NetworkInterfaces"], [])
        with self.assertRaises(ClientError) as e:
            c.describe_network_interfaces(NetworkInterfaceIds=["eni-00000000000000000"])
        self.assertEqual(code(e), "InvalidNetworkInterfaceID.NotFound")


class Protocol(unittest.TestCase):
    def test_unsupported_and_unknown_operations(self):
        with self.assertRaises(ClientError) as e:
            ec2().describe_key_pairs()
        self.assertEqual(code(e), "UnsupportedOperation")
        self.assertIn("DescribeKeyPairs", str(e.exception))
        status, body = signed({"Action": "FlyToTheMoon", "Version": "2016-11-15"})
        self.assertEqual(status, 400)
        self.assertIn("<Code>InvalidAction</Code>", body)
        status, body = signed({"Version": "2016-11-15"})
        self.assertEqual(status, 400)
        self.assertIn("MissingAction", body)
        # Not signed at all: EC2's envelope.
        req = urllib.request.Request(f"{ENDPOINT}/?Action=DescribeVpcs&Version=2016-11-15")
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        self.assertEqual(e.exception.code, 403)
        self.assertIn("<Code>MissingAuthenticationToken</Code>", e.exception.read().decode())

    def test_dry_run_changes_nothing(self):
        c = ec2()
        before = len(c.describe_vpcs()["Vpcs"])
        with self.assertRaises(ClientError) as e:
            c.create_vpc(CidrBlock="10.77.0.0/16", DryRun=True)
        self.assertEqual(code(e), "DryRunOperation")
        self.assertEqual(len(c.describe_vpcs()["Vpcs"]), before)

    def test_get_requests_with_a_query_string(self):
        status, body = signed({"Action": "DescribeAvailabilityZones", "Version": "2016-11-15",
                               "ZoneName.1": f"{REGION}a"}, method="GET")
        self.assertEqual(status, 200, body)
        self.assertIn(f"<zoneName>{REGION}a</zoneName>", body)
        self.assertNotIn(f"{REGION}b", body)

    def test_a_service_berth_does_not_serve_is_named(self):
        cfn = boto3.client("cloudformation", endpoint_url=ENDPOINT, region_name=REGION)
        with self.assertRaises(ClientError) as e:
            cfn.list_stacks()
        self.assertIn("`cloudformation`", str(e.exception))
        kinesis = boto3.client("kinesis", endpoint_url=ENDPOINT, region_name=REGION)
        with self.assertRaises(ClientError) as e:
            kinesis.list_streams()
        self.assertIn("`kinesis`", str(e.exception))

    def test_sts_get_caller_identity(self):
        ident = boto3.client("sts", endpoint_url=ENDPOINT, region_name=REGION).get_caller_identity()
        self.assertEqual(ident["Account"], ACCOUNT)
        self.assertEqual(ident["Arn"], f"arn:aws:iam::{ACCOUNT}:root")

    def test_bad_input_never_fails_on_the_server(self):
        rng = random.Random(int(os.environ.get("BERTH_FUZZ_SEED", "12")))
        actions = ["CreateVpc", "DescribeVpcs", "CreateSubnet", "DescribeSubnets", "CreateSecurityGroup",
                   "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupEgress", "DescribeSecurityGroups",
                   "CreateTags", "DeleteTags", "DescribeTags", "DeleteVpc", "DescribeNetworkInterfaces",
                   "DescribeSecurityGroupRules", "DescribeAvailabilityZones", "DeleteSecurityGroup"]
        keys = ["VpcId", "CidrBlock", "GroupId", "GroupName", "GroupDescription", "MaxResults", "NextToken",
                "Filter.1.Name", "Filter.1.Value.1", "Filter.x.Name", "IpPermissions.1.FromPort",
                "IpPermissions.1.IpProtocol", "IpPermissions.99999999999999999999.ToPort",
                "IpPermissions.1.IpRanges.1.CidrIp", "IpPermissions.1.Groups.1.GroupId", "ResourceId.1",
                "Tag.1.Key", "Tag.1.Value", "DryRun", "TagSpecification.1.ResourceType",
                "TagSpecification.1.Tag.1.Key", "InstanceTenancy", "AvailabilityZone", "SecurityGroupRuleId.1"]
        values = ["", "x", "-1", "99999999999", "true", "maybe", "0.0.0.0/0", "10.0.0.0/33", "sg-", "vpc-",
                  "\u00e9\u0000<&>", "*", "tcp", "1e9", "a" * 300, "2016-11-15", "-2147483649"]
        for i in range(300):
            params = {"Action": rng.choice(actions), "Version": "2016-11-15"}
            for _ in range(rng.randint(0, 6)):
                params[rng.choice(keys)] = rng.choice(values)
            status, body = signed(params, method=rng.choice(["GET", "POST"]))
            with self.subTest(i=i, params=params):
                self.assertLess(status, 500, body)
                if status >= 400:
                    self.assertIn("<Response><Errors><Error><Code>", body)


if __name__ == "__main__":
    unittest.main(verbosity=2)
