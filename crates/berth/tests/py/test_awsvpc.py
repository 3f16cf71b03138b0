"""Fargate in awsvpc on the default VPC, end to end, driven by boto3.

Run by the Rust test `awsvpc_suite` (tests/awsvpc.rs), which starts `berth up` (a server, its
local agent and the local Fargate pool host) on the real Docker Engine. Proves what issue #12
asks: each task has its own IP that answers from the host; a security group without port 8080
blocks it (the request times out) and authorize-security-group-ingress opens it within a
second; two tasks in different security groups reach each other or not as their rules say;
a FARGATE base 2 weight 1 / FARGATE_SPOT weight 3 strategy places 6 tasks 3 / 3; a Spot
interruption (`berth spot interrupt`) stops a Spot task as AWS does and its service replaces it.
"""

import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
# The berth binary and the data directory of the `berth up` under test (for `berth spot`).
BERTH, DATA_DIR = sys.argv.pop(1), sys.argv.pop(1)
WAIT = {"Delay": 1, "MaxAttempts": 120}
CLUSTER = "vpc"


def client(name):
    return boto3.client(name, endpoint_url=ENDPOINT, region_name="us-east-1")


def http_get(url, timeout):
    """The body of GET url, or None when it times out or is refused."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read().decode()
    except (urllib.error.URLError, socket.timeout, ConnectionError, TimeoutError):
        return None


def eni_ip(task):
    att = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"][0]
    details = {d["name"]: d["value"] for d in att["details"]}
    return details


class Awsvpc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ecs = client("ecs")
        cls.ec2 = client("ec2")
        # FARGATE by default: RunTask and CreateService without a launch type run on Fargate.
        cls.ecs.create_cluster(clusterName=CLUSTER,
                               capacityProviders=["FARGATE", "FARGATE_SPOT"],
                               defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}])
        vpc = cls.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        cls.vpc = vpc["VpcId"]
        subnets = cls.ec2.describe_subnets(
            Filters=[{"Name": "vpc-id", "Values": [cls.vpc]}])["Subnets"]
        cls.subnet = sorted(subnets, key=lambda s: s["AvailabilityZone"])[0]["SubnetId"]
        cls.td = cls.ecs.register_task_definition(
            family="vpc-web", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
            cpu="256", memory="512",
            containerDefinitions=[{
                "name": "web", "image": "berth-demo:latest", "essential": True,
                "portMappings": [{"containerPort": 8080}],
            }])["taskDefinition"]["taskDefinitionArn"]
        cls.groups = []

    @classmethod
    def tearDownClass(cls):
        for s in cls.ecs.list_services(cluster=CLUSTER)["serviceArns"]:
            cls.ecs.delete_service(cluster=CLUSTER, service=s, force=True)
        running = cls.ecs.list_tasks(cluster=CLUSTER)["taskArns"]
        for t in running:
            cls.ecs.stop_task(cluster=CLUSTER, task=t)
        if running:
            cls.ecs.get_waiter("tasks_stopped").wait(cluster=CLUSTER, tasks=running, WaiterConfig=WAIT)
        for g in cls.groups:
            try:
                cls.ec2.delete_security_group(GroupId=g)
            except ClientError:
                pass

    def group(self, name):
        g = self.ec2.create_security_group(GroupName=name, Description=f"{name} tasks",
                                           VpcId=self.vpc)["GroupId"]
        self.groups.append(g)
        return g

    def run_tasks(self, groups, count=1, **kw):
        r = self.ecs.run_task(
            cluster=CLUSTER, taskDefinition=self.td, count=count,
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": groups, "assignPublicIp": "DISABLED"}},
            **kw)
        self.assertEqual(r["failures"], [])
        arns = [t["taskArn"] for t in r["tasks"]]
        self.ecs.get_waiter("tasks_running").wait(cluster=CLUSTER, tasks=arns, WaiterConfig=WAIT)
        return self.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]

    def test_security_groups_open_and_close_the_task_port(self):
        sg = self.group("web")
        tasks = self.run_tasks([sg], count=2)
        ips = []
        for t in tasks:
            self.assertEqual(t["launchType"], "FARGATE")
            self.assertNotIn("containerInstanceArn", t)
            d = eni_ip(t)
            ips.append(d["privateIPv4Address"])
            self.assertEqual(d["subnetId"], self.subnet)
            self.assertTrue(d["networkInterfaceId"].startswith("eni-"))
            eni = self.ec2.describe_network_interfaces(
                NetworkInterfaceIds=[d["networkInterfaceId"]])["NetworkInterfaces"][0]
            self.assertEqual(eni["PrivateIpAddress"], d["privateIPv4Address"])
            self.assertEqual([g["GroupId"] for g in eni["Groups"]], [sg])
        self.assertEqual(len(set(ips)), 2, ips)
        url = f"http://{ips[0]}:8080/"
        # No ingress rule: the request times out, as in AWS.
        self.assertIsNone(http_get(url, timeout=1.5))
        self.ec2.authorize_security_group_ingress(GroupId=sg, IpProtocol="tcp", FromPort=8080,
                                                  ToPort=8080, CidrIp="0.0.0.0/0")
        began = time.monotonic()
        body = None
        while time.monotonic() - began < 10:
            body = http_get(url, timeout=0.5)
            if body is not None:
                break
        took = time.monotonic() - began
        self.assertEqual(body, "Hello, World!\n")
        print(f"awsvpc: port opened {took * 1000:.0f} ms after authorize-security-group-ingress",
              file=sys.stderr)
        self.ec2.revoke_security_group_ingress(GroupId=sg, IpProtocol="tcp", FromPort=8080,
                                               ToPort=8080, CidrIp="0.0.0.0/0")
        began = time.monotonic()
        while time.monotonic() - began < 10 and http_get(url, timeout=0.5) is not None:
            pass
        self.assertIsNone(http_get(url, timeout=1.5), "revoked: closed again")

    def test_group_references_decide_task_to_task_traffic(self):
        server_sg, friend_sg, stranger_sg = self.group("srv"), self.group("friend"), self.group("stranger")
        self.ec2.authorize_security_group_ingress(GroupId=server_sg, IpPermissions=[{
            "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080,
            "UserIdGroupPairs": [{"GroupId": friend_sg}]}])
        # The clients answer the host on 8080 so the test can ask them to fetch.
        for g in (friend_sg, stranger_sg):
            self.ec2.authorize_security_group_ingress(GroupId=g, IpProtocol="tcp", FromPort=8080,
                                                      ToPort=8080, CidrIp="0.0.0.0/0")
        server = eni_ip(self.run_tasks([server_sg])[0])["privateIPv4Address"]
        friend = eni_ip(self.run_tasks([friend_sg])[0])["privateIPv4Address"]
        stranger = eni_ip(self.run_tasks([stranger_sg])[0])["privateIPv4Address"]
        target = f"http://{server}:8080/"
        via = lambda ip: http_get(f"http://{ip}:8080/fetch?url={target}", timeout=8)
        got = via(friend)
        self.assertIsNotNone(got)
        self.assertIn("Hello, World!", got)
        blocked = via(stranger)
        self.assertTrue(blocked is None or "Hello, World!" not in blocked, blocked)

    def test_fargate_and_spot_split_by_the_strategy(self):
        sg = self.group("split")
        r = self.ecs.run_task(
            cluster=CLUSTER, taskDefinition=self.td, count=6,
            capacityProviderStrategy=[{"capacityProvider": "FARGATE", "base": 2, "weight": 1},
                                      {"capacityProvider": "FARGATE_SPOT", "weight": 3}],
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": [sg]}})
        self.assertEqual(r["failures"], [])
        arns = [t["taskArn"] for t in r["tasks"]]
        self.ecs.get_waiter("tasks_running").wait(cluster=CLUSTER, tasks=arns, WaiterConfig=WAIT)
        tasks = self.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
        by = {}
        for t in tasks:
            by[t["capacityProviderName"]] = by.get(t["capacityProviderName"], 0) + 1
        self.assertEqual(by, {"FARGATE": 3, "FARGATE_SPOT": 3})
        self.assertEqual(len({eni_ip(t)["privateIPv4Address"] for t in tasks}), 6)

    def test_a_spot_interruption_is_replaced(self):
        sg = self.group("spot")
        self.ecs.create_service(
            cluster=CLUSTER, serviceName="spot", taskDefinition=self.td, desiredCount=1,
            capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": [sg]}})
        try:
            self.ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=["spot"], WaiterConfig=WAIT)
            before = self.ecs.list_tasks(cluster=CLUSTER, serviceName="spot")["taskArns"]
            self.assertEqual(len(before), 1)
            out = subprocess.run([BERTH, "spot", "interrupt", "--data-dir", DATA_DIR,
                                  "--cluster", CLUSTER, "--task", before[0]],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(out.stdout.split(), before)
            self.ecs.get_waiter("tasks_stopped").wait(cluster=CLUSTER, tasks=before, WaiterConfig=WAIT)
            t = self.ecs.describe_tasks(cluster=CLUSTER, tasks=before)["tasks"][0]
            self.assertEqual(t["stopCode"], "SpotInterruption")
            self.assertEqual(t["stoppedReason"], "Your Spot Task was interrupted.")
            deadline = time.monotonic() + 60
            after = []
            while time.monotonic() < deadline:
                after = self.ecs.list_tasks(cluster=CLUSTER, serviceName="spot",
                                            desiredStatus="RUNNING")["taskArns"]
                if after and after != before:
                    break
                time.sleep(0.5)
            self.assertEqual(len(after), 1)
            self.assertNotEqual(after, before)
            self.ecs.get_waiter("tasks_running").wait(cluster=CLUSTER, tasks=after, WaiterConfig=WAIT)
        finally:
            self.ecs.delete_service(cluster=CLUSTER, service="spot", force=True)
            self.ecs.get_waiter("services_inactive").wait(cluster=CLUSTER, services=["spot"], WaiterConfig=WAIT)

    def test_fargate_service_in_awsvpc(self):
        sg = self.group("svc")
        self.ec2.authorize_security_group_ingress(GroupId=sg, IpProtocol="tcp", FromPort=8080,
                                                  ToPort=8080, CidrIp="0.0.0.0/0")
        self.ecs.create_service(
            cluster=CLUSTER, serviceName="web", taskDefinition=self.td, desiredCount=2,
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {
                "subnets": [self.subnet], "securityGroups": [sg]}})
        self.ecs.get_waiter("services_stable").wait(cluster=CLUSTER, services=["web"], WaiterConfig=WAIT)
        arns = self.ecs.list_tasks(cluster=CLUSTER, serviceName="web")["taskArns"]
        tasks = self.ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"]
        self.assertEqual(len(tasks), 2)
        for t in tasks:
            ip = eni_ip(t)["privateIPv4Address"]
            self.assertEqual(http_get(f"http://{ip}:8080/", timeout=3), "Hello, World!\n")
        self.ecs.delete_service(cluster=CLUSTER, service="web", force=True)
        self.ecs.get_waiter("services_inactive").wait(cluster=CLUSTER, services=["web"], WaiterConfig=WAIT)


if __name__ == "__main__":
    unittest.main()
