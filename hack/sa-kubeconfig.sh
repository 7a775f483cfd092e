#!/usr/bin/env bash
# Write a kube config that authenticates as a ServiceAccount with a bound token
# (`kubectl create token`), for running the operator locally with exactly the
# permissions its RBAC grants (no admin credentials behind its back).
#
#   hack/sa-kubeconfig.sh OUT [NAMESPACE] [SERVICEACCOUNT] [DURATION]
#
# Defaults: kube-guardrails-system, kube-guardrails, 8h. The cluster (server, CA) is
# taken from the current kube context (or KUBECONFIG / --context via $KUBECTL_CONTEXT);
# the new file has one context, named "<current context>-sa", so the e2e suite's
# test-cluster naming rule accepts it whenever it accepts the original. The token is
# written only into OUT (mode 600), never printed.
set -euo pipefail

OUT="${1:?usage: hack/sa-kubeconfig.sh OUT [NAMESPACE] [SERVICEACCOUNT] [DURATION]}"
NAMESPACE="${2:-kube-guardrails-system}"
ACCOUNT="${3:-kube-guardrails}"
DURATION="${4:-8h}"

kc=(kubectl)
if [ -n "${KUBECTL_CONTEXT:-}" ]; then kc+=(--context "$KUBECTL_CONTEXT"); fi

context="$("${kc[@]}" config current-context)"
[ -n "${KUBECTL_CONTEXT:-}" ] && context="$KUBECTL_CONTEXT"
view() { "${kc[@]}" config view --raw --minify --flatten -o "jsonpath=$1"; }
server="$(view '{.clusters[0].cluster.server}')"
ca_data="$(view '{.clusters[0].cluster.certificate-authority-data}')"
insecure="$(view '{.clusters[0].cluster.insecure-skip-tls-verify}')"
[ -n "$server" ] || { echo "hack/sa-kubeconfig.sh: no server in context $context" >&2; exit 2; }

token="$("${kc[@]}" -n "$NAMESPACE" create token "$ACCOUNT" --duration "$DURATION")"

umask 077
mkdir -p "$(dirname "$OUT")"
{
  echo "apiVersion: v1"
  echo "kind: Config"
  echo "clusters:"
  echo "- name: ${context}-sa"
  echo "  cluster:"
  echo "    server: \"$server\""
  if [ -n "$ca_data" ]; then echo "    certificate-authority-data: $ca_data"; fi
  if [ "$insecure" = "true" ]; then echo "    insecure-skip-tls-verify: true"; fi
  echo "users:"
  echo "- name: system:serviceaccount:${NAMESPACE}:${ACCOUNT}"
  echo "  user:"
  echo "    token: $token"
  echo "contexts:"
  echo "- name: ${context}-sa"
  echo "  context: {cluster: ${context}-sa, user: \"system:serviceaccount:${NAMESPACE}:${ACCOUNT}\"}"
  echo "current-context: ${context}-sa"
} >"$OUT"
echo "${context}-sa"
