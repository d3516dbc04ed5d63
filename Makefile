# Two entry points (see README): `make run` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export ALERTPILOT_TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test lint debian-packages test-redis bench bench-packages

run: $(VENV)/.run-installed
	$(BIN)/alertpilot dev

test: debian-packages $(VENV)/.test-installed test-redis lint
	$(BIN)/python -m pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Speed figures, as ratios to a baseline measured in the same run (not a test).
# The last three start real processes on loopback and use Redis db 13 (docs/benchmarks.md).
bench: bench-packages $(VENV)/.test-installed test-redis
	$(BIN)/python -m tests.bench.intake
	$(BIN)/python -m tests.bench.policy
	$(BIN)/python -m tests.bench.http_intake
	$(BIN)/python -m tests.bench.worker
	$(BIN)/python -m tests.bench.storm

# What `bench` runs besides the tests' packages: wrk, the HTTP load generator.
bench-packages: debian-packages
	@command -v wrk >/dev/null || { \
	  echo "installing: wrk"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q wrk; \
	}

# Debian packages the tests run for real: Redis (and redis-sentinel: the failover
# test), Alertmanager with its amtool
# (check-config of deploy/alertmanager), Prometheus (tests/test_prometheus.py), and
# chromium (tests/test_web_page.py drives it through playwright, which downloads no
# browser of its own). kubectl comes from PyPI (pyproject's test extra).
debian-packages:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	[ -x /usr/bin/prometheus-alertmanager ] || missing="$$missing prometheus-alertmanager"; \
	[ -x /usr/bin/prometheus ] || missing="$$missing prometheus"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

# The test database lives on the machine's Redis; start one when none answers.
test-redis:
	@redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 || \
	  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no

$(VENV)/.run-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded]'
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[embedded,test]'
	touch $@
