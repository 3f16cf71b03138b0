"""Task role credentials (issue #16), driven by tests/task_role.rs. Three modes:

* `boto` (inside a task's container): boto3 with NO configuration but what ECS gives the
  container (AWS_CONTAINER_CREDENTIALS_FULL_URI / AWS_CONTAINER_AUTHORIZATION_TOKEN; the
  endpoint and region come from the task definition's plain environment): prints one JSON line
  with the credential method, GetCallerIdentity's ARN, ListClusters and the error code of a
  call the role does not allow; then waits to be stopped.
* `probe URI TOKEN` (inside another task's container): the HTTP statuses of requests for
  another task's credentials and for its own with a missing token or a wrong id.
* `server TASK_ARN INSTANCE_ARN` (on the host, administrator credentials): the signed agent
  call for a task's role credentials, as status and error code (or the key's prefix).
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request


def boto():
    import boto3
    from botocore.exceptions import ClientError

    endpoint = os.environ["BERTH_ENDPOINT"]
    session = boto3.session.Session()
    creds = session.get_credentials()
    out = {"method": creds.method if creds else None}
    out["arn"] = session.client("sts", endpoint_url=endpoint).get_caller_identity()["Arn"]
    ecs = session.client("ecs", endpoint_url=endpoint)
    out["clusters"] = ecs.list_clusters()["clusterArns"]
    try:
        ecs.create_cluster(clusterName="not-allowed")
        out["denied"] = None
    except ClientError as e:
        out["denied"] = e.response["Error"]["Code"]
        out["denied_message"] = e.response["Error"].get("Message", "")
    print(json.dumps(out), flush=True)
    time.sleep(600)


def status(uri, token):
    req = urllib.request.Request(uri)
    if token is not None:
        req.add_header("Authorization", token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:  # noqa: BLE001 - reported, the test decides
        return str(e)


def probe(other_uri, other_token):
    own_uri = os.environ["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    own_token = os.environ["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    base = own_uri.rsplit("/", 1)[0]
    out = {
        "other_with_its_token": status(other_uri, other_token),
        "other_with_own_token": status(other_uri, own_token),
        "own_without_token": status(own_uri, None),
        "own_with_other_token": status(own_uri, other_token),
        "wrong_id": status(base + "/" + "0" * 32, own_token),
        "own": status(own_uri, own_token),
    }
    print(json.dumps(out), flush=True)
    time.sleep(600)


def server(task_arn, instance_arn):
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    endpoint = os.environ["BERTH_ENDPOINT"]
    creds = botocore.session.get_session().get_credentials()
    body = json.dumps(
        {"containerInstanceArn": instance_arn, "cluster": "default", "taskArn": task_arn}
    )
    req = AWSRequest(
        method="POST",
        url=endpoint + "/berth/agent/v1/credentials",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(creds, "ecs", "us-east-1").add_auth(req)
    p = req.prepare()
    r = urllib.request.Request(p.url, data=body.encode(), headers=dict(p.headers), method="POST")
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            v = json.loads(resp.read())
            print(json.dumps({"status": resp.status, "key": v.get("accessKeyId", "")[:4],
                              "role": v.get("roleArn")}))
    except urllib.error.HTTPError as e:
        v = json.loads(e.read() or b"{}")
        print(json.dumps({"status": e.code, "code": v.get("__type")}))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "boto":
        boto()
    elif mode == "probe":
        probe(sys.argv[2], sys.argv[3])
    else:
        server(sys.argv[2], sys.argv[3])
