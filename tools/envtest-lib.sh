# Sourced by tools/envtest.sh: the pins and the build of the test control plane.
# A Kubernetes control plane cannot come from Debian, PyPI or npm: it is built here from its
# Go modules (see /work/shared/INTERFACES.md). k8s.io/kubernetes's own go.mod replaces every
# k8s.io/* staging module with a local path, so `go install k8s.io/kubernetes/cmd/...@v`
# fails; a scratch module requires k8s.io/kubernetes and each staging module at the matching
# v0.Y.Z instead, and builds every command (etcd and kwok included) in one `go build`, so the
# packages they share compile once.

ENVTEST_K8S="v1.37.2"        # needs Go >= 1.26.0 (its go.mod), no toolchain download
ENVTEST_STAGING="v0.37.2"    # the k8s.io/* staging modules of that release
ENVTEST_ETCD="v3.7.0"        # the etcd that k8s.io/kubernetes v1.37.2 itself requires
ENVTEST_KWOK="v0.8.0"        # fake nodes: pods become Running/Ready without a kubelet
ENVTEST_GATEWAY_API="v1.6.3" # Gateway API standard CRDs (config/crd/standard in the module)
ENVTEST_PROM_OPERATOR="v0.85.0" # the ServiceMonitor CRD (example/prometheus-operator-crd)
ENVTEST_GO_MIN="1.26.0"


ENVTEST_KEY="k8s-${ENVTEST_K8S}-etcd-${ENVTEST_ETCD}-kwok-${ENVTEST_KWOK}"
ENVTEST_HOME="${HOIST_ENVTEST_HOME:-$HOME/.hoist/envtest}"
ENVTEST_DIR="$ENVTEST_HOME/$ENVTEST_KEY"
ENVTEST_BIN="$ENVTEST_DIR/bin"
ENVTEST_COMMANDS="kube-apiserver kube-controller-manager kube-scheduler etcd kwok"

envtest_go_env() {
  # No toolchain download: the installed go must satisfy the release's go line.
  export GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod" CGO_ENABLED=0
}

envtest_check_go() {
  command -v go >/dev/null 2>&1 || { echo "envtest: Go >= $ENVTEST_GO_MIN is needed to build the control plane" >&2; return 1; }
  local have
  have="$(go env GOVERSION)"; have="${have#go}"
  if [ "$(printf '%s\n%s\n' "$ENVTEST_GO_MIN" "$have" | sort -V | head -n 1)" != "$ENVTEST_GO_MIN" ]; then
    echo "envtest: go $have is older than $ENVTEST_GO_MIN, which k8s.io/kubernetes $ENVTEST_K8S needs" >&2
    return 1
  fi
}

envtest_built() {
  local c
  for c in $ENVTEST_COMMANDS; do [ -x "$ENVTEST_BIN/$c" ] || return 1; done
  [ -f "$ENVTEST_DIR/crds/.done" ] && [ -f "$ENVTEST_DIR/kwok.yaml" ]
}

envtest_binaries_built() {
  local c
  for c in $ENVTEST_COMMANDS; do [ -x "$ENVTEST_BIN/$c" ] || return 1; done
}

envtest_build() {
  envtest_built && return 0
  envtest_check_go
  envtest_go_env
  local src="$ENVTEST_DIR/src" start m
  start=$(date +%s)
  if ! envtest_binaries_built; then
    mkdir -p "$src" "$ENVTEST_BIN"
    printf 'module hoist.invalid/envtest\n\ngo %s\n' "$ENVTEST_GO_MIN" >"$src/go.mod"
    local gomod staging
    gomod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$ENVTEST_K8S" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
    staging="$(sed -n 's/^[[:space:]]*\(k8s\.io\/[a-z-]*\) v0\.0\.0$/\1/p' "$gomod")"
    [ -n "$staging" ] || { echo "envtest: no staging modules found in $gomod" >&2; return 1; }
    echo "envtest: building Kubernetes $ENVTEST_K8S, etcd $ENVTEST_ETCD, kwok $ENVTEST_KWOK (cached in $ENVTEST_DIR)" >&2
    {
      echo "module hoist.invalid/envtest"
      echo
      echo "go $ENVTEST_GO_MIN"
      echo
      echo "require ("
      echo "	k8s.io/kubernetes $ENVTEST_K8S"
      # Every staging module k8s.io/kubernetes requires as v0.0.0 (replaced by a local path there).
      for m in $staging; do echo "	$m $ENVTEST_STAGING"; done
      echo "	go.etcd.io/etcd/server/v3 $ENVTEST_ETCD"
      echo "	sigs.k8s.io/kwok $ENVTEST_KWOK"
      echo ")"
    } >"$src/go.mod"
    local v="$ENVTEST_K8S" major minor
    major="${v#v}"; major="${major%%.*}"
    minor="${v#v*.}"; minor="${minor%%.*}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$v"
    # A build cache of its own, deleted afterwards: the binaries are what is kept, and
    # the Go build cache of these packages is about 4 GB.
    (
      cd "$src"
      export GOCACHE="$ENVTEST_DIR/gocache"
      trap 'rm -rf "$GOCACHE"' EXIT
      go build -trimpath -ldflags="$ldflags" -o "$ENVTEST_BIN/" \
        k8s.io/kubernetes/cmd/kube-apiserver \
        k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler \
        go.etcd.io/etcd/server/v3 \
        sigs.k8s.io/kwok/cmd/kwok
    )
    # go build names the etcd binary after its module path without the /v3: `server`.
    mv "$ENVTEST_BIN/server" "$ENVTEST_BIN/etcd"
  fi
  [ -f "$ENVTEST_DIR/crds/.done" ] || envtest_fetch_crds
  [ -f "$ENVTEST_DIR/kwok.yaml" ] || envtest_kwok_config
  echo "envtest: built in $(( $(date +%s) - start )) s, $(du -sh "$ENVTEST_BIN" | cut -f1) of binaries" >&2
}

# The CRDs come from their projects' Go modules (the module cache holds the YAML).
envtest_fetch_crds() {
  local crds="$ENVTEST_DIR/crds" gw po
  mkdir -p "$crds"
  gw="$(cd "$ENVTEST_DIR/src" && go mod download -json "sigs.k8s.io/gateway-api@$ENVTEST_GATEWAY_API" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  po="$(cd "$ENVTEST_DIR/src" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$ENVTEST_PROM_OPERATOR" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [ -d "$gw/config/crd/standard" ] || { echo "envtest: no config/crd/standard in $gw" >&2; return 1; }
  cp "$gw"/config/crd/standard/*.yaml "$crds/"
  cp "$po/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$crds/"
  chmod u+w "$crds"/*.yaml
  touch "$crds/.done"
}
