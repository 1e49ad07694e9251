#!/usr/bin/env bash
# check-jsonschema (pinned), which vendors SchemaStore's `github-workflows` and
# `azure-pipelines` schemas, for crates/cli/tests/ci.rs: installed into a venv under
# ~/.hoist/venvs, again only when the pin changes. Prints the command's path on its
# last line.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/venv-lib.sh
venv="${HOIST_CHECK_JSONSCHEMA_VENV:-$HOME/.hoist/venvs/check-jsonschema}"
mkdir -p "$(dirname "$venv")"
ensure_venv check-jsonschema-venv "$venv" "check-jsonschema==0.39.0" \
  "import check_jsonschema" "check-jsonschema 0.39.0"
echo "$venv/bin/check-jsonschema"
