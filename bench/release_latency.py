#!/usr/bin/env python3
"""Release latencies of a real `hoist up` daemon on 127.0.0.1 (run by bench/release-latency.sh).

1. Promotion to 100%: a release with zero pauses (staging blue-green, production with no
   canary steps) from the moment `hoist model alias m N champion` starts until the
   journal records the candidate promoted in production.
2. Operator rollback: a release paused at 50%; round trip of POST /api/v1/rollback (the
   route is back at 100% stable before the API answers), then 50 requests checked to
   all land on stable.
3. Automatic rollback: a candidate 30-60 ms slower under steady traffic; time from the
   failed verdict reaching the engine to the gateway at 100% stable (the daemon logs it).
"""
import atexit
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HOIST = sys.argv[1]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "examples", "models")
ROUNDS = int(os.environ.get("ROUNDS", "5"))

BASE = """
[api]
listen = "127.0.0.1:0"
[registry]
url = "embedded"
poll_interval = "{poll}"
[model]
name = "m"
trigger = {{ alias = "champion" }}
[server]
runtime = "auto"
stop_grace = "5s"
[analysis]
interval = "100ms"
max_p99_ms = 25
min_requests = 10
"""


def hoist(home, *args, check=True):
    r = subprocess.run([HOIST, "--home", home, *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"hoist {' '.join(args)} failed: {r.stderr}")
    return r


class Daemon:
    def __init__(self, config):
        self.home = tempfile.mkdtemp(prefix="hoist-bench-")
        cfg = os.path.join(self.home, "hoist.toml")
        with open(cfg, "w") as f:
            f.write(config)
        self.proc = subprocess.Popen([HOIST, "--home", self.home, "--json", "up", "--config", cfg],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        atexit.register(self.proc.kill)
        first = json.loads(self.proc.stdout.readline())
        self.api = first["api"]
        self.envs = {e["name"]: e["url"] for e in first["environments"]}
        self.token = open(os.path.join(self.home, "daemon", "token")).read().strip()
        self.lines = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def get(self, path):
        with urllib.request.urlopen(self.api + path) as r:
            return json.load(r)

    def post(self, path, body):
        req = urllib.request.Request(self.api + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              "authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req) as r:
            return json.load(r)

    def wait_done(self, rid, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            try:
                r = self.get(f"/api/v1/releases/{rid}")
            except urllib.error.HTTPError:
                time.sleep(0.02)  # not created yet (the trigger polls)
                continue
            if r["phase"]["phase"] == "done":
                return r
            time.sleep(0.02)
        raise SystemExit(f"release {rid} did not finish")

    def wait_weight(self, env, weight, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            s = self.get("/api/v1/status")
            e = [x for x in s["environments"] if x["name"] == env][0]
            if e["weight"] == weight and e["candidate"]:
                return
            time.sleep(0.02)
        raise SystemExit(f"{env} never reached {weight}%")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def register(d, package, alias=None):
    args = ["model", "register", os.path.join(MODELS, package), "--name", "m", "--json"]
    if alias:
        args += ["--alias", alias]
    out = hoist(d.home, *args).stdout
    return json.loads(out)["version"]["version"]


def example_body(rows=2):
    ex = json.load(open(os.path.join(MODELS, "breast_cancer_lr", "input_example.json")))
    return json.dumps({"inputs": (ex * rows)[:rows]}).encode()


def traffic(url, stop, counts):
    body = example_body()
    while not stop.is_set():
        req = urllib.request.Request(url + "/invocations", data=body,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                counts[r.headers.get("x-hoist-variant", "?")] = counts.get(r.headers.get("x-hoist-variant", "?"), 0) + 1
        except Exception:
            counts["failed"] = counts.get("failed", 0) + 1
        time.sleep(0.005)


def summary(xs):
    xs = sorted(xs)
    return f"median {statistics.median(xs):.1f} ms, min {xs[0]:.1f}, max {xs[-1]:.1f} (n={len(xs)})"


def main():
    report = []
    # 1. Promotion with zero pauses.
    d = Daemon(BASE.format(poll="50ms") + """
[[environments]]
name = "staging"
listen = "127.0.0.1:0"
strategy = "blue-green"
analysis = { enabled = false }
[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = []
""")
    register(d, "breast_cancer_gbt", "champion")
    d.wait_done(1)
    promo = []
    # Distinct packages: a version's files are registered once.
    packages = ["breast_cancer_lr", "breast_cancer_rf", "breast_cancer_slow", "breast_cancer_batch2"]
    for i in range(min(ROUNDS, len(packages))):
        v = register(d, packages[i])
        t0 = time.time()
        hoist(d.home, "model", "alias", "m", v, "champion")
        r = d.wait_done(i + 2)
        assert r["outcome"]["outcome"] == "succeeded", r
        t_live = r["transitions"][-1]["at_ms"]
        promo.append(t_live - t0 * 1000)
    d.stop()
    report.append(f"- promotion event → 100% in production (staging blue-green + production, zero pauses, "
                  f"poll 50 ms; includes starting 2 hoist-servers and 2 smoke tests): {summary(promo)}")

    # 2. Operator rollback of a release paused at 50%.
    d = Daemon(BASE.format(poll="1s") + """
[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = [{ weight = 50, pause = true }]
analysis = { enabled = false }
""")
    register(d, "breast_cancer_gbt", "champion")
    d.wait_done(1)
    v2 = register(d, "breast_cancer_lr")
    rb = []
    wrong = 0
    body = example_body()
    for i in range(ROUNDS):
        rel = d.post("/api/v1/releases", {"model": f"m/{v2}"})
        d.wait_weight("production", 50)
        t0 = time.perf_counter()
        d.post("/api/v1/rollback", {"env": "production"})
        rb.append((time.perf_counter() - t0) * 1000)
        for _ in range(50):
            req = urllib.request.Request(d.envs["production"] + "/invocations", data=body,
                                         headers={"content-type": "application/json"})
            with urllib.request.urlopen(req) as r:
                if r.headers.get("x-hoist-variant") != "stable":
                    wrong += 1
        d.wait_done(rel["id"])
    d.stop()
    report.append(f"- `POST /api/v1/rollback` round trip, canary at 50% → 100% stable (API answers after the switch): "
                  f"{summary(rb)}; requests sent right after that reached the candidate: {wrong} of {50 * ROUNDS}")

    # 3. Automatic rollback on latency under traffic.
    d = Daemon(BASE.format(poll="1s") + """
[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = [{ weight = 50, pause = "30s" }]
""")
    register(d, "breast_cancer_gbt", "champion")
    d.wait_done(1)
    slow = register(d, "breast_cancer_slow")
    lr = register(d, "breast_cancer_lr")
    stop = threading.Event()
    counts = {}
    threads = [threading.Thread(target=traffic, args=(d.envs["production"], stop, counts)) for _ in range(4)]
    for t in threads:
        t.start()
    auto = []
    for i in range(ROUNDS):
        rel = d.post("/api/v1/releases", {"model": f"m/{slow}"})
        r = d.wait_done(rel["id"])
        assert r["outcome"]["outcome"] == "failed", r
    stop.set()
    for t in threads:
        t.join()
    for line in d.lines:
        m = re.search(r"rolled back, 100% on v\d+ ([0-9.]+) ms after the decision", line.get("message", ""))
        if m:
            auto.append(float(m.group(1)))
    d.stop()
    report.append(f"- failed latency verdict → gateway at 100% stable (slow candidate at 50% under traffic): "
                  f"{summary(auto)}; client requests during these canaries: {counts}")
    print("\n".join(report))


if __name__ == "__main__":
    main()
