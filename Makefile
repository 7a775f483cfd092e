# Everything a new user needs, from a fresh clone (Python 3.11+ on PATH as python3):
#   make audit   - offline audit of the bundled examples (no cluster needed)
#   make test    - lint, type-check, layer check and the whole test suite
#   make run     - run the operator against the current kube context
# Each target creates .venv and installs the project into it on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: audit test run e2e e2e-bench bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

audit: $(BIN)/.installed
	$(BIN)/kube-guardrails audit examples/workloads/ --fail-on none

test: $(BIN)/.installed
	VENV=$(VENV) hack/test.sh

run: $(BIN)/.installed
	$(BIN)/kube-guardrails run

e2e: $(BIN)/.installed
	VENV=$(VENV) hack/e2e.sh

# Hardening burst on a real cluster, operator vs a bare controller (issue #2's figure).
e2e-bench: $(BIN)/.installed
	VENV=$(VENV) hack/e2e.sh bench --namespaces 200

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
