# Sourced by tools/envtest.sh: starting and stopping the test control plane.
# State (certificates, etcd's data, logs, pids, kubeconfigs) lives in $ENVTEST_RUN; the
# API server listens on 127.0.0.1:$HOIST_ENVTEST_PORT (default 26443), etcd on 26379/26380.

ENVTEST_RUN="${HOIST_ENVTEST_RUN:-$ENVTEST_HOME/run}"
ENVTEST_PORT="${HOIST_ENVTEST_PORT:-26443}"
ENVTEST_ETCD_PORT="${HOIST_ENVTEST_ETCD_PORT:-26379}"
ENVTEST_FAIL_ANNOTATION="envtest.hoist.dev/fail"

envtest_kubeconfig() { # name token
  cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: https://127.0.0.1:$ENVTEST_PORT
    certificate-authority: $ENVTEST_RUN/ca.crt
contexts:
- name: envtest
  context: {cluster: envtest, user: $1}
current-context: envtest
users:
- name: $1
  user: {token: $2}
KC
}

envtest_alive() {
  [ -f "$ENVTEST_RUN/pids" ] || return 1
  local p
  for p in $(cat "$ENVTEST_RUN/pids"); do kill -0 "$p" 2>/dev/null || return 1; done
  kubectl --kubeconfig "$ENVTEST_RUN/admin.kubeconfig" get --raw /readyz >/dev/null 2>&1
}

envtest_status() {
  if envtest_alive; then echo "up: $ENVTEST_RUN/admin.kubeconfig"; else echo "down"; return 1; fi
}

envtest_wait() { # what command...
  local what="$1" i
  shift
  for i in $(seq 1 300); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$(cat "$ENVTEST_RUN/$what.pid")" 2>/dev/null || break
    sleep 0.2
  done
  echo "envtest: $what did not come up; its log:" >&2
  tail -n 30 "$ENVTEST_RUN/logs/$what.log" >&2
  return 1
}

envtest_start() { # name args...
  local name="$1"
  shift
  # Not holding tools/envtest.sh's lock (fd 9), nor the caller's stdin.
  "$ENVTEST_BIN/$name" "$@" >"$ENVTEST_RUN/logs/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >>"$ENVTEST_RUN/pids"
  echo $! >"$ENVTEST_RUN/$name.pid"
}

# kwok's stages: its own "fast" node and pod stages, except that a pod annotated
# envtest.hoist.dev/fail=<reason> never becomes Ready: its containers wait with that
# reason (CrashLoopBackOff, ImagePullBackOff, ...) as a kubelet would report it; with
# OOMKilled, they crash-loop and their last state is an out-of-memory kill.
envtest_kwok_config() {
  local kwok
  kwok="$(cd "$ENVTEST_DIR/src" && go mod download -json "sigs.k8s.io/kwok@$ENVTEST_KWOK" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  local s="$kwok/kustomize/stage"
  {
    cat "$s/node/fast/node-initialize.yaml"; echo "---"
    cat "$s/node/heartbeat/node-heartbeat.yaml"; echo "---"
    sed "/^    matchExpressions:/a\\    - key: '.metadata.annotations[\"$ENVTEST_FAIL_ANNOTATION\"]'\\n      operator: 'DoesNotExist'" \
      "$s/pod/fast/pod-ready.yaml"; echo "---"
    cat "$s/pod/fast/pod-complete.yaml"; echo "---"
    cat "$s/pod/fast/pod-delete.yaml"; echo "---"
    cat <<STAGE
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: envtest-pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.annotations["$ENVTEST_FAIL_ANNOTATION"]'
      operator: 'Exists'
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
  next:
    statusTemplate: |
      {{ \$now := Now }}
      {{ \$reason := index .metadata.annotations "$ENVTEST_FAIL_ANNOTATION" }}
      conditions:
      - lastTransitionTime: {{ \$now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ \$now | Quote }}
        status: "False"
        type: Ready
      - lastTransitionTime: {{ \$now | Quote }}
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        started: false
        restartCount: 3
        {{ if or ( eq \$reason "CrashLoopBackOff" ) ( eq \$reason "OOMKilled" ) }}
        lastState:
          terminated:
            exitCode: {{ if eq \$reason "OOMKilled" }}137{{ else }}1{{ end }}
            reason: {{ if eq \$reason "OOMKilled" }}OOMKilled{{ else }}Error{{ end }}
            message: "kwok stage envtest-pod-fail"
            startedAt: {{ \$now | Quote }}
            finishedAt: {{ \$now | Quote }}
        state:
          waiting:
            reason: CrashLoopBackOff
            message: "back-off restarting failed container (kwok stage envtest-pod-fail)"
        {{ else }}
        state:
          waiting:
            reason: {{ \$reason | Quote }}
            message: "kwok stage envtest-pod-fail"
        {{ end }}
      {{ end }}
      phase: {{ if or ( eq \$reason "CrashLoopBackOff" ) ( eq \$reason "OOMKilled" ) }}Running{{ else }}Pending{{ end }}
      startTime: {{ \$now | Quote }}
STAGE
  } >"$ENVTEST_DIR/kwok.yaml.tmp"
  mv "$ENVTEST_DIR/kwok.yaml.tmp" "$ENVTEST_DIR/kwok.yaml"
}

envtest_certs() {
  local r="$ENVTEST_RUN"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$r/ca.key" -out "$r/ca.crt" -days 3650 \
    -subj "/CN=hoist-envtest-ca" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout "$r/server.key" -out "$r/server.csr" \
    -subj "/CN=kube-apiserver" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' >"$r/san.ext"
  openssl x509 -req -in "$r/server.csr" -CA "$r/ca.crt" -CAkey "$r/ca.key" -CAcreateserial \
    -out "$r/server.crt" -days 3650 -extfile "$r/san.ext" 2>/dev/null
  openssl genrsa -out "$r/sa.key" 2048 2>/dev/null
  openssl rsa -in "$r/sa.key" -pubout -out "$r/sa.pub" 2>/dev/null
}

envtest_up() {
  if envtest_alive; then
    echo "$ENVTEST_RUN/admin.kubeconfig"
    return 0
  fi
  envtest_down >/dev/null 2>&1 || true
  command -v kubectl >/dev/null 2>&1 || { echo "envtest: kubectl is needed (tools/debian-tools.sh)" >&2; return 1; }
  command -v openssl >/dev/null 2>&1 || { echo "envtest: openssl is needed" >&2; return 1; }
  local r="$ENVTEST_RUN" start
  start=$(date +%s)
  mkdir -p "$r/logs" "$r/etcd"
  chmod 700 "$r"
  : >"$r/pids"
  envtest_certs
  local admin kcm sched kwok
  admin="$(openssl rand -hex 24)"; kcm="$(openssl rand -hex 24)"
  sched="$(openssl rand -hex 24)"; kwok="$(openssl rand -hex 24)"
  cat >"$r/tokens.csv" <<TOK
$admin,envtest-admin,envtest-admin,"system:masters"
$kcm,system:kube-controller-manager,kcm
$sched,system:kube-scheduler,scheduler
$kwok,envtest-kwok,kwok,"system:masters"
TOK
  # What service accounts do is audited (the tests check the rendered Roles against it).
  cat >"$r/audit-policy.yaml" <<AUDIT
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  userGroups: ["system:serviceaccounts:kube-system"]
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
AUDIT
  envtest_kubeconfig envtest-admin "$admin" >"$r/admin.kubeconfig"
  envtest_kubeconfig kcm "$kcm" >"$r/kcm.kubeconfig"
  envtest_kubeconfig scheduler "$sched" >"$r/scheduler.kubeconfig"
  envtest_kubeconfig kwok "$kwok" >"$r/kwok.kubeconfig"

  envtest_start etcd --data-dir "$r/etcd" --name envtest \
    --listen-client-urls "http://127.0.0.1:$ENVTEST_ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ENVTEST_ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ENVTEST_ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ENVTEST_ETCD_PORT + 1))" \
    --initial-cluster "envtest=http://127.0.0.1:$((ENVTEST_ETCD_PORT + 1))" \
    --unsafe-no-fsync --quota-backend-bytes 1073741824
  envtest_start kube-apiserver \
    --etcd-servers "http://127.0.0.1:$ENVTEST_ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$ENVTEST_PORT" \
    --tls-cert-file "$r/server.crt" --tls-private-key-file "$r/server.key" \
    --client-ca-file "$r/ca.crt" --token-auth-file "$r/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$r/sa.pub" --service-account-signing-key-file "$r/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=false --profiling=false \
    --endpoint-reconciler-type none \
    --audit-policy-file "$r/audit-policy.yaml" --audit-log-path "$r/logs/audit.log" \
    --cert-dir "$r/certs"
  envtest_wait kube-apiserver kubectl --kubeconfig "$r/admin.kubeconfig" get --raw /readyz
  envtest_start kube-controller-manager --kubeconfig "$r/kcm.kubeconfig" \
    --authentication-kubeconfig "$r/kcm.kubeconfig" --authorization-kubeconfig "$r/kcm.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 \
    --use-service-account-credentials \
    --service-account-private-key-file "$r/sa.key" --root-ca-file "$r/ca.crt" \
    --concurrent-deployment-syncs 10 --profiling=false
  envtest_start kube-scheduler --kubeconfig "$r/scheduler.kubeconfig" \
    --authentication-kubeconfig "$r/scheduler.kubeconfig" --authorization-kubeconfig "$r/scheduler.kubeconfig" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port 0 --profiling=false
  envtest_start kwok --kubeconfig "$r/kwok.kubeconfig" --config "$ENVTEST_DIR/kwok.yaml" \
    --manage-all-nodes=true --node-lease-duration-seconds 0 --server-address ""
  local k="kubectl --kubeconfig $r/admin.kubeconfig"
  $k apply --server-side -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  labels:
    kubernetes.io/hostname: kwok-node-0
    topology.kubernetes.io/zone: envtest-a
    type: kwok
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "200"}
  capacity: {cpu: "64", memory: 256Gi, pods: "200"}
NODE
  $k apply --server-side -f "$ENVTEST_DIR/crds/" >/dev/null
  $k wait --for condition=Established --timeout 60s crd --all >/dev/null
  envtest_wait kube-controller-manager $k -n default get serviceaccount default
  envtest_wait kwok sh -c "$k get node kwok-node-0 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
  echo "envtest: up in $(( $(date +%s) - start )) s (Kubernetes $ENVTEST_K8S on https://127.0.0.1:$ENVTEST_PORT, logs in $r/logs)" >&2
  echo "$r/admin.kubeconfig"
}

envtest_down() {
  local r="$ENVTEST_RUN" p
  if [ -f "$r/pids" ]; then
    for p in $(tac "$r/pids"); do kill "$p" 2>/dev/null || true; done
    for p in $(tac "$r/pids"); do
      for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$p" 2>/dev/null || true
    done
  fi
  rm -rf "$r"
  echo "envtest: down" >&2
}
