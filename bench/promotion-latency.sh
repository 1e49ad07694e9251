#!/usr/bin/env bash
# Promotion latency: time from `MlflowClient.set_registered_model_alias` in a real
# MLflow 3.17 tracking server (started on 127.0.0.1) to hoist's verified event, by
# webhook and by polling (500 ms interval), over several alias moves. The measurement
# lives in crates/registry/tests/mlflow.rs (the same run asserts exactly one event per
# move after de-duplication); this script runs it and keeps the numbers.
#
#   bash bench/promotion-latency.sh     -> bench/results/promotion-latency-<date>.md
set -euo pipefail
cd "$(dirname "$0")/.."
HOIST_MLFLOW_PYTHON="${HOIST_MLFLOW_PYTHON:-$(bash tools/mlflow-venv.sh | tail -n 1)}"
export HOIST_MLFLOW_PYTHON
out="bench/results/promotion-latency-$(date -u +%Y-%m-%d).md"
mkdir -p bench/results
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test -p hoist-registry --test mlflow --locked -- --nocapture >"$log" 2>&1 || { cat "$log"; exit 1; }
{
  echo "# Promotion latency, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "MLflow 3.17.2 tracking server (SQLite backend) and hoist's receiver on 127.0.0.1; $(nproc) cores."
  echo "Command: \`bash bench/promotion-latency.sh\`"
  echo
  grep -E "first promotion|set_registered_model_alias →|transition_model_version_stage|mlflow server healthy" "$log" | sed 's/^/- /'
} | tee "$out"
echo "(written to $out)"
