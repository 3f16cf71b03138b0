"""Services end to end on the real Docker Engine, driven by boto3 and ECS's own waiters.

Run by the Rust test `services_suite` (tests/services.rs), which starts `berth server` (with
--service-settle-secs 1) and two agents, in us-east-1a and us-east-1b, and passes their
container instance ARNs. Needs the image berth-demo:latest.
"""

import collections
import math
import os
import sys
import threading
import time
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
A, B = sys.argv.pop(1).split(",")
WAIT = {"Delay": 1, "MaxAttempts": 120}
HEALTH = {"command": ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"],
          "interval": 5, "timeout": 2, "retries": 1, "startPeriod": 0}


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


def register(c, family, health=False, image="berth-demo:latest", command=None):
    d = {"name": "web", "image": image, "memory": 16, "essential": True,
         "portMappings": [{"containerPort": 8080, "hostPort": 0}]}
    if health:
        d["healthCheck"] = HEALTH
    if command:
        d["command"] = command
    return c.register_task_definition(family=family, containerDefinitions=[d])["taskDefinition"]["taskDefinitionArn"]


def stable(c, name):
    c.get_waiter("services_stable").wait(cluster="default", services=[name], WaiterConfig=WAIT)
    return c.describe_services(cluster="default", services=[name])["services"][0]


def settled(c, name):
    """Stable, and the deployment COMPLETED (its tasks healthy): a safe point to update from."""
    def done():
        s = stable(c, name)
        return s if s["deployments"][0]["rolloutState"] == "COMPLETED" else None
    return wait_for(f"{name} to complete its deployment", done)


def tasks_of(c, name, desired="RUNNING"):
    arns = c.list_tasks(cluster="default", serviceName=name, desiredStatus=desired)["taskArns"]
    return c.describe_tasks(cluster="default", tasks=arns)["tasks"] if arns else []


def wait_for(what, pred, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def remove(c, name):
    c.update_service(cluster="default", service=name, desiredCount=0)
    c.delete_service(cluster="default", service=name)
    c.get_waiter("services_inactive").wait(cluster="default", services=[name], WaiterConfig=WAIT)


class Services(unittest.TestCase):
    def test_create_reach_steady_state_and_replace_a_killed_task(self):
        c = ecs()
        td = register(c, "svc-basic")
        s = c.create_service(cluster="default", serviceName="basic", taskDefinition=td, desiredCount=3,
                             enableECSManagedTags=True)["service"]
        self.assertEqual(s["status"], "ACTIVE")
        self.assertEqual(s["desiredCount"], 3)
        self.assertEqual(s["deployments"][0]["status"], "PRIMARY")
        self.assertEqual(s["deployments"][0]["rolloutState"], "IN_PROGRESS")
        self.assertEqual(s["schedulingStrategy"], "REPLICA")
        self.assertEqual(s["deploymentConfiguration"]["maximumPercent"], 200)
        s = stable(c, "basic")
        self.assertEqual((s["runningCount"], s["pendingCount"]), (3, 0))
        s = settled(c, "basic")
        self.assertEqual(s["events"][0]["message"], "(service basic) has reached a steady state.")
        tasks = tasks_of(c, "basic")
        self.assertEqual(len(tasks), 3)
        self.assertTrue(all(t["group"] == "service:basic" for t in tasks))
        self.assertTrue(all(t["startedBy"] == s["deployments"][0]["id"] for t in tasks))
        tagged = c.describe_tasks(cluster="default", tasks=[tasks[0]["taskArn"]], include=["TAGS"])["tasks"][0]
        self.assertIn({"key": "aws:ecs:serviceName", "value": "basic"}, tagged["tags"])
        self.assertIn({"key": "aws:ecs:clusterName", "value": "default"}, tagged["tags"])
        # ECS's default placement for services spreads across zones.
        self.assertEqual(sorted(collections.Counter(t["availabilityZone"] for t in tasks).values()), [1, 2])
        # Kill one task's container: the task stops and a replacement starts.
        victim = tasks[0]
        os.system(f"docker kill $(docker ps -q --filter label=com.amazonaws.ecs.task-arn={victim['taskArn']}) >/dev/null")
        wait_for("a replacement", lambda: victim["taskArn"] not in [t["taskArn"] for t in tasks_of(c, "basic")]
                 and len(tasks_of(c, "basic")) == 3)
        s = stable(c, "basic")
        self.assertEqual(s["runningCount"], 3)
        gone = c.describe_tasks(cluster="default", tasks=[victim["taskArn"]])["tasks"][0]
        self.assertEqual(gone["lastStatus"], "STOPPED")
        self.assertTrue(any("has started 1 tasks" in e["message"] for e in s["events"]))
        self.assertIn(s["serviceArn"], c.list_services(cluster="default")["serviceArns"])
        c.tag_resource(resourceArn=s["serviceArn"], tags=[{"key": "team", "value": "web"}])
        self.assertEqual(c.list_tags_for_resource(resourceArn=s["serviceArn"])["tags"], [{"key": "team", "value": "web"}])
        tagged = c.describe_services(cluster="default", services=["basic"], include=["TAGS"])["services"][0]
        self.assertEqual(tagged["tags"], [{"key": "team", "value": "web"}])
        remove(c, "basic")

    def test_rolling_update_keeps_the_minimum_healthy(self):
        c = ecs()
        td1 = register(c, "svc-roll", health=True)
        td2 = register(c, "svc-roll", health=True, command=["-listen", ":8080"])
        c.create_service(cluster="default", serviceName="roll", taskDefinition=td1, desiredCount=3,
                         deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 150})
        settled(c, "roll")
        samples, stop = [], threading.Event()

        def sample():
            s = ecs()
            while not stop.is_set():
                # One describe of every task of the service: listed desired-RUNNING first, so a
                # task that is being stopped between the two lists is in one or both, never in
                # neither.
                arns = s.list_tasks(cluster="default", serviceName="roll", desiredStatus="RUNNING")["taskArns"]
                arns += s.list_tasks(cluster="default", serviceName="roll", desiredStatus="STOPPED")["taskArns"]
                ts = s.describe_tasks(cluster="default", tasks=sorted(set(arns))[:100])["tasks"] if arns else []
                healthy = sum(1 for t in ts if t["desiredStatus"] == "RUNNING" and t["lastStatus"] == "RUNNING"
                              and t.get("healthStatus") == "HEALTHY")
                live = sum(1 for t in ts if t["lastStatus"] != "STOPPED")
                samples.append((healthy, live))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            c.update_service(cluster="default", service="roll", taskDefinition=td2)
            s = wait_for("the new revision to be stable", lambda: (lambda s: s if s["deployments"][0]["taskDefinition"] == td2
                          and len(s["deployments"]) == 1 and s["runningCount"] == 3 else None)(stable(c, "roll")))
        finally:
            stop.set()
            sampler.join()
        self.assertGreater(len(samples), 10)
        low = min(h for h, _ in samples)
        high = max(n for _, n in samples)
        self.assertGreaterEqual(low, 3, f"healthy running fell to {low} (minimum {math.ceil(3 * 1.0)})")
        self.assertLessEqual(high, 4, f"{high} tasks at once (maximum {3 * 150 // 100})")
        self.assertTrue(all(t["taskDefinitionArn"] == td2 for t in tasks_of(c, "roll")))
        self.assertTrue(any("deployment completed" in e["message"] for e in s["events"]))
        remove(c, "roll")

    def test_circuit_breaker_fails_a_bad_image_and_rolls_back(self):
        c = ecs()
        good = register(c, "svc-cb")
        bad = register(c, "svc-cb", image="berth-no-such-image:1")
        c.create_service(cluster="default", serviceName="cb", taskDefinition=good, desiredCount=2,
                         deploymentConfiguration={"deploymentCircuitBreaker": {"enable": True, "rollback": True}})
        before = settled(c, "cb")
        keep = {t["taskArn"] for t in tasks_of(c, "cb")}
        c.update_service(cluster="default", service="cb", taskDefinition=bad)

        def back():
            s = c.describe_services(cluster="default", services=["cb"])["services"][0]
            return s if len(s["deployments"]) == 1 and s["taskDefinition"] == good and s["deployments"][0]["rolloutState"] == "COMPLETED" else None
        s = wait_for("the rollback", back)
        msgs = [e["message"] for e in s["events"]]
        self.assertTrue(any("deployment failed: tasks failed to start." in m for m in msgs), msgs)
        self.assertTrue(any(f"rolling back to deployment {before['deployments'][0]['id']}" in m for m in msgs), msgs)
        self.assertEqual(s["deployments"][0]["id"], before["deployments"][0]["id"])
        self.assertEqual({t["taskArn"] for t in tasks_of(c, "cb")}, keep, "the good tasks kept running")
        failed = [t for t in tasks_of(c, "cb", "STOPPED") if t["taskDefinitionArn"] == bad]
        self.assertTrue(failed and all("CannotPullContainerError" in t["stoppedReason"] for t in failed))
        remove(c, "cb")

    def test_scale_to_zero_and_back_then_delete(self):
        c = ecs()
        td = register(c, "svc-scale")
        c.create_service(cluster="default", serviceName="scale", taskDefinition=td, desiredCount=2)
        stable(c, "scale")
        active = lambda: c.describe_clusters(clusters=["default"])["clusters"][0]["activeServicesCount"]
        self.assertEqual(active(), 1)
        c.update_service(cluster="default", service="scale", desiredCount=0)
        s = stable(c, "scale")
        self.assertEqual(s["runningCount"], 0)
        self.assertEqual(tasks_of(c, "scale"), [])
        c.update_service(cluster="default", service="scale", desiredCount=2)
        self.assertEqual(stable(c, "scale")["runningCount"], 2)
        with self.assertRaises(ClientError) as e:
            c.delete_service(cluster="default", service="scale")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterException")
        d = c.delete_service(cluster="default", service="scale", force=True)["service"]
        self.assertEqual(d["status"], "DRAINING")
        c.get_waiter("services_inactive").wait(cluster="default", services=["scale"], WaiterConfig=WAIT)
        s = c.describe_services(cluster="default", services=["scale"])["services"][0]
        self.assertEqual(s["status"], "INACTIVE")
        self.assertEqual(active(), 0)
        self.assertNotIn(s["serviceArn"], c.list_services(cluster="default")["serviceArns"])
        self.assertEqual(tasks_of(c, "scale"), [])
        with self.assertRaises(ClientError) as e:
            c.update_service(cluster="default", service="scale", desiredCount=1)
        self.assertEqual(e.exception.response["Error"]["Code"], "ServiceNotActiveException")
        # The name is free again.
        c.create_service(cluster="default", serviceName="scale", taskDefinition=td, desiredCount=1)
        stable(c, "scale")
        remove(c, "scale")

    def test_draining_moves_service_tasks_and_leaves_standalone_ones(self):
        c = ecs()
        td = register(c, "svc-drain")
        c.create_service(cluster="default", serviceName="drain", taskDefinition=td, desiredCount=4)
        settled(c, "drain")
        self.assertTrue(any(t["containerInstanceArn"] == A for t in tasks_of(c, "drain")))
        lone = c.run_task(cluster="default", taskDefinition=td, placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-east-1a"}])["tasks"][0]["taskArn"]
        c.update_container_instances_state(cluster="default", containerInstances=[A], status="DRAINING")
        try:
            wait_for("the tasks to leave A", lambda: all(t["containerInstanceArn"] == B for t in tasks_of(c, "drain"))
                     and len(tasks_of(c, "drain")) == 4)
            s = stable(c, "drain")
            self.assertEqual(s["runningCount"], 4)
            lone_now = c.describe_tasks(cluster="default", tasks=[lone])["tasks"][0]
            self.assertEqual(lone_now["desiredStatus"], "RUNNING", "standalone tasks are left alone")
        finally:
            c.update_container_instances_state(cluster="default", containerInstances=[A], status="ACTIVE")
            c.stop_task(cluster="default", task=lone)
        remove(c, "drain")

    def test_what_is_not_implemented_is_refused_and_bad_input_named(self):
        c = ecs()
        td = register(c, "svc-bad")
        cases = [
            (dict(serviceConnectConfiguration={"enabled": True, "namespace": "ns"}), "UnsupportedFeatureException", "serviceConnectConfiguration"),
            (dict(loadBalancers=[{"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/x/1", "containerName": "web", "containerPort": 8080}]), "InvalidParameterException", "does not exist"),
            (dict(serviceRegistries=[{"registryArn": "arn:aws:servicediscovery:us-east-1:123456789012:service/srv-1"}]), "InvalidParameterException", "serviceRegistries"),
            (dict(schedulingStrategy="DAEMON"), "InvalidParameterException", "desiredCount"),
            (dict(deploymentConfiguration={"minimumHealthyPercent": 150}), "InvalidParameterException", "minimumHealthyPercent"),
            (dict(placementStrategy=[{"type": "binpack", "field": "disk"}]), "InvalidParameterException", "placementStrategy[0].field"),
            # FARGATE runs (on Berth's Fargate pool) only a definition Fargate can run.
            (dict(launchType="FARGATE"), "InvalidParameterException", "does not support launch_type FARGATE"),
        ]
        for kw, code, field in cases:
            with self.subTest(kw=kw), self.assertRaises(ClientError) as e:
                args = dict(cluster="default", serviceName="bad", taskDefinition=td, desiredCount=1)
                args.update(kw)
                c.create_service(**args)
            self.assertEqual(e.exception.response["Error"]["Code"], code, kw)
            self.assertIn(field, e.exception.response["Error"]["Message"])
        c.create_service(cluster="default", serviceName="dup", taskDefinition=td, desiredCount=0, clientToken="tok-1")
        again = c.create_service(cluster="default", serviceName="dup", taskDefinition=td, desiredCount=0, clientToken="tok-1")
        self.assertEqual(again["service"]["serviceName"], "dup")
        with self.assertRaises(ClientError) as e:
            c.create_service(cluster="default", serviceName="dup", taskDefinition=td, desiredCount=0)
        self.assertEqual(e.exception.response["Error"]["Message"], "Creation of service was not idempotent.")
        with self.assertRaises(ClientError) as e:
            c.update_service(cluster="default", service="nope", desiredCount=1)
        self.assertEqual(e.exception.response["Error"]["Code"], "ServiceNotFoundException")
        r = c.describe_services(cluster="default", services=["nope", "dup"])
        self.assertEqual([f["reason"] for f in r["failures"]], ["MISSING"])
        self.assertEqual([s["serviceName"] for s in r["services"]], ["dup"])
        c.delete_service(cluster="default", service="dup")

    def test_service_deployments_and_stopping_one_with_a_rollback(self):
        c = ecs()
        good = register(c, "svc-deps")
        bad = register(c, "svc-deps", image="berth-no-such-image:2")
        c.create_service(cluster="default", serviceName="deps", taskDefinition=good, desiredCount=2)
        first = settled(c, "deps")
        c.update_service(cluster="default", service="deps", taskDefinition=bad)
        listed = c.list_service_deployments(cluster="default", service="deps")["serviceDeployments"]
        self.assertEqual([d["status"] for d in listed], ["IN_PROGRESS", "SUCCESSFUL"])
        current = c.describe_services(cluster="default", services=["deps"])["services"][0]["currentServiceDeployment"]
        self.assertEqual(listed[0]["serviceDeploymentArn"], current)
        c.stop_service_deployment(serviceDeploymentArn=current, stopType="ROLLBACK")
        s = settled(c, "deps")
        self.assertEqual(s["taskDefinition"], good)
        self.assertEqual(s["deployments"][0]["id"], first["deployments"][0]["id"])
        d = c.describe_service_deployments(serviceDeploymentArns=[current, current.replace("/deps/", "/nope/")])
        self.assertEqual(d["serviceDeployments"][0]["status"], "ROLLBACK_SUCCESSFUL")
        self.assertEqual([f["reason"] for f in d["failures"]], ["MISSING"])
        rev = d["serviceDeployments"][0]["targetServiceRevision"]["arn"]
        r = c.describe_service_revisions(serviceRevisionArns=[rev])["serviceRevisions"][0]
        self.assertEqual(r["taskDefinition"], bad)
        only = c.list_service_deployments(cluster="default", service="deps", status=["ROLLBACK_SUCCESSFUL"])
        self.assertEqual([x["serviceDeploymentArn"] for x in only["serviceDeployments"]], [current])
        with self.assertRaises(ClientError) as e:
            c.stop_service_deployment(serviceDeploymentArn=current)
        self.assertEqual(e.exception.response["Error"]["Code"], "ConflictException")
        remove(c, "deps")

    def test_protected_tasks_survive_scale_in(self):
        c = ecs()
        td = register(c, "svc-protect")
        c.create_service(cluster="default", serviceName="protect", taskDefinition=td, desiredCount=3)
        settled(c, "protect")
        keep = tasks_of(c, "protect")[1]["taskArn"]
        r = c.update_task_protection(cluster="default", tasks=[keep], protectionEnabled=True, expiresInMinutes=60)
        self.assertEqual(r["failures"], [])
        self.assertTrue(r["protectedTasks"][0]["protectionEnabled"])
        got = c.get_task_protection(cluster="default", tasks=[keep])["protectedTasks"][0]
        self.assertTrue(got["protectionEnabled"])
        self.assertGreater(got["expirationDate"].timestamp(), time.time() + 3000)
        c.update_service(cluster="default", service="protect", desiredCount=1)
        wait_for("scale-in", lambda: len(tasks_of(c, "protect")) == 1)
        self.assertEqual([t["taskArn"] for t in tasks_of(c, "protect")], [keep])
        lone = c.run_task(cluster="default", taskDefinition=td)["tasks"][0]["taskArn"]
        r = c.update_task_protection(cluster="default", tasks=[lone], protectionEnabled=True)
        self.assertEqual([f["reason"] for f in r["failures"]], ["TASK_NOT_VALID"])
        c.stop_task(cluster="default", task=lone)
        with self.assertRaises(ClientError) as e:
            c.update_task_protection(cluster="default", tasks=[keep], protectionEnabled=True, expiresInMinutes=5000)
        self.assertIn("expiresInMinutes", e.exception.response["Error"]["Message"])
        c.update_task_protection(cluster="default", tasks=[keep], protectionEnabled=False)
        self.assertFalse(c.get_task_protection(cluster="default", tasks=[keep])["protectedTasks"][0]["protectionEnabled"])
        remove(c, "protect")


if __name__ == "__main__":
    unittest.main()
