# Everything runs from a virtual environment of its own (.venv): the top-level
# package names (kernels, geo, stream) must not meet other installs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-integration bench lint clean chaos

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hotspot-dwell demo --out out/demo

lint: $(STAMP)
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest -q

# The chaos tests (short crash campaign, hostile input, short soak; in make test too), then the full
# crash campaign (a million fixes, about 12 minutes).
chaos: $(STAMP)
	$(PY) -m pytest -q -m chaos
	$(PY) -m tests.chaos.campaign --fixes 1000000

test-unit: lint
	$(PY) -m pytest -q -m "not integration"

test-integration: $(STAMP)
	$(PY) -m pytest -q -m integration

bench: $(STAMP)
	$(PY) benchmarks/bench_locate.py
	$(PY) benchmarks/bench_replay.py
	$(PY) benchmarks/bench_accuracy.py
	$(PY) benchmarks/bench_stream.py

clean:
	rm -rf $(VENV) out .pytest_cache
