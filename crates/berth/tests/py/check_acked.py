"""Describes every ARN=value pair given (comma-separated) and exits non-zero on any loss."""

import os
import sys

import boto3

client = boto3.client("ecs", endpoint_url=os.environ["BERTH_ENDPOINT"], region_name="us-east-1")
pairs = [p.rsplit("=", 1) for p in sys.argv[1].split(",") if p]
lost = []
for arn, value in pairs:
    try:
        td = client.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        got = td["containerDefinitions"][0]["environment"][0]["value"]
        if got != value:
            lost.append(f"{arn}: value {got} != {value}")
    except Exception as e:  # noqa: BLE001
        lost.append(f"{arn}: {e}")
if lost:
    print("\n".join(lost[:20]), file=sys.stderr)
    sys.exit(1)
print(f"checked {len(pairs)}")
