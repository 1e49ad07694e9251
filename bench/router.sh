#!/usr/bin/env bash
# Router benchmark: what routing among many models costs. One run on 127.0.0.1, the
# same two hoist-server backends (stable and candidate, split 90/10) behind three
# gateway processes, each measured in turn:
#
#   single  wrk -> hoist gateway example (one Gateway)           POST /invocations
#   one     wrk -> hoist gateway example --models 1  (a Router)  POST /models/m0/invocations
#   fifty   wrk -> hoist gateway example --models 50 (a Router)  POST /models/m{0..49}/invocations in turn
#
# In `fifty` every model is its own Gateway (own split counter, pools and metrics);
# consecutive requests on one connection go to different models. All three use the
# same wrk script (bench/models.lua, every request built once and picked per
# request), so `one` and `fifty` differ only in the number of models. The issue's target: fifty's throughput at
# least 97% of one's. `single` shows what the Router costs against a bare Gateway.
# After the runs, `fifty`'s /metrics must show traffic for all 50 models.
#
# Environment (all optional):
#   BENCH_SECONDS=10          wrk duration per run
#   BENCH_WARMUP_SECONDS=3    wrk warm-up per path before the first round
#   BENCH_CONCURRENCY="64"    wrk connections (space-separated list)
#   BENCH_ROUNDS=3            rounds of the paths; the report gives the median
#   BENCH_MODELS=50           models behind the `fifty` router
#   BENCH_WEIGHT=10           candidate percent
#   BENCH_PATHS="single one fifty"
#   BENCH_SKIP_BUILD=1        use the existing target/release binaries
#   BENCH_TAG=name            report to bench/results/router-DATE-name.txt
#   BENCH_READY_TIMEOUT=60    seconds a process may take to get ready
#   ORT_DYLIB_PATH            libonnxruntime.so for hoist-server (default: ~/.hoist/lib)
#   BENCH_BACKEND=hoist-server  or `nginx`: two server blocks of one nginx (one worker)
#                             answering a fixed prediction (the reference label): the
#                             backends then cost next to nothing and the gateway's own
#                             work is most of the run (the split is then read from the
#                             gateways' own counters, not the backends')
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-64}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_MODELS="${BENCH_MODELS:-50}"
BENCH_WEIGHT="${BENCH_WEIGHT:-10}"
BENCH_PATHS="${BENCH_PATHS:-single one fifty}"
BENCH_READY_TIMEOUT="${BENCH_READY_TIMEOUT:-60}"
BENCH_BACKEND="${BENCH_BACKEND:-hoist-server}"
model_dir="$repo/examples/models/breast_cancer_lr"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$model_dir/MLmodel" && -f "$model_dir/reference.json" ]] \
    || die "missing example model $model_dir (generate it with tools/make-models.sh)"

work="$(mktemp -d /tmp/hoist-router-bench.XXXXXX)"
started=()   # pids of every process this script started

descendants() {
    local kids k
    kids="$(ps -o pid= --ppid "$1" 2>/dev/null || true)"
    for k in $kids; do
        echo "$k"
        descendants "$k"
    done
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
        log "failed; logs kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds (user + system) used so far by a process and its descendants.
tree_cpu() {
    local total=0 p ticks hz
    hz="$(getconf CLK_TCK)"
    for p in "$1" $(descendants "$1"); do
        ticks="$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)"
        total=$((total + ticks))
    done
    awk -v t="$total" -v hz="$hz" 'BEGIN {printf "%.3f", t / hz}'
}

# ---------------------------------------------------------------- tools
sudo_=""; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
if ! command -v wrk >/dev/null; then
    log "installing wrk (apt-get)"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq wrk >/dev/null || die "could not install wrk"
fi
command -v curl >/dev/null || die "curl is needed"

case "$BENCH_BACKEND" in
    hoist-server) build=(-p hoist-server --bin hoist-server) ;;
    nginx)
        build=()
        if ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
            log "installing nginx (apt-get)"
            $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq nginx >/dev/null || die "could not install nginx"
        fi
        nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)" ;;
    *) die "BENCH_BACKEND is hoist-server or nginx, not $BENCH_BACKEND" ;;
esac
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release ${build[*]} -p hoist-gateway --example gateway"
    cargo build --release -q "${build[@]}" -p hoist-gateway --example gateway
fi
server_bin="$target_dir/release/hoist-server"
gateway_bin="$target_dir/release/examples/gateway"
[[ "$BENCH_BACKEND" != hoist-server || -x "$server_bin" ]] || die "no $server_bin"
[[ -x "$gateway_bin" ]] || die "no $gateway_bin"

runtime_args=()
if [[ -z "${ORT_DYLIB_PATH:-}" && -f "${HOIST_HOME:-$HOME/.hoist}/lib/libonnxruntime.so.1.32.0" ]]; then
    export ORT_DYLIB_PATH="${HOIST_HOME:-$HOME/.hoist}/lib/libonnxruntime.so.1.32.0"
fi
[[ -n "${ORT_DYLIB_PATH:-}" ]] && runtime_args=(--runtime onnxruntime)

# ---------------------------------------------------------------- body
python3 - "$model_dir/reference.json" "$work" <<'EOF'
import json, sys
ref = json.load(open(sys.argv[1]))
x = ref["inputs"]["input"]["data"]; n = ref["rows"]; width = len(x) // n
json.dump({"inputs": [x[:width]]}, open(f"{sys.argv[2]}/invocations-1.json", "w"))
json.dump({"label": ref["outputs"]["label"]["data"][0]}, open(f"{sys.argv[2]}/expect-1.json", "w"))
EOF

# check URL: one request whose label must match reference.json.
check() {
    python3 - "$1" "$work/invocations-1.json" "$work/expect-1.json" <<'EOF'
import json, sys, urllib.request
url, body, expect = sys.argv[1:]
want = json.load(open(expect))["label"]
req = urllib.request.Request(url, data=open(body, "rb").read(),
                             headers={"Content-Type": "application/json"}, method="POST")
with urllib.request.urlopen(req, timeout=30) as resp:
    got = json.load(resp)["predictions"]["label"]
if [int(v) for v in got] != [int(want)]:
    sys.exit(f"{url}: label {got} != reference {want}")
EOF
}

wait_listening() {  # PID NAME -> prints the URL of its `listening on` line
    local pid="$1" name="$2" t0=$SECONDS line
    while :; do
        line="$(grep -m1 '^listening on ' "$work/$name.out" 2>/dev/null || true)"
        [[ -n "$line" ]] && { echo "${line#listening on }"; return; }
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/$name.log" >&2; die "$name exited before listening"; }
        (( SECONDS - t0 > BENCH_READY_TIMEOUT )) && die "$name printed no 'listening on' line in ${BENCH_READY_TIMEOUT}s"
        sleep 0.1
    done
}

wait_http() {  # URL PID NAME
    local url="$1" pid="$2" name="$3" t0=$SECONDS
    until curl -sf -o /dev/null --max-time 2 "$url"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/$name.log" >&2; die "$name exited before it got ready"; }
        (( SECONDS - t0 > BENCH_READY_TIMEOUT )) && die "$name not ready after ${BENCH_READY_TIMEOUT}s ($url)"
        sleep 0.2
    done
}

# Requests of a variant ($2) so far: hoist-server's own count on /invocations, or
# with nginx backends the gateway's (PATH $3) count, summed over its models.
served() {
    if [[ "$BENCH_BACKEND" == hoist-server ]]; then
        # (hoist-server labels its series by model too: route= is not always first)
        curl -sf "$1/metrics" | awk '/^hoist_requests_total\{/ && /route="\/invocations"/ {n += $NF} END {printf "%d", n}'
    else
        curl -sf "${url[$3]}/metrics" | awk -v v="variant=\"$2\"" \
            '/^hoist_gateway_requests_total\{/ && index($0, v) {n += $NF} END {printf "%d", n}'
    fi
}

# ---------------------------------------------------------------- backends
declare -A url pid_of
if [[ "$BENCH_BACKEND" == hoist-server ]]; then
    for b in stable candidate; do
        log "starting hoist-server ($b)"
        setsid "$server_bin" --model "$model_dir" --host 127.0.0.1 --port 0 "${runtime_args[@]}" \
            > "$work/$b.out" 2> "$work/$b.log" &
        pid_of[$b]=$!; started+=("$!")
        url[$b]="$(wait_listening "${pid_of[$b]}" "$b")"
        wait_http "${url[$b]}/v2/health/ready" "${pid_of[$b]}" "$b"
    done
else
    label="$(python3 -c 'import json, sys; print(int(json.load(open(sys.argv[1]))["label"]))' "$work/expect-1.json")"
    mkdir -p "$work/nginx/tmp" "$work/nginx/logs"
    url[stable]="http://127.0.0.1:$(free_port)"; url[candidate]="http://127.0.0.1:$(free_port)"
    {
        echo "worker_processes 1; daemon off; pid $work/nginx/nginx.pid;"
        echo "error_log $work/nginx/logs/error.log warn; events { worker_connections 4096; }"
        echo "http { access_log off; client_body_temp_path $work/nginx/tmp/body; keepalive_requests 1000000;"
        for b in stable candidate; do
            echo "  server { listen ${url[$b]#http://}; default_type application/json;"
            echo "    location / { return 200 '{\"predictions\":{\"label\":[$label]}}'; } }"
        done
        echo "}"
    } > "$work/nginx/nginx.conf"
    log "starting nginx backends (one worker, fixed answer)"
    setsid "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
        > "$work/nginx.out" 2> "$work/nginx.log" &
    pid_of[nginx]=$!; started+=("$!")
    wait_http "${url[stable]}/" "${pid_of[nginx]}" nginx
    wait_http "${url[candidate]}/" "${pid_of[nginx]}" nginx
fi
stable_addr="${url[stable]#http://}"
candidate_addr="${url[candidate]#http://}"

# ---------------------------------------------------------------- gateways
declare -A models_of=([single]=0 [one]=1 [fifty]="$BENCH_MODELS")
for p in $BENCH_PATHS; do
    [[ -n "${models_of[$p]:-}" ]] || die "unknown path $p (BENCH_PATHS)"
    extra=()
    [[ "${models_of[$p]}" != 0 ]] && extra=(--models "${models_of[$p]}")
    log "starting hoist gateway $p (--weight $BENCH_WEIGHT ${extra[*]})"
    setsid "$gateway_bin" --listen 127.0.0.1:0 --name bench --stable "$stable_addr" \
        --candidate "$candidate_addr" --weight "$BENCH_WEIGHT" "${extra[@]}" \
        > "$work/$p.out" 2> "$work/$p.log" &
    pid_of[$p]=$!; started+=("$!")
    url[$p]="$(wait_listening "${pid_of[$p]}" "$p")"
    if [[ "${models_of[$p]}" == 0 ]]; then
        check "${url[$p]}/invocations" || die "$p gave a wrong answer"
    else
        last=$(( ${models_of[$p]} - 1 ))
        check "${url[$p]}/models/m0/invocations" || die "$p: model m0 gave a wrong answer"
        check "${url[$p]}/models/m$last/invocations" || die "$p: model m$last gave a wrong answer"
    fi
done

# wrk_run PATH CONNECTIONS SECONDS: prints wrk's WRK_RESULT line
# (one wrk script for all three: every request built once, picked per request)
wrk_run() {
    local p="$1" conc="$2" secs="$3"
    WRK_BODY_FILE="$work/invocations-1.json" WRK_LABEL="$p" WRK_MODELS="${models_of[$p]}" \
        wrk -t2 -c"$conc" -d"${secs}s" --timeout 10s -s "$repo/bench/models.lua" "${url[$p]}"
}

for p in $BENCH_PATHS; do
    log "$p: warming up ${BENCH_WARMUP_SECONDS}s"
    wrk_run "$p" 16 "$BENCH_WARMUP_SECONDS" > /dev/null
done

# ---------------------------------------------------------------- runs
results="$work/results.tsv"
: > "$results"
field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$2"; }
read -ra paths <<<"$BENCH_PATHS"
for round in $(seq "$BENCH_ROUNDS"); do
    # Each round starts with the next path, so no path always runs first or last.
    order=()
    for i in "${!paths[@]}"; do order+=("${paths[$(( (i + round - 1) % ${#paths[@]} ))]}"); done
    for conc in $BENCH_CONCURRENCY; do
        for p in "${order[@]}"; do
            s0="$(served "${url[stable]}" stable "$p")"; c0="$(served "${url[candidate]}" candidate "$p")"
            cpu0="$(tree_cpu "${pid_of[$p]}")"
            out="$(wrk_run "$p" "$conc" "$BENCH_SECONDS")" || die "wrk failed against $p"
            cpu1="$(tree_cpu "${pid_of[$p]}")"
            s1="$(served "${url[stable]}" stable "$p")"; c1="$(served "${url[candidate]}" candidate "$p")"
            line="$(grep '^WRK_RESULT ' <<<"$out")" || die "wrk printed no WRK_RESULT line: $out"
            errors=$(( $(field non2xx "$line") + $(field socket_errors "$line") ))
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$p" "$conc" \
                "$(field rps "$line")" "$(field p50_ms "$line")" "$(field p99_ms "$line")" \
                "$errors" "$((s1 - s0))" "$((c1 - c0))" "$(field requests "$line")" \
                "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.3f", b - a}')" >> "$results"
            log "round $round $p c=$conc: $(field rps "$line") req/s, p50 $(field p50_ms "$line") ms, p99 $(field p99_ms "$line") ms, errors $errors, stable/candidate $((s1 - s0))/$((c1 - c0))"
        done
    done
done

# Every model of the big router took traffic, each counted apart.
spread=""
if [[ -n "${url[fifty]:-}" ]]; then
    spread="$(curl -sf "${url[fifty]}/metrics" | python3 -c '
import re, sys
per = {}
for line in sys.stdin:
    m = re.match(r"hoist_gateway_requests_total\{.*model=\"([^\"]+)\".*\} (\d+)", line)
    if m:
        per[m.group(1)] = per.get(m.group(1), 0) + int(m.group(2))
busy = [n for n in per.values() if n > 0]
print(f"{len(busy)} of {len(per)} models took traffic; fewest {min(busy) if busy else 0}, most {max(busy) if busy else 0} requests")
')"
    log "fifty: $spread"
fi

# ---------------------------------------------------------------- report
mkdir -p bench/results
report="bench/results/router-$(date -u +%Y-%m-%d)-${BENCH_BACKEND}${BENCH_TAG:+-$BENCH_TAG}.txt"
python3 - "$results" "$report" "$spread" <<EOF
import sys, os, statistics
results, report, spread = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
cols = ("round", "path", "conc", "rps", "p50", "p99", "errors", "stable", "candidate", "requests", "cpu")
rows = [dict(zip(cols, r)) for r in rows]
for r in rows:
    for k in ("rps", "p50", "p99", "cpu"):
        r[k] = float(r[k])
    for k in ("round", "conc", "errors", "stable", "candidate", "requests"):
        r[k] = int(r[k])
out = []
out.append("Router benchmark, $(date -u +%Y-%m-%dT%H:%MZ)")
out.append("")
out.append(f"127.0.0.1, {os.cpu_count()} cores (shared by wrk, the gateway and both backends); "
           "wrk -t2, ${BENCH_SECONDS} s per run after a ${BENCH_WARMUP_SECONDS} s warm-up per path; "
           "one row of breast_cancer_lr; ${BENCH_ROUNDS} round(s) of the paths (${BENCH_PATHS}), "
           "each round starting with the next path.")
out.append("Backends (${BENCH_BACKEND}): " + ("two hoist-server release builds" if "${BENCH_BACKEND}" == "hoist-server" else "two server blocks of one nginx worker answering a fixed prediction") + ", split ${BENCH_WEIGHT}% to the candidate. "
           "single: crates/gateway/examples/gateway.rs (one Gateway, POST /invocations); "
           "one: the same with --models 1 (a Router, POST /models/m0/invocations); "
           "fifty: --models ${BENCH_MODELS} (POST /models/m{i}/invocations, i taking turns on each connection).")
out.append("gateway CPU = CPU time of the gateway process per 1000 requests.")
out.append("")
out.append("Every run:")
out.append("")
out.append(f"{'round':>5} {'path':<7} {'conc':>4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'candidate %':>11} {'gateway CPU ms/1k':>17}")
for r in rows:
    total = r["stable"] + r["candidate"]
    share = 100.0 * r["candidate"] / total if total else 0.0
    r["cpu_per_k"] = 1e6 * r["cpu"] / r["requests"] if r["requests"] else 0.0
    out.append(f"{r['round']:>5} {r['path']:<7} {r['conc']:>4} {r['rps']:>9.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
               f"{r['errors']:>6} {share:>11.1f} {r['cpu_per_k']:>17.1f}")
out.append("")
out.append("Median over rounds:")
out.append("")
out.append(f"{'path':<7} {'conc':>4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'gateway CPU ms/1k':>17}")
med = {}
for conc in sorted({r["conc"] for r in rows}):
    for path in "${BENCH_PATHS}".split():
        rs = [r for r in rows if r["path"] == path and r["conc"] == conc]
        if not rs:
            continue
        m = {k: statistics.median([r[k] for r in rs]) for k in ("rps", "p50", "p99", "cpu_per_k")}
        m["errors"] = sum(r["errors"] for r in rs)
        med[(path, conc)] = m
        out.append(f"{path:<7} {conc:>4} {m['rps']:>9.0f} {m['p50']:>7.2f} {m['p99']:>7.2f} {m['errors']:>6} {m['cpu_per_k']:>17.1f}")
    one, fifty, single = med.get(("one", conc)), med.get(("fifty", conc)), med.get(("single", conc))
    out.append("")
    if one and fifty:
        ratio = fifty["rps"] / one["rps"]
        out.append(f"c={conc}: fifty/one throughput {ratio:.3f} "
                   f"({'met' if ratio >= 0.97 else 'NOT met'}: target >= 0.97); "
                   f"gateway CPU per request fifty/one {fifty['cpu_per_k'] / one['cpu_per_k']:.3f}")
    if one and single:
        out.append(f"c={conc}: one/single throughput {one['rps'] / single['rps']:.3f} (the Router against a bare Gateway)")
if spread:
    out.append("")
    out.append(f"fifty's /metrics after the runs: {spread}")
text = "\n".join(out) + "\n"
open(report, "w").write(text)
print(text)
print(f"(written to {report})")
EOF
