#!/usr/bin/env bash
# The test command: everything a fresh machine needs, then every test.
#   - fetches the pinned ONNX Runtime library (tools/fetch-onnxruntime.sh)
#   - creates a venv with a pinned MLflow 3.x (tools/mlflow-venv.sh) for the registry
#     tests, which run a real MLflow tracking server on loopback, and a second one with
#     MLflow 2.x (tools/mlflow2-venv.sh): the MLflow test binaries run against both
#   - installs kubectl and Prometheus from Debian packages if missing (tools/debian-tools.sh)
#   - installs an OCI registry, skopeo, htpasswd and openssl from Debian packages if
#     missing (tools/oci-tools.sh), and builds the pinned cosign once (tools/cosign.sh,
#     cached under ~/.hoist/cosign; a cold Go build runs in the background beside the
#     venvs and `cargo build`) for the image and signature tests; podman (Debian) runs
#     the images (tools/podman.sh)
#   - builds the pinned actionlint (tools/actionlint.sh, cached under ~/.hoist/actionlint,
#     in the background like cosign) and installs the pinned check-jsonschema into a venv
#     (tools/check-jsonschema.sh): crates/cli/tests/ci.rs checks `hoist ci init`'s files
#   - installs Debian's chromium if missing and the pinned playwright-core (npm, no
#     browser download; tools/browser.sh, cached under ~/.hoist/browser) for the
#     dashboard's browser test (crates/cli/tests/dashboard.rs)
#   - builds the pinned Kubernetes test control plane once (tools/envtest.sh, cached under
#     ~/.hoist/envtest, in the background like cosign) and starts it on loopback for the
#     cluster tests (HOIST_REQUIRE_ENVTEST=1: they fail instead of skipping without it)
#   - runs the Rust tests (unit + integration: the real hoist-server binary on loopback,
#     every example model on both runtimes; the embedded registry and the hoist CLI)
#   - runs the external-client tests (tritonclient, MLflow scoring bodies) in a venv
#   - runs Triton's gRPC client against hoist-server's --grpc-port (tests/grpc/run.sh;
#     the pinned venv from tools/grpc-venv.sh is made in the background beside cargo)
#   - makes the pinned PyTorch venv (tools/torch-venv.sh: torch's CUDA build and its
#     CUDA libraries, ~5 GB, cached under ~/.hoist; in the background like grpc-venv)
#     whose python serves the PyTorch models of crates/cli/tests/flavors.rs
#   - runs the differential conformance suite: hoist-server beside `mlflow models serve`
#     for every example model, the same bodies to both (tests/conformance/run.sh)
#   - runs Schemathesis against the daemon API of a real `hoist up` (tests/api/run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

# cosign's cold build is long and mostly Go compiling: start it first, wait before the tests.
cosign_log="$(mktemp)"
if [ -z "${HOIST_COSIGN:-}" ]; then
  bash tools/cosign.sh >"$cosign_log" 2>&1 &
  cosign_pid=$!
fi

# The Kubernetes test control plane (tools/envtest.sh: kube-apiserver, controller manager,
# scheduler, etcd, kwok, built from their Go modules once, cached under ~/.hoist/envtest):
# its cold build runs in the background too, at a lower priority: `cargo build` is on
# the critical path, and the cluster tests that need the control plane run last.
envtest_log="$(mktemp)"
if [ -z "${HOIST_ENVTEST_KUBECONFIG:-}" ]; then
  nice -n 10 bash tools/envtest.sh build >"$envtest_log" 2>&1 &
  envtest_pid=$!
fi

actionlint_log="$(mktemp)"
if [ -z "${HOIST_ACTIONLINT:-}" ]; then
  bash tools/actionlint.sh >"$actionlint_log" 2>&1 &
  actionlint_pid=$!
fi

grpc_venv_log="$(mktemp)"
if [ -z "${HOIST_GRPC_PYTHON:-}" ]; then
  bash tools/grpc-venv.sh >"$grpc_venv_log" 2>&1 &
  grpc_venv_pid=$!
fi

torch_venv_log="$(mktemp)"
if [ -z "${HOIST_TORCH_PYTHON:-}" ]; then
  bash tools/torch-venv.sh >"$torch_venv_log" 2>&1 &
  torch_venv_pid=$!
fi

ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export ORT_DYLIB_PATH
echo "== ONNX Runtime: $ORT_DYLIB_PATH"

echo "== MLflow venv (a real MLflow server for crates/registry/tests/mlflow.rs)"
HOIST_MLFLOW_PYTHON="${HOIST_MLFLOW_PYTHON:-$(bash tools/mlflow-venv.sh | tail -n 1)}"
export HOIST_MLFLOW_PYTHON
echo "== MLflow 2.x venv (the same MLflow tests, against a 2.x server)"
HOIST_MLFLOW2_PYTHON="${HOIST_MLFLOW2_PYTHON:-$(bash tools/mlflow2-venv.sh | tail -n 1)}"

echo "== check-jsonschema venv (SchemaStore's CI schemas for crates/cli/tests/ci.rs)"
HOIST_CHECK_JSONSCHEMA="${HOIST_CHECK_JSONSCHEMA:-$(bash tools/check-jsonschema.sh | tail -n 1)}"
export HOIST_CHECK_JSONSCHEMA

echo "== kubectl and Prometheus (Debian packages; the Kubernetes tests parse manifests offline and query a real Prometheus)"
bash tools/debian-tools.sh

echo "== OCI registry, skopeo, podman and cosign (the image and signature tests: crates/oci/tests, crates/cli/tests/{image,cosign,podman}.rs)"
bash tools/oci-tools.sh

# Chromium (Debian) and the pinned playwright-core for the dashboard's browser test
# (crates/cli/tests/dashboard.rs): apt is free again, so beside `cargo build`.
browser_log="$(mktemp)"
if [ -z "${HOIST_CHROMIUM:-}" ]; then
  bash tools/browser.sh >"$browser_log" 2>&1 &
  browser_pid=$!
fi

echo "== cargo build"
cargo build --workspace --all-targets --locked

if [ -z "${HOIST_COSIGN:-}" ]; then
  echo "== waiting for cosign (tools/cosign.sh)"
  wait "$cosign_pid" || { cat "$cosign_log" >&2; echo "tools/cosign.sh failed" >&2; exit 1; }
  cat "$cosign_log" >&2
  HOIST_COSIGN="$(tail -n 1 "$cosign_log")"
fi
export HOIST_COSIGN
echo "== cosign: $HOIST_COSIGN"
if [ -z "${HOIST_ACTIONLINT:-}" ]; then
  wait "$actionlint_pid" || { cat "$actionlint_log" >&2; echo "tools/actionlint.sh failed" >&2; exit 1; }
  HOIST_ACTIONLINT="$(tail -n 1 "$actionlint_log")"
fi
export HOIST_ACTIONLINT
echo "== actionlint: $HOIST_ACTIONLINT"

if [ -z "${HOIST_CHROMIUM:-}" ]; then
  wait "$browser_pid" || { cat "$browser_log" >&2; echo "tools/browser.sh failed" >&2; exit 1; }
  HOIST_CHROMIUM="$(tail -n 2 "$browser_log" | head -n 1)"
  HOIST_BROWSER_MODULES="$(tail -n 1 "$browser_log")"
fi
export HOIST_CHROMIUM HOIST_BROWSER_MODULES
echo "== browser: $HOIST_CHROMIUM, playwright-core in $HOIST_BROWSER_MODULES"

# The cluster tests (crates/cli/tests/cluster.rs, cluster_doctor.rs and cluster_hoist_split.rs,
# crates/targets/tests/kubernetes_envtest.rs) run last, against the control plane
# whose build goes on in the background meanwhile: in the workspace run below they
# find no control plane and say they are skipped; then they run for real, where a
# missing control plane fails them (HOIST_REQUIRE_ENVTEST=1).
envtest_kubeconfig="${HOIST_ENVTEST_KUBECONFIG:-}"
unset HOIST_ENVTEST_KUBECONFIG HOIST_REQUIRE_ENVTEST
export HOIST_ENVTEST_LATER=1

if [ -z "${HOIST_TORCH_PYTHON:-}" ]; then
  wait "$torch_venv_pid" || { cat "$torch_venv_log" >&2; echo "tools/torch-venv.sh failed" >&2; exit 1; }
  HOIST_TORCH_PYTHON="$(tail -n 1 "$torch_venv_log")"
fi
export HOIST_TORCH_PYTHON
echo "== PyTorch venv: $HOIST_TORCH_PYTHON"

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
echo "== the MLflow tests again, against MLflow 2.x ($HOIST_MLFLOW2_PYTHON)"
HOIST_MLFLOW_PYTHON="$HOIST_MLFLOW2_PYTHON" \
  cargo test --locked --no-fail-fast -p hoist-registry -p hoist-cli --test mlflow

if [ -z "$envtest_kubeconfig" ]; then
  echo "== Kubernetes test control plane (tools/envtest.sh)"
  wait "$envtest_pid" || { cat "$envtest_log" >&2; echo "tools/envtest.sh build failed" >&2; exit 1; }
  grep '^envtest:' "$envtest_log" >&2 || true
  envtest_kubeconfig="$(bash tools/envtest.sh up | tail -n 1)"
  trap 'bash tools/envtest.sh down' EXIT
fi
echo "== the cluster tests against the real control plane ($envtest_kubeconfig)"
HOIST_ENVTEST_KUBECONFIG="$envtest_kubeconfig" HOIST_REQUIRE_ENVTEST=1 HOIST_ENVTEST_LATER=0 \
  cargo test --locked --no-fail-fast -p hoist-cli --test cluster --test cluster_doctor \
    --test cluster_hoist_split -p hoist-targets --test kubernetes_envtest

echo "== external clients (tritonclient, MLflow scoring bodies)"
HOIST_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist-server" bash tests/clients/run.sh

if [ -z "${HOIST_GRPC_PYTHON:-}" ]; then
  wait "$grpc_venv_pid" || { cat "$grpc_venv_log" >&2; echo "tools/grpc-venv.sh failed" >&2; exit 1; }
  HOIST_GRPC_PYTHON="$(tail -n 1 "$grpc_venv_log")"
fi
echo "== gRPC clients (tritonclient[grpc] against --grpc-port; $HOIST_GRPC_PYTHON)"
HOIST_GRPC_PYTHON="$HOIST_GRPC_PYTHON" HOIST_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist-server" bash tests/grpc/run.sh

echo "== conformance: hoist-server against mlflow models serve, the same bodies to both"
HOIST_SERVER_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist-server" bash tests/conformance/run.sh  # HOIST_MLFLOW_PYTHON: the 3.x venv

echo "== daemon API under Schemathesis (a real hoist up, with and without the token)"
bash tests/api/run.sh "${CARGO_TARGET_DIR:-$PWD/target}/debug/hoist"
