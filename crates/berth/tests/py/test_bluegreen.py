"""Traffic-shifting deployments (issue #13) driven by boto3 against one real `berth server`
and agent on Docker: a service of the demo image behind an ALB whose production rule and
test rule (`advancedConfiguration`) Berth moves between two target groups. Run by the Rust
test `blue_green_linear_and_rollback` (tests/lb_bluegreen.rs), which sets BERTH_ENDPOINT and
the AWS_* variables and passes the agent's instance ARN.

In order, under a bounded loop of requests through the listener on loopback:
* BLUE_GREEN: green starts beside blue, the test rule points at green, production flips to
  green, the bake time passes, blue stops; zero requests lost, production ends on the new
  revision, DescribeServiceDeployments shows the lifecycle stages;
* LINEAR (stepPercent 25): the production rule's weights go 25/50/75/100 and the sampled
  split of answers follows each step;
* a green whose tasks exit at once: the circuit breaker rolls back, production never
  forwards to green and no request is lost.

Minutes are scaled to seconds with the service tag `berth:deployment-minute-secs` (a
Berth-only test knob) so the whole file takes about a minute and a half.
"""

import http.client
import os
import sys
import threading
import time
import unittest

import boto3

ENDPOINT = os.environ["BERTH_ENDPOINT"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
MINUTE_SECS = "2"


def client(name):
    return boto3.client(name, endpoint_url=ENDPOINT, region_name=REGION)


def wait(what, secs, pred, every=0.2):
    deadline = time.time() + secs
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Load:
    """A bounded loop of GET /env through the listener: each answer's time and revision
    (the VERSION the container has), and the failures."""

    def __init__(self, port):
        self.port = port
        self.samples = []
        self.failures = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        deadline = time.time() + 240
        conn = None
        while not self.stop and time.time() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/env")
                r = conn.getresponse()
                body = r.read().decode()
                if r.status != 200:
                    self.failures.append(f"status {r.status}: {body[:80]}")
                    continue
                version = next(
                    (l.split("=", 1)[1] for l in body.splitlines() if l.startswith("VERSION=")),
                    "?",
                )
                self.samples.append((time.time(), version))
            except Exception as e:  # noqa: BLE001 - any failure is a lost request
                self.failures.append(repr(e))
                conn = None
            time.sleep(0.002)

    def finish(self):
        self.stop = True
        self.t.join()
        return self.samples, self.failures


class BlueGreen(unittest.TestCase):
    def setUp(self):
        self.ecs = client("ecs")
        self.elb = client("elbv2")
        ec2 = client("ec2")
        vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
        subnets = ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}]
        )["Subnets"]
        lb = self.elb.create_load_balancer(
            Name="bg", Subnets=[s["SubnetId"] for s in subnets[:2]]
        )["LoadBalancers"][0]["LoadBalancerArn"]
        self.tgs = []
        for name in ("bg-blue", "bg-green"):
            tg = self.elb.create_target_group(
                Name=name, Protocol="HTTP", Port=8080, VpcId=vpc["VpcId"],
                TargetType="instance", HealthCheckPath="/health",
                HealthCheckIntervalSeconds=5, HealthCheckTimeoutSeconds=2,
                HealthyThresholdCount=2, UnhealthyThresholdCount=2,
            )["TargetGroups"][0]["TargetGroupArn"]
            self.elb.modify_target_group_attributes(
                TargetGroupArn=tg,
                Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "2"}],
            )
            self.tgs.append(tg)
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        listener = self.elb.create_listener(
            LoadBalancerArn=lb, Protocol="HTTP", Port=self.port,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {
                "StatusCode": "404", "ContentType": "text/plain", "MessageBody": "no rule"}}],
        )["Listeners"][0]["ListenerArn"]
        fwd = [{"Type": "forward", "TargetGroupArn": self.tgs[0]}]
        self.test_rule = self.elb.create_rule(
            ListenerArn=listener, Priority=1, Actions=fwd,
            Conditions=[{"Field": "http-header", "HttpHeaderConfig": {
                "HttpHeaderName": "x-test", "Values": ["1"]}}],
        )["Rules"][0]["RuleArn"]
        self.prod_rule = self.elb.create_rule(
            ListenerArn=listener, Priority=10, Actions=fwd,
            Conditions=[{"Field": "path-pattern", "Values": ["/*"]}],
        )["Rules"][0]["RuleArn"]

    def td(self, version, command=None):
        c = {"name": "web", "image": "berth-demo:latest", "memory": 16, "essential": True,
             "stopTimeout": 2, "environment": [{"name": "VERSION", "value": version}],
             "portMappings": [{"containerPort": 8080, "hostPort": 0}]}
        if command:
            c["command"] = command
        return self.ecs.register_task_definition(family="bg", containerDefinitions=[c])[
            "taskDefinition"]["taskDefinitionArn"]

    def weights(self, rule):
        """{target group: weight} of the rule's forward action."""
        r = self.elb.describe_rules(RuleArns=[rule])["Rules"][0]
        fwd = next(a for a in r["Actions"] if a["Type"] == "forward")
        groups = fwd.get("ForwardConfig", {}).get("TargetGroups")
        if not groups:
            return {fwd["TargetGroupArn"]: 1}
        return {g["TargetGroupArn"]: g.get("Weight", 1) for g in groups}

    def green_share(self, rule, green):
        w = self.weights(rule)
        total = sum(w.values())
        return round(100 * w.get(green, 0) / total) if total else 0

    def service(self):
        return self.ecs.describe_services(services=["bg"])["services"][0]

    def settled(self, td):
        def ok():
            s = self.service()
            d = s["deployments"]
            return (len(d) == 1 and d[0]["rolloutState"] == "COMPLETED"
                    and d[0]["taskDefinition"] == td and s["runningCount"] == 2 and s)
        return wait(f"the service settled on {td}", 120, ok, every=0.5)

    def deployment(self, deployment_id):
        arns = [a["serviceDeploymentArn"] for a in self.ecs.list_service_deployments(
            service="bg")["serviceDeployments"]]
        digits = deployment_id.split("/")[-1]
        arn = next(a for a in arns if a.endswith(digits))
        return self.ecs.describe_service_deployments(serviceDeploymentArns=[arn])[
            "serviceDeployments"][0]

    def update(self, td, **extra):
        s = self.ecs.update_service(service="bg", taskDefinition=td, **extra)["service"]
        return s["deployments"][0]["id"]

    def watch(self, dep_id, green, until, secs):
        """Polls the deployment until `until()`: the lifecycle stages seen and
        (time, green % on production, green % on test) of every poll."""
        stages, splits = [], []

        def done():
            st = self.deployment(dep_id).get("lifecycleStage")
            if st and (not stages or stages[-1] != st):
                stages.append(st)
            splits.append((time.time(), self.green_share(self.prod_rule, green),
                           self.green_share(self.test_rule, green)))
            return until()
        try:
            wait("the deployment", secs, done, every=0.1)
        except AssertionError:
            svc = self.service()
            print("events:", *[e["message"] for e in svc["events"][:30]], sep="\n  ",
                  file=sys.stderr)
            print("deployments:", svc["deployments"], "stages:", stages, "splits:", splits[-5:],
                  file=sys.stderr)
            for tg in self.tgs:
                print(tg, self.elb.describe_target_health(TargetGroupArn=tg)[
                    "TargetHealthDescriptions"], file=sys.stderr)
            raise
        return stages, splits

    def test_deployments(self):
        td1, td2, td3 = self.td("1"), self.td("2"), self.td("3")
        bad = self.td("4", ["-exit", "1"])
        adv = {"alternateTargetGroupArn": self.tgs[1], "productionListenerRule": self.prod_rule,
               "testListenerRule": self.test_rule,
               "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}
        self.ecs.create_service(
            serviceName="bg", taskDefinition=td1, desiredCount=2,
            loadBalancers=[{"targetGroupArn": self.tgs[0], "containerName": "web",
                            "containerPort": 8080, "advancedConfiguration": adv}],
            deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 1},
            tags=[{"key": "berth:deployment-minute-secs", "value": MINUTE_SECS}],
        )
        self.settled(td1)
        conf = self.service()["deploymentConfiguration"]
        self.assertEqual((conf["strategy"], conf["bakeTimeInMinutes"]), ("BLUE_GREEN", 1))
        wait("blue serving", 30, lambda: self.elb.describe_target_health(
            TargetGroupArn=self.tgs[0])["TargetHealthDescriptions"])

        # BLUE_GREEN under load: nothing lost, production ends on green (the alternate group).
        load = Load(self.port)
        wait("answers from blue", 30, lambda: load.samples)
        t0 = time.time()
        dep = self.update(td2)
        green = self.tgs[1]
        stages, splits = self.watch(dep, green, lambda: self.service()["deployments"][0][
            "rolloutState"] == "COMPLETED", 120)
        print(f"blue/green took {time.time() - t0:.1f} s; stages {stages}", file=sys.stderr)
        samples, failures = load.finish()
        self.assertEqual(failures, [], "requests lost during the blue/green deployment")
        self.assertGreater(len(samples), 100)
        self.assertEqual(self.green_share(self.prod_rule, green), 100)
        self.assertEqual(self.green_share(self.test_rule, green), 100)
        self.assertEqual({v for _, v in samples[-20:]}, {"2"})
        self.assertEqual(stages[0], "SCALE_UP", stages)
        self.assertEqual(stages[-1], "CLEAN_UP", stages)
        self.assertIn("BAKE_TIME", stages)
        # Production moved in one step, and only after the test rule pointed at green.
        self.assertEqual({p for _, p, _ in splits} - {0, 100}, set(), splits)
        first_prod = next(t for t, p, _ in splits if p == 100)
        first_test = next(t for t, _, tst in splits if tst == 100)
        self.assertLessEqual(first_test, first_prod)
        d = self.deployment(dep)
        self.assertEqual((d["status"], d["lifecycleStage"]), ("SUCCESSFUL", "CLEAN_UP"))
        self.settled(td2)
        blue_targets = self.elb.describe_target_health(TargetGroupArn=self.tgs[0])
        self.assertTrue(all(t["TargetHealth"]["State"] == "draining"
                            for t in blue_targets["TargetHealthDescriptions"]), blue_targets)

        # LINEAR 25% every 2 "minutes" (4 s): the sampled split follows the steps.
        load = Load(self.port)
        dep = self.update(td3, deploymentConfiguration={
            "strategy": "LINEAR", "bakeTimeInMinutes": 1,
            "linearConfiguration": {"stepPercent": 25.0, "stepBakeTimeInMinutes": 2}})
        green = self.tgs[0]  # blue is on the alternate group now
        stages, splits = self.watch(dep, green, lambda: self.service()["deployments"][0][
            "rolloutState"] == "COMPLETED", 120)
        samples, failures = load.finish()
        self.assertEqual(failures, [], "requests lost during the linear deployment")
        steps = []
        for _, p, _ in splits:
            if not steps or steps[-1] != p:
                steps.append(p)
        self.assertEqual(steps, [0, 25, 50, 75, 100], splits)
        # Each step's window (the polls that saw it, minus half a second at each edge for
        # the proxy to follow the rule): the share of answers from the new revision.
        for want in (25, 50, 75):
            times = [t for t, p, _ in splits if p == want]
            lo, hi = min(times) + 0.5, max(times) - 0.5
            window = [v for t, v in samples if lo <= t <= hi]
            self.assertGreater(len(window), 50, f"samples at {want}%")
            got = 100 * sum(1 for v in window if v == "3") / len(window)
            print(f"linear step {want}%: {got:.1f}% of {len(window)} answers", file=sys.stderr)
            self.assertLess(abs(got - want), 12, f"step {want}%: {got:.1f}%")
        self.settled(td3)

        # A failing green rolls back; production never forwards to it.
        load = Load(self.port)
        wait("answers", 30, lambda: load.samples)
        dep = self.update(bad, deploymentConfiguration={
            "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
        green = self.tgs[1]
        stages, splits = self.watch(dep, green, lambda: self.deployment(dep)["status"] in (
            "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED"), 150)
        samples, failures = load.finish()
        self.assertEqual(self.deployment(dep)["status"], "ROLLBACK_SUCCESSFUL")
        self.assertEqual(failures, [], "requests lost during the failed deployment")
        self.assertEqual({p for _, p, _ in splits}, {0}, "production touched a failed green")
        self.assertEqual({v for _, v in samples}, {"3"})
        self.settled(td3)
        self.assertEqual(self.green_share(self.prod_rule, self.tgs[0]), 100)

        self.ecs.update_service(service="bg", desiredCount=0)
        self.ecs.delete_service(service="bg", force=True)
        wait("the service's tasks to stop", 60,
             lambda: not self.ecs.list_tasks(serviceName="bg")["taskArns"], every=0.5)


if __name__ == "__main__":
    unittest.main()
