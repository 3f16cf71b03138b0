"""IAM and STS through boto3 (botocore's own models, signer and parsers) against a running
berth server. Run by the Rust test in tests/iam.rs, which starts the server and sets
BERTH_ENDPOINT and the administrator's credentials."""

import json
import os
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
ACCOUNT = "123456789012"


def client(service, creds=None):
    kw = {}
    if creds:
        kw = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds.get("SessionToken"),
        }
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1", **kw)


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


class IamWithBoto3(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.iam = client("iam")
        cls.iam.create_user(UserName="carol", Tags=[{"Key": "team", "Value": "blue"}])
        cls.key = cls.iam.create_access_key(UserName="carol")["AccessKey"]
        # Allowed on clusters tagged by nothing but the principal's own tag value in the name.
        policy = cls.iam.create_policy(
            PolicyName="carol-blue",
            PolicyDocument=doc(
                {"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": "ecs:DescribeClusters",
                    "Resource": "arn:aws:ecs:*:*:cluster/${aws:PrincipalTag/team}-*",
                },
            ),
        )["Policy"]
        cls.iam.attach_user_policy(UserName="carol", PolicyArn=policy["Arn"])
        ecs = client("ecs")
        for name in ("blue-1", "red-1"):
            ecs.create_cluster(clusterName=name)

    def test_principal_tags_and_access_denied(self):
        ecs = client("ecs", self.key)
        ecs.list_clusters()
        got = ecs.describe_clusters(clusters=["blue-1"])["clusters"]
        self.assertEqual(got[0]["clusterName"], "blue-1")
        with self.assertRaises(ClientError) as e:
            ecs.describe_clusters(clusters=["red-1"])
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "AccessDeniedException")
        self.assertIn(f"User: arn:aws:iam::{ACCOUNT}:user/carol is not authorized", err["Message"])
        self.assertIn("cluster/red-1", err["Message"])

    def test_roles_and_sessions(self):
        trust = doc(
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/carol"},
                "Condition": {"StringLike": {"sts:RoleSessionName": "ci-*"}},
            }
        )
        role = self.iam.create_role(RoleName="ci", AssumeRolePolicyDocument=trust, MaxSessionDuration=7200)["Role"]
        # botocore decodes the URL-encoded document into a dict.
        self.assertEqual(role["AssumeRolePolicyDocument"]["Statement"][0]["Action"], "sts:AssumeRole")
        got = self.iam.get_role(RoleName="ci")["Role"]
        self.assertEqual(got["MaxSessionDuration"], 7200)
        self.iam.put_role_policy(
            RoleName="ci",
            PolicyName="list",
            PolicyDocument=doc({"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}),
        )
        sts = client("sts", self.key)
        with self.assertRaises(ClientError) as e:
            sts.assume_role(RoleArn=role["Arn"], RoleSessionName="other")
        self.assertEqual(e.exception.response["Error"]["Code"], "AccessDenied")
        out = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="ci-1", DurationSeconds=3600)
        creds = out["Credentials"]
        self.assertTrue(creds["AccessKeyId"].startswith("ASIA"))
        me = client("sts", creds).get_caller_identity()
        self.assertEqual(me["Arn"], f"arn:aws:sts::{ACCOUNT}:assumed-role/ci/ci-1")
        self.assertEqual(me["Account"], ACCOUNT)
        ecs = client("ecs", creds)
        ecs.list_clusters()
        with self.assertRaises(ClientError) as e:
            ecs.describe_clusters(clusters=["blue-1"])
        self.assertEqual(e.exception.response["Error"]["Code"], "AccessDeniedException")

    def test_session_policies_forged_tokens_and_account_trust(self):
        trust = doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}})
        role = self.iam.create_role(RoleName="acct", AssumeRolePolicyDocument=trust)["Role"]
        self.iam.put_role_policy(
            RoleName="acct",
            PolicyName="ecs",
            PolicyDocument=doc({"Effect": "Allow", "Action": ["ecs:*", "sts:AssumeRole"], "Resource": "*"}),
        )
        sts = client("sts", self.key)
        # A trust naming the account also needs an identity-based allow: carol has none.
        with self.assertRaises(ClientError) as e:
            sts.assume_role(RoleArn=role["Arn"], RoleSessionName="nope")
        self.assertEqual(e.exception.response["Error"]["Code"], "AccessDenied")
        self.iam.put_user_policy(
            UserName="carol",
            PolicyName="assume",
            PolicyDocument=doc({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role["Arn"]}),
        )
        narrow = doc({"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"})
        with self.assertRaises(ClientError) as e:
            sts.assume_role(RoleArn=role["Arn"], RoleSessionName="long", DurationSeconds=7200)
        self.assertEqual(e.exception.response["Error"]["Code"], "ValidationError")
        creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="narrow", Policy=narrow)["Credentials"]
        ecs = client("ecs", creds)
        ecs.list_clusters()
        with self.assertRaises(ClientError) as e:
            ecs.describe_clusters(clusters=["blue-1"])
        self.assertIn("because no session policy allows", e.exception.response["Error"]["Message"])
        forged = dict(creds, SessionToken="IQoJforged")
        with self.assertRaises(ClientError) as e:
            client("sts", forged).get_caller_identity()
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidClientTokenId")
        # Role chaining (the role's own policy allows sts:AssumeRole) is limited to one hour.
        wide = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="wide")["Credentials"]
        with self.assertRaises(ClientError) as e:
            client("sts", wide).assume_role(RoleArn=role["Arn"], RoleSessionName="chain", DurationSeconds=3700)
        self.assertEqual(e.exception.response["Error"]["Code"], "ValidationError")
        chained = client("sts", wide).assume_role(RoleArn=role["Arn"], RoleSessionName="chain")["AssumedRoleUser"]
        self.assertEqual(chained["Arn"], f"arn:aws:sts::{ACCOUNT}:assumed-role/acct/chain")

    def test_policy_versions_and_inline_documents(self):
        arn = self.iam.create_policy(
            PolicyName="versions",
            PolicyDocument=doc({"Effect": "Allow", "Action": "ecs:ListClusters", "Resource": "*"}),
        )["Policy"]["Arn"]
        for _ in range(4):
            self.iam.create_policy_version(
                PolicyArn=arn, PolicyDocument=doc({"Effect": "Allow", "Action": "ecs:ListServices", "Resource": "*"})
            )
        with self.assertRaises(ClientError) as e:
            self.iam.create_policy_version(PolicyArn=arn, PolicyDocument=doc({"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}))
        self.assertEqual(e.exception.response["Error"]["Code"], "LimitExceeded")
        with self.assertRaises(ClientError) as e:
            self.iam.delete_policy_version(PolicyArn=arn, VersionId="v1")
        self.assertEqual(e.exception.response["Error"]["Code"], "DeleteConflict")
        self.iam.delete_policy_version(PolicyArn=arn, VersionId="v5")
        v = self.iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=doc({"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}), SetAsDefault=True
        )["PolicyVersion"]
        self.assertEqual(v["VersionId"], "v6")
        got = self.iam.get_policy_version(PolicyArn=arn, VersionId="v6")["PolicyVersion"]
        self.assertEqual(got["Document"]["Statement"][0]["Action"], "ecs:*")
        self.assertTrue(got["IsDefaultVersion"])
        self.assertEqual(len(self.iam.list_policy_versions(PolicyArn=arn)["Versions"]), 5)
        self.assertEqual(self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"], "v6")
        with self.assertRaises(ClientError) as e:
            self.iam.delete_policy(PolicyArn=arn)
        self.assertEqual(e.exception.response["Error"]["Code"], "DeleteConflict")
        self.iam.put_user_policy(UserName="carol", PolicyName="inline", PolicyDocument=doc({"Effect": "Deny", "Action": "s3:*", "Resource": "*"}))
        got = self.iam.get_user_policy(UserName="carol", PolicyName="inline")
        self.assertEqual(got["PolicyDocument"]["Statement"][0]["Effect"], "Deny")
        self.assertIn("inline", self.iam.list_user_policies(UserName="carol")["PolicyNames"])
        self.iam.delete_user_policy(UserName="carol", PolicyName="inline")
        keys = self.iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]
        self.assertEqual([k["AccessKeyId"] for k in keys], [self.key["AccessKeyId"]])
        with self.assertRaises(ClientError) as e:
            self.iam.create_user(UserName="CAROL")
        self.assertEqual(e.exception.response["Error"]["Code"], "EntityAlreadyExists")

    def test_errors_and_paging(self):
        with self.assertRaises(ClientError) as e:
            self.iam.get_role(RoleName="missing")
        self.assertEqual(e.exception.response["Error"]["Code"], "NoSuchEntity")
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 404)
        with self.assertRaises(ClientError) as e:
            self.iam.create_role(RoleName="bad", AssumeRolePolicyDocument=doc({"Effect": "Allow", "Action": "sts:AssumeRole"}))
        self.assertEqual(e.exception.response["Error"]["Code"], "MalformedPolicyDocument")
        for i in range(3):
            self.iam.create_group(GroupName=f"g{i}", Path="/boto/")
        pages = list(self.iam.get_paginator("list_groups").paginate(PathPrefix="/boto/", PaginationConfig={"PageSize": 2}))
        self.assertEqual(len(pages), 2)
        self.assertEqual([g["GroupName"] for p in pages for g in p["Groups"]], ["g0", "g1", "g2"])
        self.assertTrue(pages[0]["IsTruncated"])

    def test_tags_decide_across_services(self):
        """aws:RequestTag and aws:TagKeys from the request, aws:ResourceTag from the resource
        a request names, in CloudWatch Logs, Secrets Manager, ECR and IAM."""
        blue = {"StringEquals": {"aws:ResourceTag/team": "blue"}}
        self.iam.create_user(UserName="tess")
        self.iam.put_user_policy(
            UserName="tess",
            PolicyName="by-tag",
            PolicyDocument=doc(
                {
                    "Effect": "Allow",
                    "Action": "logs:CreateLogGroup",
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:RequestTag/team": "blue"}},
                },
                {"Effect": "Allow", "Action": "logs:DeleteLogGroup", "Resource": "*", "Condition": blue},
                {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*", "Condition": blue},
                {"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*", "Condition": blue},
                {
                    "Effect": "Allow",
                    "Action": ["iam:TagUser", "iam:UntagUser"],
                    "Resource": "*",
                    "Condition": {
                        "ForAllValues:StringEquals": {"aws:TagKeys": ["team", "env"]},
                        "Null": {"aws:TagKeys": "false"},
                    },
                },
            ),
        )
        tess = self.iam.create_access_key(UserName="tess")["AccessKey"]

        def denied(call, **kw):
            with self.assertRaises(ClientError) as e:
                call(**kw)
            code = e.exception.response["Error"]["Code"]
            self.assertIn(code, ("AccessDeniedException", "AccessDenied"), f"{call.__name__} {kw}")
            self.assertIn("user/tess is not authorized", e.exception.response["Error"]["Message"])

        # CloudWatch Logs: a map of tags on creation, the group's tags on deletion.
        logs = client("logs", tess)
        client("logs").create_log_group(logGroupName="/tags/red", tags={"team": "red"})
        logs.create_log_group(logGroupName="/tags/blue", tags={"team": "blue"})
        denied(logs.create_log_group, logGroupName="/tags/red2", tags={"team": "red"})
        denied(logs.create_log_group, logGroupName="/tags/none")
        denied(logs.delete_log_group, logGroupName="/tags/red")
        logs.delete_log_group(logGroupName="/tags/blue")
        client("logs").delete_log_group(logGroupName="/tags/red")

        # Secrets Manager: by name and by ARN.
        sm = client("secretsmanager")
        arns = {}
        for team in ("blue", "red"):
            arns[team] = sm.create_secret(
                Name=f"tags-{team}", SecretString=team, Tags=[{"Key": "team", "Value": team}]
            )["ARN"]
        mine = client("secretsmanager", tess)
        self.assertEqual(mine.get_secret_value(SecretId="tags-blue")["SecretString"], "blue")
        self.assertEqual(mine.get_secret_value(SecretId=arns["blue"])["SecretString"], "blue")
        denied(mine.get_secret_value, SecretId="tags-red")
        denied(mine.get_secret_value, SecretId=arns["red"])
        for a in arns.values():
            sm.delete_secret(SecretId=a, ForceDeleteWithoutRecovery=True)

        # ECR: a repository's tags, read with its policy.
        ecr = client("ecr")
        for team in ("blue", "red"):
            ecr.create_repository(repositoryName=f"tags/{team}", tags=[{"Key": "team", "Value": team}])
        got = client("ecr", tess).describe_repositories(repositoryNames=["tags/blue"])["repositories"]
        self.assertEqual(got[0]["repositoryName"], "tags/blue")
        denied(client("ecr", tess).describe_repositories, repositoryNames=["tags/red"])
        for team in ("blue", "red"):
            ecr.delete_repository(repositoryName=f"tags/{team}")

        # IAM (form-encoded): every key of aws:TagKeys must be allowed; untagging names keys.
        me = client("iam", tess)
        me.tag_user(UserName="tess", Tags=[{"Key": "team", "Value": "blue"}, {"Key": "env", "Value": "dev"}])
        denied(me.tag_user, UserName="tess", Tags=[{"Key": "team", "Value": "x"}, {"Key": "cost", "Value": "1"}])
        me.untag_user(UserName="tess", TagKeys=["env"])
        denied(me.untag_user, UserName="tess", TagKeys=["team", "cost"])
        tags = self.iam.list_user_tags(UserName="tess")["Tags"]
        self.assertEqual(tags, [{"Key": "team", "Value": "blue"}])


if __name__ == "__main__":
    unittest.main(verbosity=2)
