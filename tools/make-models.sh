#!/usr/bin/env bash
# Regenerate the example MLflow ONNX models under examples/models/.
# Creates (or reuses) a virtualenv at .venv-models, installs the pinned
# tools/requirements-models.txt into it and runs tools/make_models.py, then
# tools/make_invalid_models.py.
# Extra arguments are passed to make_models.py (e.g. --out DIR).
# `make-models.sh --zoo [--out DIR]` instead regenerates the model zoo (examples/zoo,
# tools/make_zoo.py) with the same venv.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-models"
reqs="$root/tools/requirements-models.txt"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "make-models: $python not found; install Python 3.11 (with venv) first" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "make-models: creating $venv" >&2
    "$python" -m venv "$venv" || {
        echo "make-models: could not create a venv (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
fi

# Reinstall only when the requirements changed since the last successful install.
stamp="$venv/.requirements-models.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--zoo" ]; then
    shift
    exec "$venv/bin/python" "$root/tools/make_zoo.py" "$@"
fi
"$venv/bin/python" "$root/tools/make_models.py" "$@"
# Models that must fail to load (error-path tests); always under examples/models/invalid.
"$venv/bin/python" "$root/tools/make_invalid_models.py"
