#!/usr/bin/env bash
# Memory of many models delivered by the daemon: N small tabular models released by a
# real `hoist up` (embedded registry, one environment `production` on 127.0.0.1),
# first with `[server] pack = true` (the environment's models share hoist-server
# processes: every stable version in one), then without (one hoist-server per model),
# in one run. The N models m00, m01, ... are one example package
# (examples/models/breast_cancer_lr) registered under N names, straight from
# examples/ (nothing copied by this script); each is loaded on its own by the server
# that serves it (its own runtime session, workers and metrics), as N different
# models of that size would be.
#
#   bash bench/daemon-pack.sh
#   BENCH_SKIP_BUILD=1 HOIST_BIN=target/debug/hoist HOIST_SERVER_BIN=target/debug/hoist-server \
#       bash bench/daemon-pack.sh
#
# Environment (all optional):
#   BENCH_MODELS=50               how many models
#   BENCH_MODEL=breast_cancer_lr  the example package registered N times
#   BENCH_SETUPS="pack single"    which setups to run, in this order
#   BENCH_RUNTIME=tract           [server] runtime (tract needs no download; with
#                                 onnxruntime, ORT_DYLIB_PATH or ~/.hoist/lib is used)
#   BENCH_SERVER_ARGS=""          [server] args: more hoist-server flags, space separated
#   BENCH_LIVE_TIMEOUT=900        seconds all N models may take to go live
#   BENCH_SKIP_BUILD=1            no build: use the existing binaries
#   HOIST_BIN=PATH                the hoist binary (default target/release/hoist)
#   HOIST_SERVER_BIN=PATH         the hoist-server the daemon starts (default
#                                 target/release/hoist-server); given to the daemon
#
# For each setup: registers the N models (alias champion) in a fresh HOIST_HOME, starts
# `hoist up`, waits until GET /api/v1/models shows version 1 live for every model
# ("time to all live" counts from the daemon's start), sends one prediction per model
# through the gateway (POST /models/mNN/invocations, each must answer 200), then
# measures the daemon and every process under it (its hoist-servers): RSS is VmRSS
# from /proc/PID/status summed over them, PSS from /proc/PID/smaps_rollup (shared pages
# split among the processes mapping them). Idle memory, not under load. Writes
# bench/results/daemon-pack-<date>[-<runtime>][-debug].txt (-<runtime> unless tract,
# -debug for a hoist binary under a debug/ directory). Everything it started is
# stopped on exit.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

BENCH_MODELS="${BENCH_MODELS:-50}"
BENCH_MODEL="${BENCH_MODEL:-breast_cancer_lr}"
BENCH_SETUPS="${BENCH_SETUPS:-pack single}"
BENCH_RUNTIME="${BENCH_RUNTIME:-tract}"
BENCH_SERVER_ARGS="${BENCH_SERVER_ARGS:-}"
BENCH_LIVE_TIMEOUT="${BENCH_LIVE_TIMEOUT:-900}"
src="$repo/examples/models/$BENCH_MODEL"
hoist="${HOIST_BIN:-$repo/target/release/hoist}"
server="${HOIST_SERVER_BIN:-$repo/target/release/hoist-server}"

log() { printf '[daemon-pack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ "$BENCH_MODELS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_MODELS must be a positive integer, not '$BENCH_MODELS'"
(( BENCH_MODELS <= 100 )) || die "BENCH_MODELS=$BENCH_MODELS: at most 100 (names m00..m99)"
[[ "$BENCH_LIVE_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_LIVE_TIMEOUT must be a positive integer (seconds)"
[[ -f "$src/MLmodel" && -f "$src/input_example.json" ]] || die "missing example model $src"
for s in $BENCH_SETUPS; do
    [[ "$s" == pack || "$s" == single ]] || die "BENCH_SETUPS: unknown setup '$s' (pack, single)"
done
for c in curl jq bc; do command -v "$c" >/dev/null || die "needs $c"; done
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${HOIST_BIN:-}" && -z "${HOIST_SERVER_BIN:-}" ]]; then
    log "building hoist and hoist-server (release)"
    cargo build --release -q -p hoist-cli -p hoist-server
fi
[[ -x "$hoist" ]] || die "no $hoist (build it, or set HOIST_BIN)"
[[ -x "$server" ]] || die "no $server (build it, or set HOIST_SERVER_BIN)"
hoist="$(cd "$(dirname "$hoist")" && pwd)/$(basename "$hoist")"
server="$(cd "$(dirname "$server")" && pwd)/$(basename "$server")"

ort=""
if [[ "$BENCH_RUNTIME" != tract ]]; then
    ort="${ORT_DYLIB_PATH:-}"
    if [[ -z "$ort" ]]; then
        for ort in "$HOME"/.hoist/lib/libonnxruntime.so*; do break; done
    fi
    [[ -n "$ort" && -f "$ort" ]] \
        || die "BENCH_RUNTIME=$BENCH_RUNTIME needs ONNX Runtime: run tools/fetch-onnxruntime.sh or set ORT_DYLIB_PATH"
fi

work="$(mktemp -d /tmp/hoist-daemon-pack.XXXXXX)"
daemon_pid=""
tracked=()
# Every process under PID (children, their children, ...), one per line.
descendants() {
    local c
    for c in $(pgrep -P "$1" || true); do
        echo "$c"
        descendants "$c"
    done
}
# Stops the daemon (it stops its servers) and kills whatever is left under it.
stop_daemon() {
    [[ -n "$daemon_pid" ]] || return 0
    local p t=0
    for p in $(descendants "$daemon_pid"); do tracked+=("$p"); done
    kill -TERM "$daemon_pid" 2>/dev/null || true
    while kill -0 "$daemon_pid" 2>/dev/null && (( t < 300 )); do sleep 0.1; t=$((t + 1)); done
    kill -KILL "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
    # Only a hoist-server still there (a pid the daemon's servers had may be reused).
    for p in "${tracked[@]}"; do
        if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == hoist-server* ]]; then
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    daemon_pid=""
    tracked=()
}
cleanup() {
    stop_daemon
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

names=()
for ((i = 0; i < BENCH_MODELS; i++)); do names+=("$(printf 'm%02d' "$i")"); done
body="{\"inputs\": $(cat "$src/input_example.json")}"

# The daemon's log, its last lines, for an error.
fail() { # SETUP MESSAGE
    local h="$work/$1"
    log "ERROR: $1: $2"
    log "last lines of the daemon's log ($h/daemon.err):"
    tail -n 40 "$h/daemon.err" >&2 2>/dev/null || true
    local f
    for f in "$h"/daemon/logs/*.log; do
        [[ -f "$f" ]] || continue
        log "last lines of $f:"
        tail -n 10 "$f" >&2
    done 2>/dev/null
    exit 1
}

config() { # PACK(true|false)
    local args="" a
    for a in $BENCH_SERVER_ARGS; do args+="${args:+, }\"$a\""; done
    cat <<EOF
[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "200ms"

[server]
runtime = "$BENCH_RUNTIME"
pack = $1
args = [$args]
ready_timeout = "120s"
stop_grace = "2s"
EOF
    for n in "${names[@]}"; do printf '\n[[models]]\nname = "%s"\n' "$n"; done
    # The first release of an environment goes straight to 100% after its smoke test.
    printf '\n[[environments]]\nname = "production"\nlisten = "127.0.0.1:0"\n'
    printf 'strategy = "blue-green"\n'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
mb() { echo $((($1 + 512) / 1024)); }

declare -A res_rss res_pss res_procs res_servers res_live res_daemon
run_setup() { # SETUP
    local setup=$1 pack=false
    [[ "$setup" == pack ]] && pack=true
    local h="$work/$setup"
    mkdir -p "$h"
    config "$pack" >"$h/hoist.toml"
    log "$setup: registering $BENCH_MODELS models from examples/models/$BENCH_MODEL"
    local n
    for n in "${names[@]}"; do
        "$hoist" --home "$h" model register "$src" --name "$n" --alias champion \
            >"$h/register.out" 2>&1 || { cat "$h/register.out" >&2; die "$setup: registering $n failed"; }
    done

    log "$setup: hoist up ([server] pack = $pack, runtime $BENCH_RUNTIME)"
    local t0 t1
    t0=$(date +%s.%N)
    env -u MLFLOW_TRACKING_URI -u HOIST_API -u HOIST_ADMIN_TOKEN -u HOIST_ADMIN_TOKEN_FILE \
        HOIST_SERVER_BIN="$server" ${ort:+ORT_DYLIB_PATH="$ort"} RUST_LOG="${RUST_LOG:-warn}" \
        "$hoist" --home "$h" --json up --config "$h/hoist.toml" >"$h/daemon.out" 2>"$h/daemon.err" &
    daemon_pid=$!
    # Its first line (--json) names the API and the environments' gateways.
    local first="" t=0
    until [[ "$(wc -l 2>/dev/null <"$h/daemon.out" || echo 0)" -ge 1 ]]; do
        kill -0 "$daemon_pid" 2>/dev/null || fail "$setup" "hoist up exited"
        (( t < 600 )) || fail "$setup" "hoist up printed nothing in 60 s"
        sleep 0.1
        t=$((t + 1))
    done
    first="$(head -n 1 "$h/daemon.out")"
    local api gw token
    api="$(jq -r .api <<<"$first")"
    gw="$(jq -r '.environments[] | select(.name == "production") | .url' <<<"$first")"
    [[ -n "$api" && "$api" != null && -n "$gw" ]] || fail "$setup" "unexpected first line: $first"
    token="$(cat "$h/daemon/token" 2>/dev/null || true)"

    # Until every model has version 1 live in production.
    local live=0 deadline models
    deadline=$(( $(date +%s) + BENCH_LIVE_TIMEOUT ))
    while :; do
        kill -0 "$daemon_pid" 2>/dev/null || fail "$setup" "hoist up exited"
        models="$(curl -s -m 10 -H "authorization: Bearer $token" "$api/api/v1/models" || true)"
        live="$(jq '[.models[]? | select(any(.environments[]?; .name == "production" and .live == "1"))] | length' \
            <<<"$models" 2>/dev/null || echo 0)"
        (( live == BENCH_MODELS )) && break
        if (( $(date +%s) >= deadline )); then
            local running last
            running="$(jq -c '[.models[]? | select(.active | length > 0) | .name]' <<<"$models" 2>/dev/null || true)"
            last="$(curl -s -m 10 -H "authorization: Bearer $token" "$api/api/v1/releases?limit=3" \
                | jq -c '[.releases[]? | {model, version, phase: .phase.phase, outcome}]' 2>/dev/null || true)"
            fail "$setup" "$live of $BENCH_MODELS models live after ${BENCH_LIVE_TIMEOUT}s (releases in progress: ${running:-?}; newest: ${last:-?})"
        fi
        sleep 0.2
    done
    t1=$(date +%s.%N)
    log "$setup: all $BENCH_MODELS live after $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s"

    local code
    for n in "${names[@]}"; do
        code="$(curl -s -m 30 -o "$h/answer" -w '%{http_code}' -H 'content-type: application/json' \
            -d "$body" "$gw/models/$n/invocations" || true)"
        [[ "$code" == 200 ]] || fail "$setup" "POST $gw/models/$n/invocations: $code $(head -c 300 "$h/answer" 2>/dev/null)"
    done
    log "$setup: $BENCH_MODELS predictions through the gateway answered 200"

    local rss pss procs=1 servers=0 p comm
    rss=$(rss_kb "$daemon_pid")
    pss=$(pss_kb "$daemon_pid")
    res_daemon[$setup]=$rss
    for p in $(descendants "$daemon_pid"); do
        tracked+=("$p")
        comm="$(cat "/proc/$p/comm" 2>/dev/null || true)"
        [[ "$comm" == hoist-server* ]] && servers=$((servers + 1))
        procs=$((procs + 1))
        rss=$((rss + $(rss_kb "$p")))
        pss=$((pss + $(pss_kb "$p")))
    done
    res_rss[$setup]=$rss
    res_pss[$setup]=$pss
    res_procs[$setup]=$procs
    res_servers[$setup]=$servers
    res_live[$setup]="$(echo "$t1 - $t0" | bc)"
    log "$setup: $procs processes ($servers hoist-server), RSS $(mb "$rss") MB, PSS $(mb "$pss") MB"
    stop_daemon
}

for s in $BENCH_SETUPS; do run_setup "$s"; done

mkdir -p bench/results
suffix=""
[[ "$BENCH_RUNTIME" != tract ]] && suffix="-$BENCH_RUNTIME"
[[ "$hoist" == */debug/* ]] && suffix+="-debug"
result="bench/results/daemon-pack-$(date -u +%Y-%m-%d)$suffix.txt"
{
    echo "# bench/daemon-pack.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): $BENCH_MODELS models (examples/models/$BENCH_MODEL registered as m00..) released by hoist up"
    echo "# ${hoist#"$repo"/} ($("$hoist" --version | awk '{print $2}')), ${server#"$repo"/}, runtime $BENCH_RUNTIME${ort:+ ($(basename "$ort"))}, server args: ${BENCH_SERVER_ARGS:-(defaults)}"
    echo "# $(nproc) CPUs, $(uname -sr); the daemon (API + gateway) and every process under it, idle after one prediction per model;"
    echo "# RSS = VmRSS summed, PSS from smaps_rollup; live_s = from starting hoist up to version 1 live for every model"
    printf '%-28s %8s %8s %10s %6s %8s %8s\n' setup rss_mb pss_mb daemon_rss procs servers live_s
    for s in $BENCH_SETUPS; do
        label="pack = true"
        [[ "$s" == single ]] && label="one process per model"
        printf '%-28s %8s %8s %10s %6s %8s %8.1f\n' "$label" "$(mb "${res_rss[$s]}")" \
            "$(mb "${res_pss[$s]}")" "$(mb "${res_daemon[$s]}")" "${res_procs[$s]}" \
            "${res_servers[$s]}" "${res_live[$s]}"
    done
} | tee "$result"
log "wrote $result"
