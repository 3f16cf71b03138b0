"""PAUSE deployment lifecycle hooks and ContinueServiceDeployment (issue #13), driven by
boto3 and the AWS CLI against one real `berth server` and agent on Docker, with the load
balancer, target groups and listener rules of test_bluegreen.py (whose helpers this reuses).
Run by the Rust test `pause_hooks_continue_roll_back_and_time_out` (tests/lb_pause_hooks.rs),
which sets BERTH_ENDPOINT and the AWS_* variables.

A BLUE_GREEN service with a PAUSE hook at POST_TEST_TRAFFIC_SHIFT, under a bounded loop of
requests through the listener:
* deployment 2 stops there: DescribeServiceDeployments shows the hook AWAITING_ACTION with
  its hookId, the test rule on green and production still on blue; a wrong hookId is
  refused; `aws ecs continue-service-deployment` (CONTINUE) completes it and production ends
  on green; continuing the same hook again is refused;
* deployment 3 stops there too; `--action ROLLBACK` returns production to blue at once and
  the deployment ends ROLLBACK_SUCCESSFUL;
* deployment 4, with the hook's timeout at 4 "minutes" and action ROLLBACK, rolls back by
  itself (the hook TIMED_OUT);
* deployment 5, LINEAR in two 50% steps with a PRODUCTION_TRAFFIC_SHIFT hook, pauses before
  each step (0%, then 50% of production on green) and completes after two CONTINUEs;
* deployment 6, paused, is superseded by deployment 7: its hook shows FAILED, not
  AWAITING_ACTION, and cannot be continued;
* deployment 8 is left paused for AfterRestart, which the Rust test runs once it has killed
  the server with SIGKILL and started it again.
No request is lost, and production never answers from a rolled-back or superseded green.
"""

import json
import os
import subprocess
import sys
import time
import unittest

import test_bluegreen as bg

ENDPOINT = bg.ENDPOINT
wait = bg.wait


def aws(*args):
    """`aws ecs ARGS...` against Berth: (ok, parsed stdout or stderr)."""
    out = subprocess.run(
        ["aws", "--endpoint-url", ENDPOINT, "--output", "json", "ecs", *args],
        capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:
        return False, out.stderr
    return True, json.loads(out.stdout) if out.stdout.strip() else None


class PauseHooks(unittest.TestCase):
    setUp = bg.BlueGreen.setUp
    td = bg.BlueGreen.td
    weights = bg.BlueGreen.weights
    green_share = bg.BlueGreen.green_share
    service = bg.BlueGreen.service
    settled = bg.BlueGreen.settled
    deployment = bg.BlueGreen.deployment
    update = bg.BlueGreen.update

    def paused(self, dep):
        """Waits until the deployment waits on a hook; returns the deployment."""
        def ok():
            d = self.deployment(dep)
            hooks = d.get("lifecycleHookDetails", [])
            return any(h["status"] == "AWAITING_ACTION" for h in hooks) and d
        try:
            return wait("the deployment to pause", 90, ok, every=0.2)
        except AssertionError:
            svc = self.service()
            print("events:", *[e["message"] for e in svc["events"][:20]], sep="\n  ",
                  file=sys.stderr)
            raise

    def test_pause_hooks(self):
        td1, td2, td3, td4 = (self.td(v) for v in "1234")
        adv = {"alternateTargetGroupArn": self.tgs[1], "productionListenerRule": self.prod_rule,
               "testListenerRule": self.test_rule,
               "roleArn": "arn:aws:iam::000000000000:role/ecsInfrastructureRole"}
        hook = {"targetType": "PAUSE", "lifecycleStages": ["POST_TEST_TRAFFIC_SHIFT"],
                "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}
        self.ecs.create_service(
            serviceName="bg", taskDefinition=td1, desiredCount=2,
            loadBalancers=[{"targetGroupArn": self.tgs[0], "containerName": "web",
                            "containerPort": 8080, "advancedConfiguration": adv}],
            deploymentConfiguration={"strategy": "BLUE_GREEN", "bakeTimeInMinutes": 0,
                                     "lifecycleHooks": [hook]},
            tags=[{"key": "berth:deployment-minute-secs", "value": "1"}],
        )
        conf = self.service()["deploymentConfiguration"]
        self.assertEqual(conf["lifecycleHooks"], [hook])
        self.settled(td1)
        wait("blue serving", 30, lambda: self.elb.describe_target_health(
            TargetGroupArn=self.tgs[0])["TargetHealthDescriptions"])
        load = bg.Load(self.port)
        wait("answers from blue", 30, lambda: load.samples)

        # Deployment 2 pauses after the test traffic shift; CONTINUE completes it.
        dep = self.update(td2)
        green = self.tgs[1]
        d = self.paused(dep)
        self.assertEqual((d["status"], d["lifecycleStage"]),
                         ("IN_PROGRESS", "POST_TEST_TRAFFIC_SHIFT"))
        [h] = d["lifecycleHookDetails"]
        self.assertEqual((h["targetType"], h["status"], h["timeoutAction"]),
                         ("PAUSE", "AWAITING_ACTION", "ROLLBACK"))
        self.assertTrue(h["hookId"].startswith("ecs-pause-"), h)
        self.assertGreater(h["expiresAt"].timestamp(), time.time() + 500)
        self.assertEqual(self.green_share(self.test_rule, green), 100)
        self.assertEqual(self.green_share(self.prod_rule, green), 0)
        arn = d["serviceDeploymentArn"]
        ok, err = aws("continue-service-deployment", "--service-deployment-arn", arn,
                      "--hook-id", "ecs-pause-nope")
        self.assertFalse(ok)
        self.assertIn("InvalidParameterException", err)
        self.assertIn("hookId", err)
        ok, err = aws("continue-service-deployment", "--service-deployment-arn",
                      arn[:-3] + "999", "--hook-id", h["hookId"])
        self.assertIn("ServiceDeploymentNotFoundException", err)
        # Still held: production on blue, only blue answering.
        n = len(load.samples)
        wait("more answers", 10, lambda: len(load.samples) > n + 50)
        self.assertEqual(self.deployment(dep)["lifecycleStage"], "POST_TEST_TRAFFIC_SHIFT")
        self.assertEqual(self.green_share(self.prod_rule, green), 0)
        self.assertEqual({v for _, v in load.samples}, {"1"})
        ok, out = aws("continue-service-deployment", "--service-deployment-arn", arn,
                      "--hook-id", h["hookId"])
        self.assertTrue(ok, out)
        self.assertEqual(out["serviceDeploymentArn"], arn)
        self.settled(td2)
        d = self.deployment(dep)
        self.assertEqual(d["status"], "SUCCESSFUL")
        self.assertEqual([x["status"] for x in d["lifecycleHookDetails"]], ["SUCCEEDED"])
        self.assertEqual(self.green_share(self.prod_rule, green), 100)
        ok, err = aws("continue-service-deployment", "--service-deployment-arn", arn,
                      "--hook-id", h["hookId"])
        self.assertIn("ClientException", err)

        # Deployment 3 pauses; ROLLBACK puts production back on blue (now the alternate).
        dep = self.update(td3)
        green, blue = self.tgs[0], self.tgs[1]
        d = self.paused(dep)
        [h] = d["lifecycleHookDetails"]
        self.assertEqual(self.green_share(self.prod_rule, green), 0)
        ok, out = aws("continue-service-deployment", "--service-deployment-arn",
                      d["serviceDeploymentArn"], "--hook-id", h["hookId"],
                      "--action", "ROLLBACK")
        self.assertTrue(ok, out)
        wait("the rollback", 60,
             lambda: self.deployment(dep)["status"] == "ROLLBACK_SUCCESSFUL", every=0.5)
        self.settled(td2)
        d = self.deployment(dep)
        self.assertEqual([x["status"] for x in d["lifecycleHookDetails"]], ["FAILED"])
        self.assertEqual(self.green_share(self.prod_rule, blue), 100)
        self.assertEqual(self.green_share(self.test_rule, blue), 100)

        # Deployment 4: the hook times out after 4 "minutes" and rolls back by itself.
        hook["timeoutConfiguration"]["timeoutInMinutes"] = 4
        dep = self.update(td4, deploymentConfiguration={"lifecycleHooks": [hook]})
        self.paused(dep)
        wait("the timeout's rollback", 60,
             lambda: self.deployment(dep)["status"] == "ROLLBACK_SUCCESSFUL", every=0.5)
        self.settled(td2)
        d = self.deployment(dep)
        self.assertEqual([x["status"] for x in d["lifecycleHookDetails"]], ["TIMED_OUT"])
        self.assertEqual(self.green_share(self.prod_rule, blue), 100)

        # Deployment 5, LINEAR in two steps of 50%: a PRODUCTION_TRAFFIC_SHIFT hook holds
        # before every production step (ECS invokes that stage's hooks at each step).
        td5, td6, td7 = (self.td(v) for v in "567")
        hook = {"targetType": "PAUSE", "lifecycleStages": ["PRODUCTION_TRAFFIC_SHIFT"],
                "timeoutConfiguration": {"timeoutInMinutes": 600, "action": "ROLLBACK"}}
        dep = self.update(td5, deploymentConfiguration={
            "strategy": "LINEAR", "lifecycleHooks": [hook],
            "linearConfiguration": {"stepPercent": 50.0, "stepBakeTimeInMinutes": 0}})
        green = self.tgs[0]
        for step in range(2):
            d = self.paused(dep)
            self.assertEqual(d["lifecycleStage"], "PRODUCTION_TRAFFIC_SHIFT")
            hooks = d["lifecycleHookDetails"]
            self.assertEqual([h["status"] for h in hooks],
                             ["SUCCEEDED"] * step + ["AWAITING_ACTION"])
            self.assertEqual(len({h["hookId"] for h in hooks}), step + 1, hooks)
            # Held at the weights of the steps taken: 0%, then 50% on green.
            self.assertEqual(self.green_share(self.prod_rule, green), 50 * step)
            if step == 1:
                n = len(load.samples)
                wait("answers from both revisions", 30,
                     lambda: {v for _, v in load.samples[n:]} >= {"2", "5"})
            ok, out = aws("continue-service-deployment", "--service-deployment-arn",
                          d["serviceDeploymentArn"], "--hook-id", hooks[-1]["hookId"])
            self.assertTrue(ok, out)
        self.settled(td5)
        d = self.deployment(dep)
        self.assertEqual(d["status"], "SUCCESSFUL")
        self.assertEqual([x["status"] for x in d["lifecycleHookDetails"]], ["SUCCEEDED"] * 2)
        self.assertEqual(self.green_share(self.prod_rule, green), 100)

        # Deployment 6 pauses before its first step and deployment 7 (hooks cleared)
        # supersedes it: 6 ends STOPPED with its hook FAILED (nothing awaits it any more),
        # can no longer be continued, and 7 completes.
        dep6 = self.update(td6)
        d6 = self.paused(dep6)
        self.assertEqual(self.green_share(self.prod_rule, self.tgs[1]), 0)
        self.update(td7, deploymentConfiguration={"lifecycleHooks": []})
        self.settled(td7)
        d6 = self.deployment(dep6)
        self.assertEqual(d6["status"], "STOPPED")
        self.assertEqual([x["status"] for x in d6["lifecycleHookDetails"]], ["FAILED"])
        ok, err = aws("continue-service-deployment", "--service-deployment-arn",
                      d6["serviceDeploymentArn"], "--hook-id",
                      d6["lifecycleHookDetails"][0]["hookId"])
        self.assertIn("ClientException", err)

        samples, failures = load.finish()
        self.assertEqual(failures, [], "requests lost")
        # Production answered from 1, 2, 5 and 7, never from 3 or 4 (rolled-back greens) nor
        # from 6 (superseded before its first step).
        self.assertEqual({v for _, v in samples}, {"1", "2", "5", "7"})
        self.assertEqual({v for _, v in samples[-20:]}, {"7"})

        # Deployment 8 pauses before its first step and is left paused: the Rust test kills
        # the server (SIGKILL), starts it again, and AfterRestart continues it.
        td8 = self.td("8")
        dep = self.update(td8, deploymentConfiguration={"lifecycleHooks": [hook]})
        d = self.paused(dep)
        # Green is the target group production does not forward to.
        [green] = [tg for tg in self.tgs if self.green_share(self.prod_rule, tg) == 0]
        with open(os.environ["BERTH_PAUSE_STATE"], "w") as f:
            json.dump({"deployment": dep, "td": td8, "green": green, "port": self.port,
                       "prod_rule": self.prod_rule, "test_rule": self.test_rule,
                       "hook": d["lifecycleHookDetails"][-1]}, f, default=str)


class AfterRestart(unittest.TestCase):
    """Run after the server was killed with SIGKILL and restarted on its data directory,
    with deployment 8 paused at its PRODUCTION_TRAFFIC_SHIFT hook: the deployment is still
    paused at the same hook (same id, same expiry), production still on blue and answering
    through the listener; CONTINUE then completes it under load with no request lost."""

    service = bg.BlueGreen.service
    settled = bg.BlueGreen.settled
    deployment = bg.BlueGreen.deployment
    weights = bg.BlueGreen.weights
    green_share = bg.BlueGreen.green_share

    def test_a_paused_deployment_survives_a_restart(self):
        with open(os.environ["BERTH_PAUSE_STATE"]) as f:
            st = json.load(f)
        self.ecs = bg.client("ecs")
        self.elb = bg.client("elbv2")
        self.port = st["port"]
        d = self.deployment(st["deployment"])
        self.assertEqual((d["status"], d["lifecycleStage"]),
                         ("IN_PROGRESS", "PRODUCTION_TRAFFIC_SHIFT"))
        h = d["lifecycleHookDetails"][-1]
        self.assertEqual((h["hookId"], h["status"]), (st["hook"]["hookId"], "AWAITING_ACTION"))
        self.assertEqual(str(h["expiresAt"]), st["hook"]["expiresAt"])
        self.assertEqual(self.green_share(st["prod_rule"], st["green"]), 0)
        self.assertEqual(self.green_share(st["test_rule"], st["green"]), 100)
        # The listener is back (the server binds it again) and production answers from 7.
        load = bg.Load(self.port)
        wait("answers through the listener after the restart", 60,
             lambda: any(v == "7" for _, v in load.samples), every=0.5)
        load.finish()
        load = bg.Load(self.port)
        n = len(load.samples)
        wait("answers", 30, lambda: len(load.samples) > n + 20)
        self.assertEqual(self.deployment(st["deployment"])["lifecycleStage"],
                         "PRODUCTION_TRAFFIC_SHIFT")
        ok, out = aws("continue-service-deployment", "--service-deployment-arn",
                      d["serviceDeploymentArn"], "--hook-id", h["hookId"])
        self.assertTrue(ok, out)
        # The continued deployment pauses again before its second step (50%): continue that.
        def next_hook():
            hooks = self.deployment(st["deployment"])["lifecycleHookDetails"]
            return len(hooks) == 2 and hooks[-1]["status"] == "AWAITING_ACTION" and hooks[-1]
        h2 = wait("the hook of the second step", 60, next_hook, every=0.2)
        ok, out = aws("continue-service-deployment", "--service-deployment-arn",
                      d["serviceDeploymentArn"], "--hook-id", h2["hookId"])
        self.assertTrue(ok, out)
        self.settled(st["td"])
        self.assertEqual(self.deployment(st["deployment"])["status"], "SUCCESSFUL")
        samples, failures = load.finish()
        self.assertEqual(failures, [], "requests lost")
        self.assertEqual({v for _, v in samples} - {"7"}, {"8"})
        self.assertEqual({v for _, v in samples[-20:]}, {"8"})

        self.ecs.update_service(service="bg", desiredCount=0)
        self.ecs.delete_service(service="bg", force=True)
        wait("the service's tasks to stop", 60,
             lambda: not self.ecs.list_tasks(serviceName="bg")["taskArns"], every=0.5)


if __name__ == "__main__":
    unittest.main()
