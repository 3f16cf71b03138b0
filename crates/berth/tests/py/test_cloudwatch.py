"""CloudWatch metrics with boto3 (issue #15), run by tests/cloudwatch.rs against one
`berth server` (BERTH_ENDPOINT and the AWS_* variables set by the Rust test).

boto3 sends CloudWatch requests as JSON 1.0 with `x-amzn-query-mode: true`: this checks the
values it reads back (timestamps as datetimes), metric math, paging of GetMetricData, and
that errors carry the query protocol's codes botocore reports.
"""

import datetime
import json
import os
import time
import sys
import unittest

import boto3
from botocore.exceptions import ClientError

ENDPOINT = os.environ["BERTH_ENDPOINT"]
NS = "Boto/" + sys.argv[1] if len(sys.argv) > 1 else "Boto/test"


def cw():
    return boto3.client("cloudwatch", endpoint_url=ENDPOINT)


class CloudWatchTest(unittest.TestCase):
    def test_put_get_math_and_paging(self):
        c = cw()
        now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
        start = now - datetime.timedelta(minutes=10)
        data = []
        for i in range(5):
            t = start + datetime.timedelta(minutes=i)
            data.append({"MetricName": "Req", "Dimensions": [{"Name": "Svc", "Value": "a"}],
                         "Timestamp": t, "Value": float(i + 1), "Unit": "Count"})
            data.append({"MetricName": "Req", "Dimensions": [{"Name": "Svc", "Value": "b"}],
                         "Timestamp": t, "Value": 10.0, "Unit": "Count"})
        c.put_metric_data(Namespace=NS, MetricData=data)
        stats = c.get_metric_statistics(
            Namespace=NS, MetricName="Req", Dimensions=[{"Name": "Svc", "Value": "a"}],
            StartTime=start, EndTime=now, Period=60, Statistics=["Sum", "SampleCount"],
            ExtendedStatistics=["p50"])
        points = sorted(stats["Datapoints"], key=lambda d: d["Timestamp"])
        self.assertEqual([d["Sum"] for d in points], [1.0, 2.0, 3.0, 4.0, 5.0])
        self.assertIsInstance(points[0]["Timestamp"], datetime.datetime)
        self.assertEqual(points[0]["Timestamp"], start)
        self.assertEqual(points[2]["ExtendedStatistics"]["p50"], 3.0)
        self.assertEqual(points[0]["Unit"], "Count")

        def stat(id_, svc):
            return {"Id": id_, "ReturnData": False, "MetricStat": {
                "Metric": {"Namespace": NS, "MetricName": "Req",
                           "Dimensions": [{"Name": "Svc", "Value": svc}]},
                "Period": 60, "Stat": "Sum"}}

        queries = [stat("a", "a"), stat("b", "b"),
                   {"Id": "total", "Expression": "SUM([a, b])", "Label": "total"},
                   {"Id": "ratio", "Expression": "a / b * 100"}]
        r = c.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=now,
                              ScanBy="TimestampAscending")
        res = {x["Id"]: x for x in r["MetricDataResults"]}
        self.assertEqual(set(res), {"total", "ratio"})
        self.assertEqual(res["total"]["Values"], [11.0, 12.0, 13.0, 14.0, 15.0])
        self.assertEqual(res["ratio"]["Values"], [10.0, 20.0, 30.0, 40.0, 50.0])
        self.assertEqual(res["total"]["StatusCode"], "Complete")
        # paging: 2 results, 4 datapoints a page -> 2 each, three pages
        pages = list(c.get_paginator("get_metric_data").paginate(
            MetricDataQueries=queries, StartTime=start, EndTime=now, MaxDatapoints=4))
        self.assertEqual(len(pages), 3)
        got = [v for p in pages for x in p["MetricDataResults"] if x["Id"] == "total"
               for v in x["Values"]]
        self.assertEqual(got, [15.0, 14.0, 13.0, 12.0, 11.0], "newest first by default")

    def test_errors_carry_query_codes(self):
        c = cw()
        with self.assertRaises(ClientError) as e:
            c.put_metric_data(Namespace="AWS/ECS", MetricData=[{"MetricName": "x", "Value": 1}])
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterValue")
        with self.assertRaises(ClientError) as e:
            c.get_metric_data(
                MetricDataQueries=[{"Id": "e1", "Expression": "RATE(m1)"}],
                StartTime=datetime.datetime(2026, 1, 1), EndTime=datetime.datetime(2026, 1, 2))
        self.assertIn("RATE", e.exception.response["Error"]["Message"])
        with self.assertRaises(ClientError) as e:
            c.set_alarm_state(AlarmName="nope", StateValue="OK", StateReason="x")
        self.assertEqual(e.exception.response["Error"]["Code"], "ResourceNotFound")

    def test_alarm_to_alarm_and_back(self):
        """SetAlarmState, then real evaluation of put data with a 10-second period."""
        c = cw()
        ns = NS + "/alarms"
        c.put_metric_alarm(
            AlarmName="hot", Namespace=ns, MetricName="Cpu", Statistic="Average", Period=10,
            EvaluationPeriods=1, Threshold=50.0, ComparisonOperator="GreaterThanThreshold",
            TreatMissingData="notBreaching",
            AlarmActions=["arn:aws:sns:us-east-1:000000000000:ops"],
            Tags=[{"Key": "team", "Value": "web"}])
        with self.assertRaises(ClientError) as e:
            c.put_metric_alarm(
                AlarmName="bad", Namespace=ns, MetricName="Cpu", Statistic="Average", Period=10,
                EvaluationPeriods=1, DatapointsToAlarm=2, Threshold=50.0,
                ComparisonOperator="GreaterThanThreshold")
        self.assertEqual(e.exception.response["Error"]["Code"], "InvalidParameterValue")

        def state():
            return c.describe_alarms(AlarmNames=["hot"])["MetricAlarms"][0]

        def wait(value, secs=30):
            deadline = time.time() + secs
            while time.time() < deadline:
                a = state()
                if a["StateValue"] == value:
                    return a
                time.sleep(0.5)
            self.fail(f"alarm not {value} within {secs}s: {state()}")

        self.assertTrue(state()["AlarmArn"].endswith(":alarm:hot"))
        c.set_alarm_state(AlarmName="hot", StateValue="ALARM", StateReason="testing")
        # missing data is not breaching: the next evaluation brings it back
        a = wait("OK")
        self.assertIn("was not greater than the threshold (50.0)", a["StateReason"])

        c.put_metric_data(Namespace=ns, MetricData=[
            {"MetricName": "Cpu", "Value": 75.0, "StorageResolution": 1}])
        a = wait("ALARM")
        self.assertTrue(a["StateReason"].startswith(
            "Threshold Crossed: 1 out of the last 1 datapoints [75.0 ("), a["StateReason"])
        self.assertTrue(a["StateReason"].endswith(
            "was greater than the threshold (50.0) (minimum 1 datapoint for OK -> ALARM transition)."),
            a["StateReason"])
        self.assertEqual(json.loads(a["StateReasonData"])["recentDatapoints"], [75.0])
        c.put_metric_data(Namespace=ns, MetricData=[
            {"MetricName": "Cpu", "Value": 10.0, "StorageResolution": 1}])
        wait("OK")

        by_metric = c.describe_alarms_for_metric(Namespace=ns, MetricName="Cpu")
        self.assertEqual([a["AlarmName"] for a in by_metric["MetricAlarms"]], ["hot"])
        h = c.describe_alarm_history(AlarmName="hot", HistoryItemType="StateUpdate")
        summaries = [i["HistorySummary"] for i in h["AlarmHistoryItems"]]
        self.assertEqual(summaries[:3], ["Alarm updated from ALARM to OK",
                                         "Alarm updated from OK to ALARM",
                                         "Alarm updated from ALARM to OK"], summaries)
        reasons = [json.loads(i["HistoryData"])["newState"]["stateReason"]
                   for i in h["AlarmHistoryItems"]]
        self.assertIn("testing", reasons, "SetAlarmState is in the history")
        c.disable_alarm_actions(AlarmNames=["hot"])
        self.assertFalse(state()["ActionsEnabled"])
        tags = c.list_tags_for_resource(ResourceARN=state()["AlarmArn"])["Tags"]
        self.assertEqual(tags, [{"Key": "team", "Value": "web"}])



if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
