#!/usr/bin/env python3
"""Soak run of a real `hoist up` daemon on 127.0.0.1 (run by bench/soak.sh).

One daemon, one canary environment, constant traffic from a few client threads, and
SOAK_RELEASES (20) consecutive releases alternating a good candidate and a bad one:

- good: breast_cancer_lr, breast_cancer_rf, breast_cancer_gbt in turn (never the
  version already live), each must end `succeeded` and be live afterwards;
- bad, cycling:
  - errors:  breast_cancer_batch2 (a batch size of 2 baked in: the clients' one-row
             requests get 500s from it),
  - latency: breast_cancer_slow (tens of ms of CPU per call; same answers),
  - drift:   breast_cancer_skewed (fast, error-free, predicts class 1 far more often);
  each must end `failed` (rolled back) with the previous version still live.

The clients send one-row MLflow scoring requests (`/invocations`, cycling over the 143
golden rows of examples/data, whose class mix the three good models agree on) and count
every answer by the gateway's `x-hoist-variant` header: 200 is served, anything else
(or no answer) is failed. A failure without the header (nothing came back from the
gateway) counts under `none`. Each release's counts run from its request to the API
until 0.5 s after its outcome.

Prints one line per release and a summary; exits 1 if any request on stable (or
`none`) failed, any bad candidate went live, or any good one did not.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

HOIST = sys.argv[1]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(REPO, "examples", "models")
RELEASES = int(os.environ.get("SOAK_RELEASES", "20"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "3"))
PACE = float(os.environ.get("SOAK_PACE_MS", "10")) / 1000
RELEASE_TIMEOUT = float(os.environ.get("SOAK_RELEASE_TIMEOUT", "180"))

CONFIG = """
[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "1s"

[model]
name = "m"
trigger = { alias = "champion" }

[server]
runtime = "auto"
stop_grace = "2s"

[analysis]
interval = "200ms"
min_requests = 40
max_error_rate = 0.02
max_p99_ms = 100
max_inconclusive = "30s"

[[environments]]
name = "production"
listen = "127.0.0.1:0"
steps = [{ weight = 20, pause = "3s" }, { weight = 50, pause = "3s" }]
"""

GOOD = ["breast_cancer_lr", "breast_cancer_rf", "breast_cancer_gbt"]
BAD = [("errors", "breast_cancer_batch2"), ("latency", "breast_cancer_slow"),
       ("drift", "breast_cancer_skewed")]
FIRST = "breast_cancer_gbt"


def hoist(home, *args):
    r = subprocess.run([HOIST, "--home", home, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"hoist {' '.join(args)} failed: {r.stderr}")
    return r.stdout


class Daemon:
    def __init__(self):
        self.home = tempfile.mkdtemp(prefix="hoist-soak-")
        cfg = os.path.join(self.home, "hoist.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG)
        self.log = open(os.path.join(self.home, "daemon.log"), "w")
        self.proc = subprocess.Popen([HOIST, "--home", self.home, "--json", "up", "--config", cfg],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        first = json.loads(self.proc.stdout.readline())
        self.api = first["api"]
        self.url = {e["name"]: e["url"] for e in first["environments"]}["production"]
        self.token = open(os.path.join(self.home, "daemon", "token")).read().strip()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def get(self, path):
        with urllib.request.urlopen(self.api + path, timeout=30) as r:
            return json.load(r)

    def post(self, path, body):
        req = urllib.request.Request(self.api + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json",
                                              "authorization": "Bearer " + self.token})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def wait_done(self, rid):
        end = time.time() + RELEASE_TIMEOUT
        while time.time() < end:
            try:
                r = self.get(f"/api/v1/releases/{rid}")
                if r["phase"]["phase"] == "done":
                    return r
            except urllib.error.HTTPError:
                pass  # not created yet (the trigger polls)
            time.sleep(0.1)
        raise SystemExit(f"release {rid} did not finish within {RELEASE_TIMEOUT:.0f} s")

    def live(self):
        env = self.get("/api/v1/status")["environments"][0]
        return (env["stable"] or {}).get("version"), env["candidate"], env["weight"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def register(d, package, alias=None):
    args = ["--json", "model", "register", os.path.join(MODELS, package), "--name", "m"]
    if alias:
        args += ["--alias", alias]
    return str(json.loads(hoist(d.home, *args))["version"]["version"])


def golden_rows():
    """The 143 held-out rows of examples/data (the good models agree on their class mix)."""
    with open(os.path.join(REPO, "examples", "data", "breast_cancer_golden.jsonl")) as f:
        return [json.loads(line)["features"] for line in f if line.strip()]


class Traffic:
    """Client threads on keep-alive connections; counts per (phase, variant)."""

    def __init__(self, url, clients):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.bodies = [json.dumps({"inputs": [row]}).encode() for row in golden_rows()]
        self.phase = 0
        self.counts = {}  # (phase, variant) -> [served, failed]
        self.errors = {}  # (phase, variant) -> {status or exception name: n}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(clients)]
        for t in self.threads:
            t.start()

    def _count(self, variant, ok, why=None):
        with self.lock:
            c = self.counts.setdefault((self.phase, variant), [0, 0])
            c[0 if ok else 1] += 1
            if not ok:
                e = self.errors.setdefault((self.phase, variant), {})
                e[why] = e.get(why, 0) + 1

    def _run(self, i):
        conn = None
        n = i * 37  # the threads start at different rows
        while not self.stopping.is_set():
            body = self.bodies[n % len(self.bodies)]
            n += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                conn.request("POST", "/invocations", body=body,
                             headers={"content-type": "application/json"})
                r = conn.getresponse()
                r.read()
                variant = r.getheader("x-hoist-variant") or "none"
                self._count(variant, r.status == 200, str(r.status))
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # no answer at all
                self._count("none", False, type(e).__name__)
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(PACE)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join()

    def of(self, phase, variant):
        return self.counts.get((phase, variant), [0, 0])


def short(reason, width=70):
    reason = " ".join((reason or "").split())
    return reason if len(reason) <= width else reason[:width - 1] + "…"


def caught_by(reason):
    r = (reason or "").lower()
    kinds = [k for k, words in (("errors", ["error rate"]), ("latency", ["latency", "mann-whitney"]),
                                ("drift", ["psi", "drift"])) if any(w in r for w in words)]
    return kinds


def main():
    t_start = time.time()
    d = Daemon()
    try:
        return run(d, t_start)
    finally:
        d.stop()


def run(d, t_start):
    first = register(d, FIRST, "champion")
    d.wait_done(1)
    versions = {FIRST: first}
    for p in GOOD + [p for _, p in BAD]:
        if p not in versions:
            versions[p] = register(d, p)
    traffic = Traffic(d.url, CLIENTS)
    time.sleep(1)  # phase 0: stable alone
    rows = []
    good_i = bad_i = 0
    live = first
    problems = []
    for i in range(1, RELEASES + 1):
        if i % 2 == 1:
            # A good candidate other than the one live.
            while True:
                pkg = GOOD[good_i % len(GOOD)]
                good_i += 1
                if versions[pkg] != live:
                    break
            kind = "good"
        else:
            kind, pkg = BAD[bad_i % len(BAD)]
            bad_i += 1
        v = versions[pkg]
        before = live
        traffic.phase = i
        t0 = time.time()
        rel = d.post("/api/v1/releases", {"model": f"m/{v}"})
        r = d.wait_done(rel["id"])
        took = time.time() - t0
        outcome = (r.get("outcome") or {}).get("outcome", "?")
        reason = (r.get("outcome") or {}).get("reason") or ""
        time.sleep(0.5)  # a little traffic after the end, still counted for this release
        live, candidate, weight = d.live()
        if kind == "good":
            ok = outcome == "succeeded" and live == v and candidate is None
            if not ok:
                problems.append(f"release {i}: good v{v} ({pkg}) ended {outcome} with v{live} live: {reason}")
        else:
            ok = outcome == "failed" and live == before and candidate is None and weight == 0
            if not ok:
                problems.append(f"release {i}: bad v{v} ({pkg}, {kind}) ended {outcome} with v{live} live")
        rows.append(dict(i=i, id=rel["id"], kind=kind, pkg=pkg, v=v, outcome=outcome, reason=reason,
                         took=took, live=live, ok=ok, stable=traffic.of(i, "stable"),
                         candidate=traffic.of(i, "candidate"), none=traffic.of(i, "none")))
        print(f"  release {i:2d} {kind:7s} v{v} {pkg:22s} {outcome:9s} {took:5.1f} s  live v{live}"
              f"  {'ok' if ok else 'WRONG'}", file=sys.stderr, flush=True)
    traffic.phase = RELEASES + 1
    time.sleep(1)
    traffic.stop()
    history = json.loads(hoist(d.home, "--json", "history"))
    report(d, rows, traffic, problems, history, time.time() - t_start)
    return 1 if problems else 0


def report(d, rows, traffic, problems, history, elapsed):
    print(f"| # | candidate | kind | outcome | caught by | s | stable served / failed "
          f"| candidate served / failed | live after | check |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        caught = ", ".join(caught_by(r["reason"])) or "-"
        print(f"| {r['i']} | v{r['v']} {r['pkg']} | {r['kind']} | {r['outcome']} | {caught} | {r['took']:.1f} "
              f"| {r['stable'][0]} / {r['stable'][1]} | {r['candidate'][0]} / {r['candidate'][1]} "
              f"| v{r['live']} | {'ok' if r['ok'] else 'WRONG'} |")
    print()
    print("Rollback reasons:")
    for r in rows:
        if r["kind"] != "good":
            print(f"  {r['i']:2d} {r['kind']:7s} {short(r['reason'], 110)}")
    print()
    tot = {}
    for (phase, variant), (s, f) in traffic.counts.items():
        t = tot.setdefault(variant, [0, 0])
        t[0] += s
        t[1] += f
    for variant in ("stable", "candidate", "none"):
        s, f = tot.get(variant, [0, 0])
        errs = {}
        for (phase, v), e in traffic.errors.items():
            if v == variant:
                for k, n in e.items():
                    errs[k] = errs.get(k, 0) + n
        detail = f" ({', '.join(f'{k}: {n}' for k, n in sorted(errs.items()))})" if errs else ""
        print(f"requests on {variant:9s}: {s + f:7d} sent, {f:5d} failed{detail}")
    bad_fail = {}
    for r in rows:
        if r["kind"] != "good":
            bad_fail.setdefault(r["kind"], [0, 0])
            bad_fail[r["kind"]][0] += sum(r["candidate"])
            bad_fail[r["kind"]][1] += r["candidate"][1]
    print("failed candidate requests by bad kind: " +
          ", ".join(f"{k} {f} of {n}" for k, (n, f) in bad_fail.items()))
    goods = [r for r in rows if r["kind"] == "good"]
    bads = [r for r in rows if r["kind"] != "good"]
    print(f"good candidates live: {sum(r['ok'] for r in goods)} of {len(goods)}; "
          f"bad candidates rolled back: {sum(r['ok'] for r in bads)} of {len(bads)} "
          f"(for the injected fault: {sum(r['kind'] in caught_by(r['reason']) for r in bads)} of {len(bads)})")
    durations = sorted(r["took"] for r in goods)
    if durations:
        print(f"release duration, good: median {durations[len(durations) // 2]:.1f} s, "
              f"max {durations[-1]:.1f} s; bad: median "
              f"{sorted(r['took'] for r in bads)[len(bads) // 2]:.1f} s" if bads else "")
    print(f"hoist history lists {len(history.get('releases', []))} releases; soak took {elapsed:.0f} s")
    stable_failed = tot.get("stable", [0, 0])[1] + tot.get("none", [0, 0])[1]
    if stable_failed:
        problems.append(f"{stable_failed} requests failed on stable (or without a variant)")
    if problems:
        print("FAILED:")
        for p in problems:
            print("  " + p)
    else:
        print("PASSED: zero failed requests on stable, every bad candidate rolled back, every good one live")


if __name__ == "__main__":
    sys.exit(main())
