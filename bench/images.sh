#!/usr/bin/env bash
# Image push benchmark: `hoist image push --model` of a ~100 MB model against the
# hand-written way (`tar czf` of the same files, an OCI layout around it, `skopeo copy`
# to the same registry), side by side, on a real registry (Debian's docker-registry) on
# 127.0.0.1. Also: pushing hoist's runtime image again with nothing changed uploads no
# blob (counted in the registry's access log). Writes bench/results/images-<date>.md.
#
# Environment (all optional):
#   BENCH_ROUNDS=3        rounds (each pushes to fresh repositories)
#   BENCH_MODEL_MB=100    size of the model's weights
#   BENCH_SKIP_BUILD=1    use the existing target/release/hoist
#   BENCH_HOIST_BIN       another hoist binary (implies nothing is built)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
BENCH_MODEL_MB="${BENCH_MODEL_MB:-100}"
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

bash tools/oci-tools.sh >/dev/null
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 && -z "${BENCH_HOIST_BIN:-}" ]]; then
    log "cargo build --release -p hoist-cli --bin hoist"
    cargo build --release -q --locked -p hoist-cli --bin hoist
fi
hoist="${BENCH_HOIST_BIN:-$repo/target/release/hoist}"
bin_dir="$(dirname "$hoist")"
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(bash tools/fetch-onnxruntime.sh | tail -n 1)}"
export ORT_DYLIB_PATH
py="$repo/.venv-models/bin/python"
[[ -x "$py" ]] || { log "no .venv-models (bash tools/make-models.sh makes it)"; exit 1; }

work="$(mktemp -d /tmp/hoist-bench-images.XXXXXX)"
reg_pid=""
cleanup() { [[ -n "$reg_pid" ]] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
  secret: bench
YML
docker-registry serve "$work/registry.yml" > "$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
reg="127.0.0.1:$port"

# The model: breast_cancer_lr's package with a ~100 MB ONNX model of random weights.
model="$work/model"
cp -r examples/models/breast_cancer_lr "$model"
"$py" - "$model/model.onnx" "$BENCH_MODEL_MB" <<'PY'
import sys, numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
path, mb = sys.argv[1], int(sys.argv[2])
cols = mb * 1024 * 1024 // 4 // 30
w = np.random.default_rng(7).standard_normal((30, cols), dtype=np.float32)
g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "big",
    [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 30])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, cols])],
    initializer=[numpy_helper.from_array(w, "W")])
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
PY
rm -f "$model/reference.json"
export HOIST_HOME="$work/home"
"$hoist" model register "$model" --name big >/dev/null
size_mb=$(du -sm "$model" | cut -f1)
log "model: $size_mb MB; registry: $reg"

now() { date +%s.%N; }
# Each round's repository gets hoist's runtime image first (untimed), so that both
# sides upload only the model (a registry keeps blobs per repository).
"$hoist" image push "$reg/warm/hoist" --insecure --bin-dir "$bin_dir" >/dev/null

hoist_t=(); peer_t=()
for r in $(seq "$BENCH_ROUNDS"); do
    "$hoist" image push "$reg/r$r/hoist" --insecure --bin-dir "$bin_dir" >/dev/null
    t0=$(now)
    "$hoist" image push "$reg/r$r/hoist" --model big/1 --insecure --bin-dir "$bin_dir" >/dev/null
    t1=$(now)
    layout="$work/layout-$r"
    mkdir -p "$layout/blobs/sha256"
    tar cf - -C "$model" . | tee >(sha256sum | cut -d' ' -f1 > "$work/diffid") | gzip > "$work/layer.tar.gz"
    layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
    mv "$work/layer.tar.gz" "$layout/blobs/sha256/$layer"
    sleep 0.05; diffid=$(cat "$work/diffid")
    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$diffid" > "$work/config"
    config=$(sha256sum "$work/config" | cut -d' ' -f1); mv "$work/config" "$layout/blobs/sha256/$config"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%d}]}' \
        "$config" "$(stat -c %s "$layout/blobs/sha256/$config")" "$layer" "$(stat -c %s "$layout/blobs/sha256/$layer")" > "$work/manifest"
    manifest=$(sha256sum "$work/manifest" | cut -d' ' -f1); msize=$(stat -c %s "$work/manifest"); mv "$work/manifest" "$layout/blobs/sha256/$manifest"
    printf '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' "$manifest" "$msize" > "$layout/index.json"
    skopeo copy -q --dest-tls-verify=false "oci:$layout:v1" "docker://$reg/r$r/peer:v1"
    t2=$(now)
    rm -rf "$layout"
    hoist_t+=("$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")"); peer_t+=("$(printf '%.2f' "$(echo "$t2 - $t1" | bc)")")
    log "round $r: hoist image push --model ${hoist_t[-1]} s; tar czf + layout + skopeo copy ${peer_t[-1]} s"
done

# The runtime image again, nothing changed: count blob uploads in the access log.
before=$(grep -c 'POST /v2/.*/blobs/uploads/' "$work/registry.log" || true)
"$hoist" image push "$reg/warm/hoist" --insecure --bin-dir "$bin_dir" >/dev/null
after=$(grep -c 'POST /v2/.*/blobs/uploads/' "$work/registry.log" || true)

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
hm=$(median "${hoist_t[@]}"); pm=$(median "${peer_t[@]}")
mkdir -p bench/results
out="bench/results/images-$(date +%Y-%m-%d).md"
{
    echo "# Image push, $(date -u +%Y-%m-%dT%H:%MZ) ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)); command: bash bench/images.sh"
    echo
    echo "Model package: $size_mb MB (random float32 weights); registry: docker-registry on 127.0.0.1; $BENCH_ROUNDS rounds, medians."
    echo
    echo "| | seconds (median) | rounds |"
    echo "|---|--:|---|"
    echo "| \`hoist image push --model\` (runtime layers already in the registry) | $hm | ${hoist_t[*]} |"
    echo "| \`tar czf\` + OCI layout + \`skopeo copy\` | $pm | ${peer_t[*]} |"
    echo
    echo "hoist / peer: $(echo "scale=2; $hm / $pm" | bc)"
    echo
    echo "Runtime image pushed again with nothing changed: $((after - before)) blob uploads started."
} | tee "$out"
