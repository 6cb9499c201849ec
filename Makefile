# `make demo` and `make test` each build .venv first if it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/boolq-dev-split
STUDY  ?= studies/boolq-quick.yaml
OUT    ?= exported/boolq-quick
# `make test` runs the fast suite in this many pytest-xdist processes (each test uses one torch thread; a test
# file stays in one process, so its module fixtures are built once): one per core of these 2-core machines
TEST_WORKERS ?= 2

.PHONY: bench-cnn constraints docs gpu-check install demo lint test test-slow pg-start pg-stop bench-latency bench-knobs bench-workers bench-pareto bench-boolq bench-sst2 bench-elastic bench-search clean interop

install: $(VENV)/.installed

# torch is pinned here, not in pyproject: 2.13.0 is the CPU wheel these machines hold on disk; an unpinned
# torch pulls a multi-GB CUDA build.
# Every other package at the version in constraints.txt (the set last tested), so a new upstream release cannot
# break a fresh install between two commits; `make constraints` re-resolves them to the newest releases.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip -c constraints.txt
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]' -c constraints.txt
	touch $@

# A scratch venv with the newest release of everything pyproject.toml admits, frozen into constraints.txt; then
# run `make lint test test-slow` (they reinstall .venv from it) before committing the new file.
constraints:
	rm -rf .constraints-venv && $(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/python -m pip install -q --upgrade pip
	.constraints-venv/bin/python -m pip install -q torch==2.13.0
	.constraints-venv/bin/python -m pip install -q '.[test,docs]'
	{ sed -n '/^#/p' constraints.txt; .constraints-venv/bin/python -m pip freeze --all \
	    | grep -vE '^(torch|setuptools|wheel|latencysolver)[= @]'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .constraints-venv

# Chromium as for `make test` (below): the report's PNG needs it; `make demo BROWSER_INSTALL=0` skips the install
demo: install  ## `run` prints the Pareto front at its end; then the best trial's export and the HTML report
	if [ "$(BROWSER_INSTALL)" = 1 ]; then .ci/chromium.sh || echo "no Chromium: the report's PNG will be skipped"; fi
	$(BIN)/latencysolver run $(STUDY) --data $(DATA)
	$(BIN)/latencysolver export --study boolq-quick --best --fallback knee --out $(OUT)
	$(BIN)/latencysolver report --study boolq-quick --out $(OUT)-report.html

# PostgreSQL for the tests that run several worker processes on one study: a LATENCYSOLVER_TEST_POSTGRES
# already set is used as is; otherwise .ci/postgres.sh starts (or reuses) a throwaway server on 127.0.0.1:55432
# from an installed PostgreSQL and leaves it running for the next `make test` (`make pg-stop` ends it).
# As root, a missing PostgreSQL is apt-get installed (`make test PG_INSTALL=0` does not).  No server: those tests skip.
PG_INSTALL ?= 1

# Chromium and chromedriver (Debian packages) for the report tests and kaleido's PNGs: .ci/chromium.sh installs
# them with apt-get as root when missing (`make test BROWSER_INSTALL=0` does not); without them those tests skip.
BROWSER_INSTALL ?= 1

lint: install  ## ruff (rules and formatting) and mypy; the settings are in pyproject.toml
	$(BIN)/ruff check latencysolver tests benchmarks
	$(BIN)/ruff format --check latencysolver tests benchmarks
	$(BIN)/mypy

# The documentation site in site/: the docs extras (constraints.txt's versions) into .venv, then a strict build,
# which fails on a broken link or anchor, a page outside the nav, or a public function without a docstring
# (docs/hooks.py).  `.venv/bin/mkdocs serve` previews it at 127.0.0.1:8000.
docs: $(VENV)/.docs-installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.docs-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[docs]' -c constraints.txt
	touch $@

test: install
	if [ "$(BROWSER_INSTALL)" = 1 ]; then .ci/chromium.sh; fi
	LATENCYSOLVER_TEST_POSTGRES="$${LATENCYSOLVER_TEST_POSTGRES:-$$(LATENCYSOLVER_PG_INSTALL=$(PG_INSTALL) \
	    .ci/postgres.sh start >&2 && .ci/postgres.sh url || true)}" \
	    $(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

pg-start:  ## the throwaway PostgreSQL test server (installs it with apt-get as root if missing)
	.ci/postgres.sh start

pg-stop:
	.ci/postgres.sh stop

# The tests marked slow: the real-MiniLM integration test, the multi-process worker tests and retrain_ranking.py on
# a tiny study (PostgreSQL as for `make test`).  `.ci/run` runs it after `make test`.
test-slow: install
	LATENCYSOLVER_TEST_POSTGRES="$${LATENCYSOLVER_TEST_POSTGRES:-$$(LATENCYSOLVER_PG_INSTALL=$(PG_INSTALL) \
	    .ci/postgres.sh start >&2 && .ci/postgres.sh url || true)}" \
	    $(PY) -m pytest -q -m slow tests

bench-latency: install  ## CV of absolute p50 vs paired speed-up, 10 rounds (about 1.5 min)
	$(PY) benchmarks/latency_stability.py --data $(DATA)

bench-knobs: install  ## each knob alone and the CNN student (about 20 min)
	$(PY) benchmarks/knobs.py --data $(DATA)

bench-workers: install  ## per-trial storage overhead, SQLite vs PostgreSQL, and 1/2/4 worker processes (~1 min)
	LATENCYSOLVER_TEST_POSTGRES="$${LATENCYSOLVER_TEST_POSTGRES:-$$(LATENCYSOLVER_PG_INSTALL=$(PG_INSTALL) .ci/postgres.sh start >&2 && .ci/postgres.sh url || true)}" \
	    $(PY) benchmarks/workers.py

# benchmarks/pareto.py on one study: baselines (fp32 torch, ORT fp32, ORT int8 = the Optimum recipe, torch int8), the
# search vs random search, CONFIRM=N seed repeats and RETRAIN=STEPS retraining of the front (TRIALS=N per study;
# RESUME=1 continues the studies in OUT/study.db).  Chromium, as for `make test`, for front.png (kaleido); without
# it the benchmark writes front.html only and warns.
SST2_DATA ?= ../shared/data/sst2
PARETO_FLAGS = $(if $(TRIALS),--trials $(TRIALS)) $(if $(CONFIRM),--confirm $(CONFIRM)) \
    $(if $(RETRAIN),--retrain $(RETRAIN)) $(if $(RESUME),--resume)

bench-boolq: install  ## BoolQ: the study against the teacher, ORT fp32/int8 and torch int8, vs random search
	if [ "$(BROWSER_INSTALL)" = 1 ]; then .ci/chromium.sh; fi
	$(PY) benchmarks/pareto.py --config studies/boolq-pareto.yaml --data $(DATA) --title BoolQ \
	    --out benchmarks/results/boolq_pareto $(PARETO_FLAGS)

# SST-2's targets: 10x the fp32 teacher, seed-mean test within 1 point, seed-pooled held-out rows non-inferior at 1.5
bench-sst2: install  ## SST-2: the same benchmark on studies/sst2-pareto.yaml (SST2_DATA=...)
	if [ "$(BROWSER_INSTALL)" = 1 ]; then .ci/chromium.sh; fi
	$(PY) benchmarks/pareto.py --config studies/sst2-pareto.yaml --data $(SST2_DATA) --title SST-2 \
	    --out benchmarks/results/sst2_pareto --target-speedup 10 --margin 1.5 --test-points 1 $(PARETO_FLAGS)

bench-pareto: bench-boolq  ## the old name of bench-boolq

bench-elastic: install  ## elastic slices against the same recipes distilled alone (~1 h with the elastic training)
	$(PY) benchmarks/elastic_slices.py --data $(DATA)

bench-search: install  ## hypervolume against wall-clock time, elastic vs per-trial, TPE vs random (ARMS=..., resumable)
	$(PY) benchmarks/search_efficiency.py --data $(DATA) $(if $(ARMS),--arms $(ARMS))

bench-cnn: install  ## the CNN student with each addition alone and all together, 3 seeds (~20-30 min)
	$(PY) benchmarks/cnn.py --data $(DATA)

gpu-check: install  ## 3 quick trials trained on CUDA, timed on the CPU; step times per device (~5 min on a GPU)
	$(PY) benchmarks/gpu_check.py --data $(DATA)

# A virtualenv of Optimum's own (.interop-venv: torch 2.13.0, then optimum[onnxruntime] and the transformers it
# resolves), two small exports made offline, and the pipeline's answers against latencysolver.load's on every test
# row; a release check (see README, "Other tools").  FRESH=1 rebuilds the virtualenv (newest Optimum).
interop: install  ## exports loaded with Optimum + a transformers pipeline in their own virtualenv
	$(PY) benchmarks/interop.py --data $(DATA) $(if $(FRESH),--fresh)

clean:
	rm -rf $(VENV) .interop-venv exported latencysolver.db latencysolver-artifacts .pytest_cache site
