#!/usr/bin/env bash
# Fetches ONNX Runtime's shared library for hoist-server from the official, pinned
# onnxruntime wheel on the Python package index: downloads the wheel with pip (no
# Python package is installed), checks its sha256, and extracts the one file
# onnxruntime/capi/libonnxruntime.so.<version>. Nothing is needed at run time but
# that file.
#
#   bash tools/fetch-onnxruntime.sh [DEST_DIR]     (default: ${HOIST_HOME:-~/.hoist}/lib)
#
# Prints the library's path as its last line. Does nothing if the library is already
# there with the expected checksum.
set -euo pipefail

VERSION=1.31.1
WHEEL=onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl
WHEEL_SHA256=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
LIB=libonnxruntime.so.$VERSION
LIB_SHA256=fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3

dest="${1:-${HOIST_HOME:-$HOME/.hoist}/lib}"
target="$dest/$LIB"

die() { echo "fetch-onnxruntime: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$target" ] && [ "$(sha "$target")" = "$LIB_SHA256" ]; then
  echo "$target"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) die "only Linux x86_64 is pinned here; set ORT_DYLIB_PATH to your libonnxruntime, or use --runtime tract" ;;
esac
command -v python3 >/dev/null || die "python3 (with pip) is needed to download the wheel"
python3 -m pip --version >/dev/null 2>&1 \
  || die "python3 has no pip (on Debian: apt-get install python3-pip); it is used only to download the wheel"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-onnxruntime: downloading onnxruntime $VERSION wheel" >&2
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version 3.11 --platform manylinux_2_28_x86_64 \
  -d "$tmp" "onnxruntime==$VERSION" >&2 \
  || die "pip could not download onnxruntime==$VERSION"
[ -f "$tmp/$WHEEL" ] || die "expected $WHEEL, got: $(ls "$tmp")"
got=$(sha "$tmp/$WHEEL")
[ "$got" = "$WHEEL_SHA256" ] || die "checksum mismatch for $WHEEL: got $got, expected $WHEEL_SHA256"

mkdir -p "$dest"
python3 - "$tmp/$WHEEL" "onnxruntime/capi/$LIB" "$tmp/$LIB" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
got=$(sha "$tmp/$LIB")
[ "$got" = "$LIB_SHA256" ] || die "checksum mismatch for $LIB: got $got, expected $LIB_SHA256"
chmod 0755 "$tmp/$LIB"
mv "$tmp/$LIB" "$target"
if missing=$(ldd "$target" 2>/dev/null | grep "not found"); then
  die "$target needs libraries this machine lacks: $missing"
fi
echo "fetch-onnxruntime: installed $target" >&2
echo "$target"
