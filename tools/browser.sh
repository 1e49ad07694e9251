#!/usr/bin/env bash
# The browser test's setup (crates/cli/tests/dashboard.rs): Debian's chromium when
# missing, and the pinned playwright-core (crates/cli/tests/dashboard/package-lock.json,
# no browser download) installed once under ~/.hoist/browser/<lockfile sha256>/.
# Prints two lines: the chromium binary, then the node_modules directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "installing chromium (Debian)" >&2
  $sudo apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
src=crates/cli/tests/dashboard
key="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)"
dir="$HOME/.hoist/browser/$key"
if [ ! -f "$dir/.done" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  # playwright-core never downloads a browser; `npm ci` installs exactly the lockfile.
  (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts >&2)
  touch "$dir/.done"
fi
command -v chromium
echo "$dir/node_modules"
