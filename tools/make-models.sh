#!/usr/bin/env bash
# Regenerates examples/models (deterministic): a pinned venv in .venv-models, then
# tools/make_models.py and tools/make_invalid_models.py. Only needed to change the
# example models; the generated files are committed and tests need no Python.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-models
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements-models.txt
"$venv/bin/python" tools/make_models.py "$@"
"$venv/bin/python" tools/make_invalid_models.py
