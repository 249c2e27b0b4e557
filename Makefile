# The two commands a new user needs: `make run` and `make test`.  Each builds
# the virtualenv under .venv and installs the project into it when missing or
# when the packaging files changed.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=

.PHONY: run test check lint typecheck venv bench clean

# A PEP 660 editable install does not expose twisted/plugins/ to twistd; the
# .pth file putting the repo root on sys.path does (setuptools' "compat"
# editable mode did the same and is being removed).
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "amqplike-repo-root.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	@touch $(STAMP)

venv: $(STAMP)

## run the broker in the foreground on tcp:5680 (loopback); ARGS="--listen ..." to change
run: $(STAMP)
	$(VENV)/bin/twistd --nodaemon --pidfile= amqplike $(ARGS)

## lint and type checks, then the whole test suite
test: $(STAMP) check
	$(PY) -m pytest

check: lint typecheck

lint: $(STAMP)
	$(VENV)/bin/ruff check amqplike twisted tests

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## amqplike side by side with RabbitMQ (installs Debian's rabbitmq-server if missing)
BENCH_STAMP := $(VENV)/.installed-bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(VENV)/bin/amqplike-bench --compare --json bench.json --plot bench.png $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache twisted/plugins/dropin.cache
