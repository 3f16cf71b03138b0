"""Placement end to end, driven by boto3 against `berth server` with four agents.

Run by the Rust test `placement_suite` (tests/placement.rs), which passes the four container
instance ARNs, in this order:
  A us-east-1a m5.large, B us-east-1b m5.large, C us-east-1c c5.large,
  D us-east-1a c5.large with the custom attribute stack=prod;
each registers 2048 MiB.
"""

import collections
import os
import sys
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
A, B, C, D = sys.argv.pop(1).split(",")
ZONE = {A: "us-east-1a", B: "us-east-1b", C: "us-east-1c", D: "us-east-1a"}
WAIT = {"Delay": 1, "MaxAttempts": 90}


def ecs():
    return boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")


def register(c, family, memory=16, **kw):
    return c.register_task_definition(family=family, containerDefinitions=[{
        "name": "web", "image": "berth-demo:latest", "memory": memory, "essential": True}],
        **kw)["taskDefinition"]["taskDefinitionArn"]


class Placement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.c = ecs()
        cls.td = register(cls.c, "place")
        cls.started = []

    @classmethod
    def tearDownClass(cls):
        # Stop everything the suite started and wait until it has stopped.
        c = cls.c
        for arn in cls.started:
            c.stop_task(cluster="default", task=arn, reason="placement suite done")
        for i in range(0, len(cls.started), 100):
            c.get_waiter("tasks_stopped").wait(
                cluster="default", tasks=cls.started[i:i + 100], WaiterConfig=WAIT)

    def run_task(self, **kw):
        kw.setdefault("taskDefinition", self.td)
        r = self.c.run_task(cluster="default", **kw)
        self.started += [t["taskArn"] for t in r["tasks"]]
        return r

    def test_list_container_instances_filter_returns_exactly_the_matches(self):
        def listed(expr, **kw):
            return set(self.c.list_container_instances(cluster="default", filter=expr, **kw)["containerInstanceArns"])
        self.assertEqual(listed("attribute:ecs.instance-type == m5.large"), {A, B})
        self.assertEqual(listed("attribute:ecs.availability-zone in [us-east-1a, us-east-1c]"), {A, C, D})
        self.assertEqual(listed("attribute:ecs.instance-type =~ c5.* and attribute:ecs.availability-zone != us-east-1c"), {D})
        self.assertEqual(listed("attribute:stack exists"), {D})
        self.assertEqual(listed("attribute:stack != prod"), set())
        self.assertEqual(listed("not(attribute:stack == prod)"), {A, B, C})
        self.assertEqual(listed("agentConnected == true"), {A, B, C, D})
        self.assertEqual(listed("attribute:ecs.instance-type == m5.large", status="DRAINING"), set())
        # Pagination walks the filtered list.
        seen, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            r = self.c.list_container_instances(cluster="default", filter="attribute:ecs.availability-zone == us-east-1a", maxResults=1, **kw)
            seen += r["containerInstanceArns"]
            token = r.get("nextToken")
            if not token:
                break
        self.assertEqual(sorted(seen), sorted([A, D]))
        # The AWS CLI's paginator (boto3's) gives the same.
        pages = self.c.get_paginator("list_container_instances").paginate(
            cluster="default", filter="attribute:ecs.availability-zone == us-east-1a", PaginationConfig={"PageSize": 1})
        self.assertEqual(sorted(a for p in pages for a in p["containerInstanceArns"]), sorted([A, D]))
        with self.assertRaises(ClientError) as e:
            self.c.list_container_instances(cluster="default", filter="attribute:ecs.instance-type equal m5.large")
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "InvalidParameterException")
        self.assertIn("filter", err["Message"])
        self.assertIn("equal", err["Message"])

    def test_spread_over_zones_lands_evenly(self):
        r = self.run_task(count=9, group="spread-zones", placementStrategy=[
            {"type": "spread", "field": "attribute:ecs.availability-zone"},
            {"type": "spread", "field": "instanceId"}])
        self.assertEqual(r["failures"], [])
        zones = collections.Counter(t["availabilityZone"] for t in r["tasks"])
        self.assertEqual(zones, {"us-east-1a": 3, "us-east-1b": 3, "us-east-1c": 3})
        # Within us-east-1a the second strategy spreads over its two instances.
        in_a = collections.Counter(t["containerInstanceArn"] for t in r["tasks"] if t["availabilityZone"] == "us-east-1a")
        self.assertEqual(sorted(in_a.values()), [1, 2])
        for t in r["tasks"]:
            self.assertEqual(ZONE[t["containerInstanceArn"]], t["availabilityZone"])
            self.assertEqual(t["group"], "spread-zones")

    def test_member_of_restricts(self):
        r = self.run_task(count=5, placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.instance-type == c5.large"}])
        self.assertEqual(r["failures"], [])
        self.assertTrue({t["containerInstanceArn"] for t in r["tasks"]} <= {C, D})

    def test_task_definition_constraints_apply_and_are_checked_at_registration(self):
        td = register(self.c, "place-prod", placementConstraints=[
            {"type": "memberOf", "expression": "attribute:stack == prod"}])
        r = self.run_task(taskDefinition=td, count=3)
        self.assertEqual({t["containerInstanceArn"] for t in r["tasks"]}, {D})
        # Together with the request's own, which contradicts it: nothing fits.
        r = self.run_task(taskDefinition=td, placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.availability-zone == us-east-1b"}])
        self.assertEqual(r["tasks"], [])
        self.assertEqual({f["reason"] for f in r["failures"]}, {"MemberOf placement constraint unsatisfied."})
        self.assertEqual({f["arn"] for f in r["failures"]}, {A, B, C, D})
        with self.assertRaises(ClientError) as e:
            register(self.c, "place-bad", placementConstraints=[
                {"type": "memberOf", "expression": "attribute:stack == prod and"}])
        err = e.exception.response["Error"]
        self.assertEqual(err["Code"], "InvalidParameterException")
        self.assertIn("placementConstraints[0].expression", err["Message"])

    def test_distinct_instance_holds(self):
        r = self.run_task(count=5, group="distinct", placementConstraints=[{"type": "distinctInstance"}])
        self.assertEqual(len(r["tasks"]), 4)
        self.assertEqual({t["containerInstanceArn"] for t in r["tasks"]}, {A, B, C, D})
        self.assertEqual(sorted((f["arn"], f["reason"]) for f in r["failures"]),
                         sorted((a, "DistinctInstance placement constraint unsatisfied.") for a in (A, B, C, D)))
        # The group's tasks persist on their instances: a later request of the group finds no room.
        r = self.run_task(group="distinct", placementConstraints=[{"type": "distinctInstance"}])
        self.assertEqual(r["tasks"], [])
        # Task affinity: only instances hosting the group.
        r = self.run_task(count=2, placementConstraints=[
            {"type": "memberOf", "expression": "task:group == distinct and attribute:ecs.availability-zone == us-east-1b"}])
        self.assertEqual({t["containerInstanceArn"] for t in r["tasks"]}, {B})

    def test_too_large_a_task_fails_with_the_reason(self):
        big = register(self.c, "place-big", memory=4096)
        r = self.run_task(taskDefinition=big)
        self.assertEqual(r["tasks"], [])
        self.assertEqual(sorted((f["arn"], f["reason"]) for f in r["failures"]),
                         sorted((a, "RESOURCE:MEMORY") for a in (A, B, C, D)))

    def test_binpack_fills_one_instance_first(self):
        td = register(self.c, "place-pack", memory=64)
        r = self.run_task(taskDefinition=td, count=4, placementStrategy=[{"type": "binpack", "field": "memory"}])
        self.assertEqual(r["failures"], [])
        self.assertEqual(len({t["containerInstanceArn"] for t in r["tasks"]}), 1)

    def test_random_places_within_constraints(self):
        r = self.run_task(count=6, placementStrategy=[{"type": "random"}], placementConstraints=[
            {"type": "memberOf", "expression": "attribute:ecs.instance-type == m5.large"}])
        self.assertEqual(r["failures"], [])
        self.assertTrue({t["containerInstanceArn"] for t in r["tasks"]} <= {A, B})

    def test_bad_placement_members_are_invalid_parameters_naming_the_field(self):
        cases = [
            ({"placementStrategy": [{"type": "binpack", "field": "disk"}]}, "placementStrategy[0].field"),
            ({"placementStrategy": [{"type": "spread"}]}, "placementStrategy[0].field"),
            ({"placementStrategy": [{"type": "random"}] * 6}, "placementStrategy"),
            ({"placementConstraints": [{"type": "memberOf"}]}, "placementConstraints[0].expression"),
            ({"placementConstraints": [{"type": "distinctInstance", "expression": "x == y"}]}, "placementConstraints[0].expression"),
            ({"placementConstraints": [{"type": "memberOf", "expression": "bogus == 1"}]}, "placementConstraints[0].expression"),
            ({"capacityProviderStrategy": [{"capacityProvider": "a", "base": 1}, {"capacityProvider": "b", "base": 1, "weight": 1}]}, "capacityProviderStrategy[1].base"),
            ({"capacityProviderStrategy": [{"capacityProvider": "spot", "weight": 1}]}, "not associated with the cluster"),
            ({"capacityProviderStrategy": [{"capacityProvider": "spot", "weight": 1}], "launchType": "EC2"}, "launch type and capacity provider strategy"),
        ]
        for kw, want in cases:
            with self.subTest(kw=kw), self.assertRaises(ClientError) as e:
                self.run_task(**kw)
            err = e.exception.response["Error"]
            self.assertEqual(err["Code"], "InvalidParameterException", kw)
            self.assertIn(want, err["Message"])


if __name__ == "__main__":
    unittest.main()
