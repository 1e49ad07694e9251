#!/usr/bin/env bash
# The daemon API under Schemathesis: a real `hoist up` (embedded registry, a model
# live in one environment), then Schemathesis generates requests from
# GET /api/v1/openapi.json twice:
#   1. without the token: every POST must get 401 (tests/api/hooks.py), nothing may
#      answer 5xx, and the journal and what serves must be the same afterwards;
#   2. with the token: no 5xx, status codes, content types and bodies as documented,
#      and an operation that needs the token refuses a request without it.
# Usage: tests/api/run.sh [HOIST_BIN]   (default: $CARGO_TARGET_DIR/debug/hoist);
# hoist-server must sit next to it (or be named by HOIST_SERVER_BIN).
# Environment: SCHEMATHESIS_EXAMPLES (per operation, default 100), SCHEMATHESIS_SEED.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

version="4.32.5"
venv="$HOME/.hoist/venvs/schemathesis"
python="${PYTHON:-python3}"
examples="${SCHEMATHESIS_EXAMPLES:-100}"
seed="${SCHEMATHESIS_SEED:-20261203}"

bin="${1:-${CARGO_TARGET_DIR:-$repo/target}/debug/hoist}"
[[ "$bin" = /* ]] || bin="$repo/$bin"
if [[ ! -x "$bin" ]]; then
    echo "tests/api: no hoist binary at $bin (cargo build -p hoist-cli -p hoist-server)" >&2
    exit 1
fi

# The venv: cached under ~/.hoist, reinstalled only when the pin changes.
if [[ ! -x "$venv/bin/python" ]]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
stamp="$venv/.schemathesis-version"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$version" ]]; then
    echo "tests/api: installing schemathesis $version into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version" >&2
    echo "$version" >"$stamp"
fi
st="$venv/bin/schemathesis"

work="$(mktemp -d "${TMPDIR:-/tmp}/hoist-api-XXXXXX")"
home="$work/home"
mkdir -p "$home"
daemon_pid=""
cleanup() {
    if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    if [[ "${KEEP:-}" != 1 ]]; then rm -rf "$work"; else echo "tests/api: kept $work" >&2; fi
}
trap cleanup EXIT

token="$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"
cat >"$work/hoist.toml" <<'EOF'
[api]
listen = "127.0.0.1:0"

[registry]
url = "embedded"
poll_interval = "200ms"

[model]
name = "m"
trigger = { alias = "champion" }

[server]
runtime = "tract"
stop_grace = "2s"
args = ["--workers", "1"]

[analysis]
interval = "200ms"
max_p99_ms = 1000
min_requests = 10
max_error_rate = 0.02
max_inconclusive = "5s"

[[environments]]
name = "production"
listen = "127.0.0.1:0"
EOF

hoist() {
    env -u HOIST_API -u MLFLOW_TRACKING_URI HOIST_ADMIN_TOKEN="$token" "$bin" --home "$home" "$@"
}

echo "== tests/api: hoist up ($bin)"
env -u HOIST_API -u MLFLOW_TRACKING_URI -u HOIST_ADMIN_TOKEN_FILE HOIST_ADMIN_TOKEN="$token" \
    RUST_LOG=warn "$bin" --home "$home" --json up --config "$work/hoist.toml" \
    >"$work/daemon.out" 2>"$work/daemon.err" &
daemon_pid=$!
api=""
for _ in $(seq 300); do
    if [[ -s "$work/daemon.out" ]]; then
        api="$(head -n 1 "$work/daemon.out" | jq -r .api)"
        break
    fi
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$api" || "$api" == null ]]; then
    echo "tests/api: hoist up did not start" >&2
    cat "$work/daemon.err" >&2
    exit 1
fi
echo "   api $api"

# A model live in production, so the operator calls have something to act on.
hoist model register examples/models/breast_cancer_gbt --name m --alias champion >/dev/null
for i in $(seq 600); do
    phase="$(curl -fsS "$api/api/v1/releases/1" 2>/dev/null | jq -r .phase.phase || true)"
    [[ "$phase" == done ]] && break
    if [[ "$i" == 600 ]]; then
        echo "tests/api: release 1 did not finish" >&2
        curl -sS "$api/api/v1/releases/1" >&2 || true
        exit 1
    fi
    sleep 0.1
done

# What the no-token run must leave as it was: every release and what serves.
state() {
    curl -fsS "$api/api/v1/releases?limit=1000" | jq -S '[.releases[] | {id, version, phase, outcome, updated_ms}]'
    curl -fsS "$api/api/v1/status" | jq -S '[.environments[] | {name, stable: .stable.version, candidate: .candidate.version}], .active'
}
state >"$work/before.json"

common=(--url "$api" --seed "$seed" --max-examples "$examples"
    --request-timeout 20 --workers 1 --no-color --suppress-health-check all
    --phases examples,coverage,fuzzing --continue-on-failure --generation-database none)

status=0
echo "== tests/api: schemathesis $version without the token (every POST must be 401)"
# Schemathesis keeps a cache in the working directory: run it in the scratch one.
cd "$work"
SCHEMATHESIS_HOOKS="$repo/tests/api/hooks.py" "$st" run "$api/api/v1/openapi.json" "${common[@]}" \
    --checks not_a_server_error,no_write_without_the_token,content_type_conformance \
    || status=1
state >"$work/after.json"
if ! diff -u "$work/before.json" "$work/after.json"; then
    echo "tests/api: the run without the token changed the daemon's state" >&2
    status=1
fi
# The direct probe the hooks cannot fake: a well-formed write without the token.
code="$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d '{"model":"m/1"}' "$api/api/v1/releases")"
if [[ "$code" != 401 ]]; then
    echo "tests/api: POST /api/v1/releases without the token answered $code, not 401" >&2
    status=1
fi

echo "== tests/api: schemathesis $version with the token"
"$st" run "$api/api/v1/openapi.json" "${common[@]}" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth,unsupported_method \
    || status=1

if ! kill -0 "$daemon_pid" 2>/dev/null; then
    echo "tests/api: the daemon died during the run" >&2
    cat "$work/daemon.err" >&2
    status=1
fi
if [[ "$status" != 0 ]]; then
    echo "tests/api: FAILED (daemon stderr below)" >&2
    tail -n 50 "$work/daemon.err" >&2 || true
    exit 1
fi
echo "tests/api: ok"
