"""Account settings and capacity providers end to end, driven by boto3.

Run by the Rust test `capacity_suite` (tests/capacity.rs), which starts `berth server` and
two `berth agent`s, the first with `--capacity-provider cp-a`, the second with
`--capacity-provider cp-b`, and passes their container instance ARNs in that order.
"""

import collections
import os
import sys
import time
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
A, B = sys.argv.pop(1).split(",")
WAIT = {"Delay": 1, "MaxAttempts": 90}
# Set from the default cluster's ARN (the account the server was started with).
PREFIX = ROOT = None


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


class Capacity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global PREFIX, ROOT
        c = cls.c = ecs()
        arn = c.create_cluster(clusterName="default")["cluster"]["clusterArn"]
        PREFIX = arn[:-len("cluster/default")]
        ROOT = f"arn:aws:iam::{arn.split(':')[4]}:root"
        cls.td = c.register_task_definition(family="capacity", containerDefinitions=[{
            "name": "web", "image": "berth-demo:latest", "memory": 16, "essential": True,
        }])["taskDefinition"]["taskDefinitionArn"]
        for name in ("cp-a", "cp-b"):
            c.create_capacity_provider(name=name, autoScalingGroupProvider={
                "autoScalingGroupArn": f"asg-{name}",
                "managedScaling": {"status": "ENABLED", "targetCapacity": 90},
                "managedTerminationProtection": "ENABLED",
            })
        c.put_cluster_capacity_providers(
            cluster="default", capacityProviders=["cp-a", "cp-b"],
            defaultCapacityProviderStrategy=[])

    def stop_all(self, arns):
        for arn in arns:
            self.c.stop_task(cluster="default", task=arn, reason="capacity suite")
        if arns:
            self.c.get_waiter("tasks_stopped").wait(cluster="default", tasks=arns, WaiterConfig=WAIT)

    def test_account_settings_round_trip_and_arn_formats(self):
        c = self.c
        eff = {s["name"]: s["value"] for s in c.list_account_settings(effectiveSettings=True, maxResults=10)["settings"]}
        self.assertEqual(eff["taskLongArnFormat"], "enabled")
        self.assertEqual(eff["containerInsights"], "disabled")
        # Pagination: maxResults 4 walks all 11 settings.
        names, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            r = c.list_account_settings(effectiveSettings=True, maxResults=4, **kw)
            names += [s["name"] for s in r["settings"]]
            token = r.get("nextToken")
            if not token:
                break
        self.assertEqual(len(names), 11)
        self.assertEqual(len(set(names)), 11)
        with self.assertRaises(ClientError) as e:
            c.put_account_setting(name="taskLongArnFormat", value="yes")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")

        # Short task and container instance ARNs for what is created from now on.
        s = c.put_account_setting(name="taskLongArnFormat", value="disabled")["setting"]
        self.assertEqual(s["principalArn"], ROOT)
        c.put_account_setting(name="containerInstanceLongArnFormat", value="disabled")
        self.assertEqual(
            c.list_account_settings(name="taskLongArnFormat")["settings"][0]["value"], "disabled")
        try:
            r = c.run_task(cluster="default", taskDefinition=self.td, launchType="EC2")
            self.assertEqual(r["failures"], [])
            short = r["tasks"][0]["taskArn"]
            task_id = short.rsplit("/", 1)[1]
            self.assertEqual(short, f"{PREFIX}task/{task_id}")
            c.get_waiter("tasks_running").wait(cluster="default", tasks=[short], WaiterConfig=WAIT)
            self.assertIn(short, c.list_tasks(cluster="default")["taskArns"])
            # The long form of the same id, and the bare id, name it too.
            by_id = c.describe_tasks(cluster="default", tasks=[task_id])["tasks"][0]
            self.assertEqual(by_id["taskArn"], short)
            self.stop_all([short])
            # A container instance registered now gets a short ARN, which resolves.
            ci = c.register_container_instance(cluster="default", totalResources=[
                {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 512}])["containerInstance"]
            arn = ci["containerInstanceArn"]
            self.assertEqual(arn, f"{PREFIX}container-instance/{arn.rsplit('/', 1)[1]}")
            got = c.describe_container_instances(cluster="default", containerInstances=[arn])
            self.assertEqual(got["failures"], [])
            c.deregister_container_instance(cluster="default", containerInstance=arn, force=True)
        finally:
            for name in ("taskLongArnFormat", "containerInstanceLongArnFormat"):
                c.delete_account_setting(name=name)
        r = c.run_task(cluster="default", taskDefinition=self.td, launchType="EC2")
        long_arn = r["tasks"][0]["taskArn"]
        self.assertTrue(long_arn.startswith(f"{PREFIX}task/default/"), long_arn)
        self.stop_all([long_arn])

        # serviceLongArnFormat disabled: a new service's ARN is service/<name>, which resolves
        # in the cluster the request names and cannot be tagged (as in ECS).
        c.put_account_setting(name="serviceLongArnFormat", value="disabled")
        try:
            s = c.create_service(cluster="default", serviceName="shortarn", taskDefinition=self.td,
                                 desiredCount=0)["service"]
        finally:
            c.delete_account_setting(name="serviceLongArnFormat")
        try:
            self.assertEqual(s["serviceArn"], f"{PREFIX}service/shortarn")
            self.assertIn(s["serviceArn"], c.list_services(cluster="default")["serviceArns"])
            got = c.describe_services(cluster="default", services=[s["serviceArn"]])
            self.assertEqual(got["services"][0]["serviceArn"], s["serviceArn"])
            with self.assertRaises(ClientError) as e:
                c.tag_resource(resourceArn=s["serviceArn"], tags=[{"key": "k", "value": "v"}])
            self.assertIn("Long arn format", e.exception.response["Error"]["Message"])
            later = c.create_service(cluster="default", serviceName="longarn", taskDefinition=self.td,
                                     desiredCount=0)["service"]["serviceArn"]
            self.assertEqual(later, f"{PREFIX}service/default/longarn")
        finally:
            for name in ("shortarn", "longarn"):
                c.delete_service(cluster="default", service=name, force=True)

        # containerInsights: the account default becomes new clusters' setting.
        c.put_account_setting_default(name="containerInsights", value="enhanced")
        try:
            cl = c.create_cluster(clusterName="insights")["cluster"]
            self.assertEqual(cl["settings"], [{"name": "containerInsights", "value": "enhanced"}])
            c.delete_cluster(cluster="insights")
        finally:
            c.put_account_setting_default(name="containerInsights", value="disabled")

    def test_capacity_provider_errors(self):
        c = self.c
        for name, code in (("FARGATE", "InvalidParameterException"),
                           ("aws-mine", "InvalidParameterException"),
                           ("cp-a", "ClientException")):
            with self.assertRaises(ClientError) as e:
                c.create_capacity_provider(name=name, autoScalingGroupProvider={"autoScalingGroupArn": "asg-x"})
            self.assertEqual(e.exception.response["Error"]["Code"], code, name)
        with self.assertRaises(ClientError) as e:
            c.create_capacity_provider(name="cp-x", autoScalingGroupProvider={
                "autoScalingGroupArn": "asg-x", "managedTerminationProtection": "ENABLED"})
        self.assertEqual(e.exception.response["Error"]["Code"], "ClientException")
        # Fargate providers are accepted on a cluster; a task definition Fargate cannot run
        # is refused as ECS refuses it, never run on EC2 capacity.
        c.create_cluster(clusterName="fargate-only", capacityProviders=["FARGATE", "FARGATE_SPOT"],
                         defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
        try:
            with self.assertRaises(ClientError) as e:
                c.run_task(cluster="fargate-only", taskDefinition=self.td)
            self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")
            self.assertEqual(e.exception.response["Error"]["Message"],
                             "Task definition does not support launch_type FARGATE.")
            with self.assertRaises(ClientError) as e:
                c.run_task(cluster="default", taskDefinition=self.td,
                           capacityProviderStrategy=[{"capacityProvider": "cp-a", "weight": 1}],
                           launchType="EC2")
            self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")
            with self.assertRaises(ClientError) as e:
                c.run_task(cluster="default", taskDefinition=self.td,
                           capacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
            self.assertIn("not associated with the cluster", e.exception.response["Error"]["Message"])
        finally:
            c.delete_cluster(cluster="fargate-only")
        # Deleting an associated provider: the call succeeds, the provider says why not.
        p = c.delete_capacity_provider(capacityProvider="cp-b")["capacityProvider"]
        self.assertEqual((p["status"], p["updateStatus"]), ("ACTIVE", "DELETE_FAILED"))
        self.assertIn("associated with cluster: default", p["updateStatusReason"])
        with self.assertRaises(ClientError) as e:
            c.delete_capacity_provider(capacityProvider="FARGATE")
        self.assertEqual(e.exception.response["Error"]["Code"], "ClientException")

    def test_capacity_providers_place_tasks_on_their_instances(self):
        c = self.c
        described = c.describe_capacity_providers()["capacityProviders"]
        self.assertEqual([p["name"] for p in described][:2], ["FARGATE", "FARGATE_SPOT"])
        mine = {p["name"]: p for p in described if p["name"] in ("cp-a", "cp-b")}
        self.assertEqual(set(mine), {"cp-a", "cp-b"})
        self.assertEqual(mine["cp-a"]["autoScalingGroupProvider"]["managedScaling"]["targetCapacity"], 90)
        self.assertEqual(mine["cp-a"]["capacityProviderArn"], f"{PREFIX}capacity-provider/cp-a")
        with_tags = c.describe_capacity_providers(capacityProviders=["cp-a", "nope"], include=["TAGS"])
        self.assertEqual(with_tags["failures"][0]["reason"], "MISSING")

        # cp-a base 2 weight 1, cp-b weight 1: 6 tasks are 2 + 2 on A and 2 on B.
        strategy = [{"capacityProvider": "cp-a", "base": 2, "weight": 1},
                    {"capacityProvider": "cp-b", "weight": 1}]
        r = c.run_task(cluster="default", taskDefinition=self.td, count=6, capacityProviderStrategy=strategy)
        self.assertEqual(r["failures"], [])
        arns = [t["taskArn"] for t in r["tasks"]]
        try:
            c.get_waiter("tasks_running").wait(cluster="default", tasks=arns, WaiterConfig=WAIT)
            tasks = c.describe_tasks(cluster="default", tasks=arns)["tasks"]
            where = collections.Counter((t["capacityProviderName"], t["containerInstanceArn"]) for t in tasks)
            self.assertEqual(where, {("cp-a", A): 4, ("cp-b", B): 2})
            self.assertTrue(all(t["lastStatus"] == "RUNNING" for t in tasks))
        finally:
            self.stop_all(arns)

        # The cluster's default strategy applies when the request names neither.
        c.put_cluster_capacity_providers(
            cluster="default", capacityProviders=["cp-a", "cp-b"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "cp-b", "weight": 1}])
        try:
            cl = c.describe_clusters(clusters=["default"])["clusters"][0]
            self.assertEqual(cl["capacityProviders"], ["cp-a", "cp-b"])
            self.assertEqual(cl["defaultCapacityProviderStrategy"],
                             [{"capacityProvider": "cp-b", "weight": 1}])
            r = c.run_task(cluster="default", taskDefinition=self.td, count=2)
            arns = [t["taskArn"] for t in r["tasks"]]
            try:
                self.assertEqual({(t["capacityProviderName"], t["containerInstanceArn"]) for t in r["tasks"]},
                                 {("cp-b", B)})
                # A provider running tasks can't leave the cluster.
                with self.assertRaises(ClientError) as e:
                    c.put_cluster_capacity_providers(cluster="default", capacityProviders=["cp-a"],
                                                     defaultCapacityProviderStrategy=[])
                self.assertEqual(e.exception.response["Error"]["Code"], "ResourceInUseException")
            finally:
                self.stop_all(arns)
        finally:
            c.put_cluster_capacity_providers(cluster="default", capacityProviders=["cp-a", "cp-b"],
                                             defaultCapacityProviderStrategy=[])

    def service_split(self, name):
        """The service's tasks desired RUNNING, per (capacityProviderName, instance ARN, lastStatus)."""
        c = self.c
        arns = c.list_tasks(cluster="default", serviceName=name, desiredStatus="RUNNING")["taskArns"]
        if not arns:
            return {}
        tasks = c.describe_tasks(cluster="default", tasks=arns)["tasks"]
        return dict(collections.Counter(
            (t.get("capacityProviderName"), t["containerInstanceArn"], t["lastStatus"]) for t in tasks))

    def wait_split(self, name, want):
        deadline = time.monotonic() + 60
        got = None
        while time.monotonic() < deadline:
            got = self.service_split(name)
            if got == want:
                return
            time.sleep(0.5)
        self.fail(f"service {name}: {got}, wanted {want}")

    def test_task_sets_follow_their_strategy_on_docker(self):
        c = self.c
        c.create_service(cluster="default", serviceName="ext", desiredCount=4,
                         deploymentController={"type": "EXTERNAL"})
        try:
            strategy = [{"capacityProvider": "cp-a", "weight": 1},
                        {"capacityProvider": "cp-b", "weight": 3}]
            ts = c.create_task_set(cluster="default", service="ext", taskDefinition=self.td,
                                   capacityProviderStrategy=strategy)["taskSet"]
            self.assertNotIn("launchType", ts)
            self.assertEqual(ts["capacityProviderStrategy"],
                             [{"capacityProvider": "cp-a", "base": 0, "weight": 1},
                              {"capacityProvider": "cp-b", "base": 0, "weight": 3}])
            # 4 tasks at weights 1:3: one on cp-a's instance, three on cp-b's, running.
            self.wait_split("ext", {("cp-a", A, "RUNNING"): 1, ("cp-b", B, "RUNNING"): 3})
        finally:
            c.delete_service(cluster="default", service="ext", force=True)
            c.get_waiter("services_inactive").wait(cluster="default", services=["ext"], WaiterConfig=WAIT)

    def test_services_keep_their_strategy_split_on_docker(self):
        c = self.c
        strategy = [{"capacityProvider": "cp-a", "base": 2, "weight": 1},
                    {"capacityProvider": "cp-b", "weight": 1}]
        shown = [{"capacityProvider": "cp-a", "base": 2, "weight": 1},
                 {"capacityProvider": "cp-b", "base": 0, "weight": 1}]
        s = c.create_service(cluster="default", serviceName="split", taskDefinition=self.td,
                             desiredCount=6, capacityProviderStrategy=strategy)["service"]
        try:
            self.assertNotIn("launchType", s)
            self.assertEqual(s["capacityProviderStrategy"], shown)
            self.assertEqual(s["deployments"][0]["capacityProviderStrategy"], shown)
            self.assertNotIn("launchType", s["deployments"][0])
            # 6 tasks: cp-a's base 2, then 1:1 of 4, each on its provider's instance, running.
            c.get_waiter("services_stable").wait(cluster="default", services=["split"], WaiterConfig=WAIT)
            self.wait_split("split", {("cp-a", A, "RUNNING"): 4, ("cp-b", B, "RUNNING"): 2})
            described = c.describe_services(cluster="default", services=["split"])["services"][0]
            self.assertEqual(described["capacityProviderStrategy"], shown)
            self.assertNotIn("launchType", described)
            # A changed strategy needs a new deployment (ECS's rule).
            with self.assertRaises(ClientError) as e:
                c.update_service(cluster="default", service="split",
                                 capacityProviderStrategy=[{"capacityProvider": "cp-b", "weight": 1}])
            self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")
            self.assertIn("force a new deployment", e.exception.response["Error"]["Message"])
            # Scale-in keeps the split: 2 is cp-a's base alone.
            c.update_service(cluster="default", service="split", desiredCount=2)
            c.get_waiter("services_stable").wait(cluster="default", services=["split"], WaiterConfig=WAIT)
            self.wait_split("split", {("cp-a", A, "RUNNING"): 2})
        finally:
            c.delete_service(cluster="default", service="split", force=True)
            c.get_waiter("services_inactive").wait(cluster="default", services=["split"], WaiterConfig=WAIT)


if __name__ == "__main__":
    unittest.main()
