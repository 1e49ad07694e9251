#!/usr/bin/env bash
# Soak run: one real `hoist up` daemon (release build, embedded registry, a canary
# environment 20% -> 50% -> 100% with analysis) and hoist-servers on 127.0.0.1, under
# constant one-row traffic, makes 20 consecutive releases alternating a good candidate
# and a bad one (errors, latency, drift in turn). Reports the client's requests per
# variant (the gateway's x-hoist-variant header) and each outcome; exits nonzero if a
# request on stable failed, a bad candidate went live or a good one did not.
# See bench/soak.py.
#
#   bash bench/soak.sh   -> bench/results/soak-<date>.txt
#
# Environment (all optional): SOAK_RELEASES=20, SOAK_CLIENTS=3 (client threads),
# SOAK_PACE_MS=10 (pause between one thread's requests), SOAK_RELEASE_TIMEOUT=180,
# BENCH_SKIP_BUILD=1 (use the existing target/release binaries), ORT_DYLIB_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
  cargo build --release --locked -p hoist-cli -p hoist-server
fi
out="bench/results/soak-$(date -u +%Y-%m-%d).txt"
mkdir -p bench/results
set +e
{
  echo "# Soak, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "hoist up (release build) with the embedded registry, hoist-server processes and a gateway on 127.0.0.1; $(nproc) cores."
  echo "Command: bash bench/soak.sh"
  echo
  HOIST_SERVER_BIN="$target_dir/release/hoist-server" python3 bench/soak.py "$target_dir/release/hoist"
} | tee "$out"
code=${PIPESTATUS[0]}
echo "(written to $out)"
exit "$code"
