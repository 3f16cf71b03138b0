#!/usr/bin/env bash
# Leader failover time (issue #18): a three-member etcd cluster and three `berth server`s on
# it (all on loopback, ephemeral ports, removed at the end), one agent given all three URLs,
# a service of 2 tasks of berth-demo:latest. Each round kills the leader with SIGKILL, at once
# asks a surviving server for one more task, and times until that task exists (the new
# leader's service controller acting again); the killed server is then started again on its
# data. Prints every round and the median of HA_ROUNDS (default 5), for two lease TTLs side
# by side (HA_LEASES, default "2 5": --leader-lease-secs). Needs etcd, Docker, boto3 and the
# demo image (scripts/build-demo-image.sh). BERTH_BIN picks the binary (default: a release
# build).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "needs etcd (apt-get install etcd-server)" >&2; exit 1; }
if [ -z "${BERTH_BIN:-}" ]; then
  cargo build --release -p berth >&2
  BERTH_BIN=$PWD/target/release/berth
fi
export BERTH_BIN HA_ROUNDS=${HA_ROUNDS:-5} HA_LEASES=${HA_LEASES:-2 5}
exec python3 - <<'EOF'
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import boto3

BIN = os.environ["BERTH_BIN"]
ROUNDS = int(os.environ["HA_ROUNDS"])
procs = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait(what, pred, secs=60, step=0.02):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise SystemExit(f"timed out: {what}")

def quiet(f):
    try:
        return f()
    except Exception:
        return None

def start_etcd(tmp):
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join(f"m{i}=http://127.0.0.1:{p}" for i, (_, p) in enumerate(ports))
    for i, (c, p) in enumerate(ports):
        log = open(f"{tmp}/etcd{i}.log", "w")
        procs.append(subprocess.Popen(["etcd", f"--name=m{i}", f"--data-dir={tmp}/etcd{i}",
            f"--listen-client-urls=http://127.0.0.1:{c}", f"--advertise-client-urls=http://127.0.0.1:{c}",
            f"--listen-peer-urls=http://127.0.0.1:{p}", f"--initial-advertise-peer-urls=http://127.0.0.1:{p}",
            f"--initial-cluster={cluster}", "--heartbeat-interval=50", "--election-timeout=500",
            "--max-txn-ops=1024"], stdout=log, stderr=log))
    return "etcd://" + ",".join(f"127.0.0.1:{c}" for c, _ in ports) + "/berth/"

class Server:
    def __init__(self, tmp, i, url, lease):
        self.dir, self.port, self.url, self.lease = f"{tmp}/s{i}", free_port(), url, lease
        self.key = f"{tmp}/master.key"
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.start()
    def start(self):
        # A log per start: a restarted server must not look like the leader it was.
        self.starts += 1
        self.log = f"{self.dir}.{self.starts}.log"
        env = dict(os.environ, BERTH_LOG="info")
        self.proc = subprocess.Popen([BIN, "server", "--listen", f"127.0.0.1:{self.port}",
            "--data-dir", self.dir, "--store", self.url, "--key-file", self.key,
            "--leader-lease-secs", str(self.lease), "--service-settle-secs", "1",
            "--dns-listen", "off"], stdout=subprocess.DEVNULL, stderr=open(self.log, "a"), env=env)
        procs.append(self.proc)
        wait("server up", lambda: os.path.exists(f"{self.dir}/credentials") and self.answers(), 60, 0.1)
    def answers(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), 0.2).close(); return True
        except OSError:
            return False
    def leads(self):
        text = open(self.log).read()
        return text.rfind("leading: the controllers run") > max(text.rfind("leadership lost"), text.rfind("cannot campaign"), -1) and self.proc.poll() is None

def ecs(server, tmp):
    creds = open(f"{tmp}/s0/credentials").read()
    akid = re.search(r"aws_access_key_id\s*=\s*(\S+)", creds).group(1)
    secret = re.search(r"aws_secret_access_key\s*=\s*(\S+)", creds).group(1)
    return boto3.client("ecs", endpoint_url=server.endpoint, region_name="us-east-1",
                        aws_access_key_id=akid, aws_secret_access_key=secret)

def run(lease):
    tmp = tempfile.mkdtemp(prefix="berth-ha-bench-")
    agent = None
    instances = []
    try:
        url = start_etcd(tmp)
        servers = [Server(tmp, i, url, lease) for i in range(3)]
        env = dict(os.environ, BERTH_SERVER=",".join(s.endpoint for s in servers),
                   AWS_SHARED_CREDENTIALS_FILE=f"{tmp}/s0/credentials", BERTH_LOG="info")
        agent = subprocess.Popen([BIN, "agent", "--data-dir", f"{tmp}/agent", "--memory", "4096"],
                                 stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/agent.log", "w"), env=env)
        procs.append(agent)
        c = ecs(servers[0], tmp)
        instances = wait("agent registered", lambda: quiet(lambda: c.list_container_instances()["containerInstanceArns"]), 60, 0.2)
        c.register_task_definition(family="ha-bench", containerDefinitions=[{
            "name": "web", "image": "berth-demo:latest", "memory": 16}])
        c.create_service(serviceName="web", taskDefinition="ha-bench", desiredCount=2)
        desired = 2
        times = []
        for r in range(ROUNDS):
            leader = wait("a leader", lambda: next((s for s in servers if s.leads()), None))
            other = next(s for s in servers if s is not leader)
            oc = ecs(other, tmp)
            wait("the service steady", lambda: len(oc.list_tasks(serviceName="web")["taskArns"]) == desired, 60, 0.1)
            t0 = time.monotonic()
            leader.proc.send_signal(signal.SIGKILL); leader.proc.wait()
            desired += 1
            oc.update_service(service="web", desiredCount=desired)
            wait("a controller acting", lambda: len(oc.list_tasks(serviceName="web")["taskArns"]) >= desired, 60, 0.02)
            took = time.monotonic() - t0
            times.append(took)
            print(f"  lease {lease} s, round {r + 1}: controllers acting again {took:.2f} s after the leader was killed", flush=True)
            leader.start()
        return times
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill(); p.wait()
        procs.clear()
        subprocess.run(["sh", "-c", "docker ps -aq --filter label=com.amazonaws.ecs.task-definition-family=ha-bench | xargs -r docker rm -f"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for arn in instances:
            subprocess.run(["sh", "-c", f"docker ps -aq --filter label=berth.container-instance-arn={arn} | xargs -r docker rm -f"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)

results = {}
for lease in os.environ["HA_LEASES"].split():
    results[lease] = run(int(lease))
print()
print(f"{'--leader-lease-secs':>20} {'median s':>9} {'min s':>7} {'max s':>7}  (failover: leader SIGKILL -> a new task placed, {ROUNDS} rounds)")
for lease, t in results.items():
    print(f"{lease:>20} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):7.2f}")
EOF
