"""End to end with boto3 (and botocore's own signer) against a running berth server.

Run by the Rust test `boto3_suite` (tests/ecs_boto3.rs), which starts the server and sets
BERTH_ENDPOINT and the AWS_* variables pointing at the server's own credentials.
"""

import datetime
import json
import os
import unittest
import urllib.error
import urllib.request
from unittest import mock

import boto3
import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
ACCOUNT = "123456789012"
TARGET = "AmazonEC2ContainerServiceV20141113."


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


def raw(operation, body, sign=True, headers=None, when=None):
    """POSTs `body` (bytes) as `operation`, signed by botocore; returns (status, headers, json)."""
    hdrs = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    hdrs.update(headers or {})
    req = AWSRequest(method="POST", url=ENDPOINT + "/", data=body, headers=hdrs)
    if sign:
        creds = botocore.session.get_session().get_credentials()
        signer = botocore.auth.SigV4Auth(creds, "ecs", "us-east-1")
        if when is None:
            signer.add_auth(req)
        else:
            with mock.patch.object(botocore.auth, "get_current_datetime", return_value=when):
                signer.add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=body, method="POST", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def lower(h):
    return {k.lower(): v for k, v in h.items()}


class Clusters(unittest.TestCase):
    def test_pagination_with_boto3_paginator(self):
        c = ecs()
        names = [f"page-{i:03d}" for i in range(120)]
        for n in names:
            c.create_cluster(clusterName=n)
        arns = []
        pages = 0
        for page in c.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 50}):
            pages += 1
            arns += page["clusterArns"]
        self.assertEqual(pages, 3)
        got = [a.split("/")[-1] for a in arns if "/page-" in a]
        self.assertEqual(got, names)
        with self.assertRaises(ClientError) as e:
            c.list_clusters(maxResults=101)
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")
        with self.assertRaises(ClientError) as e:
            c.list_clusters(nextToken="not-a-token")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")

    def test_modeled_exceptions(self):
        c = ecs()
        with self.assertRaises(c.exceptions.ClusterNotFoundException):
            c.delete_cluster(cluster="never-created")
        r = c.describe_clusters(clusters=["never-created"])
        self.assertEqual(r["clusters"], [])
        self.assertEqual(r["failures"][0]["reason"], "MISSING")


FULL = {
    "family": "full",
    "taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/app",
    "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/exec",
    "networkMode": "bridge",
    "containerDefinitions": [
        {
            "name": "db",
            "image": "postgres:16",
            "memoryReservation": 128,
            "memory": 256,
            "essential": False,
            "healthCheck": {"command": ["CMD-SHELL", "pg_isready"], "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 10},
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/var/lib/postgresql/data", "readOnly": False}],
            "ulimits": [{"name": "nofile", "softLimit": 1024, "hardLimit": 4096}],
        },
        {
            "name": "web",
            "image": "berth-demo:latest",
            "cpu": 256,
            "memory": 128,
            "essential": True,
            "links": ["db:database"],
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}, {"containerPort": 53, "protocol": "udp"}],
            "command": ["/hello", "-listen", ":8080"],
            "entryPoint": ["/bin/sh", "-c"],
            "environment": [{"name": "A", "value": "1"}],
            "workingDirectory": "/",
            "user": "1000",
            "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
            "stopTimeout": 30,
            "startTimeout": 60,
            "readonlyRootFilesystem": True,
            "privileged": False,
            "linuxParameters": {"initProcessEnabled": True, "sharedMemorySize": 64, "capabilities": {"add": ["NET_ADMIN"]},
                                 "tmpfs": [{"containerPath": "/tmp", "size": 64}]},
            "dockerLabels": {"team": "core"},
            "extraHosts": [{"hostname": "db.local", "ipAddress": "10.0.0.5"}],
            "dnsServers": ["1.1.1.1"],
            "hostname": "web",
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "10m"}},
            "volumesFrom": [{"sourceContainer": "db", "readOnly": True}],
        },
    ],
    "volumes": [{"name": "data", "dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True, "driver": "local"}}],
    "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"}],
    "requiresCompatibilities": ["EC2"],
    "pidMode": "task",
    "ipcMode": "task",
    "tags": [{"key": "k", "value": "v"}],
}


class TaskDefinitions(unittest.TestCase):
    def test_full_model_round_trips(self):
        c = ecs()
        r = c.register_task_definition(**FULL)
        td = r["taskDefinition"]
        d = c.describe_task_definition(taskDefinition="full", include=["TAGS"])
        self.assertEqual(d["taskDefinition"], td)
        self.assertEqual(d["tags"], [{"key": "k", "value": "v"}])
        web = td["containerDefinitions"][1]
        for key in ("links", "dependsOn", "linuxParameters", "dockerLabels", "extraHosts", "healthCheck" if False else "dnsServers",
                    "logConfiguration", "volumesFrom", "entryPoint", "command", "stopTimeout", "readonlyRootFilesystem"):
            self.assertEqual(web[key], FULL["containerDefinitions"][1][key], key)
        self.assertEqual(td["volumes"], FULL["volumes"])
        self.assertEqual(td["placementConstraints"], FULL["placementConstraints"])
        self.assertEqual(td["taskRoleArn"], FULL["taskRoleArn"])
        names = {a["name"] for a in td["requiresAttributes"]}
        self.assertIn("com.amazonaws.ecs.capability.task-iam-role", names)
        self.assertIn("ecs.capability.container-ordering", names)
        self.assertIsInstance(td["registeredAt"], datetime.datetime)

    def test_fargate_sizes(self):
        c = ecs()
        ok = c.register_task_definition(
            family="fg", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="512",
            containerDefinitions=[{"name": "a", "image": "i"}])
        self.assertIn("FARGATE", ok["taskDefinition"]["compatibilities"])
        with self.assertRaises(ClientError) as e:
            c.register_task_definition(
                family="fg", requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="256", memory="4096",
                containerDefinitions=[{"name": "a", "image": "i"}])
        self.assertEqual(e.exception.response["Error"]["Code"], "ClientException")
        with self.assertRaises(ClientError) as e:
            c.register_task_definition(
                family="fg", requiresCompatibilities=["FARGATE"], networkMode="bridge", cpu="256", memory="512",
                containerDefinitions=[{"name": "a", "image": "i"}])
        self.assertEqual(e.exception.response["Error"]["Code"], "ClientException")

    def test_list_paginator_and_families(self):
        c = ecs()
        for _ in range(12):
            c.register_task_definition(family="pg", containerDefinitions=[{"name": "a", "image": "i", "memory": 32}])
        arns = []
        for page in c.get_paginator("list_task_definitions").paginate(familyPrefix="pg", PaginationConfig={"PageSize": 5}):
            arns += page["taskDefinitionArns"]
        self.assertEqual([int(a.rsplit(":", 1)[1]) for a in arns], list(range(1, 13)))
        fams = []
        for page in c.get_paginator("list_task_definition_families").paginate(familyPrefix="p", PaginationConfig={"PageSize": 1}):
            fams += page["families"]
        self.assertEqual(fams, ["pg"])


class Protocol(unittest.TestCase):
    def test_malformed_json(self):
        status, h, body = raw("ListClusters", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(body["__type"], "SerializationException")
        self.assertIn("x-amzn-requestid", lower(h))
        self.assertEqual(lower(h)["x-amzn-errortype"], "SerializationException")

    def test_wrong_member_type_names_the_field(self):
        body = json.dumps({"family": "t", "containerDefinitions": [{"name": "a", "image": "i", "memory": "lots"}]}).encode()
        status, _, r = raw("RegisterTaskDefinition", body)
        self.assertEqual(status, 400)
        self.assertEqual(r["__type"], "SerializationException")
        self.assertIn("containerDefinitions[0].memory", r["message"])

    def test_bad_enum_names_the_field(self):
        body = json.dumps({"family": "t", "networkMode": "mesh", "containerDefinitions": [{"name": "a", "image": "i", "memory": 8}]}).encode()
        status, _, r = raw("RegisterTaskDefinition", body)
        self.assertEqual(status, 400)
        self.assertEqual(r["__type"], "InvalidParameterException")
        self.assertIn("networkMode", r["message"])
        self.assertIn("awsvpc", r["message"])

    def test_missing_required_member(self):
        status, _, r = raw("RegisterTaskDefinition", b'{"family": "t"}')
        self.assertEqual(status, 400)
        self.assertEqual(r["__type"], "InvalidParameterException")
        self.assertIn("containerDefinitions", r["message"])

    def test_unknown_operation(self):
        status, _, r = raw("FlyToTheMoon", b"{}")
        self.assertEqual(status, 400)
        self.assertEqual(r["__type"], "UnknownOperationException")

    def test_unsigned_request(self):
        status, _, r = raw("ListClusters", b"{}", sign=False)
        self.assertEqual(status, 403)
        self.assertEqual(r["__type"], "MissingAuthenticationTokenException")

    def test_expired_and_future_signatures(self):
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        for delta in (datetime.timedelta(minutes=-10), datetime.timedelta(minutes=10)):
            status, _, r = raw("ListClusters", b"{}", when=now + delta)
            self.assertEqual(status, 403, delta)
            self.assertEqual(r["__type"], "InvalidSignatureException")
            self.assertIn("Signature", r["message"])
        status, _, _ = raw("ListClusters", b"{}", when=now - datetime.timedelta(minutes=4))
        self.assertEqual(status, 200)

    def test_tampered_body_is_refused(self):
        body = b'{"clusterName": "a"}'
        hdrs = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + "CreateCluster"}
        req = AWSRequest(method="POST", url=ENDPOINT + "/", data=body, headers=hdrs)
        creds = botocore.session.get_session().get_credentials()
        botocore.auth.SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
        prepared = req.prepare()
        r = urllib.request.Request(prepared.url, data=b'{"clusterName": "b"}', method="POST", headers=dict(prepared.headers))
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(r)
        self.assertEqual(e.exception.code, 403)
        self.assertEqual(json.loads(e.exception.read())["__type"], "InvalidSignatureException")

    def test_oversized_body(self):
        big = b'{"family": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        status, _, r = raw("RegisterTaskDefinition", big)
        self.assertEqual(status, 413)
        self.assertEqual(r["__type"], "RequestEntityTooLargeException")



class RunTaskIdempotency(unittest.TestCase):
    def test_a_client_token_reused_with_other_parameters_is_a_conflict(self):
        c = ecs()
        cluster = "idempotency"
        c.create_cluster(clusterName=cluster)
        # An instance registered by hand (no agent): RunTask places on it while its
        # registration counts as a heartbeat.
        c.register_container_instance(
            cluster=cluster,
            instanceIdentityDocument=json.dumps({"instanceId": "i-0000000000000idem"}),
            totalResources=[{"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                            {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}])
        c.register_task_definition(family="idem", containerDefinitions=[
            {"name": "web", "image": "berth-demo:latest", "memory": 16}])
        first = c.run_task(cluster=cluster, taskDefinition="idem", clientToken="tok-1")
        arns = [t["taskArn"] for t in first["tasks"]]
        self.assertEqual(len(arns), 1)
        again = c.run_task(cluster=cluster, taskDefinition="idem", clientToken="tok-1", count=1)
        self.assertEqual([t["taskArn"] for t in again["tasks"]], arns)
        with self.assertRaises(c.exceptions.ConflictException) as e:
            c.run_task(cluster=cluster, taskDefinition="idem", clientToken="tok-1", count=2)
        self.assertEqual(e.exception.response["Error"]["Code"], "ConflictException")
        self.assertEqual(e.exception.response["resourceIds"], arns)
        self.assertIn("tok-1", e.exception.response["Error"]["Message"])
        self.assertEqual(len(c.list_tasks(cluster=cluster)["taskArns"]), 1)

if __name__ == "__main__":
    unittest.main(verbosity=2)
