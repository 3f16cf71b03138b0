"""Host safety in IAM (issue #16) through boto3 against a running berth server: a task
definition asking for privileged containers, host namespaces or host paths needs Berth's own
IAM actions (berth:RunPrivileged, berth:UseHostNetwork, berth:MountHostPath...) on every
operation that registers or runs it; "Action": "*" does not grant them, a named grant does, its
conditions apply, a deny wins, the administrator needs none. Run by tests/iam.rs (one server
for the file), which sets BERTH_ENDPOINT and the administrator's credentials."""

import json
import os
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
ACCOUNT = "123456789012"
TD = f"arn:aws:ecs:us-east-1:{ACCOUNT}:task-definition"


def client(service, creds=None):
    kw = {}
    if creds:
        kw = {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"]}
    return boto3.client(service, endpoint_url=ENDPOINT, region_name="us-east-1", **kw)


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def container(**extra):
    return dict({"name": "a", "image": "berth-demo:latest", "memory": 16}, **extra)


EVERYTHING = {"Effect": "Allow", "Action": "*", "Resource": "*"}


class HostPermissions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.iam = client("iam")
        cls.iam.create_user(UserName="hoster")
        cls.key = cls.iam.create_access_key(UserName="hoster")["AccessKey"]
        cls.admin = client("ecs")
        cls.admin.create_cluster(clusterName="hp")
        cls.ecs = client("ecs", cls.key)

    def allow(self, *statements):
        self.iam.put_user_policy(UserName="hoster", PolicyName="p", PolicyDocument=doc(*statements))

    def denied(self, call, action, resource, field):
        with self.assertRaises(ClientError) as e:
            call()
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "AccessDeniedException", err)
        self.assertIn(
            f"User: arn:aws:iam::{ACCOUNT}:user/hoster is not authorized to perform: {action} on resource: {resource}",
            err["Message"],
        )
        self.assertIn(f"(the task definition asks for {field})", err["Message"])
        return err["Message"]

    def test_register_needs_named_berth_actions(self):
        self.allow(EVERYTHING)
        reg = self.ecs.register_task_definition
        # A plain task definition: "*" is enough.
        self.assertEqual(reg(family="hp-plain", containerDefinitions=[container()])["taskDefinition"]["revision"], 1)
        # "*" (AdministratorAccess) does not grant berth: actions.
        msg = self.denied(
            lambda: reg(family="hp-priv", containerDefinitions=[container(privileged=True)]),
            "berth:RunPrivileged",
            f"{TD}/hp-priv:*",
            "containerDefinitions[0].privileged",
        )
        self.assertIn("because no identity-based policy allows the berth:RunPrivileged action", msg)
        self.denied(
            lambda: reg(family="hp-net", networkMode="host", containerDefinitions=[container()]),
            "berth:UseHostNetwork",
            f"{TD}/hp-net:*",
            "networkMode=host",
        )
        self.denied(
            lambda: reg(family="hp-pid", pidMode="host", containerDefinitions=[container()]),
            "berth:UseHostPid",
            f"{TD}/hp-pid:*",
            "pidMode=host",
        )
        caps = [container(linuxParameters={"capabilities": {"add": ["NET_ADMIN"]}})]
        self.denied(
            lambda: reg(family="hp-cap", containerDefinitions=caps),
            "berth:AddCapabilities",
            f"{TD}/hp-cap:*",
            "containerDefinitions[0].linuxParameters.capabilities.add=NET_ADMIN",
        )

        def host_path(path):
            return reg(
                family="hp-path",
                containerDefinitions=[container(mountPoints=[{"sourceVolume": "h", "containerPath": "/h"}])],
                volumes=[{"name": "h", "host": {"sourcePath": path}}],
            )

        # Named grants, with their conditions.
        self.allow(
            EVERYTHING,
            {"Effect": "Allow", "Action": "berth:RunPrivileged", "Resource": f"{TD}/hp-priv:*"},
            {
                "Effect": "Allow",
                "Action": "berth:MountHostPath",
                "Resource": "*",
                "Condition": {"StringLike": {"berth:HostPath": "/srv/*"}},
            },
        )
        got = reg(family="hp-priv", containerDefinitions=[container(privileged=True)])["taskDefinition"]
        self.assertTrue(got["containerDefinitions"][0]["privileged"])
        self.assertEqual(host_path("/srv/data")["taskDefinition"]["family"], "hp-path")
        self.denied(lambda: host_path("/etc"), "berth:MountHostPath", f"{TD}/hp-path:*", "volumes[0].host.sourcePath=/etc")
        # The grant names one family only.
        self.denied(
            lambda: reg(family="hp-other", containerDefinitions=[container(privileged=True)]),
            "berth:RunPrivileged",
            f"{TD}/hp-other:*",
            "containerDefinitions[0].privileged",
        )
        # berth:* grants them all; an explicit deny still wins.
        self.allow(
            EVERYTHING,
            {"Effect": "Allow", "Action": "berth:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "berth:UseHost*", "Resource": "*"},
        )
        self.assertEqual(reg(family="hp-cap", containerDefinitions=caps)["taskDefinition"]["revision"], 1)
        msg = self.denied(
            lambda: reg(family="hp-net", networkMode="host", containerDefinitions=[container()]),
            "berth:UseHostNetwork",
            f"{TD}/hp-net:*",
            "networkMode=host",
        )
        self.assertIn("with an explicit deny in an identity-based policy", msg)

    def test_running_a_dangerous_task_definition_needs_them_too(self):
        # The administrator registers it (and needs no berth: action).
        td = self.admin.register_task_definition(
            family="hp-run", networkMode="host", containerDefinitions=[container(privileged=True)]
        )["taskDefinition"]
        self.assertEqual(td["revision"], 1)
        self.allow(EVERYTHING)
        arn = f"{TD}/hp-run:1"
        # RunTask by family alone: the resolved revision is the resource; the first setting
        # that is not granted is named.
        self.denied(
            lambda: self.ecs.run_task(cluster="hp", taskDefinition="hp-run"),
            "berth:RunPrivileged",
            arn,
            "containerDefinitions[0].privileged",
        )
        self.denied(
            lambda: self.ecs.create_service(cluster="hp", serviceName="s", taskDefinition="hp-run:1", desiredCount=0),
            "berth:RunPrivileged",
            arn,
            "containerDefinitions[0].privileged",
        )
        # Granted on another cluster only: ecs:cluster applies.
        cluster = f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/hp"
        self.allow(
            EVERYTHING,
            {
                "Effect": "Allow",
                "Action": ["berth:RunPrivileged", "berth:UseHostNetwork"],
                "Resource": f"{TD}/hp-run:*",
                "Condition": {"StringEquals": {"ecs:cluster": f"arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/other"}},
            },
        )
        self.denied(
            lambda: self.ecs.start_task(cluster="hp", taskDefinition=arn, containerInstances=["x"]),
            "berth:RunPrivileged",
            arn,
            "containerDefinitions[0].privileged",
        )
        # Granted on this cluster: RunTask and CreateService pass authorization (no instance
        # is registered: RunTask answers ECS's error for an empty cluster, not a denial).
        self.allow(
            EVERYTHING,
            {
                "Effect": "Allow",
                "Action": ["berth:RunPrivileged", "berth:UseHostNetwork"],
                "Resource": f"{TD}/hp-run:*",
                "Condition": {"StringEquals": {"ecs:cluster": cluster}},
            },
        )
        with self.assertRaises(ClientError) as e:
            self.ecs.run_task(cluster="hp", taskDefinition="hp-run")
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "InvalidParameterException", err)
        self.assertEqual(err["Message"], "No Container Instances were found in your cluster.")
        svc = self.ecs.create_service(cluster="hp", serviceName="s", taskDefinition="hp-run:1", desiredCount=0)
        self.assertEqual(svc["service"]["taskDefinition"], arn)
        # UpdateService to a dangerous revision is checked; scaling without one is not.
        self.allow(EVERYTHING)
        self.ecs.update_service(cluster="hp", service="s", desiredCount=0)
        self.denied(
            lambda: self.ecs.update_service(cluster="hp", service="s", taskDefinition=arn),
            "berth:RunPrivileged",
            arn,
            "containerDefinitions[0].privileged",
        )
        self.admin.delete_service(cluster="hp", service="s", force=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
