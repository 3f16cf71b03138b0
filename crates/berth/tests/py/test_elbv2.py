"""ELBv2 (issue #13) driven by boto3 against one real `berth server`: an application load
balancer whose listener (a real socket on loopback) routes by path and host to two target
groups of real HTTP backends (http.server threads on ephemeral ports), active health checks
that take a dead backend out of rotation, deregistration draining, ELB's error codes and
Marker/PageSize pagination. Run by the Rust test `elbv2_end_to_end` (tests/elbv2.rs), which sets
BERTH_ENDPOINT and the AWS_* variables.

Health checks run every 5 s (ELB's shortest interval) with thresholds of 2, so every wait here
is bounded by a few intervals; each wait polls a condition with a deadline.
"""

import http.client
import http.server
import os
import socket
import threading
import time
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")


def elb():
    return boto3.client("elbv2", endpoint_url=ENDPOINT, region_name=REGION)


def ec2():
    return boto3.client("ec2", endpoint_url=ENDPOINT, region_name=REGION)


def code(ctx):
    return ctx.exception.response["Error"]["Code"]


class Backend:
    """A real HTTP server on an ephemeral loopback port answering its name (and 200 on
    /health); `stop()` closes its socket, so connections are refused."""

    def __init__(self, name):
        outer = self
        self.name = name
        self.hits = 0

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if not self.path.startswith("/health"):
                    outer.hits += 1
                body = f"{outer.name} {self.path} {self.headers.get('Host')} xff={self.headers.get('X-Forwarded-For')}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path="/", host=None):
    """One request through the listener: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"Host": host} if host else {})
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def wait_for(what, check, timeout=60):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def health(c, tg):
    out = c.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    return {(d["Target"]["Id"], d["Target"]["Port"]): d["TargetHealth"] for d in out}


class Routing(unittest.TestCase):
    def test_listener_rules_health_and_draining(self):
        c = elb()
        subnets = ec2().describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        vpc = subnets[0]["VpcId"]
        lb = c.create_load_balancer(
            Name="routing", Subnets=[s["SubnetId"] for s in subnets[:2]],
            Tags=[{"Key": "team", "Value": "web"}])["LoadBalancers"][0]
        self.assertEqual(lb["State"]["Code"], "active")
        self.assertEqual(lb["Type"], "application")
        self.assertRegex(lb["LoadBalancerArn"],
                         r"^arn:aws:elasticloadbalancing:us-east-1:\d{12}:loadbalancer/app/routing/[0-9a-f]{16}$")
        self.assertRegex(lb["DNSName"], r"^routing-[0-9a-f]{8}\.us-east-1\.elb\.localhost$")
        self.assertEqual(len(lb["SecurityGroups"]), 1, "the VPC's default group")

        hc = dict(HealthCheckPath="/health", HealthCheckIntervalSeconds=5,
                  HealthCheckTimeoutSeconds=2, HealthyThresholdCount=2, UnhealthyThresholdCount=2)
        tg_a = c.create_target_group(Name="routing-a", Protocol="HTTP", Port=80, VpcId=vpc,
                                     TargetType="ip", **hc)["TargetGroups"][0]["TargetGroupArn"]
        tg_b = c.create_target_group(Name="routing-b", Protocol="HTTP", Port=80, VpcId=vpc,
                                     TargetType="ip", **hc)["TargetGroups"][0]["TargetGroupArn"]
        self.assertRegex(tg_a, r":targetgroup/routing-a/[0-9a-f]{16}$")
        c.modify_target_group_attributes(TargetGroupArn=tg_a, Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": "60"}])
        attrs = {a["Key"]: a["Value"] for a in
                 c.describe_target_group_attributes(TargetGroupArn=tg_a)["Attributes"]}
        self.assertEqual(attrs["deregistration_delay.timeout_seconds"], "60")

        a1, a2, b1 = Backend("a1"), Backend("a2"), Backend("b1")
        try:
            c.register_targets(TargetGroupArn=tg_a, Targets=[
                {"Id": "127.0.0.1", "Port": a1.port}, {"Id": "127.0.0.1", "Port": a2.port}])
            c.register_targets(TargetGroupArn=tg_b, Targets=[{"Id": "127.0.0.1", "Port": b1.port}])
            # Not behind a listener yet: unused.
            states = wait_for("unused targets", lambda: (
                h := health(c, tg_a)) and all(v["State"] == "unused" for v in h.values()) and h)
            self.assertEqual({v.get("Reason") for v in states.values()}, {"Target.NotInUse"})

            port = free_port()
            listener = c.create_listener(
                LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_a}])["Listeners"][0]
            larn = listener["ListenerArn"]
            self.assertRegex(larn, r":listener/app/routing/[0-9a-f]{16}/[0-9a-f]{16}$")
            c.create_rule(ListenerArn=larn, Priority=10,
                          Conditions=[{"Field": "path-pattern", "Values": ["/b/*"]}],
                          Actions=[{"Type": "forward", "TargetGroupArn": tg_b}])
            c.create_rule(ListenerArn=larn, Priority=20,
                          Conditions=[{"Field": "host-header",
                                       "HostHeaderConfig": {"Values": ["b.example.com"]}}],
                          Actions=[{"Type": "forward", "TargetGroupArn": tg_b}])
            rules = c.describe_rules(ListenerArn=larn)["Rules"]
            self.assertEqual([r["Priority"] for r in rules], ["10", "20", "default"])
            self.assertTrue(rules[2]["IsDefault"])
            with self.assertRaises(ClientError) as e:
                c.create_rule(ListenerArn=larn, Priority=10,
                              Conditions=[{"Field": "path-pattern", "Values": ["/c/*"]}],
                              Actions=[{"Type": "forward", "TargetGroupArn": tg_b}])
            self.assertEqual(code(e), "PriorityInUse")
            with self.assertRaises(ClientError) as e:
                c.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                  DefaultActions=[{"Type": "forward", "TargetGroupArn": tg_a}])
            self.assertEqual(code(e), "DuplicateListener")
            with self.assertRaises(ClientError) as e:
                c.delete_target_group(TargetGroupArn=tg_a)
            self.assertEqual(code(e), "ResourceInUse")
            groups = c.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
            self.assertEqual(sorted(g["TargetGroupName"] for g in groups), ["routing-a", "routing-b"])
            self.assertEqual(groups[0]["LoadBalancerArns"], [lb["LoadBalancerArn"]])

            # Health checks pass: every target healthy.
            wait_for("healthy targets", lambda: all(
                v["State"] == "healthy" for t in (tg_a, tg_b) for v in health(c, t).values()))

            # Routing: the default action balances over a1 and a2; the rules go to b1.
            seen = {get(port)[1].split()[0] for _ in range(10)}
            self.assertEqual(seen, {"a1", "a2"})
            status, body = get(port, "/b/x")
            self.assertEqual((status, body.split()[0]), (200, "b1"))
            self.assertIn("xff=127.0.0.1", body, "X-Forwarded-For names the client")
            status, body = get(port, "/", host="b.example.com")
            self.assertEqual((status, body.split()[0]), (200, "b1"))
            self.assertEqual(get(port, "/", host="a.example.com")[1].split()[0][0], "a")

            # A dead backend goes unhealthy and gets no traffic.
            a2.stop()
            h = wait_for("a2 unhealthy", lambda: (
                h := health(c, tg_a)) and h[("127.0.0.1", a2.port)]["State"] == "unhealthy" and h)
            self.assertEqual(h[("127.0.0.1", a2.port)]["Reason"], "Target.FailedHealthChecks")
            self.assertEqual(h[("127.0.0.1", a1.port)]["State"], "healthy")
            before = a1.hits
            for _ in range(20):
                status, body = get(port)
                self.assertEqual((status, body.split()[0]), (200, "a1"))
            self.assertEqual(a1.hits - before, 20)

            # Deregistration: draining for the group's delay, with ELB's reason.
            c.deregister_targets(TargetGroupArn=tg_a, Targets=[{"Id": "127.0.0.1", "Port": a1.port}])
            h = wait_for("a1 draining", lambda: (
                h := health(c, tg_a)) and h.get(("127.0.0.1", a1.port), {}).get("State") == "draining" and h)
            self.assertEqual(h[("127.0.0.1", a1.port)]["Reason"], "Target.DeregistrationInProgress")
            with self.assertRaises(ClientError) as e:
                c.deregister_targets(TargetGroupArn=tg_a, Targets=[{"Id": "127.0.0.1", "Port": a1.port}])
            self.assertEqual(code(e), "InvalidTarget")
            asked = c.describe_target_health(TargetGroupArn=tg_a, Targets=[{"Id": "10.9.9.9", "Port": 1}])
            self.assertEqual(asked["TargetHealthDescriptions"][0]["TargetHealth"]["Reason"],
                             "Target.NotRegistered")

            # SetRulePriorities swaps the two rules; ModifyRule changes a condition.
            rules = c.describe_rules(ListenerArn=larn)["Rules"]
            c.set_rule_priorities(RulePriorities=[
                {"RuleArn": rules[0]["RuleArn"], "Priority": 20},
                {"RuleArn": rules[1]["RuleArn"], "Priority": 10}])
            self.assertEqual([r["Priority"] for r in c.describe_rules(ListenerArn=larn)["Rules"]],
                             ["10", "20", "default"])
            with self.assertRaises(ClientError) as e:
                c.set_rule_priorities(RulePriorities=[{"RuleArn": rules[0]["RuleArn"], "Priority": 10}])
            self.assertEqual(code(e), "PriorityInUse")
            c.modify_rule(RuleArn=rules[0]["RuleArn"],
                          Conditions=[{"Field": "path-pattern", "Values": ["/bee/*"]}])
            wait_for("the modified rule routes", lambda: get(port, "/bee/1")[1].startswith("b1"))
            with self.assertRaises(ClientError) as e:
                c.delete_rule(RuleArn=c.describe_rules(ListenerArn=larn)["Rules"][2]["RuleArn"])
            self.assertEqual(code(e), "OperationNotPermitted")

            # Tags.
            c.add_tags(ResourceArns=[tg_b, larn], Tags=[{"Key": "env", "Value": "test"}])
            tags = c.describe_tags(ResourceArns=[lb["LoadBalancerArn"], tg_b, larn])["TagDescriptions"]
            self.assertEqual([t["Tags"] for t in tags],
                             [[{"Key": "team", "Value": "web"}], [{"Key": "env", "Value": "test"}],
                              [{"Key": "env", "Value": "test"}]])
            c.remove_tags(ResourceArns=[tg_b], TagKeys=["env"])
            self.assertEqual(c.describe_tags(ResourceArns=[tg_b])["TagDescriptions"][0]["Tags"], [])

            # Deleting the listener closes its port.
            c.delete_listener(ListenerArn=larn)

            def closed():
                try:
                    get(port)
                    return False
                except OSError:
                    return True
            wait_for("the listener's port to close", closed)
            c.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
            c.delete_target_group(TargetGroupArn=tg_a)
            c.delete_target_group(TargetGroupArn=tg_b)
            with self.assertRaises(ClientError) as e:
                c.describe_target_groups(TargetGroupArns=[tg_a])
            self.assertEqual(code(e), "TargetGroupNotFound")
        finally:
            for b in (a1, b1):
                b.stop()


class Errors(unittest.TestCase):
    def test_errors_carry_elb_codes(self):
        c = elb()
        subnets = ec2().describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        ids = [s["SubnetId"] for s in subnets]
        lb = c.create_load_balancer(Name="errors", Subnets=ids[:2])["LoadBalancers"][0]
        # The same settings answer the same load balancer; other settings are a duplicate.
        again = c.create_load_balancer(Name="errors", Subnets=ids[:2])["LoadBalancers"][0]
        self.assertEqual(again["LoadBalancerArn"], lb["LoadBalancerArn"])
        cases = [
            (lambda: c.create_load_balancer(Name="errors", Subnets=ids[1:3]), "DuplicateLoadBalancerName"),
            (lambda: c.create_load_balancer(Name="one-subnet", Subnets=ids[:1]), "ValidationError"),
            (lambda: c.create_load_balancer(Name="bad_name", Subnets=ids[:2]), "ValidationError"),
            (lambda: c.create_load_balancer(Name="nosubnet", Subnets=["subnet-0000000000000000a", ids[0]]),
             "SubnetNotFound"),
            (lambda: c.create_load_balancer(Name="badsg", Subnets=ids[:2], SecurityGroups=["sg-0000000000000000a"]),
             "InvalidSecurityGroup"),
            (lambda: c.describe_load_balancers(Names=["nope"]), "LoadBalancerNotFound"),
            (lambda: c.describe_listeners(ListenerArns=[lb["LoadBalancerArn"].replace(
                ":loadbalancer/", ":listener/") + "/0123456789abcdef"]), "ListenerNotFound"),
            (lambda: c.create_target_group(Name="tg", Protocol="HTTP", Port=80,
                                           VpcId=subnets[0]["VpcId"], HealthCheckIntervalSeconds=5,
                                           HealthCheckTimeoutSeconds=6),
             "ValidationError"),
            (lambda: c.create_target_group(Name="tg", Protocol="HTTP", Port=80,
                                           VpcId=subnets[0]["VpcId"], Matcher={"HttpCode": "700"}),
             "ValidationError"),
            (lambda: c.describe_load_balancers(PageSize=401), "ValidationError"),
            (lambda: c.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[
                {"Key": "idle_timeout.timeout_seconds", "Value": "0"}]), "ValidationError"),
        ]
        for call, want in cases:
            with self.assertRaises(ClientError) as e:
                call()
            self.assertEqual(code(e), want, e.exception.response["Error"]["Message"])
        tg = c.create_target_group(Name="errors-tg", Protocol="HTTP", Port=80,
                                   VpcId=subnets[0]["VpcId"])["TargetGroups"][0]
        with self.assertRaises(ClientError) as e:
            c.create_target_group(Name="errors-tg", Protocol="HTTP", Port=81, VpcId=subnets[0]["VpcId"])
        self.assertEqual(code(e), "DuplicateTargetGroupName")
        with self.assertRaises(ClientError) as e:
            c.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": "i-0123456789abcdef0"}])
        self.assertEqual(code(e), "InvalidTarget")
        c.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[
            {"Key": "deletion_protection.enabled", "Value": "true"}])
        with self.assertRaises(ClientError) as e:
            c.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        self.assertEqual(code(e), "OperationNotPermitted")
        c.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"], Attributes=[
            {"Key": "deletion_protection.enabled", "Value": "false"}])
        c.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        with self.assertRaises(ClientError) as e:
            c.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        self.assertEqual(code(e), "LoadBalancerNotFound")
        c.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])


class Network(unittest.TestCase):
    def test_tcp_listener_forwards_to_a_tcp_target_group(self):
        c = elb()
        subnets = ec2().describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        lb = c.create_load_balancer(Name="tcp", Type="network",
                                    Subnets=[subnets[0]["SubnetId"]])["LoadBalancers"][0]
        self.assertRegex(lb["LoadBalancerArn"], r":loadbalancer/net/tcp/[0-9a-f]{16}$")
        self.assertEqual(lb["Type"], "network")
        tg = c.create_target_group(Name="tcp-tg", Protocol="TCP", Port=80, VpcId=subnets[0]["VpcId"],
                                   TargetType="ip", HealthCheckIntervalSeconds=5,
                                   HealthyThresholdCount=2)["TargetGroups"][0]["TargetGroupArn"]
        backend = Backend("t1")
        try:
            c.register_targets(TargetGroupArn=tg, Targets=[{"Id": "127.0.0.1", "Port": backend.port}])
            port = free_port()
            with self.assertRaises(ClientError) as e:
                c.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=port,
                                  DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
            self.assertEqual(code(e), "UnsupportedProtocol")
            larn = c.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=port,
                                     DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}]
                                     )["Listeners"][0]["ListenerArn"]
            self.assertRegex(larn, r":listener/net/tcp/[0-9a-f]{16}/[0-9a-f]{16}$")
            wait_for("a healthy TCP target", lambda: all(
                v["State"] == "healthy" for v in health(c, tg).values()))
            status, body = get(port, "/over-tcp")
            self.assertEqual((status, body.split()[:2]), (200, ["t1", "/over-tcp"]))
            c.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
            c.delete_target_group(TargetGroupArn=tg)
        finally:
            backend.stop()


class Pagination(unittest.TestCase):
    def test_marker_and_page_size(self):
        c = elb()
        vpc = ec2().describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
        names = [f"page-{i}" for i in range(7)]
        for n in names:
            c.create_target_group(Name=n, Protocol="TCP", Port=9000, VpcId=vpc)
        seen, marker, pages = [], None, 0
        while True:
            kw = {"PageSize": 3}
            if marker:
                kw["Marker"] = marker
            r = c.describe_target_groups(**kw)
            pages += 1
            self.assertLessEqual(len(r["TargetGroups"]), 3)
            seen += [g["TargetGroupName"] for g in r["TargetGroups"] if g["TargetGroupName"].startswith("page-")]
            marker = r.get("NextMarker")
            if not marker:
                break
        self.assertEqual(sorted(seen), names)
        self.assertGreaterEqual(pages, 3)
        # botocore's own paginator follows NextMarker too.
        pg = c.get_paginator("describe_target_groups")
        got = [g["TargetGroupName"] for p in pg.paginate(PaginationConfig={"PageSize": 2})
               for g in p["TargetGroups"] if g["TargetGroupName"].startswith("page-")]
        self.assertEqual(sorted(got), names)
        for g in c.describe_target_groups(Names=names)["TargetGroups"]:
            self.assertEqual(g["HealthCheckProtocol"], "TCP")
            c.delete_target_group(TargetGroupArn=g["TargetGroupArn"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
