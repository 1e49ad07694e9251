#!/usr/bin/env bash
# Serving benchmark: hoist-server against `mlflow models serve`, MLServer (mlflow
# runtime) and a bare hyper server that answers every request with a fixed body
# (the HTTP ceiling), one after another on 127.0.0.1, all serving
# examples/models/breast_cancer_lr. See bench/README.md.
#
# Environment (all optional):
#   BENCH_SECONDS=10          wrk duration per run
#   BENCH_WARMUP_SECONDS=3    wrk warm-up per server before the runs
#   BENCH_CONCURRENCY="16 64" wrk connections
#   BENCH_ROWS="1 64"         rows per request
#   BENCH_SERVERS="mlflow mlserver hoist hoist-tract ceiling"
#                             (hoist: the pinned ONNX Runtime; hoist-tract: the
#                             pure-Rust runtime a machine without ONNX Runtime uses)
#   BENCH_ROUNDS=1            rounds of the whole sequence, each server started anew and
#                             the order rotated each round; the tables give medians over
#                             rounds, and each hoist / ceiling ratio is taken within a
#                             round (one start of the ceiling swings by 10-20%)
#   BENCH_READY_TIMEOUT=120   seconds a server may take to get ready
#   BENCH_SKIP_BUILD=1        use the existing target/release binaries
#   ORT_DYLIB_PATH            libonnxruntime.so for hoist (default: ~/.hoist/lib,
#                             else the library inside the onnxruntime wheel)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-16 64}"
BENCH_ROWS="${BENCH_ROWS:-1 64}"
BENCH_SERVERS="${BENCH_SERVERS:-mlflow mlserver hoist hoist-tract ceiling}"
BENCH_READY_TIMEOUT="${BENCH_READY_TIMEOUT:-120}"
BENCH_ROUNDS="${BENCH_ROUNDS:-1}"
model_dir="$repo/examples/models/breast_cancer_lr"
model_name="breast_cancer_lr"
venv="$repo/.venv-bench"
py="$venv/bin/python"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$model_dir/MLmodel" && -f "$model_dir/reference.json" ]] \
    || die "missing example model $model_dir (generate it with tools/make-models.sh)"

work="$(mktemp -d /tmp/hoist-bench.XXXXXX)"
started=()   # pids of every server this script started

# All descendants of a pid, deepest last.
descendants() {
    local kids k
    kids="$(ps -o pid= --ppid "$1" 2>/dev/null || true)"
    for k in $kids; do
        echo "$k"
        descendants "$k"
    done
}

# Sum of VmRSS (MiB, one decimal) over a process and all its descendants.
tree_rss_mb() {
    local total=0 p kb
    for p in "$1" $(descendants "$1"); do
        kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
        total=$((total + ${kb:-0}))
    done
    awk -v kb="$total" 'BEGIN {printf "%.1f\n", kb / 1024}'
}

stop_tree() {
    local root="$1" pids p i
    pids="$root $(descendants "$root")"
    kill -TERM $pids 2>/dev/null || true
    for i in $(seq 100); do
        local alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [[ $alive = 0 ]] && break
        sleep 0.1
    done
    kill -KILL $pids 2>/dev/null || true
    wait "$root" 2>/dev/null || true
}

cleanup() {
    local rc=$? p
    for p in "${started[@]}"; do stop_tree "$p"; done
    if [[ $rc -ne 0 ]]; then
        log "failed; server logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    sudo_=""; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq wrk >/dev/null \
        || command -v wrk >/dev/null || die "could not install wrk"
fi

if [[ ! -x "$py" ]]; then
    log "creating $venv"
    python3 -m venv "$venv"
fi
stamp="$venv/.bench-requirements.sha256"
want="$(sha256sum bench/requirements.txt | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    log "installing bench/requirements.txt into $venv (mlflow, mlserver: a few minutes the first time)"
    "$py" -m pip install -q --disable-pip-version-check -r bench/requirements.txt
    echo "$want" > "$stamp"
fi
# `mlflow models serve` runs `uvicorn` by name: the venv must be on PATH.
export PATH="$venv/bin:$PATH"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p hoist-server --bin hoist-server --example hyper_ceiling"
    cargo build --release -q -p hoist-server --bin hoist-server --example hyper_ceiling
fi
hoist_bin="$repo/target/release/hoist-server"
ceiling_bin="$repo/target/release/examples/hyper_ceiling"

if [[ -z "${ORT_DYLIB_PATH:-}" ]]; then
    for cand in "${HOIST_HOME:-$HOME/.hoist}/lib/libonnxruntime.so.1.32.0" \
                "$("$py" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.1.32.0"))' 2>/dev/null || true)"; do
        if [[ -n "$cand" && -f "$cand" ]]; then export ORT_DYLIB_PATH="$cand"; break; fi
    done
fi

# ---------------------------------------------------------------- bodies
# invocations-<rows>.json: {"inputs": [[30 floats], ...]}  (MLflow scoring)
# v2-<rows>.json: Open Inference Protocol JSON; expect-<rows>.json: reference outputs.
"$py" - "$model_dir/reference.json" "$work" $BENCH_ROWS <<'EOF'
import json, sys
ref_path, out, *row_counts = sys.argv[1:]
ref = json.load(open(ref_path))
x = ref["inputs"]["input"]["data"]; n = ref["rows"]; width = len(x) // n
rows = [x[i * width:(i + 1) * width] for i in range(n)]
labels = ref["outputs"]["label"]["data"]
probs = ref["outputs"]["probabilities"]["data"]; k = len(probs) // n
for r in map(int, row_counts):
    idx = [i % n for i in range(r)]
    sel = [rows[i] for i in idx]
    json.dump({"inputs": sel}, open(f"{out}/invocations-{r}.json", "w"))
    json.dump({"inputs": [{"name": "input", "shape": [r, width], "datatype": "FP32",
                           "data": [v for row in sel for v in row]}]}, open(f"{out}/v2-{r}.json", "w"))
    json.dump({"label": [labels[i] for i in idx],
               "probabilities": [probs[i * k:(i + 1) * k] for i in idx]},
              open(f"{out}/expect-{r}.json", "w"))
EOF

# check URL KIND ROWS: one request whose answer must match reference.json.
check() {
    "$py" - "$1" "$2" "$work/$2-$3.json" "$work/expect-$3.json" <<'EOF'
import json, sys, urllib.request
url, kind, body_path, expect_path = sys.argv[1:]
want = json.load(open(expect_path))
req = urllib.request.Request(url, data=open(body_path, "rb").read(),
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = json.load(resp)
except urllib.error.HTTPError as e:
    sys.exit(f"{url}: HTTP {e.code}: {e.read()[:500]!r}")
if kind == "invocations":
    got = body["predictions"]
    labels = [int(v) for v in got["label"]]
    probs = got["probabilities"]
else:
    outs = {o["name"]: o for o in body["outputs"]}
    labels = [int(v) for v in outs["label"]["data"]]
    flat = outs["probabilities"]["data"]
    k = len(want["probabilities"][0])
    probs = [flat[i * k:(i + 1) * k] for i in range(len(flat) // k)]
if labels != want["label"]:
    sys.exit(f"{url}: labels {labels[:8]}... != reference {want['label'][:8]}...")
worst = max(abs(a - b) for p, q in zip(probs, want["probabilities"]) for a, b in zip(p, q))
if len(probs) != len(want["probabilities"]) or worst > 1e-4:
    sys.exit(f"{url}: probabilities differ from reference (max diff {worst})")
EOF
}

# wait_http URL PID NAME: until URL answers 200, the process dies, or the timeout.
wait_http() {
    local url="$1" pid="$2" name="$3" t0=$SECONDS
    until curl -sf -o /dev/null --max-time 2 "$url"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/$name.log" >&2; die "$name exited before it got ready"; }
        (( SECONDS - t0 > BENCH_READY_TIMEOUT )) && { tail -n 30 "$work/$name.log" >&2; die "$name not ready after ${BENCH_READY_TIMEOUT}s ($url)"; }
        sleep 0.5
    done
    log "$name ready after $((SECONDS - t0)) s"
}

# wait_listening PID NAME: the `listening on http://HOST:PORT` line; prints the URL.
wait_listening() {
    local pid="$1" name="$2" t0=$SECONDS line
    while :; do
        line="$(grep -m1 '^listening on ' "$work/$name.out" 2>/dev/null || true)"
        [[ -n "$line" ]] && { echo "${line#listening on }"; return; }
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/$name.log" >&2; die "$name exited before listening"; }
        (( SECONDS - t0 > BENCH_READY_TIMEOUT )) && die "$name printed no 'listening on' line in ${BENCH_READY_TIMEOUT}s"
        sleep 0.1
    done
}

results="$work/results.tsv"
: > "$results"
rss_summary="$work/rss.tsv"
: > "$rss_summary"

# run_wrk SERVER ENDPOINT URL KIND ROWS CONC IDLE_RSS
run_wrk() {
    local server="$1" endpoint="$2" url="$3" kind="$4" rows="$5" conc="$6" rss="$7" out line
    out="$(WRK_BODY_FILE="$work/$kind-$rows.json" WRK_CONTENT_TYPE=application/json WRK_LABEL="$server" \
        wrk -t2 -c"$conc" -d"${BENCH_SECONDS}s" --timeout 10s -s "$repo/bench/post.lua" "$url")" \
        || die "wrk failed against $server $url"
    line="$(grep '^WRK_RESULT ' <<<"$out")" || die "wrk printed no WRK_RESULT line: $out"
    local rps p50 p99 non2xx sock
    rps="$(sed -E 's/.* rps=([^ ]+).*/\1/' <<<"$line")"
    p50="$(sed -E 's/.* p50_ms=([^ ]+).*/\1/' <<<"$line")"
    p99="$(sed -E 's/.* p99_ms=([^ ]+).*/\1/' <<<"$line")"
    non2xx="$(sed -E 's/.* non2xx=([^ ]+).*/\1/' <<<"$line")"
    sock="$(sed -E 's/.* socket_errors=([^ ]+).*/\1/' <<<"$line")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$server" "$endpoint" "$rows" "$conc" "$rps" "$p50" "$p99" "$((non2xx + sock))" "$rss" "$round" >> "$results"
    log "$server $endpoint rows=$rows c=$conc: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $((non2xx + sock))"
}

# bench_server NAME PID "ENDPOINT URL KIND; ..." : check, RSS, warm up, load, stop.
bench_server() {
    local name="$1" pid="$2" targets="$3" rss rows conc endpoint url kind
    IFS=';' read -ra list <<<"$targets"
    for t in "${list[@]}"; do
        read -r endpoint url kind <<<"$t"
        [[ "$kind" == fixed ]] && continue
        for rows in $BENCH_ROWS; do check "$url" "$kind" "$rows" || die "$name gave a wrong answer at $url"; done
        log "$name: $endpoint answers match reference.json"
    done
    sleep 1
    rss="$(tree_rss_mb "$pid")"
    log "$name idle RSS ${rss} MB (process tree of $pid)"
    read -r endpoint url kind <<<"${list[0]}"
    [[ "$kind" == fixed ]] && kind=invocations
    WRK_BODY_FILE="$work/$kind-1.json" wrk -t2 -c16 -d"${BENCH_WARMUP_SECONDS}s" -s "$repo/bench/post.lua" "$url" >/dev/null
    for t in "${list[@]}"; do
        read -r endpoint url kind <<<"$t"
        [[ "$kind" == fixed ]] && kind=invocations
        for rows in $BENCH_ROWS; do
            for conc in $BENCH_CONCURRENCY; do
                run_wrk "$name" "$endpoint" "$url" "$kind" "$rows" "$conc" "$rss"
            done
        done
    done
    printf '%s\t%s\t%s\t%s\n' "$name" "$rss" "$(tree_rss_mb "$pid")" "$round" >> "$rss_summary"
    stop_tree "$pid"
}

read -ra server_list <<<"$BENCH_SERVERS"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
  # Round k starts with the k-th server, so that none always runs first.
  shift_by=$(((round - 1) % ${#server_list[@]}))
  order=("${server_list[@]:shift_by}" "${server_list[@]:0:shift_by}")
  ((BENCH_ROUNDS > 1)) && log "round $round of $BENCH_ROUNDS: ${order[*]}"
  for server in "${order[@]}"; do
    case "$server" in
    mlflow)
        port="$(free_port)"
        log "starting mlflow models serve on :$port"
        setsid mlflow models serve -m "$model_dir" --env-manager local -h 127.0.0.1 -p "$port" \
            > "$work/mlflow.log" 2>&1 &
        pid=$!; started+=("$pid")
        wait_http "http://127.0.0.1:$port/ping" "$pid" mlflow
        bench_server mlflow "$pid" "/invocations http://127.0.0.1:$port/invocations invocations"
        ;;
    mlserver)
        port="$(free_port)"; gport="$(free_port)"; mport="$(free_port)"
        mkdir -p "$work/mlserver"
        cat > "$work/mlserver/settings.json" <<EOF
{"host": "127.0.0.1", "http_port": $port, "grpc_port": $gport, "metrics_port": $mport}
EOF
        cat > "$work/mlserver/model-settings.json" <<EOF
{"name": "$model_name", "implementation": "mlserver_mlflow.MLflowRuntime",
 "parameters": {"uri": "$model_dir"}}
EOF
        log "starting mlserver (mlflow runtime) on :$port"
        (cd "$work/mlserver" && exec setsid mlserver start .) > "$work/mlserver.log" 2>&1 &
        pid=$!; started+=("$pid")
        wait_http "http://127.0.0.1:$port/v2/models/$model_name/ready" "$pid" mlserver
        bench_server mlserver "$pid" \
            "/invocations http://127.0.0.1:$port/invocations invocations;/v2/infer http://127.0.0.1:$port/v2/models/$model_name/infer v2"
        ;;
    hoist|hoist-tract)
        [[ -x "$hoist_bin" ]] || die "no $hoist_bin (cargo build --release -p hoist-server)"
        if [[ "$server" == hoist ]]; then
            [[ -n "${ORT_DYLIB_PATH:-}" ]] || die "no libonnxruntime found: set ORT_DYLIB_PATH"
            runtime=onnxruntime
            log "starting hoist-server (onnxruntime: $ORT_DYLIB_PATH)"
        else
            runtime=tract
            log "starting hoist-server (tract)"
        fi
        setsid "$hoist_bin" --model "$model_dir" --host 127.0.0.1 --port 0 --runtime "$runtime" \
            > "$work/$server.out" 2> "$work/$server.log" &
        pid=$!; started+=("$pid")
        base="$(wait_listening "$pid" "$server")"
        wait_http "$base/v2/health/ready" "$pid" "$server"
        bench_server "$server" "$pid" \
            "/invocations $base/invocations invocations;/v2/infer $base/v2/models/$model_name/infer v2"
        ;;
    ceiling)
        [[ -x "$ceiling_bin" ]] || die "no $ceiling_bin (cargo build --release -p hoist-server --example hyper_ceiling)"
        log "starting hyper_ceiling"
        setsid "$ceiling_bin" --port 0 > "$work/ceiling.out" 2> "$work/ceiling.log" &
        pid=$!; started+=("$pid")
        base="$(wait_listening "$pid" ceiling)"
        bench_server ceiling "$pid" "fixed $base/invocations fixed"
        ;;
    *) die "unknown server $server (BENCH_SERVERS)";;
    esac
  done
done

# ---------------------------------------------------------------- report
mkdir -p bench/results
report="bench/results/serving-$(date +%Y-%m-%d).md"
"$py" - "$results" "$rss_summary" "$report" <<EOF
import sys, platform, os, subprocess
results, rss_path, report = sys.argv[1:]
from statistics import median
raw = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
rounds = max(int(x[9]) for x in raw)
# One row per cell (in the order first measured): medians over the rounds.
cells = {}
for s, e, r, c, rps, p50, p99, err, mb, rnd in raw:
    cells.setdefault((s, e, r, c), []).append((float(rps), float(p50), float(p99), int(err), float(mb), int(rnd)))
rows = [(s, e, r, c, median(x[0] for x in v), median(x[1] for x in v), median(x[2] for x in v),
         sum(x[3] for x in v), median(x[4] for x in v)) for (s, e, r, c), v in cells.items()]
rss_rounds = {}
for l in open(rss_path):
    if l.strip():
        name, idle, after, _ = l.rstrip("\n").split("\t")
        rss_rounds.setdefault(name, []).append((float(idle), float(after)))
rss = {n: (median(x[0] for x in v), median(x[1] for x in v)) for n, v in rss_rounds.items()}
def f(x): return float(x)
out = []
out.append("# Serving benchmark, $(date -u +%Y-%m-%dT%H:%MZ)")
out.append("")
out.append(f"Model breast_cancer_lr; 127.0.0.1; {os.cpu_count()} cores; wrk -t2, ${BENCH_SECONDS} s per run "
           "after a ${BENCH_WARMUP_SECONDS} s warm-up. Servers run one at a time with their defaults "
           "(mlflow 3.17.2 models serve, one uvicorn worker; MLServer 1.7.1 + mlserver-mlflow; "
           "hoist-server release build: hoist with the onnxruntime runtime, hoist-tract with tract; "
           "hyper_ceiling: fixed body, no model). "
           "RSS: idle VmRSS summed over the server's process tree."
           + (f" {rounds} rounds, each server started anew each round; medians over the rounds." if rounds > 1 else ""))
out.append("")
out.append("| server | endpoint | rows | concurrency | req/s | p50 ms | p99 ms | errors | RSS MB |")
out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|")
for s, e, r, c, rps, p50, p99, err, mb in rows:
    out.append(f"| {s} | {e} | {r} | {c} | {f(rps):.0f} | {f(p50):.2f} | {f(p99):.2f} | {err} | {mb:.1f} |")
out.append("")
out.append("| server | idle RSS MB | RSS after load MB |")
out.append("|---|--:|--:|")
for s, (idle, after) in rss.items():
    out.append(f"| {s} | {idle:.1f} | {after:.1f} |")
peers = ("mlflow", "mlserver")
by = {(s, e, r, c): (f(rps), f(p99)) for s, e, r, c, rps, p50, p99, err, mb in rows}
ratios = []
for (s, e, r, c), (rps, p99) in sorted(by.items()):
    if s not in ("hoist", "hoist-tract"):
        continue
    peer = [(p, by[(p, e, r, c)]) for p in peers if (p, e, r, c) in by]
    line = f"| {s} | {e} | {r} | {c} |"
    if peer:
        best_rps = max(peer, key=lambda kv: kv[1][0]); best_p99 = min(peer, key=lambda kv: kv[1][1])
        line += f" {rps / best_rps[1][0]:.1f}x ({best_rps[0]}) | {p99 / best_p99[1][1]:.3f} ({best_p99[0]}) |"
    else:
        line += " - | - |"
    # Within each round, then the median (and the range) over the rounds.
    mine = {x[5]: x[0] for x in cells[(s, e, r, c)]}
    ceil = {x[5]: x[0] for x in cells.get(("ceiling", "fixed", r, c), [])}
    per_round = [mine[k] / ceil[k] for k in sorted(mine) if k in ceil]
    if per_round and len(per_round) > 1:
        line += f" {median(per_round):.2f} ({min(per_round):.2f}-{max(per_round):.2f}) |"
    elif per_round:
        line += f" {per_round[0]:.2f} |"
    else:
        line += " - |"
    ratios.append(line)
if ratios:
    out.append("")
    out.append("hoist / best peer (req/s: higher is better; p99: lower is better) and hoist / HTTP ceiling (req/s):")
    out.append("")
    out.append("| server | endpoint | rows | concurrency | req/s vs best peer | p99 vs best peer | req/s vs ceiling |")
    out.append("|---|---|--:|--:|--:|--:|--:|")
    out.extend(ratios)
    peer_rss = [rss[p][0] for p in peers if p in rss]
    for h in ("hoist", "hoist-tract"):
        if h in rss and peer_rss:
            out.append("")
            out.append(f"Idle RSS {h} / smallest peer: {rss[h][0]:.1f} / {min(peer_rss):.1f} MB = "
                       f"{rss[h][0] / min(peer_rss):.4f}")
text = "\n".join(out) + "\n"
open(report, "w").write(text)
print(text)
print(f"(written to {report})")
EOF
