#!/usr/bin/env bash
# The real `cosign` CLI for the signature tests, built from its Go module (pinned) and
# cached under ~/.hoist/cosign/<version>. Prints the binary's path on its last line.
# Needs Go and the Go module proxy; the cold build is measured in docs/images.md.
set -euo pipefail
version="v2.6.5"
dir="${HOIST_COSIGN_DIR:-$HOME/.hoist/cosign/$version}"
bin="$dir/cosign"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "cosign.sh: Go is needed to build cosign" >&2; exit 1; }
  mkdir -p "$dir"
  start=$(date +%s)
  echo "building cosign $version (go install; cached in $dir)" >&2
  GOBIN="$dir" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "github.com/sigstore/cosign/v2/cmd/cosign@$version"
  echo "cosign $version built in $(( $(date +%s) - start )) s" >&2
fi
"$bin" version 2>/dev/null | grep -q "${version#v}" || { echo "cosign.sh: $bin is not cosign $version" >&2; exit 1; }
echo "$bin"
