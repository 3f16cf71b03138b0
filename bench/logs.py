#!/usr/bin/env python3
"""The log ingestion benchmark's driver (bench/logs.sh starts Berth and runs it): N chatty
containers under Docker's json-file driver, then as Berth tasks with the awslogs driver,
alternating, REPS times. Prints one line per sample and the medians."""

import argparse
import os
import statistics
import subprocess
import sys
import time

import boto3

GROUP = "/bench/logs"
PREFIX = "bench"
CONTAINER = "chatty"


def cpu_seconds(pid):
    """utime + stime of a process (and its waited-for children), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / ticks


def dockerd_pid():
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def run_json_file(image, containers, lines, run_id):
    """Starts the containers with json-file; waits for every marker on disk."""
    marker = f"lines: done {lines}"
    t0 = time.monotonic()
    ids = []
    for _ in range(containers):
        ids.append(
            docker("run", "-d", "--log-driver", "json-file", "--label", f"berth.bench={run_id}",
                   image, "-lines", str(lines)).strip())
    paths = {i: docker("inspect", "--format", "{{.LogPath}}", i).strip() for i in ids}
    pending = set(ids)
    while pending:
        for i in list(pending):
            try:
                with open(paths[i], "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    f.seek(max(0, size - 300))
                    if marker.encode() in f.read():
                        pending.discard(i)
            except FileNotFoundError:
                pass
        if pending:
            time.sleep(0.02)
    elapsed = time.monotonic() - t0
    docker("rm", "-f", *ids)
    return elapsed


def check_stream(logs, stream, lines):
    """Reads the whole stream from its head: (duplicated, missing, out of order) counts of
    `line 1` .. `line N` (each should be there once, in order, then the marker)."""
    seen, dups, disorder, last, token = set(), 0, 0, 0, None
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=10000, **kw)
        for e in page["events"]:
            m = e["message"]
            if not m.startswith("line "):
                continue
            n = int(m.split()[1])
            if n in seen:
                dups += 1
            elif n < last:
                disorder += 1
            seen.add(n)
            last = max(last, n)
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    return dups, lines - len(seen), disorder


def run_berth(ecs, logs, containers, lines):
    """One RunTask of `containers` tasks; waits until every stream's last event is the marker."""
    marker = f"lines: done {lines}"
    t0 = time.monotonic()
    tasks = ecs.run_task(taskDefinition="logbench", count=containers)["tasks"]
    if len(tasks) != containers:
        sys.exit(f"RunTask placed {len(tasks)} of {containers} tasks")
    streams = {f"{PREFIX}/{CONTAINER}/{t['taskArn'].rsplit('/', 1)[1]}" for t in tasks}
    pending = set(streams)
    while pending:
        for s in list(pending):
            try:
                ev = logs.get_log_events(logGroupName=GROUP, logStreamName=s, limit=1,
                                         startFromHead=False)["events"]
            except logs.exceptions.ResourceNotFoundException:
                continue
            if ev and ev[-1]["message"] == marker:
                pending.discard(s)
        if pending:
            time.sleep(0.05)
    elapsed = time.monotonic() - t0
    # Outside the timed window: every line arrived, once, in order.
    bad = [(s, *c) for s in streams if any(c := check_stream(logs, s, lines))]
    for s, d, m, o in bad:
        print(f"    {s}: {d} lines duplicated, {m} missing, {o} out of order")
    for t in tasks:
        ecs.stop_task(task=t["taskArn"])
    ecs.get_waiter("tasks_stopped").wait(tasks=[t["taskArn"] for t in tasks],
                                         WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    # Each repetition starts from an empty group.
    for s in streams:
        logs.delete_log_stream(logGroupName=GROUP, logStreamName=s)
    return elapsed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--image", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--agent-pid", type=int, required=True)
    p.add_argument("--lines", type=int, default=100_000)
    p.add_argument("--containers", type=int, default=10)
    a = p.parse_args()
    kw = dict(endpoint_url=a.endpoint, region_name="us-east-1")
    ecs, logs = boto3.client("ecs", **kw), boto3.client("logs", **kw)
    ecs.register_task_definition(
        family="logbench",
        containerDefinitions=[{
            "name": CONTAINER, "image": a.image, "memory": 32, "essential": True,
            "command": ["-lines", str(a.lines)],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": GROUP, "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": PREFIX, "awslogs-create-group": "true"}},
        }])
    dpid = dockerd_pid()
    total = a.lines * a.containers
    rows = {"json-file": [], "berth": []}
    print(f"{a.containers} containers x {a.lines} lines of ~100 bytes, {a.reps} repetitions")
    for rep in range(a.reps):
        order = ["json-file", "berth"] if rep % 2 == 0 else ["berth", "json-file"]
        for side in order:
            before = (cpu_seconds(dpid) if dpid else 0, cpu_seconds(a.agent_pid),
                      cpu_seconds(a.server_pid))
            if side == "json-file":
                secs = run_json_file(a.image, a.containers, a.lines, a.run_id)
            else:
                secs = run_berth(ecs, logs, a.containers, a.lines)
            after = (cpu_seconds(dpid) if dpid else 0, cpu_seconds(a.agent_pid),
                     cpu_seconds(a.server_pid))
            d, ag, sv = (x - y for x, y in zip(after, before))
            rows[side].append((total / secs, d, ag, sv, secs))
            print(f"  rep {rep + 1} {side:9}: {total / secs:>10,.0f} lines/s in {secs:6.2f} s; "
                  f"CPU s: dockerd {d:5.2f}, agent {ag:5.2f}, server {sv:5.2f}")
    med = {k: [statistics.median(r[i] for r in v) for i in range(5)] for k, v in rows.items()}
    j, b = med["json-file"], med["berth"]
    print()
    print(f"{'':22}{'lines/s':>12}{'dockerd CPU s':>15}{'agent CPU s':>13}{'server CPU s':>14}")
    for name, m in (("docker json-file", j), ("berth awslogs", b)):
        print(f"{name:22}{m[0]:>12,.0f}{m[1]:>15.2f}{m[2]:>13.2f}{m[3]:>14.2f}")
    print(f"berth / json-file throughput: {b[0] / j[0]:.2f}x; agent CPU share while ingesting: "
          f"{100 * b[2] / b[4]:.0f}% of one core")


if __name__ == "__main__":
    main()
