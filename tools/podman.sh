#!/usr/bin/env bash
# podman with the settings it needs on these machines, as root: a private
# containers.conf (passed with CONTAINERS_CONF) that picks runc (crun fails here) and
# limits nofile/nproc to 1024 (root cannot raise them here), and its own storage
# (vfs) under one directory, so nothing touches the system's images.
#
#   bash tools/podman.sh run --rm --tls-verify=false -p 127.0.0.1:8080:8080 REPO:TAG
#
# HOIST_PODMAN_DIR picks the directory [default: ~/.hoist/podman]; the tests give each
# run its own (crates/cli/tests/podman.rs). podman itself comes from Debian
# (tools/oci-tools.sh installs it).
set -euo pipefail
dir="${HOIST_PODMAN_DIR:-$HOME/.hoist/podman}"
mkdir -p "$dir"
conf="$dir/containers.conf"
if [ ! -f "$conf" ]; then
  cat > "$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
CONF
fi
export CONTAINERS_CONF="$conf"
exec podman --root "$dir/root" --runroot "$dir/run" --storage-driver vfs "$@"
