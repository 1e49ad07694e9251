#!/usr/bin/env bash
# Release latencies of a real `hoist up` daemon with real hoist-servers on 127.0.0.1:
# promotion event → 100% with zero pauses, operator rollback, and automatic rollback
# after a failed analysis (see bench/release_latency.py for what each number is).
# Argo Rollouts, Flagger and SageMaker need a cluster or a cloud account, so they
# cannot run beside it here; docs/benchmarks.md quotes their documented intervals.
#
#   bash bench/release-latency.sh   -> bench/results/release-latency-<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p hoist-cli -p hoist-server
out="bench/results/release-latency-$(date -u +%Y-%m-%d).md"
mkdir -p bench/results
{
  echo "# Release latency, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "hoist up (release build) with the embedded registry, hoist-server processes and gateways on 127.0.0.1; $(nproc) cores."
  echo "Command: \`bash bench/release-latency.sh\`"
  echo
  HOIST_SERVER_BIN="$PWD/target/release/hoist-server" python3 bench/release_latency.py target/release/hoist
} | tee "$out"
echo "(written to $out)"
