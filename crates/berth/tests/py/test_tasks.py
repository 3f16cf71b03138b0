"""Tasks end to end on the real Docker Engine, driven by boto3 with ECS's own waiters.

Run by the Rust test `tasks_suite` (tests/tasks_docker.rs), which starts `berth server` and
`berth agent` and sets BERTH_ENDPOINT and the AWS_* variables. Needs the image
berth-demo:latest (scripts/build-demo-image.sh).
"""

import os
import json
import time
import unittest
import urllib.parse
import urllib.request

import boto3
from botocore.exceptions import WaiterError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
WAIT = {"Delay": 1, "MaxAttempts": 90}
HEALTH = {"command": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"],
          "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0}


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


def register(c, family, containers, **kw):
    return c.register_task_definition(family=family, containerDefinitions=containers, **kw)["taskDefinition"]["taskDefinitionArn"]


def run(c, td, **kw):
    r = c.run_task(cluster="default", taskDefinition=td, **kw)
    assert not r["failures"], r["failures"]
    return r["tasks"][0]["taskArn"]


def describe(c, arn):
    return c.describe_tasks(cluster="default", tasks=[arn])["tasks"][0]


def wait_stopped(c, arn):
    c.get_waiter("tasks_stopped").wait(cluster="default", tasks=[arn], WaiterConfig=WAIT)
    return describe(c, arn)


class Tasks(unittest.TestCase):
    def test_hello_world_through_the_dynamic_host_port_then_stop(self):
        c = ecs()
        td = register(c, "hello", [{
            "name": "web", "image": "berth-demo:latest", "memory": 32, "essential": True,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}], "healthCheck": HEALTH}])
        arn = run(c, td, startedBy="e2e")
        c.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig=WAIT)
        t = describe(c, arn)
        self.assertEqual(t["lastStatus"], "RUNNING")
        self.assertIsNotNone(t.get("startedAt"))
        web = t["containers"][0]
        self.assertEqual(web["lastStatus"], "RUNNING")
        self.assertTrue(web["runtimeId"])
        port = web["networkBindings"][0]["hostPort"]
        self.assertNotEqual(port, 8080)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        self.assertEqual(body.strip(), "Hello, World!")
        # Health reaches HEALTHY.
        deadline = time.time() + 30
        while time.time() < deadline and describe(c, arn).get("healthStatus") != "HEALTHY":
            time.sleep(0.5)
        self.assertEqual(describe(c, arn)["healthStatus"], "HEALTHY")
        listed = c.list_tasks(cluster="default", startedBy="e2e")["taskArns"]
        self.assertIn(arn, listed)

        # The task metadata endpoint v4, read from inside the container.
        env = dict(l.split("=", 1) for l in urllib.request.urlopen(f"http://127.0.0.1:{port}/env", timeout=5).read().decode().splitlines() if "=" in l)
        uri = env["ECS_CONTAINER_METADATA_URI_V4"]
        fetch = lambda u: urllib.request.urlopen(f"http://127.0.0.1:{port}/fetch?url={urllib.parse.quote(u, safe='')}", timeout=15).read().decode().split("\n", 1)
        status, body = fetch(uri + "/task")
        self.assertEqual(status, "200", body)
        meta = json.loads(body)
        self.assertEqual(meta["TaskARN"], arn)
        self.assertEqual(meta["Cluster"], "default")
        self.assertEqual(meta["Family"], "hello")
        self.assertEqual(meta["KnownStatus"], "RUNNING")
        self.assertEqual(meta["Containers"][0]["DockerId"], web["runtimeId"])
        self.assertEqual(meta["Containers"][0]["Ports"][0]["HostPort"], port)
        status, body = fetch(uri)
        self.assertEqual(status, "200", body)
        self.assertEqual(json.loads(body)["Name"], "web")
        status, body = fetch(uri + "/stats")
        self.assertEqual(status, "200", body)
        self.assertIn("memory_stats", json.loads(body))
        # Another task's token is unguessable; a made-up one finds nothing.
        base, token = uri.rsplit("/", 1)
        status, _ = fetch(base + "/" + "0" * 32 + "-web/task")
        self.assertEqual(status, "404")

        c.stop_task(cluster="default", task=arn, reason="done with it")
        t = wait_stopped(c, arn)
        self.assertEqual(t["stopCode"], "UserInitiated")
        self.assertEqual(t["stoppedReason"], "done with it")
        self.assertEqual(t["containers"][0]["exitCode"], 0)
        self.assertEqual(t["desiredStatus"], "STOPPED")
        for k in ("stoppingAt", "stoppedAt", "executionStoppedAt", "pullStartedAt", "pullStoppedAt"):
            self.assertIsNotNone(t.get(k), k)
        self.assertIn(arn, c.list_tasks(cluster="default", desiredStatus="STOPPED")["taskArns"])

    def test_missing_image_fails_to_pull(self):
        c = ecs()
        td = register(c, "missing", [{"name": "x", "image": "berth-no-such-image:1", "memory": 16}])
        t = wait_stopped(c, run(c, td))
        self.assertEqual(t["stopCode"], "TaskFailedToStart")
        self.assertIn("CannotPullContainerError", t["stoppedReason"])
        self.assertIn("CannotPullContainerError", t["containers"][0]["reason"])

    def test_essential_container_exit_stops_the_task(self):
        c = ecs()
        td = register(c, "exits", [
            {"name": "main", "image": "berth-demo:latest", "memory": 16, "command": ["-exit", "3", "-after", "1"]},
            {"name": "side", "image": "berth-demo:latest", "memory": 16, "essential": False}])
        t = wait_stopped(c, run(c, td))
        self.assertEqual(t["stopCode"], "EssentialContainerExited")
        by = {x["name"]: x for x in t["containers"]}
        self.assertEqual(by["main"]["exitCode"], 3)
        self.assertEqual(by["side"]["lastStatus"], "STOPPED")

    def test_depends_on_orders_startup(self):
        c = ecs()
        td = register(c, "ordered", [
            {"name": "web", "image": "berth-demo:latest", "memory": 16,
             "dependsOn": [{"containerName": "migrate", "condition": "SUCCESS"}]},
            {"name": "migrate", "image": "berth-demo:latest", "memory": 16, "essential": False,
             "command": ["-exit", "0", "-after", "2"]}])
        arn = run(c, td)
        c.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig=WAIT)
        by = {x["name"]: x for x in describe(c, arn)["containers"]}
        self.assertEqual(by["migrate"]["lastStatus"], "STOPPED")
        self.assertEqual(by["migrate"]["exitCode"], 0)
        self.assertEqual(by["web"]["lastStatus"], "RUNNING")
        c.stop_task(cluster="default", task=arn)
        wait_stopped(c, arn)

    def test_unhealthy_container(self):
        c = ecs()
        td = register(c, "sick", [{"name": "web", "image": "berth-demo:latest", "memory": 16,
                                    "command": ["-fail-health-after", "0"], "healthCheck": HEALTH}])
        arn = run(c, td)
        c.get_waiter("tasks_running").wait(cluster="default", tasks=[arn], WaiterConfig=WAIT)
        deadline = time.time() + 40
        while time.time() < deadline and describe(c, arn)["containers"][0].get("healthStatus") != "UNHEALTHY":
            time.sleep(0.5)
        t = describe(c, arn)
        self.assertEqual(t["containers"][0]["healthStatus"], "UNHEALTHY")
        self.assertEqual(t["healthStatus"], "UNHEALTHY")
        c.stop_task(cluster="default", task=arn)
        wait_stopped(c, arn)

    def test_out_of_memory_is_reported(self):
        c = ecs()
        td = register(c, "oom", [{"name": "hog", "image": "berth-demo:latest", "memory": 8, "command": ["-alloc"]}])
        t = wait_stopped(c, run(c, td))
        hog = t["containers"][0]
        self.assertIn("OutOfMemoryError", hog.get("reason", ""))
        self.assertEqual(hog["exitCode"], 137)
        self.assertEqual(t["stopCode"], "EssentialContainerExited")

    def test_resources_are_refused_and_released(self):
        c = ecs()
        td = register(c, "huge", [{"name": "x", "image": "berth-demo:latest", "memory": 10_000_000}])
        r = c.run_task(cluster="default", taskDefinition=td)
        self.assertEqual(r["tasks"], [])
        self.assertEqual(r["failures"][0]["reason"], "RESOURCE:MEMORY")


if __name__ == "__main__":
    unittest.main(verbosity=2)
