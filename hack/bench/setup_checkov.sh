#!/usr/bin/env bash
# Install checkov into its own venv, only for the audit benchmark (hack/bench/bench_audit.py).
# It never goes into the project's venv: checkov pins many packages of its own, and the
# project must not depend on it. The version is pinned so that the figures compare.
set -euo pipefail
cd "$(dirname "$0")"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
PYTHON="${PYTHON:-python3}"
VENV=.venv-checkov
if [ -x "$VENV/bin/checkov" ] && "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "checkov $CHECKOV_VERSION already installed in hack/bench/$VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "checkov==$CHECKOV_VERSION"
echo "installed: checkov $("$VENV/bin/checkov" --version) in hack/bench/$VENV"
