"""Registers task definitions from 8 threads and prints each acknowledged ARN, one per line,
until killed or until the server goes away. Used by the kill -9 durability test."""

import os
import sys
import threading

import boto3
from botocore.config import Config

ENDPOINT = os.environ["BERTH_ENDPOINT"]
client = boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1",
                      config=Config(retries={"max_attempts": 1}, max_pool_connections=16))
lock = threading.Lock()


def writer(n):
    i = 0
    while True:
        try:
            r = client.register_task_definition(
                family=f"durable-{n}",
                containerDefinitions=[{"name": "a", "image": "i", "memory": 16,
                                       "environment": [{"name": "I", "value": str(i)}]}],
            )
        except Exception:
            return
        with lock:
            print(r["taskDefinition"]["taskDefinitionArn"], r["taskDefinition"]["containerDefinitions"][0]["environment"][0]["value"], flush=True)
        i += 1


threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
sys.exit(0)
