# SynSpirit developer entry points. `make test` is the one command that runs every test.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: setup test test-backend lab lab-down test-lab test-chaos lint start bench chaos drill

setup:            ## install Debian packages and the pinned virtualenv (idempotent)
	tests/bootstrap.sh

test: setup       ## everything: backend suite, the lab (real systemd hosts) suite, then chaos on that lab
	$(MAKE) test-backend
	$(MAKE) test-lab
	$(MAKE) test-chaos

test-backend: setup
	$(VENV)/bin/pytest tests/backend

lab: setup        ## build/boot the lab hosts and converge them with ansible/site.yml
	tests/lab/lab.sh up

lab-down:         ## remove every lab host, the bridge, the proxy and their copies
	tests/lab/lab.sh down

test-lab: lab     ## testinfra + end-to-end checks against the lab
	tests/lab/lab.sh test

chaos: lab        ## fault scenarios under load against the lab (docs/reliability.md); CHAOS_ARGS=--only kill,redis
	$(PY) tests/chaos/run.py $(CHAOS_ARGS)

# The same scenarios on the lab that test-lab left up and converged: no second `make lab`
# (a converge of ~1-4 min for nothing). Exit status 1 when a guarantee is broken.
test-chaos: setup ## fault scenarios on the already-up lab (make test's last step)
	$(PY) tests/chaos/run.py $(CHAOS_ARGS)

# Not in `make test` (about 15 min more on the 2-core lab): every data host destroyed and
# rebuilt from the backup repository; RTO and RPO measured (docs/operations.md, "Disaster").
drill: lab        ## disaster drill: wipe every data host, rebuild from the backups; DRILL_ARGS=--write-seconds 60
	$(PY) tests/drill/run.py $(DRILL_ARGS)

lint: setup
	$(VENV)/bin/ruff check backend tests
	cd ansible && ../$(VENV)/bin/ansible-lint --profile production

start:
	./start.sh

bench: setup      ## SynSpirit against its own floor (docs/performance.md); BENCH_ARGS=--quick
	$(PY) tests/bench/run.py $(BENCH_ARGS)
