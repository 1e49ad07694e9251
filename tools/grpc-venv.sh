#!/usr/bin/env bash
# Create (or reuse) the virtualenv of the gRPC client tests (tests/grpc): Triton's
# gRPC client, `tritonclient[grpc]`, with its grpcio and protobuf pinned.
# `.venv-grpc` in the repository root (ignored by git); reinstalled only when the
# pins change. Prints the venv's python path as its last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HOIST_GRPC_VENV:-$root/.venv-grpc}"

reqs="tritonclient[grpc]==2.73.0
grpcio==1.85.3
protobuf==6.33.6
numpy==2.4.6
pytest==9.2.0
requests==2.34.2"

# shellcheck source=tools/venv-lib.sh
. "$root/tools/venv-lib.sh"
ensure_venv grpc-venv "$venv" "$reqs" 'import tritonclient.grpc, grpc; assert grpc.__version__ == "1.85.3", grpc.__version__' "tritonclient[grpc] 2.73.0"

echo "$venv/bin/python"
