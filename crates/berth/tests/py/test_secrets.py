"""Secrets Manager and SSM Parameter Store through boto3 (botocore's own models, signer,
parsers and paginators) against a running berth server. Run by the Rust test in
tests/secrets.rs, which starts the server and sets BERTH_ENDPOINT and the administrator's
credentials."""

import base64
import json
import os
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]


def client(service):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1")


class SecretsWithBoto3(unittest.TestCase):
    def test_binary_secrets_batches_and_paginators(self):
        sm = client("secretsmanager")
        blob = bytes(range(256))
        arn = sm.create_secret(Name="py/blob", SecretBinary=blob)["ARN"]
        got = sm.get_secret_value(SecretId=arn)
        self.assertEqual(got["SecretBinary"], blob)
        self.assertNotIn("SecretString", got)
        for i in range(5):
            sm.create_secret(Name=f"py/page-{i}", SecretString=f"v{i}")
        pages = sm.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": ["py/page-"]}], PaginationConfig={"PageSize": 2}
        )
        names = [s["Name"] for p in pages for s in p["SecretList"]]
        self.assertEqual(sorted(names), [f"py/page-{i}" for i in range(5)])
        batch = sm.batch_get_secret_value(SecretIdList=["py/page-1", "py/missing"])
        self.assertEqual([v["SecretString"] for v in batch["SecretValues"]], ["v1"])
        self.assertEqual(batch["Errors"][0]["ErrorCode"], "ResourceNotFoundException")
        with self.assertRaises(ClientError) as e:
            sm.create_secret(Name="py/both", SecretString="a", SecretBinary=b"b")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")

    def test_parameters_by_path_paginate_and_decrypt(self):
        ssm = client("ssm")
        for i in range(7):
            ssm.put_parameter(Name=f"/py/app/p{i}", Value=f"value-{i}", Type="SecureString")
        ssm.put_parameter(Name="/py/app/deep/x", Value="deep", Type="String")
        pages = ssm.get_paginator("get_parameters_by_path").paginate(
            Path="/py/app", WithDecryption=True, PaginationConfig={"PageSize": 3}
        )
        got = {p["Name"]: p["Value"] for page in pages for p in page["Parameters"]}
        self.assertEqual(got, {f"/py/app/p{i}": f"value-{i}" for i in range(7)})
        pages = ssm.get_paginator("get_parameters_by_path").paginate(
            Path="/py/app", Recursive=True, ParameterFilters=[{"Key": "Type", "Values": ["String"]}]
        )
        self.assertEqual([p["Name"] for pg in pages for p in pg["Parameters"]], ["/py/app/deep/x"])
        raw = ssm.get_parameter(Name="/py/app/p0")["Parameter"]["Value"]
        self.assertNotEqual(raw, "value-0")
        base64.b64decode(raw)  # the sealed form, not the value
        desc = ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "BeginsWith", "Values": ["/py/app/p"]}]
        )["Parameters"]
        self.assertEqual(len(desc), 7)
        self.assertEqual(desc[0]["KeyId"], "alias/aws/ssm")



def code(e):
    return e.exception.response["Error"]["Code"]


class SecretsManagerApi(unittest.TestCase):
    """Version stages, idempotency tokens, filters, policies, tags, deletion and restore."""

    def test_versions_stages_and_tokens(self):
        sm = client("secretsmanager")
        token = "11111111-2222-3333-4444-555555555555"
        created = sm.create_secret(
            Name="api/db", SecretString="first", ClientRequestToken=token,
            Description="the database", Tags=[{"Key": "team", "Value": "blue"}],
        )
        arn = created["ARN"]
        self.assertRegex(arn, r"^arn:aws:secretsmanager:us-east-1:\d{12}:secret:api/db-[A-Za-z0-9]{6}$")
        self.assertEqual(created["VersionId"], token)
        again = sm.create_secret(Name="api/db", SecretString="first", ClientRequestToken=token)
        self.assertEqual(again["ARN"], arn)
        with self.assertRaises(ClientError) as e:
            sm.create_secret(Name="api/db", SecretString="x")
        self.assertEqual(code(e), "ResourceExistsException")
        with self.assertRaises(ClientError) as e:
            sm.create_secret(Name="bad name!", SecretString="x")
        self.assertEqual(code(e), "InvalidParameterException")
        v2 = sm.put_secret_value(SecretId=arn, SecretString="second")
        self.assertEqual(v2["VersionStages"], ["AWSCURRENT"])
        with self.assertRaises(ClientError) as e:
            sm.put_secret_value(SecretId="api/db", SecretString="changed", ClientRequestToken=token)
        self.assertEqual(code(e), "ResourceExistsException")
        self.assertEqual(sm.get_secret_value(SecretId="api/db")["SecretString"], "second")
        prev = sm.get_secret_value(SecretId=arn, VersionStage="AWSPREVIOUS")
        self.assertEqual((prev["SecretString"], prev["VersionId"]), ("first", token))
        self.assertEqual(sm.get_secret_value(SecretId=arn[:-7], VersionId=token)["SecretString"], "first")
        v3 = sm.put_secret_value(SecretId="api/db", SecretString="third", VersionStages=["AWSPENDING"])["VersionId"]
        self.assertEqual(sm.get_secret_value(SecretId="api/db")["SecretString"], "second")
        with self.assertRaises(ClientError) as e:
            sm.update_secret_version_stage(SecretId="api/db", VersionStage="AWSCURRENT", MoveToVersionId=v3)
        self.assertEqual(code(e), "InvalidParameterException")
        sm.update_secret_version_stage(
            SecretId="api/db", VersionStage="AWSCURRENT",
            RemoveFromVersionId=v2["VersionId"], MoveToVersionId=v3,
        )
        d = sm.describe_secret(SecretId="api/db")
        self.assertNotIn("SecretString", d)
        stages = d["VersionIdsToStages"]
        self.assertEqual(stages[v2["VersionId"]], ["AWSPREVIOUS"])
        self.assertEqual(sorted(stages[v3]), ["AWSCURRENT", "AWSPENDING"])
        self.assertNotIn(token, stages)  # no label left: deprecated
        self.assertEqual(len(sm.list_secret_version_ids(SecretId="api/db")["Versions"]), 2)
        self.assertEqual(len(sm.list_secret_version_ids(SecretId="api/db", IncludeDeprecated=True)["Versions"]), 3)
        with self.assertRaises(ClientError) as e:
            sm.get_secret_value(SecretId="api/db", VersionStage="NOPE")
        self.assertEqual(code(e), "ResourceNotFoundException")

    def test_filters_tags_and_policies(self):
        sm = client("secretsmanager")
        for n in ["flt/a", "flt/b", "flt/c"]:
            sm.create_secret(Name=n, SecretString="v", Description=f"about {n}")
        sm.tag_resource(SecretId="flt/a", Tags=[{"Key": "env", "Value": "prod"}, {"Key": "t", "Value": "1"}])
        sm.untag_resource(SecretId="flt/a", TagKeys=["t"])
        sm.update_secret(SecretId="flt/a", Description="changed")
        self.assertEqual(sm.describe_secret(SecretId="flt/a")["Tags"], [{"Key": "env", "Value": "prod"}])
        page = sm.list_secrets(Filters=[{"Key": "name", "Values": ["flt/"]}], MaxResults=2)
        self.assertEqual(len(page["SecretList"]), 2)
        rest = sm.list_secrets(Filters=[{"Key": "name", "Values": ["flt/"]}], MaxResults=2, NextToken=page["NextToken"])
        self.assertEqual(len(rest["SecretList"]), 1)
        self.assertNotIn("NextToken", rest)
        tagged = sm.list_secrets(Filters=[{"Key": "tag-value", "Values": ["prod"]}])["SecretList"]
        self.assertEqual([s["Name"] for s in tagged], ["flt/a"])
        desc = sm.list_secrets(Filters=[{"Key": "description", "Values": ["about flt/b"]}])["SecretList"]
        self.assertEqual([s["Name"] for s in desc], ["flt/b"])
        with self.assertRaises(ClientError) as e:
            sm.put_resource_policy(SecretId="flt/a", ResourcePolicy='{"nope": 1}')
        self.assertEqual(code(e), "MalformedPolicyDocumentException")
        policy = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:role/reader"},
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
        sm.put_resource_policy(SecretId="flt/a", ResourcePolicy=policy)
        public = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": "*", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})
        with self.assertRaises(ClientError) as e:
            sm.put_resource_policy(SecretId="flt/a", ResourcePolicy=public, BlockPublicPolicy=True)
        self.assertEqual(code(e), "PublicPolicyException")
        got = sm.get_resource_policy(SecretId="flt/a")["ResourcePolicy"]
        self.assertEqual(json.loads(got), json.loads(policy))
        self.assertFalse(sm.validate_resource_policy(ResourcePolicy="{}")["PolicyValidationPassed"])
        sm.delete_resource_policy(SecretId="flt/a")
        self.assertNotIn("ResourcePolicy", sm.get_resource_policy(SecretId="flt/a"))

    def test_deletion_and_restore(self):
        sm = client("secretsmanager")
        for n in ["del/a", "del/b"]:
            sm.create_secret(Name=n, SecretString="v")
        with self.assertRaises(ClientError) as e:
            sm.delete_secret(SecretId="del/a", RecoveryWindowInDays=3)
        self.assertEqual(code(e), "InvalidParameterException")
        with self.assertRaises(ClientError) as e:
            sm.delete_secret(SecretId="del/a", RecoveryWindowInDays=7, ForceDeleteWithoutRecovery=True)
        self.assertEqual(code(e), "InvalidParameterException")
        self.assertIn("DeletionDate", sm.delete_secret(SecretId="del/a", RecoveryWindowInDays=7))
        for call in (lambda: sm.get_secret_value(SecretId="del/a"),
                     lambda: sm.put_secret_value(SecretId="del/a", SecretString="x"),
                     lambda: sm.delete_secret(SecretId="del/a")):
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual(code(e), "InvalidRequestException")
        with self.assertRaises(ClientError) as e:
            sm.create_secret(Name="del/a", SecretString="x")
        self.assertEqual(code(e), "InvalidRequestException")
        self.assertEqual(sm.list_secrets(Filters=[{"Key": "name", "Values": ["del/a"]}])["SecretList"], [])
        planned = sm.list_secrets(IncludePlannedDeletion=True, Filters=[{"Key": "name", "Values": ["del/a"]}])
        self.assertIn("DeletedDate", planned["SecretList"][0])
        self.assertIn("DeletedDate", sm.describe_secret(SecretId="del/a"))
        sm.restore_secret(SecretId="del/a")
        self.assertEqual(sm.get_secret_value(SecretId="del/a")["SecretString"], "v")
        sm.delete_secret(SecretId="del/b", ForceDeleteWithoutRecovery=True)
        with self.assertRaises(ClientError) as e:
            sm.describe_secret(SecretId="del/b")
        self.assertEqual(code(e), "ResourceNotFoundException")


class ParameterStoreApi(unittest.TestCase):
    """Versions, labels, selectors, paths, filters, tags and SSM's errors."""

    def test_parameters(self):
        ssm = client("ssm")
        self.assertEqual(ssm.put_parameter(Name="/p/url", Value="host-a", Type="String")["Version"], 1)
        with self.assertRaises(ClientError) as e:
            ssm.put_parameter(Name="/p/url", Value="x", Type="String")
        self.assertEqual(code(e), "ParameterAlreadyExists")
        self.assertEqual(ssm.put_parameter(Name="/p/url", Value="host-b", Overwrite=True)["Version"], 2)
        ssm.put_parameter(Name="/p/hosts", Value="a,b,c", Type="StringList", Tags=[{"Key": "team", "Value": "blue"}])
        ssm.put_parameter(Name="/p/deep/key", Value="sekrit", Type="SecureString", Description="a key")
        for name, c in [("/aws/mine", "ValidationException"), ("ssm-x", "ValidationException"), ("a/b", "ValidationException")]:
            with self.assertRaises(ClientError) as e:
                ssm.put_parameter(Name=name, Value="x", Type="String")
            self.assertEqual(code(e), c, name)
        with self.assertRaises(ClientError) as e:
            ssm.put_parameter(Name="/p/pin", Value="12a", Type="String", AllowedPattern="^[0-9]+$")
        self.assertEqual(code(e), "ParameterPatternMismatchException")
        with self.assertRaises(ClientError) as e:
            ssm.put_parameter(Name="/p/big", Value="x" * 5000, Type="String")
        self.assertEqual(code(e), "ValidationException")
        self.assertEqual(ssm.put_parameter(Name="/p/big", Value="x" * 5000, Type="String", Tier="Advanced")["Tier"], "Advanced")
        get = lambda n, **kw: ssm.get_parameter(Name=n, **kw)["Parameter"]
        v1 = get("/p/url:1")
        self.assertEqual((v1["Value"], v1["Selector"], v1["Version"]), ("host-a", ":1", 1))
        self.assertNotEqual(get("/p/deep/key")["Value"], "sekrit")
        self.assertEqual(get("/p/deep/key", WithDecryption=True)["Value"], "sekrit")
        self.assertEqual(get("arn:aws:ssm:us-east-1:123456789012:parameter/p/url")["Value"], "host-b")
        l = ssm.label_parameter_version(Name="/p/url", ParameterVersion=1, Labels=["stable", "1bad"])
        self.assertEqual(l["InvalidLabels"], ["1bad"])
        self.assertEqual(get("/p/url:stable")["Value"], "host-a")
        ssm.label_parameter_version(Name="/p/url", Labels=["stable"])  # moves to the latest
        self.assertEqual(get("/p/url:stable")["Value"], "host-b")
        with self.assertRaises(ClientError) as e:
            get("/p/url:9")
        self.assertEqual(code(e), "ParameterVersionNotFound")
        both = ssm.get_parameters(Names=["/p/url", "/p/none", "/p/url:stable"])
        self.assertEqual(both["InvalidParameters"], ["/p/none"])
        self.assertEqual(len(both["Parameters"]), 2)
        hist = ssm.get_parameter_history(Name="/p/url")["Parameters"]
        self.assertEqual([(h["Version"], h["Labels"]) for h in hist], [(1, []), (2, ["stable"])])
        un = ssm.unlabel_parameter_version(Name="/p/url", ParameterVersion=2, Labels=["stable", "x"])
        self.assertEqual((un["RemovedLabels"], un["InvalidLabels"]), (["stable"], ["x"]))
        names = lambda ps: sorted(p["Name"] for p in ps)
        self.assertEqual(names(ssm.get_parameters_by_path(Path="/p")["Parameters"]), ["/p/big", "/p/hosts", "/p/url"])
        deep = ssm.get_parameters_by_path(Path="/p/", Recursive=True, WithDecryption=True)["Parameters"]
        self.assertEqual(names(deep), ["/p/big", "/p/deep/key", "/p/hosts", "/p/url"])
        secure = ssm.describe_parameters(ParameterFilters=[
            {"Key": "Type", "Values": ["SecureString"]}, {"Key": "Path", "Option": "Recursive", "Values": ["/p"]}])
        self.assertEqual(names(secure["Parameters"]), ["/p/deep/key"])
        self.assertEqual(secure["Parameters"][0]["Description"], "a key")
        self.assertNotIn("sekrit", json.dumps(secure, default=str))
        with self.assertRaises(ClientError) as e:
            ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Option": "Sideways", "Values": ["x"]}])
        self.assertEqual(code(e), "InvalidFilterOption")
        ssm.add_tags_to_resource(ResourceType="Parameter", ResourceId="/p/hosts", Tags=[{"Key": "env", "Value": "dev"}])
        ssm.remove_tags_from_resource(ResourceType="Parameter", ResourceId="/p/hosts", TagKeys=["team"])
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/p/hosts")["TagList"]
        self.assertEqual(tags, [{"Key": "env", "Value": "dev"}])
        with self.assertRaises(ClientError) as e:
            ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId="/none")
        self.assertEqual(code(e), "InvalidResourceId")
        ssm.delete_parameter(Name="/p/hosts")
        with self.assertRaises(ClientError) as e:
            ssm.delete_parameter(Name="/p/hosts")
        self.assertEqual(code(e), "ParameterNotFound")
        d = ssm.delete_parameters(Names=["/p/big", "/p/none"])
        self.assertEqual((d["DeletedParameters"], d["InvalidParameters"]), (["/p/big"], ["/p/none"]))
        ami = get("/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id")
        self.assertTrue(ami["Value"].startswith("ami-"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
