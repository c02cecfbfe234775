# Two commands for a fresh Debian 12 machine with Python 3.11: `make demo` and `make test`.
# Each installs only what is missing, so a second run starts at once.

PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# Alertmanager is only needed by the benchmarks (the race against the watcher).
BENCH_DEBS := prometheus-alertmanager
# The Debian 12 rootfs tests/host boots with systemd-nspawn, and the dependency wheels installed
# inside it: built once, outside the checkout, so that every clone on this machine (CI) reuses
# them. The suffix changes with tests/host/build_rootfs.sh's package list.
ROOTFS_CACHE ?= /var/cache/rollback-watcher-tests/bookworm-1
export ROLLBACK_WATCHER_ROOTFS := $(ROOTFS_CACHE)

.PHONY: demo test lint bench fuzz check deps debs nodeapp bench-debs apt clean install rootfs sim sim-examples

demo: deps
	$(BIN)/rollback-watcher demo

# Four worker processes (pytest-xdist): tests/conftest.py schedules so that a test file, and
# each scenario directory (decisions, e2e, fleet, host), runs whole in one worker.
# The 15 slowest steps are printed at the end: the suite is within two minutes of its
# 12-minute budget, and a CI log says where the time goes.
TEST_WORKERS ?= 4
test: deps rootfs lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --durations=15

# The code's own checks (pyproject.toml says what each one checks and why): ruff, the
# import-linter contracts (folders import downward, no circle, no I/O in the core), mypy on the
# package (watcher.core strictly).
lint: deps
	$(BIN)/ruff check watcher tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: deps bench-debs
	$(BIN)/python bench/run.py

fuzz: deps
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -q tests -k fuzz

# The deterministic simulation (tests/sim): histories generated against the real watcher in a
# simulated world, for SIM_SECONDS of wall time, from SIM_SEED (default: from the clock), in
# SIM_JOBS processes; prints histories, simulated ticks and hours, histories per second and
# violations by invariant, each shrunk. `make sim-examples` runs the kept examples.
SIM_SECONDS ?= 60
SIM_JOBS ?= 1
sim: deps
	cd tests && PYTHONHASHSEED=0 SIM_SECONDS=$(SIM_SECONDS) SIM_SEED=$(SIM_SEED) SIM_JOBS=$(SIM_JOBS) ../$(BIN)/python -m sim.run

sim-examples: deps
	cd tests && PYTHONHASHSEED=0 ../$(BIN)/python -m sim.examples

check: deps
	$(BIN)/rollback-watcher check --config examples/watcher.yaml

deps: $(STAMP) debs nodeapp

# The virtualenv is rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || $(MAKE) --no-print-directory apt PKGS=python3-venv
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# Debian packages the tests and the demo start as real processes: prometheus (with promtool),
# nginx-light for the blue-green backend, systemd for `systemd-analyze` on the unit file,
# systemd-container + debootstrap to boot systemd as PID 1 (tests/host), docker.io + busybox-static
# for a real dockerd and the images the docker backend tests build without a registry,
# capistrano + openssh-server/-client + git for the Capistrano integration test
# (tests/integrations: a real `cap deploy` over SSH to 127.0.0.1).
# etcd-server for the fleet tests (a 3-member cluster on loopback ports).
# faketime (libfaketime) for the decision scenarios that step the watcher's wall clock.
# Apps and exporters the project did not build, for the rule packs (tests/support/realapps.py):
# golang-go + golang-github-prometheus-client-golang-dev (a Go app built offline), haproxy (its
# built-in Prometheus exporter), prometheus-node-exporter, nodejs + npm (a Node app, see nodeapp).
# apt-get only runs when a binary is missing; `apt-get update` first, as a fresh machine needs.
debs:
	@missing=""; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v promtool   >/dev/null || missing="$$missing prometheus"; \
	test -x /usr/sbin/nginx || command -v nginx >/dev/null || missing="$$missing nginx-light"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v systemd-nspawn  >/dev/null || missing="$$missing systemd-container"; \
	command -v debootstrap     >/dev/null || missing="$$missing debootstrap"; \
	command -v dockerd         >/dev/null || missing="$$missing docker.io"; \
	dpkg-query -W -f='$${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || missing="$$missing busybox-static"; \
	command -v cap        >/dev/null || missing="$$missing capistrano"; \
	test -x /usr/sbin/sshd || missing="$$missing openssh-server"; \
	command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	command -v git        >/dev/null || missing="$$missing git"; \
	command -v flock      >/dev/null || missing="$$missing util-linux"; \
	command -v etcd >/dev/null || missing="$$missing etcd-server"; \
	command -v faketime   >/dev/null || missing="$$missing faketime"; \
	command -v go         >/dev/null || missing="$$missing golang-go"; \
	test -d /usr/share/gocode/src/github.com/prometheus/client_golang || missing="$$missing golang-github-prometheus-client-golang-dev"; \
	test -x /usr/sbin/haproxy || command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v prometheus-node-exporter >/dev/null || missing="$$missing prometheus-node-exporter"; \
	command -v node       >/dev/null || missing="$$missing nodejs"; \
	command -v npm        >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then $(MAKE) --no-print-directory apt PKGS="$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' ')"; fi

# The Node app of the rule-pack tests (tests/support/nodeapp): Express, prom-client and
# express-prom-bundle exactly as its package-lock.json pins them (`npm ci`, from the npm
# registry), installed only when node_modules is missing or older than the lock file.
NODEAPP := tests/support/nodeapp
nodeapp: $(NODEAPP)/node_modules/.installed
$(NODEAPP)/node_modules/.installed: $(NODEAPP)/package-lock.json | debs
	cd $(NODEAPP) && npm ci --no-audit --no-fund
	touch $@

# Only when missing: the first build downloads its packages from the Debian mirror of the
# machine's apt sources (1-7 minutes on a loaded machine, ~260 MB on disk); it is built aside and renamed when complete.
rootfs: debs
	@test -d $(ROOTFS_CACHE) || sh tests/host/build_rootfs.sh $(ROOTFS_CACHE)

bench-debs:
	@command -v prometheus-alertmanager >/dev/null || $(MAKE) --no-print-directory apt PKGS="$(BENCH_DEBS)"

apt:
	@if [ "$$(id -u)" != 0 ]; then echo "need root to install: $(PKGS) (or install them yourself)"; exit 1; fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(PKGS)

# The service on this host (docs/deployment.md): a virtualenv under PREFIX (/opt/rollback-watcher),
# the systemd unit and an example config that never overwrites an existing one.
install:
	sh systemd/install.sh

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
