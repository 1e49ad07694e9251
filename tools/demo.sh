#!/usr/bin/env bash
# The main job, until `hoist quickstart` exists: build hoist-server, serve the bundled
# breast-cancer model, send it one prediction over each protocol, and stop.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building hoist-server"
cargo build -p hoist-server --locked --quiet
bin=target/debug/hoist-server

# ONNX Runtime is optional: without it hoist-server serves with tract (pure Rust).
if lib=$(bash tools/fetch-onnxruntime.sh 2>/dev/null | tail -n 1) && [ -f "$lib" ]; then
  export ORT_DYLIB_PATH="$lib"
fi

log=$(mktemp)
"$bin" --model examples/models/breast_cancer_lr --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 1 200); do
  url=$(sed -n 's/^listening on //p' "$log")
  [ -n "$url" ] && curl -sf "$url/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.05
done
[ -n "${url:-}" ] || { cat "$log"; echo "hoist-server did not start" >&2; exit 1; }
echo "== hoist-server is serving on $url"
curl -s "$url/v2/models/breast_cancer_lr" | python3 -m json.tool --compact 2>/dev/null || curl -s "$url/v2/models/breast_cancer_lr"
echo
row=$(python3 -c 'import json;print(json.dumps(json.load(open("examples/models/breast_cancer_lr/input_example.json"))[0]))')
echo "== Open Inference Protocol v2: POST /v2/models/breast_cancer_lr/infer"
curl -s "$url/v2/models/breast_cancer_lr/infer" -H 'Content-Type: application/json' \
  -d "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,30],\"datatype\":\"FP32\",\"data\":$row}]}"
echo
echo "== MLflow scoring protocol: POST /invocations"
curl -s "$url/invocations" -H 'Content-Type: application/json' -d "{\"inputs\":[$row]}"
echo
