# Sourced by tools/mlflow-venv.sh and tools/mlflow2-venv.sh: create (or reuse) a
# virtualenv and install pinned requirements into it, again only when they changed.
#
#   ensure_venv TAG VENV_DIR "REQS (one per line)" "PYTHON CHECK" DESCRIPTION
#
# Messages go to stderr prefixed with TAG; prints nothing on stdout (the caller prints
# the venv's python path). PYTHON (default python3) creates the venv.
ensure_venv() {
    local tag="$1" venv="$2" reqs="$3" check="$4" what="$5"
    local python="${PYTHON:-python3}"
    if ! command -v "$python" >/dev/null 2>&1; then
        echo "$tag: $python not found; install Python 3.11 (with venv) first" >&2
        exit 1
    fi
    if [ ! -x "$venv/bin/python" ]; then
        echo "$tag: creating $venv" >&2
        "$python" -m venv "$venv" || {
            echo "$tag: could not create a venv (on Debian: apt-get install python3-venv)" >&2
            exit 1
        }
    fi
    # Reinstall only when the pins changed since the last successful install.
    local stamp="$venv/.requirements-${tag%-venv}.sha256"
    local want
    want="$(printf '%s\n' "$reqs" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "$tag: installing $what into $venv" >&2
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check $reqs >&2
        "$venv/bin/python" -c "$check" >&2
        echo "$want" > "$stamp"
    fi
}
