#!/usr/bin/env bash
# The test command: everything a fresh machine needs, then every test.
#   - fetches the pinned ONNX Runtime library (tools/fetch-onnxruntime.sh)
#   - creates a venv with a pinned MLflow (tools/mlflow-venv.sh) for the registry tests,
#     which run a real MLflow tracking server on loopback
#   - installs kubectl and Prometheus from Debian packages if missing (tools/debian-tools.sh)
#   - installs an OCI registry, skopeo, htpasswd and openssl from Debian packages if
#     missing (tools/oci-tools.sh), and builds the pinned cosign once (tools/cosign.sh,
#     cached under ~/.hoist/cosign) for the image and signature tests
#   - runs the Rust tests (unit + integration: the real hoist-server binary on loopback,
#     every example model on both runtimes; the embedded registry and the hoist CLI)
#   - runs the external-client tests (tritonclient, MLflow scoring bodies) in a venv
#   - runs Schemathesis against the daemon API of a real `hoist up` (tests/api/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export ORT_DYLIB_PATH
echo "== ONNX Runtime: $ORT_DYLIB_PATH"

echo "== MLflow venv (a real MLflow server for crates/registry/tests/mlflow.rs)"
HOIST_MLFLOW_PYTHON="${HOIST_MLFLOW_PYTHON:-$(bash tools/mlflow-venv.sh | tail -n 1)}"
export HOIST_MLFLOW_PYTHON

echo "== kubectl and Prometheus (Debian packages; the Kubernetes tests parse manifests offline and query a real Prometheus)"
bash tools/debian-tools.sh

echo "== OCI registry, skopeo and cosign (the image and signature tests: crates/oci/tests, crates/cli/tests/{image,cosign}.rs)"
bash tools/oci-tools.sh
HOIST_COSIGN="${HOIST_COSIGN:-$(bash tools/cosign.sh | tail -n 1)}"
export HOIST_COSIGN

echo "== cargo build"
cargo build --workspace --all-targets --locked

echo "== cargo test"
if command -v cargo-nextest >/dev/null 2>&1; then
  # The MLflow tests share one MLflow server per test binary; nextest runs each test
  # in its own process (one server each), so those two binaries run under cargo test.
  cargo nextest run --workspace --locked --no-fail-fast -E 'not binary(mlflow)'
  cargo test --locked --no-fail-fast -p hoist-registry -p hoist-cli --test mlflow
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== external clients (tritonclient, MLflow scoring bodies)"
HOIST_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist-server" bash tests/clients/run.sh

echo "== daemon API under Schemathesis (a real hoist up, with and without the token)"
bash tests/api/run.sh "${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist"
