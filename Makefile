# The two commands: `make demo` (the main job) and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DATA ?= demo_data
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint perf gpu-check clean-demo

setup:
	@bash tools/setup_env.sh

demo: setup
	@bash tools/demo.sh $(DEMO_DATA) $(DEMO_OUT)

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
