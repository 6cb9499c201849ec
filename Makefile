# `make demo` and `make test` each build .venv first if it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/boolq-dev-split
STUDY  ?= studies/boolq-quick.yaml
OUT    ?= exported/boolq-quick

.PHONY: install demo test test-slow bench-latency bench-knobs clean

install: $(VENV)/.installed

# torch is pinned here, not in pyproject: 2.13.0 is the CPU wheel these machines hold on disk; an unpinned
# torch pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: install  ## `run` prints the Pareto front at its end
	$(BIN)/latencysolver run $(STUDY) --data $(DATA)
	$(BIN)/latencysolver export --study boolq-quick --best --out $(OUT)

test: install
	$(PY) -m pytest -q -m "not slow" tests

test-slow: install
	$(PY) -m pytest -q -m slow tests

bench-latency: install  ## CV of absolute p50 vs paired speed-up, 10 rounds (about 1.5 min)
	$(PY) benchmarks/latency_stability.py --data $(DATA)

bench-knobs: install  ## each knob alone and the CNN student (about 20 min)
	$(PY) benchmarks/knobs.py --data $(DATA)

clean:
	rm -rf $(VENV) exported latencysolver.db latencysolver-artifacts .pytest_cache
