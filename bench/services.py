#!/usr/bin/env python3
"""The service benchmark's driver (bench/services.sh starts Berth and runs it): Berth's services
next to Docker Swarm's, same image, same host, same run.

`run`: for each repetition (the order of Berth and Swarm alternates), 1. a service of
--create-count tasks from CreateService (Berth, boto3) / POST /services/create (Swarm, the
Engine API) until all are running and healthy; 2. a rolling update of a settled service of
--update-count tasks to a second tag of the image, from UpdateService / POST
/services/{id}/update until every task runs the new tag and is healthy and no old one is left.
Both sides are polled every --poll-ms. Prints one line per sample, then the medians.

`cleanup`: deletes every Berth service (the server is this run's own) and every Swarm service
labelled berth.bench=<run id>, and waits for their containers to go (the script's exit trap).
"""

import argparse
import datetime
import http.client
import json
import socket
import statistics
import sys
import time
import urllib.parse

import boto3
from botocore.exceptions import ClientError

HEALTH_CMD = ["CMD", "/hello", "-check", "http://127.0.0.1:8080/health"]
HEALTH_INTERVAL, HEALTH_TIMEOUT, HEALTH_RETRIES = 5, 2, 1
MEMORY_MIB = 16
LABEL_INSTANCE = "berth.container-instance-arn"
LABEL_BENCH = "berth.bench"
NS = 1_000_000_000


class Timeout(Exception):
    pass


# ---------------------------------------------------------------- Docker Engine API


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self._path)


class Docker:
    """The Engine API over its socket: a poll is one request on a kept-alive connection, not
    a docker CLI process (about 20 ms of CPU each here). Swarm's health check must be exec
    form (the image has no shell), which `docker service create --health-cmd` cannot
    express; the API can."""

    def __init__(self, sock="/var/run/docker.sock"):
        self.conn = _UnixConnection(sock)

    def call(self, method, path, body=None, ok=(200, 201, 204)):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.conn.request(method, "/v1.41" + path, body=data, headers=headers)
            r = self.conn.getresponse()
            raw = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # reconnect on the next call
            raise
        if r.status not in ok:
            raise RuntimeError(f"docker {method} {path}: {r.status} {raw[:300].decode(errors='replace')}")
        return json.loads(raw) if raw else None

    def containers(self, labels, all_states=False, health=None):
        f = {"label": labels}
        if health:
            f["health"] = [health]
        q = "filters=" + urllib.parse.quote(json.dumps(f)) + ("&all=1" if all_states else "")
        return self.call("GET", "/containers/json?" + q)

    def timeline(self, labels, image, since_epoch):
        """When the running containers with `labels` on `image` were created and started,
        seconds after `since_epoch`: (first, median, last) of each."""
        created, started = [], []
        for c in self.containers(labels):
            if c["Image"] != image:
                continue
            st = self.call("GET", f"/containers/{c['Id']}/json")
            created.append(_epoch(st["Created"]) - since_epoch)
            started.append(_epoch(st["State"]["StartedAt"]) - since_epoch)

        def spread(xs):
            xs = sorted(xs)
            return f"{xs[0]:5.2f} / {statistics.median(xs):5.2f} / {xs[-1]:5.2f}" if xs else "-"
        return f"containers created {spread(created)}, started {spread(started)} (first / median / last)"

    def wait_no_containers(self, labels, timeout=120):
        deadline = time.monotonic() + timeout
        while self.containers(labels, all_states=True):
            if time.monotonic() > deadline:
                raise Timeout(f"containers labelled {labels} still there after {timeout} s")
            time.sleep(0.2)


def _epoch(iso):
    """Docker's RFC 3339 time with nanoseconds, as epoch seconds."""
    date, _, frac = iso.rstrip("Z").partition(".")
    whole = datetime.datetime.strptime(date, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return whole.timestamp() + (float("0." + frac) if frac else 0.0)


# ---------------------------------------------------------------- Berth


class Berth:
    """Berth's ECS API through boto3, on the default cluster; the two task definition
    revisions (the image and its second tag) are registered up front."""

    def __init__(self, endpoint, instance_arn, docker, family, image, image_v2, poll):
        self.ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1")
        self.docker = docker
        self.labels = [f"{LABEL_INSTANCE}={instance_arn}"]
        self.poll = poll
        self.td = self.register(family, image) if family else None
        self.td_v2 = self.register(family, image_v2) if family else None

    def register(self, family, image):
        web = {
            "name": "web", "image": image, "memory": MEMORY_MIB, "essential": True,
            "portMappings": [{"containerPort": 8080, "hostPort": 0}],
            "healthCheck": {"command": HEALTH_CMD, "interval": HEALTH_INTERVAL, "timeout": HEALTH_TIMEOUT,
                            "retries": HEALTH_RETRIES, "startPeriod": 0},
        }
        return self.ecs.register_task_definition(family=family, containerDefinitions=[web])[
            "taskDefinition"]["taskDefinitionArn"]

    def describe(self, name):
        return self.ecs.describe_services(cluster="default", services=[name])["services"][0]

    def create(self, name, count, td):
        return self.ecs.create_service(
            cluster="default", serviceName=name, taskDefinition=td, desiredCount=count,
            deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200})

    def wait(self, name, count, td, t0, old_tasks=(), timeout=600):
        """Polls until steady on `td`: one deployment, COMPLETED, runningCount == count, and
        every task in `old_tasks` STOPPED. Returns the milestones, seconds after t0."""
        m = {}
        deadline = t0 + timeout
        old = list(old_tasks)
        while True:
            now = time.monotonic()
            s = self.describe(name)
            deps = s["deployments"]
            if "running" not in m and deps[0]["taskDefinition"] == td and deps[0]["runningCount"] == count:
                m["running"] = now - t0
            if "steady" not in m and len(deps) == 1 and deps[0]["taskDefinition"] == td \
                    and deps[0]["rolloutState"] == "COMPLETED" and s["runningCount"] == count:
                m["steady"] = now - t0
            if old:
                ts = self.ecs.describe_tasks(cluster="default", tasks=old)["tasks"]
                old = [t["taskArn"] for t in ts if t["lastStatus"] != "STOPPED"]
                if not old:
                    m["old_stopped"] = now - t0
            if "steady" in m and not old:
                m["done"] = now - t0
                return m, s
            if now > deadline:
                raise Timeout(f"Berth service {name}: not steady after {timeout} s; "
                              f"running {s['runningCount']}, deployments "
                              f"{[(d['rolloutState'], d['runningCount'], d['pendingCount']) for d in deps]}, "
                              f"{len(old)} old tasks not STOPPED; last events "
                              f"{[e['message'] for e in s['events'][:5]]}")
            time.sleep(max(0.0, self.poll - (time.monotonic() - now)))

    def tasks(self, name):
        return self.ecs.list_tasks(cluster="default", serviceName=name, desiredStatus="RUNNING")["taskArns"]

    def check_containers(self, count, image):
        """Docker's own view at steady state: `count` healthy containers of `image`, nothing
        else running. Returns a warning or None."""
        running = self.docker.containers(self.labels)
        healthy = self.docker.containers(self.labels, health="healthy")
        good = [c for c in healthy if c["Image"] == image]
        if len(good) != count or len(running) != count:
            return (f"Docker shows {len(running)} running Berth containers, {len(good)} healthy on {image} "
                    f"(expected {count})")
        return None

    def remove(self, name, timeout=120):
        """Scale to 0, delete, wait for INACTIVE and for the containers to be gone."""
        t0 = time.monotonic()
        try:
            self.ecs.update_service(cluster="default", service=name, desiredCount=0)
        except ClientError:
            pass
        self.ecs.delete_service(cluster="default", service=name, force=True)
        while self.describe(name)["status"] != "INACTIVE":
            if time.monotonic() - t0 > timeout:
                raise Timeout(f"Berth service {name} not INACTIVE after {timeout} s")
            time.sleep(0.2)
        self.docker.wait_no_containers(self.labels, timeout)
        return time.monotonic() - t0

    def events(self, name, since_epoch):
        """The service's events since `since_epoch` (oldest first, seconds after it), long
        task lists cut."""
        s = self.describe(name)
        out = []
        for e in reversed(s["events"]):
            at = e["createdAt"].timestamp()
            if at >= since_epoch - 0.001:
                msg = e["message"]
                out.append((at - since_epoch, msg if len(msg) <= 110 else msg[:105] + " ..."))
        return out

    def create_sample(self, name, count):
        """Returns the milestones and the wall-clock time of the CreateService call."""
        wall, t0 = time.time(), time.monotonic()
        self.create(name, count, self.td)
        m, _ = self.wait(name, count, self.td, t0)
        return m, wall

    def update_sample(self, name, count):
        self.create(name, count, self.td)
        self.wait(name, count, self.td, time.monotonic())
        old = self.tasks(name)
        wall, t0 = time.time(), time.monotonic()
        self.ecs.update_service(cluster="default", service=name, taskDefinition=self.td_v2)
        m, _ = self.wait(name, count, self.td_v2, t0, old_tasks=old)
        return m, wall


# ---------------------------------------------------------------- Docker Swarm


class Swarm:
    """Swarm services through the Engine API, labelled berth.bench=<run id> (the service and
    its containers)."""

    def __init__(self, docker, run_id, image, image_v2, poll):
        self.docker = docker
        self.run_id = run_id
        self.image, self.image_v2 = image, image_v2
        self.poll = poll

    def spec(self, name, count, image):
        return {
            "Name": name,
            "Labels": {LABEL_BENCH: self.run_id},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image,
                    "Labels": {LABEL_BENCH: self.run_id},
                    "Healthcheck": {"Test": HEALTH_CMD, "Interval": HEALTH_INTERVAL * NS,
                                    "Timeout": HEALTH_TIMEOUT * NS, "Retries": HEALTH_RETRIES,
                                    "StartPeriod": 0},
                },
                # ECS `memory` is the hard limit, and what placement reserves.
                "Resources": {"Limits": {"MemoryBytes": MEMORY_MIB << 20},
                              "Reservations": {"MemoryBytes": MEMORY_MIB << 20}},
            },
            "Mode": {"Replicated": {"Replicas": count}},
            # Berth's maximumPercent 200: all new tasks at once, started before old ones stop.
            "UpdateConfig": {"Parallelism": count, "Delay": 0, "Order": "start-first",
                             "FailureAction": "pause"},
            # 8080 on a dynamic host port of the default bridge, as Berth's bridge mode
            # with hostPort 0 (no routing mesh).
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishMode": "host"}]},
        }

    def create(self, name, count, image):
        return self.docker.call("POST", "/services/create", self.spec(name, count, image))["ID"]

    def wait(self, name, count, image, t0, timeout=600):
        """Polls until `count` containers of the service run `image` and are healthy and no
        other container of it runs. Returns the milestones, seconds after t0."""
        labels = [f"com.docker.swarm.service.name={name}"]
        m = {}
        while True:
            now = time.monotonic()
            running = self.docker.containers(labels)
            new = [c for c in running if c["Image"] == image]
            if "running" not in m and len(new) >= count:
                m["running"] = now - t0
            healthy = [c for c in self.docker.containers(labels, health="healthy") if c["Image"] == image]
            if "healthy" not in m and len(healthy) >= count:
                m["healthy"] = now - t0
            if len(healthy) == count and len(running) == count:
                m["done"] = now - t0
                return m
            if now > t0 + timeout:
                raise Timeout(f"Swarm service {name}: {len(running)} running, {len(healthy)} healthy on "
                              f"{image} after {timeout} s")
            time.sleep(max(0.0, self.poll - (time.monotonic() - now)))

    def update(self, sid, image):
        s = self.docker.call("GET", f"/services/{sid}")
        spec = s["Spec"]
        spec["TaskTemplate"]["ContainerSpec"]["Image"] = image
        self.docker.call("POST", f"/services/{sid}/update?version={s['Version']['Index']}", spec)

    def remove(self, sid, timeout=120):
        t0 = time.monotonic()
        self.docker.call("DELETE", f"/services/{sid}", ok=(200, 404))
        self.docker.wait_no_containers([f"com.docker.swarm.service.id={sid}"], timeout)
        return time.monotonic() - t0

    def services(self):
        f = urllib.parse.quote(json.dumps({"label": [f"{LABEL_BENCH}={self.run_id}"]}))
        return self.docker.call("GET", "/services?filters=" + f)

    def create_sample(self, name, count):
        """Returns the milestones, the wall-clock time of the create call and the service ID."""
        wall, t0 = time.time(), time.monotonic()
        sid = self.create(name, count, self.image)
        return self.wait(name, count, self.image, t0), wall, sid

    def update_sample(self, name, count):
        sid = self.create(name, count, self.image)
        self.wait(name, count, self.image, time.monotonic())
        wall, t0 = time.time(), time.monotonic()
        self.update(sid, self.image_v2)
        return self.wait(name, count, self.image_v2, t0), wall, sid


# ---------------------------------------------------------------- the run


def fmt(m, keys):
    return "  ".join(f"{k} {m[k]:6.2f}" for k in keys if k in m)


def run(a):
    docker = Docker()
    family = f"svcbench-{a.run_id}"
    berth = Berth(a.endpoint, a.instance_arn, docker, family, a.image, a.image_v2, a.poll_ms / 1000)
    swarm = Swarm(docker, a.run_id, a.image, a.image_v2, a.poll_ms / 1000)
    results = {k: [] for k in ("berth_create", "swarm_create", "berth_update", "swarm_update")}
    warnings = []

    def berth_create(rep):
        name = f"create-{rep}"
        m, wall = berth.create_sample(name, a.create_count)
        checked = berth.check_containers(a.create_count, a.image)
        detail = verbose_berth(name, a.image, wall)
        td = berth.remove(name)
        results["berth_create"].append(m["done"])
        print(f"  berth create {a.create_count:3}: {fmt(m, ['running', 'steady'])}   (teardown {td:5.1f} s)", flush=True)
        report(checked, detail)

    def swarm_create(rep):
        name = f"{a.run_id}-create-{rep}"
        m, wall, sid = swarm.create_sample(name, a.create_count)
        detail = verbose_swarm(name, a.image, wall)
        td = swarm.remove(sid)
        results["swarm_create"].append(m["done"])
        print(f"  swarm create {a.create_count:3}: {fmt(m, ['running', 'healthy'])}   (teardown {td:5.1f} s)", flush=True)
        report(None, detail)

    def berth_update(rep):
        name = f"update-{rep}"
        m, wall = berth.update_sample(name, a.update_count)
        checked = berth.check_containers(a.update_count, a.image_v2)
        detail = verbose_berth(name, a.image_v2, wall)
        td = berth.remove(name)
        results["berth_update"].append(m["done"])
        print(f"  berth update {a.update_count:3}: {fmt(m, ['running', 'steady', 'old_stopped'])}   (teardown {td:5.1f} s)", flush=True)
        report(checked, detail)

    def swarm_update(rep):
        name = f"{a.run_id}-update-{rep}"
        m, wall, sid = swarm.update_sample(name, a.update_count)
        detail = verbose_swarm(name, a.image_v2, wall)
        td = swarm.remove(sid)
        results["swarm_update"].append(m["done"])
        print(f"  swarm update {a.update_count:3}: {fmt(m, ['running', 'healthy', 'done'])}   (teardown {td:5.1f} s)", flush=True)
        report(None, detail)

    def verbose_berth(name, image, wall):
        if not a.verbose:
            return []
        lines = [docker.timeline(berth.labels, image, wall)]
        return lines + [f"{at:7.2f}  {msg}" for at, msg in berth.events(name, wall)]

    def verbose_swarm(name, image, wall):
        if not a.verbose:
            return []
        return [docker.timeline([f"com.docker.swarm.service.name={name}"], image, wall)]

    def report(warning, detail):
        if warning:
            warnings.append(warning)
            print(f"    WARNING: {warning}", flush=True)
        for line in detail:
            print(f"    {line}", flush=True)

    print(f"seconds after the create/update call, polled every {a.poll_ms} ms.\n"
          "  berth: running = the (new) deployment's runningCount reached the count, steady = one\n"
          "         COMPLETED deployment (all its tasks healthy), old_stopped = every old task STOPPED;\n"
          "  swarm: running / healthy = that many containers of the (new) image running / healthy,\n"
          "         done = those healthy and no other container of the service running.", flush=True)
    for rep in range(1, a.reps + 1):
        print(f"repetition {rep}/{a.reps}", flush=True)
        creates = [berth_create, swarm_create] if rep % 2 else [swarm_create, berth_create]
        updates = [berth_update, swarm_update] if rep % 2 else [swarm_update, berth_update]
        for f in creates + updates:
            f(rep)
            time.sleep(a.pause)

    med = {k: statistics.median(v) for k, v in results.items()}
    print()
    print(f"{'median of ' + str(a.reps) + ' (seconds)':60} {'berth':>8} {'swarm':>8} {'berth/swarm':>12}")
    rows = [
        (f"create {a.create_count} tasks -> all running and healthy", "create"),
        (f"rolling update of {a.update_count} tasks -> all new healthy, old gone", "update"),
    ]
    for label, k in rows:
        b, s = med[f"berth_{k}"], med[f"swarm_{k}"]
        print(f"{label:60} {b:8.2f} {s:8.2f} {b / s:11.2f}x")
    for k in ("create", "update"):
        b = " ".join(f"{x:.2f}" for x in results[f"berth_{k}"])
        s = " ".join(f"{x:.2f}" for x in results[f"swarm_{k}"])
        print(f"  {k} samples: berth {b}; swarm {s}")
    print("target: berth/swarm <= 1.00x on both: "
          + ("met" if med["berth_create"] <= med["swarm_create"] and med["berth_update"] <= med["swarm_update"]
             else "NOT met"))
    if warnings:
        print(f"{len(warnings)} warning(s) above: Berth's steady state and Docker's containers disagreed")


def cleanup(a):
    docker = Docker()
    failed = False
    if a.endpoint:
        berth = Berth(a.endpoint, a.instance_arn or "", docker, None, None, None, 0.2)
        try:
            arns = berth.ecs.list_services(cluster="default")["serviceArns"]
        except Exception as e:  # the server may be gone already
            print(f"cleanup: cannot list Berth services: {e}", file=sys.stderr)
            arns = []
        for arn in arns:
            try:
                berth.remove(arn.rsplit("/", 1)[1], timeout=60)
            except Exception as e:
                failed = True
                print(f"cleanup: Berth service {arn}: {e}", file=sys.stderr)
    swarm = Swarm(docker, a.run_id, None, None, 0.2)
    try:
        for s in swarm.services():
            swarm.remove(s["ID"], timeout=60)
    except Exception as e:
        failed = True
        print(f"cleanup: Swarm services: {e}", file=sys.stderr)
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["run", "cleanup"])
    p.add_argument("--endpoint")
    p.add_argument("--instance-arn")
    p.add_argument("--run-id", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--create-count", type=int, default=50)
    p.add_argument("--update-count", type=int, default=20)
    p.add_argument("--image", default="berth-demo:latest")
    p.add_argument("--image-v2", default="berth-demo:bench-v2")
    p.add_argument("--poll-ms", type=int, default=100)
    p.add_argument("--pause", type=float, default=2.0, help="seconds of quiet between measurements")
    p.add_argument("--verbose", action="store_true", help="print Berth's service events per sample")
    a = p.parse_args()
    if a.mode == "cleanup":
        sys.exit(cleanup(a))
    run(a)


if __name__ == "__main__":
    main()
