"""Every region from one endpoint (issue #11), driven by boto3 against ONE `berth server`.

Run by the Rust test `regions_suite` (tests/regions.rs), which starts the server (default
region us-east-1) and one `berth agent --region eu-west-1`, and sets BERTH_ENDPOINT,
BERTH_AGENT_INSTANCE (the agent's container instance ARN) and the AWS_* variables. Needs the
image berth-demo:latest (scripts/build-demo-image.sh).
"""

import os
import time
import unittest
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
ACCOUNT = "123456789012"
REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-1"]
AGENT_REGION = "eu-west-1"
WAIT = {"Delay": 1, "MaxAttempts": 90}


def ecs(region):
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name=region)


def region_of(arn):
    return arn.split(":")[3]


def web(region):
    """A one-container task definition of family `web` (the same family in every region)."""
    return ecs(region).register_task_definition(
        family="web",
        containerDefinitions=[{"name": "web", "image": "berth-demo:latest", "memory": 16}],
    )["taskDefinition"]


class Regions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # In each region: a cluster of its own, one of a name every region uses, a task
        # definition of a family every region uses, and a service of a name every region uses.
        cls.made = {}
        for r in REGIONS:
            c = ecs(r)
            own = c.create_cluster(clusterName=f"only-{r}")["cluster"]
            shared = c.create_cluster(clusterName="shared")["cluster"]
            td = web(r)
            svc = c.create_service(cluster="shared", serviceName="api", taskDefinition="web",
                                   desiredCount=0)["service"]
            cls.made[r] = {"own": own, "shared": shared, "td": td, "svc": svc}

    def test_arns_carry_the_region_of_the_request(self):
        for r, m in self.made.items():
            self.assertEqual(m["own"]["clusterArn"], f"arn:aws:ecs:{r}:{ACCOUNT}:cluster/only-{r}")
            self.assertEqual(m["shared"]["clusterArn"], f"arn:aws:ecs:{r}:{ACCOUNT}:cluster/shared")
            self.assertEqual(m["td"]["taskDefinitionArn"],
                             f"arn:aws:ecs:{r}:{ACCOUNT}:task-definition/web:1",
                             "each region counts the family's revisions on its own")
            self.assertEqual(region_of(m["svc"]["serviceArn"]), r)
            self.assertEqual(m["svc"]["taskDefinition"], m["td"]["taskDefinitionArn"])

    def test_each_region_lists_only_its_own(self):
        for r, m in self.made.items():
            c = ecs(r)
            clusters = c.list_clusters()["clusterArns"]
            self.assertIn(m["own"]["clusterArn"], clusters)
            self.assertIn(m["shared"]["clusterArn"], clusters)
            self.assertTrue(all(region_of(a) == r for a in clusters), clusters)
            for other in REGIONS:
                if other != r:
                    self.assertNotIn(f"arn:aws:ecs:{r}:{ACCOUNT}:cluster/only-{other}", clusters)
            tds = c.list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
            self.assertEqual(tds, [m["td"]["taskDefinitionArn"]])
            self.assertEqual(c.list_services(cluster="shared")["serviceArns"],
                             [m["svc"]["serviceArn"]])
            self.assertEqual(c.describe_clusters(clusters=["shared"])["clusters"][0]["activeServicesCount"], 1)

    def test_another_regions_arn_names_nothing_here(self):
        eu = ecs("eu-west-1")
        us_arn = self.made["us-east-1"]["own"]["clusterArn"]
        d = eu.describe_clusters(clusters=[us_arn])
        self.assertEqual(d["clusters"], [])
        self.assertEqual(d["failures"], [{"arn": us_arn, "reason": "MISSING"}])
        # Nor by the name it has in its own region.
        d = eu.describe_clusters(clusters=["only-us-east-1"])
        self.assertEqual(d["failures"][0]["reason"], "MISSING")
        ap_td = self.made["ap-southeast-1"]["td"]["taskDefinitionArn"]
        with self.assertRaises(ClientError) as e:
            eu.describe_task_definition(taskDefinition=ap_td)
        self.assertEqual(e.exception.response["Error"]["Code"], "ClientException")
        d = eu.describe_services(cluster="shared", services=[self.made["us-east-1"]["svc"]["serviceArn"]])
        self.assertEqual(d["services"], [])
        self.assertEqual(d["failures"][0]["reason"], "MISSING")

    def test_a_deletion_in_one_region_leaves_the_others_alone(self):
        ap = ecs("ap-southeast-1")
        ap.create_cluster(clusterName="short-lived")
        ecs("us-east-1").create_cluster(clusterName="short-lived")
        gone = ap.delete_cluster(cluster="short-lived")["cluster"]
        self.assertEqual(gone["status"], "INACTIVE")
        us = ecs("us-east-1").describe_clusters(clusters=["short-lived"])["clusters"][0]
        self.assertEqual((us["status"], region_of(us["clusterArn"])), ("ACTIVE", "us-east-1"))
        ecs("us-east-1").delete_cluster(cluster="short-lived")

    def test_other_partitions_mint_their_own_arns(self):
        for region, partition in [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]:
            c = ecs(region)
            arn = c.create_cluster(clusterName="p")["cluster"]["clusterArn"]
            self.assertEqual(arn, f"arn:{partition}:ecs:{region}:{ACCOUNT}:cluster/p")
            td = web(region)
            self.assertTrue(td["taskDefinitionArn"].startswith(f"arn:{partition}:ecs:{region}:"))
            self.assertEqual(td["registeredBy"], f"arn:{partition}:iam::{ACCOUNT}:root")
            self.assertEqual(c.describe_clusters(clusters=[arn])["clusters"][0]["clusterName"], "p")
            # An aws-partition ARN of the same region and name is not this cluster.
            other = f"arn:aws:ecs:{region}:{ACCOUNT}:cluster/p"
            self.assertEqual(c.describe_clusters(clusters=[other])["failures"][0]["reason"], "MISSING")

    def test_a_bogus_region_is_refused_saying_what_to_do(self):
        with self.assertRaises(ClientError) as e:
            ecs("xx-bogus-1").list_clusters()
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "InvalidSignatureException")
        self.assertIn("Credential should be scoped to a valid region, not 'xx-bogus-1'", err["Message"])
        self.assertIn("--region", err["Message"])
        self.assertEqual(e.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)

    def test_a_task_runs_on_docker_in_the_agents_region(self):
        instance = os.environ["BERTH_AGENT_INSTANCE"]
        self.assertEqual(region_of(instance), AGENT_REGION)
        eu, us = ecs(AGENT_REGION), ecs("us-east-1")
        self.assertEqual(eu.list_container_instances()["containerInstanceArns"], [instance])
        self.assertEqual(us.list_container_instances(cluster="shared")["containerInstanceArns"], [])
        # us-east-1 has no `default` cluster: eu-west-1's agent created only its own.
        with self.assertRaises(ClientError) as e:
            us.list_container_instances()
        self.assertEqual(e.exception.response["Error"]["Code"], "ClusterNotFoundException")
        td = eu.register_task_definition(family="md", containerDefinitions=[{
            "name": "c", "image": "berth-demo:latest", "memory": 16,
            "command": ["-listen", ":8080"], "portMappings": [{"containerPort": 8080}]}])
        td_arn = td["taskDefinition"]["taskDefinitionArn"]
        # Nothing runs it in a region without an agent.
        us.register_task_definition(family="md", containerDefinitions=[{
            "name": "c", "image": "berth-demo:latest", "memory": 16}])
        with self.assertRaises(ClientError) as e:
            us.run_task(cluster="shared", taskDefinition="md")
        self.assertEqual(e.exception.response["Error"]["Message"],
                         "No Container Instances were found in your cluster.")
        r = eu.run_task(taskDefinition="md")
        self.assertEqual(r["failures"], [])
        task = r["tasks"][0]["taskArn"]
        self.assertTrue(task.startswith(f"arn:aws:ecs:{AGENT_REGION}:{ACCOUNT}:task/default/"), task)
        eu.get_waiter("tasks_running").wait(tasks=[task], WaiterConfig=WAIT)
        t = eu.describe_tasks(tasks=[task])["tasks"][0]
        self.assertEqual((t["lastStatus"], t["containerInstanceArn"], t["taskDefinitionArn"]),
                         ("RUNNING", instance, td_arn))
        self.assertEqual(us.describe_tasks(cluster="shared", tasks=[task])["failures"][0]["reason"], "MISSING")
        self.assertEqual(us.list_tasks(cluster="shared")["taskArns"], [])
        # The task metadata endpoint answers the task, as its container sees it.
        port = t["containers"][0]["networkBindings"][0]["hostPort"]
        app = f"http://127.0.0.1:{port}"
        env = urllib.request.urlopen(f"{app}/env", timeout=10).read().decode()
        uri = next(l.split("=", 1)[1] for l in env.splitlines()
                   if l.startswith("ECS_CONTAINER_METADATA_URI_V4="))
        fetched = urllib.request.urlopen(
            f"{app}/fetch?url={urllib.parse.quote(uri + '/task', safe='')}", timeout=20).read().decode()
        status, body = fetched.split("\n", 1)
        self.assertEqual(status, "200", fetched)
        self.assertIn(f'"TaskARN":"{task}"', body.replace(" ", ""))
        eu.stop_task(task=task, reason="done")
        eu.get_waiter("tasks_stopped").wait(tasks=[task], WaiterConfig=WAIT)
        t = eu.describe_tasks(tasks=[task])["tasks"][0]
        self.assertEqual((t["lastStatus"], t["stoppedReason"]), ("STOPPED", "done"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
