#!/usr/bin/env bash
# Gateway benchmark: hoist's gateway against nginx, both splitting traffic 90/10
# between two hoist-server backends, beside a direct run against one backend, in one
# run on 127.0.0.1. See bench/README.md and docs/benchmarks.md.
#
#   (a) direct  wrk -> hoist-server (stable)
#   (b) nginx   wrk -> nginx (worker_processes auto, upstream keepalive, weights 9:1) -> 2 hoist-servers
#   (c) hoist   wrk -> hoist gateway example (--weight 10)                            -> 2 hoist-servers
#   (d) inspect wrk -> hoist gateway example (--weight 10 --feedback --shadow 10)     -> 2 hoist-servers
#       (optional, BENCH_PATHS="direct hoist inspect"): what reading every answer costs
#       (feedback labels remember each answer's predictions; 10% of stable's requests
#       are mirrored to the candidate and compared)
#
# Every path gets the same body (MLflow scoring, one row, POST /invocations), the same
# wrk -t2 and the same connection count. "added p99" is the path's p99 minus the
# direct p99 of the same round. The split is checked from the backends' own request
# counters, so both proxies are seen to send ~10% to the candidate.
#
# Environment (all optional):
#   BENCH_SECONDS=10          wrk duration per run
#   BENCH_WARMUP_SECONDS=3    wrk warm-up per path before the first round
#   BENCH_CONCURRENCY="64"    wrk connections (space-separated list)
#   BENCH_ROUNDS=3            rounds of (direct, nginx, hoist); the report gives the median
#   BENCH_WEIGHT=10           candidate percent
#   BENCH_PATHS="direct nginx hoist"
#   BENCH_SKIP_BUILD=1        use the existing target/release binaries
#   BENCH_TAG=name            report to bench/results/gateway-DATE-name.txt
#   BENCH_READY_TIMEOUT=60    seconds a process may take to get ready
#   ORT_DYLIB_PATH            libonnxruntime.so for hoist-server (default: ~/.hoist/lib;
#                             without it hoist-server picks its runtime itself)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
BENCH_WARMUP_SECONDS="${BENCH_WARMUP_SECONDS:-3}"
BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-64}"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_WEIGHT="${BENCH_WEIGHT:-10}"
BENCH_PATHS="${BENCH_PATHS:-direct nginx hoist}"
BENCH_READY_TIMEOUT="${BENCH_READY_TIMEOUT:-60}"
model_dir="$repo/examples/models/breast_cancer_lr"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ -f "$model_dir/MLmodel" && -f "$model_dir/reference.json" ]] \
    || die "missing example model $model_dir (generate it with tools/make-models.sh)"

work="$(mktemp -d /tmp/hoist-gateway-bench.XXXXXX)"
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
need_pkg() {  # need_pkg COMMAND PACKAGE
    command -v "$1" >/dev/null || [[ -x "/usr/sbin/$1" ]] && return
    log "installing $2 (apt-get)"
    $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq "$2" >/dev/null \
        || die "could not install $2"
}
need_pkg wrk wrk
need_pkg nginx nginx
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
command -v curl >/dev/null || die "curl is needed"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
    log "cargo build --release -p hoist-server --bin hoist-server -p hoist-gateway --example gateway"
    cargo build --release -q -p hoist-server --bin hoist-server -p hoist-gateway --example gateway
fi
server_bin="$target_dir/release/hoist-server"
gateway_bin="$target_dir/release/examples/gateway"
[[ -x "$server_bin" ]] || die "no $server_bin"
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

# Requests a hoist-server answered on /invocations so far.
served() {
    # (hoist-server labels every series by model first: match route= anywhere)
    curl -sf "$1/metrics" | awk '/^hoist_requests_total\{/ && /route="\/invocations"/ {n += $NF} END {printf "%d", n}'
}

# ---------------------------------------------------------------- backends
declare -A url pid_of
for b in stable candidate; do
    log "starting hoist-server ($b)"
    setsid "$server_bin" --model "$model_dir" --host 127.0.0.1 --port 0 "${runtime_args[@]}" \
        > "$work/$b.out" 2> "$work/$b.log" &
    pid_of[$b]=$!; started+=("$!")
    url[$b]="$(wait_listening "${pid_of[$b]}" "$b")"
    wait_http "${url[$b]}/v2/health/ready" "${pid_of[$b]}" "$b"
done
stable_addr="${url[stable]#http://}"
candidate_addr="${url[candidate]#http://}"

# ---------------------------------------------------------------- nginx
if [[ " $BENCH_PATHS " == *" nginx "* ]]; then
    nginx_port="$(free_port)"
    mkdir -p "$work/nginx/tmp" "$work/nginx/logs"
    cat > "$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/tmp/body;
    proxy_temp_path $work/nginx/tmp/proxy;
    fastcgi_temp_path $work/nginx/tmp/fastcgi;
    uwsgi_temp_path $work/nginx/tmp/uwsgi;
    scgi_temp_path $work/nginx/tmp/scgi;
    keepalive_requests 1000000;
    # Smooth weighted round-robin: exactly $((100 - BENCH_WEIGHT)):$BENCH_WEIGHT, like hoist's counter split.
    upstream model {
        server $stable_addr weight=$((100 - BENCH_WEIGHT));
        server $candidate_addr weight=$BENCH_WEIGHT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$nginx_port;
        location / {
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    log "starting nginx ($("$nginx_bin" -v 2>&1 | sed 's/.*version: //'), worker_processes auto)"
    setsid "$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/logs/error.log" \
        > "$work/nginx.out" 2> "$work/nginx.log" &
    pid_of[nginx]=$!; started+=("$!")
    url[nginx]="http://127.0.0.1:$nginx_port"
    wait_http "${url[nginx]}/v2/health/ready" "${pid_of[nginx]}" nginx
fi

# ---------------------------------------------------------------- hoist gateway, inspecting
if [[ " $BENCH_PATHS " == *" inspect "* ]]; then
    log "starting hoist gateway (--weight $BENCH_WEIGHT --feedback --shadow 10)"
    setsid "$gateway_bin" --listen 127.0.0.1:0 --name bench --stable "$stable_addr" \
        --candidate "$candidate_addr" --weight "$BENCH_WEIGHT" --feedback --shadow 10 \
        > "$work/inspect.out" 2> "$work/inspect.log" &
    pid_of[inspect]=$!; started+=("$!")
    url[inspect]="$(wait_listening "${pid_of[inspect]}" inspect)"
    wait_http "${url[inspect]}/v2/health/ready" "${pid_of[inspect]}" inspect
fi

# ---------------------------------------------------------------- hoist gateway
if [[ " $BENCH_PATHS " == *" hoist "* ]]; then
    log "starting hoist gateway (--weight $BENCH_WEIGHT)"
    setsid "$gateway_bin" --listen 127.0.0.1:0 --name bench --stable "$stable_addr" \
        --candidate "$candidate_addr" --weight "$BENCH_WEIGHT" \
        > "$work/hoist.out" 2> "$work/hoist.log" &
    pid_of[hoist]=$!; started+=("$!")
    url[hoist]="$(wait_listening "${pid_of[hoist]}" hoist)"
    wait_http "${url[hoist]}/v2/health/ready" "${pid_of[hoist]}" hoist
fi
url[direct]="${url[stable]}"
pid_of[direct]=""

for p in $BENCH_PATHS; do
    [[ -n "${url[$p]:-}" ]] || die "unknown path $p (BENCH_PATHS)"
    check "${url[$p]}/invocations" || die "$p gave a wrong answer"
    log "$p: answer matches reference.json; warming up ${BENCH_WARMUP_SECONDS}s"
    WRK_BODY_FILE="$work/invocations-1.json" wrk -t2 -c16 -d"${BENCH_WARMUP_SECONDS}s" \
        -s "$repo/bench/post.lua" "${url[$p]}/invocations" > /dev/null
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
            s0="$(served "${url[stable]}")"; c0="$(served "${url[candidate]}")"
            cpu0=0; [[ -n "${pid_of[$p]}" ]] && cpu0="$(tree_cpu "${pid_of[$p]}")"
            out="$(WRK_BODY_FILE="$work/invocations-1.json" WRK_LABEL="$p" \
                wrk -t2 -c"$conc" -d"${BENCH_SECONDS}s" --timeout 10s -s "$repo/bench/post.lua" \
                "${url[$p]}/invocations")" || die "wrk failed against $p"
            cpu1=0; [[ -n "${pid_of[$p]}" ]] && cpu1="$(tree_cpu "${pid_of[$p]}")"
            s1="$(served "${url[stable]}")"; c1="$(served "${url[candidate]}")"
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

# ---------------------------------------------------------------- report
mkdir -p bench/results
report="bench/results/gateway-$(date -u +%Y-%m-%d)${BENCH_TAG:+-$BENCH_TAG}.txt"
python3 - "$results" "$report" <<EOF
import sys, os, statistics
results, report = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
cols = ("round", "path", "conc", "rps", "p50", "p99", "errors", "stable", "candidate", "requests", "cpu")
rows = [dict(zip(cols, r)) for r in rows]
for r in rows:
    for k in ("rps", "p50", "p99", "cpu"):
        r[k] = float(r[k])
    for k in ("round", "conc", "errors", "stable", "candidate", "requests"):
        r[k] = int(r[k])
direct = {(r["round"], r["conc"]): r["p99"] for r in rows if r["path"] == "direct"}
out = []
out.append("Gateway benchmark, $(date -u +%Y-%m-%dT%H:%MZ)")
out.append("")
out.append(f"127.0.0.1, {os.cpu_count()} cores (shared by wrk, the proxy and both backends); "
           "wrk -t2, ${BENCH_SECONDS} s per run after a ${BENCH_WARMUP_SECONDS} s warm-up per path; "
           "POST /invocations, one row of breast_cancer_lr; ${BENCH_ROUNDS} round(s) of the paths (${BENCH_PATHS}), "
           "each round starting with the next path.")
out.append("Backends: two hoist-server release builds. nginx $("$nginx_bin" -v 2>&1 | sed 's/.*version: //'): "
           "worker_processes auto, upstream keepalive 256, weights $((100 - BENCH_WEIGHT)):${BENCH_WEIGHT}. "
           "hoist: crates/gateway/examples/gateway.rs --weight ${BENCH_WEIGHT} (one single-threaded tokio runtime per core).")
out.append("added p99 = path p99 - direct p99 of the same round. proxy CPU = CPU time of the proxy's "
           "processes per 1000 requests. split = requests each backend counted itself.")
out.append("")
out.append("Every run:")
out.append("")
hdr = f"{'round':>5} {'path':<7} {'conc':>4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'added p99':>9} {'errors':>6} {'candidate %':>11} {'proxy CPU ms/1k':>15}"
out.append(hdr)
for r in rows:
    added = r["p99"] - direct[(r["round"], r["conc"])] if (r["round"], r["conc"]) in direct else float("nan")
    r["added"] = added
    total = r["stable"] + r["candidate"]
    share = 100.0 * r["candidate"] / total if total else 0.0
    r["share"] = share
    cpu = f"{1e6 * r['cpu'] / r['requests']:.1f}" if r["path"] != "direct" and r["requests"] else "-"
    r["cpu_per_k"] = 1e6 * r["cpu"] / r["requests"] if r["path"] != "direct" and r["requests"] else None
    out.append(f"{r['round']:>5} {r['path']:<7} {r['conc']:>4} {r['rps']:>9.0f} {r['p50']:>7.2f} {r['p99']:>7.2f} "
               f"{added:>9.2f} {r['errors']:>6} {share:>11.1f} {cpu:>15}")
out.append("")
out.append("Median over rounds:")
out.append("")
out.append(f"{'path':<7} {'conc':>4} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'added p99':>9} {'errors':>6} {'proxy CPU ms/1k':>15}")
med = {}
for conc in sorted({r["conc"] for r in rows}):
    for path in [p for p in "${BENCH_PATHS}".split()]:
        rs = [r for r in rows if r["path"] == path and r["conc"] == conc]
        if not rs:
            continue
        m = {k: statistics.median([r[k] for r in rs]) for k in ("rps", "p50", "p99", "added")}
        m["errors"] = sum(r["errors"] for r in rs)
        cpus = [r["cpu_per_k"] for r in rs if r["cpu_per_k"] is not None]
        m["cpu"] = statistics.median(cpus) if cpus else None
        med[(path, conc)] = m
        cpu = f"{m['cpu']:.1f}" if m["cpu"] is not None else "-"
        out.append(f"{path:<7} {conc:>4} {m['rps']:>9.0f} {m['p50']:>7.2f} {m['p99']:>7.2f} {m['added']:>9.2f} {m['errors']:>6} {cpu:>15}")
    h, n = med.get(("hoist", conc)), med.get(("nginx", conc))
    if h and n:
        out.append("")
        out.append(f"c={conc}: hoist/nginx throughput {h['rps'] / n['rps']:.3f} "
                   f"({'met' if h['rps'] >= n['rps'] else 'NOT met'}: target >= 1); "
                   f"added p99 hoist {h['added']:.2f} ms vs nginx {n['added']:.2f} ms "
                   f"({'met' if h['added'] <= n['added'] else 'NOT met'}: target hoist <= nginx)")
text = "\n".join(out) + "\n"
open(report, "w").write(text)
print(text)
print(f"(written to {report})")
EOF
