#!/usr/bin/env bash
# The test control plane: tools/envtest.sh build|built|up|down|status
#   build  builds (once, cached under ~/.hoist/envtest/<pins>) kube-apiserver,
#          kube-controller-manager, kube-scheduler, etcd and kwok from their Go modules
#   up     builds if needed, starts them on 127.0.0.1 (RBAC on), installs the Gateway API
#          standard CRDs and the ServiceMonitor CRD, and prints the admin kubeconfig's path
#          as its last line (already up: prints it again)
#   built  exits 0 when the binaries are built (nothing else)
#   down   stops what `up` started and removes its state
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=tools/envtest-lib.sh
. "$here/envtest-lib.sh"
# shellcheck source=tools/envtest-run.sh
. "$here/envtest-run.sh"

# One `up` at a time (test processes may ask together).
mkdir -p "$ENVTEST_HOME"
exec 9>"$ENVTEST_HOME/.lock"
flock 9

case "${1:-}" in
  built) envtest_built ;;
  build) envtest_build; echo "$ENVTEST_BIN" ;;
  up) envtest_build; envtest_up ;;
  down) envtest_down ;;
  status) envtest_status ;;
  *) echo "usage: tools/envtest.sh build|built|up|down|status" >&2; exit 2 ;;
esac
