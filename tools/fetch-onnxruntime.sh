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

VERSION=1.32.0
WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
LIB=libonnxruntime.so.$VERSION
LIB_SHA256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f

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
