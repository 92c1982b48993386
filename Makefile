# The two commands: `make demo` (the main job) and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DATA ?= demo_data
DEMO_OUT ?= demo_out
EVIDENCE_DATA ?= evidence_data
EVIDENCE_OUT ?= evidence_out
PYTEST_ARGS ?=

.PHONY: setup demo evidence test test-fast lint perf gpu-check clean-demo

setup:
	@bash tools/setup_env.sh

demo: setup
	@bash tools/demo.sh $(DEMO_DATA) $(DEMO_OUT)

# the paper's claims at CPU scale (configs/benchmarks/evidence_demo.yaml; about 30 minutes, resumable)
evidence: setup
	@test -f $(EVIDENCE_DATA)/world.json || $(PY) tools/make_demo_data.py $(EVIDENCE_DATA) --parts imagefolder colour
	HA_EVIDENCE_DATA=$(EVIDENCE_DATA) HA_EVIDENCE_OUT=$(EVIDENCE_OUT) $(PY) -m benchmarks.run configs/benchmarks/evidence_demo.yaml

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check pretrain transfer benchmarks tools tests

perf: setup
	$(PY) -m benchmarks.perf.pretrain_overhead
	$(PY) -m benchmarks.perf.augment_throughput
	$(PY) -m benchmarks.perf.hot_loop --label after

# on a node with a CUDA GPU: writes benchmarks/perf/results/gpu_check.json (about 5-8 minutes)
gpu-check: setup
	$(PY) -m benchmarks.perf.gpu_check

clean-demo:
	rm -rf $(DEMO_DATA) $(DEMO_OUT)
