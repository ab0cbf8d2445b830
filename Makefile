# sessionlayer developer entry points.  `make test` is what CI runs (.ci/run).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The shared vectors sit beside the repo (../shared/vectors); shared/vectors, then the
# copy in tests/vectors, are the fallbacks.
VECTORS := $(firstword $(wildcard ../shared/vectors shared/vectors) tests/vectors)
# Debian packages the test suite uses; each also names the command it provides.
SYSDEPS := tshark redis-server haproxy rsync
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: venv sysdeps test demo bench lint clean

venv: $(STAMP)

# Re-run whenever pyproject.toml changes (dependencies, extras).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

sysdeps:
	@missing=""; \
	for cmd in $(SYSDEPS); do command -v $$cmd >/dev/null 2>&1 || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -q --no-install-recommends $$missing; \
	fi

# lint (ruff + mypy), then the suite with branch coverage of src/: the floor is
# [tool.coverage.report] fail_under in pyproject.toml.
test: lint sysdeps
	$(BIN)/python -m pytest -q --cov --cov-report=term:skip-covered

demo: venv
	$(BIN)/sessionlayer demo
	@echo
	@echo "== a real libiec61850 client and server, decoded from a capture =="
	$(BIN)/sessionlayer decode --pcap $(VECTORS)/libiec61850-read.pcapng

# The bench extra (uvloop, grpcio, msgpack) on top of the dev venv; `make test` does not install it.
$(VENV)/.installed-bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $@

bench: $(VENV)/.installed-bench
	$(BIN)/python -m bench

# ruff on src/ and tests/, then mypy --strict on src/ (make test runs this first).
lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist .eggs src/*.egg-info
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
