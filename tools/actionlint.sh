#!/usr/bin/env bash
# actionlint, the GitHub Actions workflow checker, for crates/cli/tests/ci.rs: built
# from its Go module (pinned) and cached under ~/.hoist/actionlint/<version>. Prints the
# binary's path on its last line. Needs Go and the Go module proxy (a cold build takes
# about a minute).
set -euo pipefail
version="v1.7.12"
dir="${HOIST_ACTIONLINT_DIR:-$HOME/.hoist/actionlint/$version}"
bin="$dir/actionlint"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || { echo "actionlint.sh: Go is needed to build actionlint" >&2; exit 1; }
  mkdir -p "$dir"
  start=$(date +%s)
  echo "building actionlint $version (go install; cached in $dir)" >&2
  GOBIN="$dir" GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install "github.com/rhysd/actionlint/cmd/actionlint@$version"
  echo "actionlint $version built in $(( $(date +%s) - start )) s" >&2
fi
"$bin" -version 2>/dev/null | grep -q "${version#v}" || { echo "actionlint.sh: $bin is not actionlint $version" >&2; exit 1; }
echo "$bin"
