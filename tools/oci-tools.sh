#!/usr/bin/env bash
# The image tests' real parts, from Debian packages when missing: an OCI registry
# (`docker-registry`, distribution 2.8), `skopeo` (inspects what hoist pushed),
# `htpasswd` (apache2-utils: the TLS registry's bcrypt users), `openssl` (its
# certificate) and `podman` with `runc` (runs the images; tools/podman.sh). The tests start their own registries on loopback ports
# (crates/testkit/src/registry.rs); nothing here keeps running.
#
#   bash tools/oci-tools.sh                 install only
#   bash tools/oci-tools.sh serve DIR PORT  also run a plain registry on 127.0.0.1:PORT
#                                           (storage under DIR; Ctrl-C stops it)
set -euo pipefail
missing=()
command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
# podman's published ports (-p) need the CNI plugins and iptables.
[ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "installing ${missing[*]}" >&2
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's package starts a registry service on :5000; the tests run their own.
if command -v service >/dev/null 2>&1; then service docker-registry stop >/dev/null 2>&1 || true; fi
echo "docker-registry: $(command -v docker-registry)  skopeo: $(skopeo --version)  $(podman --version)"
if [ "${1:-}" = serve ]; then
  dir="${2:?usage: oci-tools.sh serve DIR PORT}"; port="${3:?usage: oci-tools.sh serve DIR PORT}"
  mkdir -p "$dir/data"
  cat > "$dir/config.yml" <<YML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YML
  exec docker-registry serve "$dir/config.yml"
fi
