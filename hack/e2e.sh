#!/usr/bin/env bash
# End-to-end tests against the cluster of the current kube context (kind, k3d, minikube...).
#
#   hack/e2e.sh                      # operator runs locally: `kube-guardrails run` (default),
#                                    # as its own ServiceAccount (RBAC from manifests/)
#   E2E_OPERATOR=in-cluster hack/e2e.sh   # operator installed with `kubectl apply -k manifests/`
#   hack/e2e.sh -k hardening         # extra arguments go to pytest
#   hack/e2e.sh restart-operator     # (used by the tests) restart the operator, wait until live
#   hack/e2e.sh stop-operator        # (used by the tests) stop it (restart-operator starts it)
#   hack/e2e.sh check-context NAME   # exit 0 if NAME looks like a test cluster's context
#   hack/e2e.sh bench [ARGS]         # same set-up, then hack/bench/bench_e2e_hardening.py ARGS
#                                    # instead of pytest (resync 600 s unless E2E_RESYNC_SECONDS)
#
# Steps: check kubectl and the context (it must look like a test cluster, or
# KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1), apply the CRD, (local mode) apply the
# operator's namespace, ServiceAccount and RBAC from manifests/ and write a token kube
# config for that account (hack/sa-kubeconfig.sh), start the operator with it and a short
# resync interval, wait for its liveness endpoint, run `pytest tests/e2e -m e2e` (in
# parallel with pytest-xdist when it is installed, see below), stop the operator, and
# print the tail of its log when something failed.
#
# Environment:
#   E2E_OPERATOR          local (default) or in-cluster
#   E2E_RESYNC_SECONDS    operator resync interval for the run (default 5)
#   E2E_STATUS_SECONDS    operator status batching interval (default 1)
#   E2E_LIVENESS_PORT     local mode: port of the liveness endpoint (default 18080)
#   E2E_METRICS_PORT      local mode: port of the operator's /metrics (default 19095); the
#                         metrics tests read KUBE_GUARDRAILS_E2E_METRICS_URL
#   E2E_METRICS_URL       in-cluster mode: where the tests reach /metrics (e.g. through
#                         kubectl port-forward); unset: the metrics tests skip
#   E2E_REPORT_CRD        1 (default): install the test OpenReports Report CRD
#                         (tests/data/openreports.io_reports.yaml) before the operator starts
#   E2E_IMAGE             in-cluster mode: operator image (default: the one in manifests/)
#   E2E_KIND_LOAD=1       in-cluster mode: `kind load docker-image $E2E_IMAGE` first
#   E2E_WORKDIR           where the operator log and pid file go ($TMPDIR/kube-guardrails-e2e)
#   E2E_SERVICE_ACCOUNT   local mode: 1 (default) runs the operator as its ServiceAccount
#                         with a token; 0 runs it with your own kube credentials
#   E2E_JOBS              pytest processes (default 4: the e2e_serial tests in one, the
#                         rest on 3 xdist workers; 0 or 1: everything in one process)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"
BIN="${VENV:-$ROOT/.venv}/bin"
MODE="${E2E_OPERATOR:-local}"
BENCH=0
if [ "${1:-}" = "bench" ]; then
  BENCH=1
  shift
fi
# The tests wait "longer than a resync", so they want a short one; the benchmark wants
# the operator's default, so that a full re-check does not land inside the burst.
if [ "$BENCH" = "1" ]; then
  RESYNC="${E2E_RESYNC_SECONDS:-600}"
  STATUS_INTERVAL="${E2E_STATUS_SECONDS:-5}"
else
  RESYNC="${E2E_RESYNC_SECONDS:-5}"
  STATUS_INTERVAL="${E2E_STATUS_SECONDS:-1}"
fi
PORT="${E2E_LIVENESS_PORT:-18080}"
METRICS_PORT="${E2E_METRICS_PORT:-19095}"
REPORT_CRD="${E2E_REPORT_CRD:-1}"
WORKDIR="${E2E_WORKDIR:-${TMPDIR:-/tmp}/kube-guardrails-e2e}"
LOG="$WORKDIR/operator.log"
PIDFILE="$WORKDIR/operator.pid"
NAMESPACE="kube-guardrails-system"
DEPLOYMENT="kube-guardrails"
LIVENESS_URL="http://127.0.0.1:${PORT}/healthz"
SERVICE_ACCOUNT="kube-guardrails"
USE_SA="${E2E_SERVICE_ACCOUNT:-1}"
SA_KUBECONFIG="$WORKDIR/operator.kubeconfig"
JOBS="${E2E_JOBS:-4}"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'hack/e2e.sh: %s\n' "$*" >&2; exit 2; }

# ------------------------------------------------------------------- operator: local

start_local() {
  mkdir -p "$WORKDIR"
  say "starting the operator locally (log: $LOG)"
  # Own session + closed stdio: the operator outlives the shell that started it (the
  # tests restart it through this script) and holds no pipe of its caller open.
  local detach=()
  if command -v setsid >/dev/null; then detach=(setsid); else detach=(nohup); fi
  # KUBE_GUARDRAILS_CONTEXT pins the context the checks above approved; with a
  # ServiceAccount, the operator gets only that account's kube config (its token).
  local kube_env=("KUBE_GUARDRAILS_CONTEXT=$CONTEXT")
  if [ "$USE_SA" = "1" ]; then
    [ -f "$SA_KUBECONFIG" ] || die "no $SA_KUBECONFIG: run hack/e2e.sh (it writes it)"
    kube_env=("KUBECONFIG=$SA_KUBECONFIG" "KUBE_GUARDRAILS_CONTEXT=${CONTEXT}-sa")
  fi
  env "${kube_env[@]}" "${detach[@]}" "$BIN/kube-guardrails" run \
    --resync-seconds "$RESYNC" \
    --status-interval-seconds "$STATUS_INTERVAL" \
    --liveness "$LIVENESS_URL" \
    --metrics-address "127.0.0.1:$METRICS_PORT" \
    --log-format console \
    </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
}

stop_local() {
  [ -f "$PIDFILE" ] || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  rm -f "$PIDFILE"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  say "operator (pid $pid) did not stop on SIGTERM within 10s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

wait_live() {
  say "waiting for the operator's liveness endpoint $LIVENESS_URL"
  for _ in $(seq 1 120); do
    if "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "$LIVENESS_URL" 2>/dev/null; then
      return 0
    fi
    if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      tail -n 50 "$LOG" >&2 || true
      die "the operator exited during start-up (log above)"
    fi
    sleep 0.5
  done
  tail -n 50 "$LOG" >&2 || true
  die "the operator did not become live within 60s (log above)"
}

# Namespace, ServiceAccount, ClusterRole, the leader-election Role and their bindings
# exactly as manifests/ has them (no
# Deployment), and a bound token for the account: the local operator then has the
# permissions the install grants, so a missing rule fails the suite.
setup_service_account() {
  say "applying the operator's namespace, ServiceAccount and RBAC from manifests/"
  kubectl apply -f manifests/namespace.yaml -f manifests/serviceaccount.yaml \
    -f manifests/clusterrole.yaml -f manifests/clusterrolebinding.yaml \
    -f manifests/role.yaml -f manifests/rolebinding.yaml
  mkdir -p "$WORKDIR"
  local made
  made="$(KUBECTL_CONTEXT="$CONTEXT" "$ROOT/hack/sa-kubeconfig.sh" "$SA_KUBECONFIG" \
    "$NAMESPACE" "$SERVICE_ACCOUNT" 8h)"
  [ "$made" = "${CONTEXT}-sa" ] || die "unexpected context $made in $SA_KUBECONFIG"
  say "the operator runs as system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT ($SA_KUBECONFIG)"
}

# ------------------------------------------------------------------- operator: in-cluster

start_in_cluster() {
  say "installing with kubectl apply -k manifests/"
  if [ -n "${E2E_IMAGE:-}" ] && [ "${E2E_KIND_LOAD:-0}" = "1" ]; then
    local cluster="${CONTEXT#kind-}"
    say "loading $E2E_IMAGE into kind cluster $cluster"
    kind load docker-image "$E2E_IMAGE" --name "$cluster"
  fi
  kubectl apply -k manifests/
  if [ -n "${E2E_IMAGE:-}" ]; then
    kubectl -n "$NAMESPACE" set image "deployment/$DEPLOYMENT" "operator=$E2E_IMAGE"
  fi
  # The tests wait "longer than a resync": give the installed operator a short one.
  kubectl -n "$NAMESPACE" set env "deployment/$DEPLOYMENT" \
    "KUBE_GUARDRAILS_RESYNC_SECONDS=$RESYNC" \
    "KUBE_GUARDRAILS_STATUS_INTERVAL_SECONDS=$STATUS_INTERVAL"
  kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout=180s
}

restart_in_cluster() {
  kubectl -n "$NAMESPACE" rollout restart "deployment/$DEPLOYMENT"
  kubectl -n "$NAMESPACE" rollout status "deployment/$DEPLOYMENT" --timeout=180s
}

# shellcheck disable=SC2329  # called from the EXIT trap
in_cluster_logs() {
  kubectl -n "$NAMESPACE" logs "deployment/$DEPLOYMENT" --tail=100 >&2 || true
}

# The same rule as tests/e2e/e2e_harness.py (a unit test keeps the two in step): names
# kind, k3d, minikube and Docker Desktop give their contexts, or "test"/"e2e" anywhere.
looks_like_test_context() {
  local lowered
  lowered="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
  case "$lowered" in
    kind-*|k3d-*|minikube*|docker-desktop*|*test*|*e2e*) return 0 ;;
    *) return 1 ;;
  esac
}

allow_any_context() {
  local value
  value="$(printf '%s' "${KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT:-}" | tr '[:upper:]' '[:lower:]')"
  case "$value" in 1|true|yes) return 0 ;; *) return 1 ;; esac
}

# ------------------------------------------------------------------- commands

if [ "${1:-}" = "check-context" ]; then
  looks_like_test_context "${2:-}"
  exit $?
fi

if [ "${1:-}" = "stop-operator" ]; then
  case "$MODE" in
    local) stop_local ;;
    in-cluster) kubectl -n "$NAMESPACE" scale "deployment/$DEPLOYMENT" --replicas=0
                kubectl -n "$NAMESPACE" wait --for=delete pod \
                  -l app.kubernetes.io/name=kube-guardrails --timeout=120s || true ;;
    *) die "E2E_OPERATOR must be local or in-cluster, not '$MODE'" ;;
  esac
  exit 0
fi

if [ "${1:-}" = "restart-operator" ]; then
  CONTEXT="${KUBE_GUARDRAILS_E2E_CONTEXT:-$(kubectl config current-context)}"
  case "$MODE" in
    local) stop_local; start_local; wait_live ;;
    in-cluster) kubectl -n "$NAMESPACE" scale "deployment/$DEPLOYMENT" --replicas=1
                restart_in_cluster ;;
    *) die "E2E_OPERATOR must be local or in-cluster, not '$MODE'" ;;
  esac
  exit 0
fi

case "$MODE" in
  local|in-cluster) ;;
  *) die "E2E_OPERATOR must be local or in-cluster, not '$MODE'" ;;
esac
command -v kubectl >/dev/null || die "kubectl is not on PATH"
[ -x "$BIN/pytest" ] || die "no $BIN/pytest: run 'make test' once (it creates .venv) or set VENV"
CONTEXT="$(kubectl config current-context 2>/dev/null)" \
  || die "no current kube context: create a test cluster (kind create cluster) or set KUBECONFIG"
if ! looks_like_test_context "$CONTEXT" && ! allow_any_context; then
  die "context '$CONTEXT' does not look like a test cluster (kind-*, k3d-*, minikube, docker-desktop, *test*, *e2e*); set KUBE_GUARDRAILS_E2E_ALLOW_ANY_CONTEXT=1 to run anyway"
fi
kubectl version --request-timeout=10s >/dev/null \
  || die "the API server of context '$CONTEXT' does not answer"
say "context: $CONTEXT; operator: $MODE; resync: ${RESYNC}s"

say "applying the CRD"
kubectl apply -f crds/
kubectl wait --for=condition=Established --timeout=60s crd/guardrailpolicies.kube-guardrails.io
if [ "$REPORT_CRD" = "1" ]; then
  # Before the operator starts, so it writes Reports from the start (it also finds a CRD
  # installed later, within a minute).
  say "applying the test OpenReports Report CRD (tests/data/openreports.io_reports.yaml)"
  kubectl apply -f tests/data/openreports.io_reports.yaml
  kubectl wait --for=condition=Established --timeout=60s crd/reports.openreports.io
fi

status=0
# shellcheck disable=SC2329  # the EXIT trap
cleanup() {
  local rc=$?
  if [ "$status" -eq 0 ] && [ "$rc" -ne 0 ]; then status=$rc; fi
  if [ "$MODE" = "local" ]; then
    stop_local
    if [ "$status" -ne 0 ] && [ -f "$LOG" ]; then
      # The tail shows the end of the run; a failure earlier on usually left a warning.
      say "operator warnings and errors (last 80 of the whole run, $LOG)"
      grep -E '\[(warning|error|critical) ' "$LOG" | tail -n 80 >&2 || true
      say "operator log (last 100 lines of $LOG)"
      tail -n 100 "$LOG" >&2 || true
    fi
  elif [ "$status" -ne 0 ]; then
    say "operator log (last 100 lines)"
    in_cluster_logs
  fi
}
trap cleanup EXIT

if [ "$MODE" = "local" ]; then
  if kubectl -n "$NAMESPACE" get "deployment/$DEPLOYMENT" >/dev/null 2>&1; then
    die "an operator is installed in $NAMESPACE; two would fight: delete it or use E2E_OPERATOR=in-cluster"
  fi
  mkdir -p "$WORKDIR"
  : >"$LOG"
  if [ "$USE_SA" = "1" ]; then setup_service_account; fi
  stop_local
  start_local
  wait_live
else
  start_in_cluster
fi

export KUBE_GUARDRAILS_E2E_OPERATOR="$MODE"
export KUBE_GUARDRAILS_E2E_LIVENESS_URL="$LIVENESS_URL"
export KUBE_GUARDRAILS_E2E_RESYNC_SECONDS="$RESYNC"
export KUBE_GUARDRAILS_E2E_STATUS_INTERVAL_SECONDS="$STATUS_INTERVAL"
export KUBE_GUARDRAILS_E2E_RESTART_COMMAND="E2E_OPERATOR=$MODE E2E_WORKDIR='$WORKDIR' E2E_LIVENESS_PORT=$PORT E2E_METRICS_PORT=$METRICS_PORT E2E_RESYNC_SECONDS=$RESYNC E2E_STATUS_SECONDS=$STATUS_INTERVAL E2E_SERVICE_ACCOUNT=$USE_SA KUBECONFIG='${KUBECONFIG:-}' '$ROOT/hack/e2e.sh' restart-operator"
export KUBE_GUARDRAILS_E2E_STOP_COMMAND="E2E_OPERATOR=$MODE E2E_WORKDIR='$WORKDIR' E2E_LIVENESS_PORT=$PORT E2E_METRICS_PORT=$METRICS_PORT E2E_RESYNC_SECONDS=$RESYNC E2E_STATUS_SECONDS=$STATUS_INTERVAL E2E_SERVICE_ACCOUNT=$USE_SA KUBECONFIG='${KUBECONFIG:-}' '$ROOT/hack/e2e.sh' stop-operator"
export KUBE_GUARDRAILS_E2E_CONTEXT="$CONTEXT"
if [ "$MODE" = "local" ]; then
  export KUBE_GUARDRAILS_E2E_METRICS_URL="http://127.0.0.1:${METRICS_PORT}/metrics"
elif [ -n "${E2E_METRICS_URL:-}" ]; then
  export KUBE_GUARDRAILS_E2E_METRICS_URL="$E2E_METRICS_URL"
fi
if [ "$MODE" = "in-cluster" ] || [ "$USE_SA" = "1" ]; then
  export KUBE_GUARDRAILS_E2E_OPERATOR_ACCOUNT="system:serviceaccount:$NAMESPACE:$SERVICE_ACCOUNT"
fi
if [ "$MODE" = "local" ] && [ "$USE_SA" = "1" ]; then
  export KUBE_GUARDRAILS_E2E_OPERATOR_KUBECONFIG="$SA_KUBECONFIG"
fi
if [ "$MODE" = "local" ]; then
  # The HA tests kill this operator (SIGKILL) and run a second replica next to it.
  export KUBE_GUARDRAILS_E2E_OPERATOR_PIDFILE="$PIDFILE"
fi
# The shared control plane (../shared/kube) logs every write; the HA tests count them.
if [ -n "${KUBE_TEST_DIR:-}" ] && [ -r "$KUBE_TEST_DIR/audit.log" ]; then
  export KUBE_GUARDRAILS_E2E_AUDIT_LOG="$KUBE_TEST_DIR/audit.log"
fi

if [ "$BENCH" = "1" ]; then
  say "running hack/bench/bench_e2e_hardening.py $*"
  "$BIN/python" hack/bench/bench_e2e_hardening.py "$@" || status=$?
  exit "$status"
fi

if [ "$JOBS" -gt 1 ] 2>/dev/null && "$BIN/python" -c 'import xdist' 2>/dev/null; then
  # Two pytest processes at once: the tests marked e2e_serial (operator restarts, and
  # tests that an operator restart would disturb) one after the other in one process,
  # everything else on JOBS-1 xdist workers. (pytest-xdist's --dist loadgroup would do
  # this in one process, but does not work with pytest 9.)
  SERIAL_LOG="$WORKDIR/pytest-serial.log"
  say "running pytest tests/e2e -m e2e: e2e_serial in one process (log: $SERIAL_LOG), the rest on $((JOBS - 1)) workers"
  "$BIN/pytest" tests/e2e -m "e2e and e2e_serial" -p no:cacheprovider "$@" >"$SERIAL_LOG" 2>&1 &
  serial_pid=$!
  rest=0
  "$BIN/pytest" tests/e2e -m "e2e and not e2e_serial" -p no:cacheprovider \
    -n "$((JOBS - 1))" "$@" || rest=$?
  serial=0
  wait "$serial_pid" || serial=$?
  say "the e2e_serial tests ($SERIAL_LOG):"
  cat "$SERIAL_LOG"
  # 5 = nothing collected in that part (e.g. a -k filter): fine if the other part ran.
  if [ "$rest" -eq 5 ] && [ "$serial" -eq 5 ]; then status=5
  elif [ "$rest" -ne 0 ] && [ "$rest" -ne 5 ]; then status=$rest
  elif [ "$serial" -ne 0 ] && [ "$serial" -ne 5 ]; then status=$serial
  fi
else
  say "running pytest tests/e2e -m e2e"
  "$BIN/pytest" tests/e2e -m e2e -p no:cacheprovider "$@" || status=$?
fi
if [ "$status" -eq 5 ]; then
  say "pytest collected no e2e test"
fi
exit "$status"
