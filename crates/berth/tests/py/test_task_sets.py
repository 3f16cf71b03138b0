"""Task sets of an EXTERNAL service end to end on the real Docker Engine, driven by boto3.

Run by the Rust test `task_sets_suite` (tests/task_sets.rs), which starts `berth server` and
one `berth agent` and passes the agent's container instance ARN. Needs berth-demo:latest.
"""

import collections
import os
import subprocess
import sys
import time
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
INSTANCE = sys.argv.pop(1)
WAIT = {"Delay": 1, "MaxAttempts": 120}


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


def register(c, family, colour):
    d = {"name": "web", "image": "berth-demo:latest", "memory": 16, "essential": True,
         "environment": [{"name": "COLOUR", "value": colour}],
         "portMappings": [{"containerPort": 8080, "hostPort": 0}]}
    return c.register_task_definition(family=family, containerDefinitions=[d])["taskDefinition"]["taskDefinitionArn"]


def wait_for(what, pred, timeout=120):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def running_containers(task_arn):
    """Ids of the running Docker containers of a task (by the agent's task label)."""
    out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=com.amazonaws.ecs.task-arn={task_arn}"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def service_tasks(c, name, desired="RUNNING"):
    arns = []
    for page in c.get_paginator("list_tasks").paginate(cluster="default", serviceName=name, desiredStatus=desired):
        arns += page["taskArns"]
    out = []
    for i in range(0, len(arns), 100):
        out += c.describe_tasks(cluster="default", tasks=arns[i:i + 100])["tasks"]
    return out


def sets_by_id(c, name):
    return {s["id"]: s for s in c.describe_task_sets(cluster="default", service=name)["taskSets"]}


def error_code(fn, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        return e.response["Error"]["Code"], e.response["Error"]["Message"]
    raise AssertionError(f"{fn.__name__} succeeded; expected an error")


class TaskSets(unittest.TestCase):
    def test_external_service_runs_scales_and_drains_task_sets(self):
        c = ecs()
        blue_td = register(c, "ts-web", "blue")
        green_td = register(c, "ts-web", "green")
        svc = c.create_service(cluster="default", serviceName="ext", desiredCount=4,
                               deploymentController={"type": "EXTERNAL"})["service"]
        self.assertEqual(svc["deploymentController"], {"type": "EXTERNAL"})
        self.assertEqual(svc["taskSets"], [])
        self.assertEqual(svc["deployments"], [])
        self.assertNotIn("taskDefinition", svc)

        blue = c.create_task_set(cluster="default", service="ext", taskDefinition=blue_td, externalId="blue",
                                 scale={"value": 100, "unit": "PERCENT"},
                                 tags=[{"key": "colour", "value": "blue"}])["taskSet"]
        self.assertEqual(blue["status"], "ACTIVE")
        self.assertEqual(blue["computedDesiredCount"], 4)
        self.assertEqual(blue["taskDefinition"], blue_td)
        self.assertEqual(blue["launchType"], "EC2")
        self.assertTrue(blue["id"].startswith("ecs-svc/"), blue["id"])
        self.assertEqual(blue["taskSetArn"], svc["serviceArn"].replace(":service/", ":task-set/") + "/" + blue["id"])
        self.assertNotIn("tags", blue)
        green = c.create_task_set(cluster="default", service="ext", taskDefinition=green_td,
                                  scale={"value": 50, "unit": "PERCENT"})["taskSet"]
        self.assertEqual(green["computedDesiredCount"], 2)
        primary = c.update_service_primary_task_set(cluster="default", service="ext",
                                                    primaryTaskSet=blue["taskSetArn"])["taskSet"]
        self.assertEqual(primary["status"], "PRIMARY")

        # 4 blue (100% of 4) and 2 green (50% of 4) tasks run on Docker.
        def steady(want):
            sets = sets_by_id(c, "ext")
            got = {i: (s["runningCount"], s["pendingCount"], s["stabilityStatus"]) for i, s in sets.items()}
            return sets if got == want else None
        sets = wait_for("4 blue and 2 green tasks", lambda: steady(
            {blue["id"]: (4, 0, "STEADY_STATE"), green["id"]: (2, 0, "STEADY_STATE")}))
        self.assertEqual(sets[blue["id"]]["status"], "PRIMARY")
        self.assertEqual(sets[green["id"]]["status"], "ACTIVE")
        self.assertEqual(sets[green["id"]]["scale"], {"value": 50.0, "unit": "PERCENT"})
        tasks = service_tasks(c, "ext")
        self.assertEqual(collections.Counter(t["startedBy"] for t in tasks), {blue["id"]: 4, green["id"]: 2})
        for t in tasks:
            self.assertEqual(t["group"], "service:ext")
            self.assertEqual(t["lastStatus"], "RUNNING")
            self.assertEqual(t["containerInstanceArn"], INSTANCE)
            self.assertEqual(t["taskDefinitionArn"], blue_td if t["startedBy"] == blue["id"] else green_td)
            self.assertEqual(len(running_containers(t["taskArn"])), 1, t["taskArn"])
        svc = c.describe_services(cluster="default", services=["ext"])["services"][0]
        self.assertEqual((svc["runningCount"], svc["pendingCount"]), (6, 0))
        self.assertEqual(sorted(s["id"] for s in svc["taskSets"]), sorted([blue["id"], green["id"]]))
        tagged = c.describe_task_sets(cluster="default", service="ext", taskSets=[blue["id"]],
                                      include=["TAGS"])["taskSets"][0]
        self.assertEqual(tagged["tags"], [{"key": "colour", "value": "blue"}])
        missing = c.describe_task_sets(cluster="default", service="ext", taskSets=[blue["id"], "ecs-svc/1"])
        self.assertEqual([s["id"] for s in missing["taskSets"]], [blue["id"]])
        self.assertEqual(missing["failures"][0]["reason"], "MISSING")

        # The service's desired count changes: the sets follow (2 = 100% of 2, 1 = ceil(50% of 2)).
        c.update_service(cluster="default", service="ext", desiredCount=2)
        wait_for("2 blue and 1 green tasks", lambda: steady(
            {blue["id"]: (2, 0, "STEADY_STATE"), green["id"]: (1, 0, "STEADY_STATE")}))
        tasks = wait_for("3 tasks desired RUNNING", lambda: (lambda t: t if len(t) == 3 else None)(service_tasks(c, "ext")))
        self.assertEqual(collections.Counter(t["startedBy"] for t in tasks), {blue["id"]: 2, green["id"]: 1})
        # Scale green up to 100% of 2.
        up = c.update_task_set(cluster="default", service="ext", taskSet=green["id"],
                               scale={"value": 100, "unit": "PERCENT"})["taskSet"]
        self.assertEqual(up["computedDesiredCount"], 2)
        wait_for("2 blue and 2 green tasks", lambda: steady(
            {blue["id"]: (2, 0, "STEADY_STATE"), green["id"]: (2, 0, "STEADY_STATE")}))

        # AWS's refusals.
        self.assertEqual(error_code(c.update_service, cluster="default", service="ext", taskDefinition=green_td)[0],
                         "InvalidParameterException")
        code, msg = error_code(c.update_task_set, cluster="default", service="ext", taskSet=green["id"],
                               scale={"value": 150, "unit": "PERCENT"})
        self.assertEqual(code, "InvalidParameterException")
        self.assertIn("scale.value", msg)
        self.assertEqual(error_code(c.update_task_set, cluster="default", service="ext", taskSet="ecs-svc/1",
                                    scale={"value": 10, "unit": "PERCENT"})[0], "TaskSetNotFoundException")
        code, msg = error_code(c.delete_task_set, cluster="default", service="ext", taskSet=green["id"])
        self.assertEqual(code, "InvalidParameterException")
        self.assertIn("force", msg)
        self.assertEqual(error_code(c.create_task_set, cluster="default", service="nope", taskDefinition=blue_td)[0],
                         "ServiceNotFoundException")
        self.assertEqual(error_code(c.create_task_set, cluster="nope", service="ext", taskDefinition=blue_td)[0],
                         "ClusterNotFoundException")
        self.assertEqual(error_code(c.create_task_set, cluster="default", service="ext", taskDefinition="ts-none:1")[0],
                         "ClientException")
        # FARGATE needs a Fargate-compatible task definition (awsvpc, task-level cpu and memory).
        code, msg = error_code(c.create_task_set, cluster="default", service="ext", taskDefinition=blue_td,
                               launchType="FARGATE")
        self.assertEqual(code, "InvalidParameterException")
        self.assertIn("FARGATE", msg)
        self.assertEqual(error_code(c.create_service, cluster="default", serviceName="cd", taskDefinition=blue_td,
                                    desiredCount=1, deploymentController={"type": "CODE_DEPLOY"})[0],
                         "UnsupportedFeatureException")

        # Delete the green set (force: it is scaled above 0): its tasks stop, then it is gone.
        green_tasks = [t["taskArn"] for t in service_tasks(c, "ext") if t["startedBy"] == green["id"]]
        self.assertEqual(len(green_tasks), 2)
        gone = c.delete_task_set(cluster="default", service="ext", taskSet=green["taskSetArn"], force=True)["taskSet"]
        self.assertEqual(gone["status"], "DRAINING")
        wait_for("green's tasks to stop", lambda: all(
            t["lastStatus"] == "STOPPED" for t in c.describe_tasks(cluster="default", tasks=green_tasks)["tasks"]))
        stopped = c.describe_tasks(cluster="default", tasks=green_tasks)["tasks"]
        self.assertTrue(all(t["stopCode"] == "ServiceSchedulerInitiated" for t in stopped), stopped)
        self.assertTrue(all(running_containers(a) == [] for a in green_tasks))
        wait_for("the green set to be removed", lambda: list(sets_by_id(c, "ext")) == [blue["id"]])
        self.assertEqual(len(service_tasks(c, "ext")), 2)

        # A service with the ECS controller has no task sets.
        c.create_service(cluster="default", serviceName="rolling", taskDefinition=blue_td, desiredCount=0)
        self.assertEqual(error_code(c.create_task_set, cluster="default", service="rolling",
                                    taskDefinition=blue_td)[0], "InvalidParameterException")
        c.delete_service(cluster="default", service="rolling")

        # Deleting the service stops the rest.
        c.update_service(cluster="default", service="ext", desiredCount=0)
        c.delete_service(cluster="default", service="ext")
        c.get_waiter("services_inactive").wait(cluster="default", services=["ext"], WaiterConfig=WAIT)
        self.assertEqual(service_tasks(c, "ext"), [])


if __name__ == "__main__":
    unittest.main()
