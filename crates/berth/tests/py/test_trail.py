"""The audit trail through boto3 (run by tests/trail.rs against its server): LookupEvents'
paginator walks every event exactly once, newest first, two per page; a time window keeps
only the events inside it."""

import datetime
import json
import os

import boto3

ENDPOINT = os.environ["BERTH_ENDPOINT"]


def main():
    ct = boto3.client("cloudtrail", endpoint_url=ENDPOINT, region_name="us-east-1")
    ecs = boto3.client("ecs", endpoint_url=ENDPOINT, region_name="us-east-1")
    for i in range(5):
        ecs.list_clusters(maxResults=i + 1)
    pages = ct.get_paginator("lookup_events").paginate(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "ListClusters"}],
        PaginationConfig={"PageSize": 2},
    )
    events = [e for p in pages for e in p["Events"]]
    assert len(events) == 5, events
    assert len({e["EventId"] for e in events}) == 5, "no event twice"
    times = [e["EventTime"] for e in events]
    assert times == sorted(times, reverse=True), times
    sizes = [json.loads(e["CloudTrailEvent"])["requestParameters"]["maxResults"]
             for e in events]
    assert sizes == [5, 4, 3, 2, 1], sizes
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
    later = ct.lookup_events(StartTime=future, EndTime=future + datetime.timedelta(hours=1))
    assert later["Events"] == [], later
    print("ok")


if __name__ == "__main__":
    main()
