#!/usr/bin/env bash
# docs/kubernetes.md, walk-through step 6 ("A canary driven by hoist"), run against the
# test control plane: `bash tools/envtest.sh up` first, `cargo build` for the binaries.
# Prints the console transcript the docs paste; `hoist up`'s own output is left in
# $W/up.log. Deletes and recreates the namespaces hoist-production and hoist-system.
set -uo pipefail
R=$(cd "$(dirname "$0")/.." && pwd)
export KUBECONFIG=${KUBECONFIG:-$HOME/.hoist/envtest/run/admin.kubeconfig}
export PATH=${CARGO_TARGET_DIR:-$R/target}/debug:$PATH
W=${W:-$(mktemp -d -t hoist-walkthrough-XXXX)}; mkdir -p "$W"; cd "$W"
echo "# in $W" >&2
kubectl delete ns hoist-production hoist-system --wait=true >/dev/null 2>&1
hoist serve --model $R/examples/models/breast_cancer_lr --runtime tract --workers 1 --port 18601 >serve.log 2>&1 &
SERVE=$!
cat > hoist.toml <<'TOML'
target = "kubernetes"

[registry]
url = "embedded"

[model]
name = "fraud"
trigger = { alias = "champion" }

[analysis]
# kwok's pods serve nothing for Prometheus to scrape here: see the note below
enabled = false

[kubernetes]
namespace = "hoist-{env}"
image = "registry.example.com/hoist@sha256:abababababababababababababababababababababababababababababababab"
model_path = "/models/fraud"
gateway = { name = "public", namespace = "gateways" }
# outside the cluster: where the variants' Services answer (a port-forward; here one
# hoist serve on loopback stands in for both)
service_url = "http://127.0.0.1:18601"

[kubernetes.controller]
enabled = true
namespace = "hoist-system"
replicas = 2

[[environments]]
name = "production"
replicas = 2
steps = [{ weight = 10, pause = "5s" }, { weight = 50, pause = "5s" }]
TOML
c() { echo "\$ $*"; "$@" 2>&1; }
H="--home $W/home"
hoist $H model register $R/examples/models/breast_cancer_gbt --name fraud >/dev/null
hoist $H model register $R/examples/models/breast_cancer_lr --name fraud >/dev/null
c hoist render k8s --out deploy --version 1 --digest sha256:7777777777777777777777777777777777777777777777777777777777777777
c kubectl apply --server-side -k deploy | sed -n '1,3p;$p'
# the controller, outside the cluster, as its rendered ServiceAccount
TOKEN=$(kubectl create token hoist-controller -n hoist-system --duration 1h)
SERVER=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
CA=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority}')
cat > sa.kubeconfig <<KC
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: $SERVER, certificate-authority: $CA}}]
contexts: [{name: sa, context: {cluster: c, user: sa, namespace: hoist-system}}]
current-context: sa
users: [{name: sa, user: {token: $TOKEN}}]
KC
echo "\$ KUBECONFIG=sa.kubeconfig hoist up --listen 127.0.0.1:7070 &"
KUBECONFIG=$W/sa.kubeconfig hoist $H up --config hoist.toml --listen 127.0.0.1:7070 >up.log 2>&1 &
UP=$!
for i in $(seq 100); do curl -sf http://127.0.0.1:7070/api/v1/status >/dev/null && break; sleep 0.2; done
sleep 1
c hoist $H --api http://127.0.0.1:7070 status
c hoist $H --api http://127.0.0.1:7070 deploy fraud/2 --wait
for i in $(seq 100); do [ "$(kubectl -n hoist-production get deployment fraud-candidate -o jsonpath='{.spec.replicas}')" = 0 ] && break; sleep 0.2; done
c kubectl -n hoist-production rollout status deployment/fraud-stable
c kubectl -n hoist-production get deployment fraud-stable -o jsonpath='{.metadata.annotations.hoist\.dev/version}{"\n"}'
c kubectl -n hoist-production get httproute fraud -o jsonpath='{range .spec.rules[-1].backendRefs[*]}{.name}={.weight} {end}{"\n"}'
c hoist $H --api http://127.0.0.1:7070 status
c hoist $H --api http://127.0.0.1:7070 history
kill $UP $SERVE; wait
