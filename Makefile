# Everyday actions. A fresh machine needs two: `make run` (local stack) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
export PYTHONPATH := $(CURDIR)/include

.PHONY: install run test test-fast collect backfill report export sim bench faults soak lint format lock clean browser

# The virtualenv is rebuilt whenever a pinned file changes. Bytecode is compiled at install: where
# PYTHONDONTWRITEBYTECODE is set (it is on this workplace's machines) every process would otherwise
# compile every module it imports, which costs each Airflow task process about a second of CPU.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

install: $(VENV)/.installed

run: install  ## the local stack: simulator, PostgreSQL, Airflow on :8080, one daily run [EXECUTOR=celery WORKERS=2]
	$(PY) -m ibkr_market_data_dev.local_stack $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(WORKERS),--workers $(WORKERS)) $(ARGS)

test: install browser  ## the whole suite, against real PostgreSQL and the TWS simulator
	$(PY) -m pytest

# The dashboard's browser test drives Debian's Chromium through Playwright (whose own browser
# download cannot work offline); installed here when missing, as root or through sudo.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends chromium

browser: $(CHROMIUM)

test-fast: install  ## everything but the real-scheduler runs
	$(PY) -m pytest -m "not scheduler"

collect: install  ## one daily run in-process: make collect DATE=2025-01-15 [TIMEFRAME=5min] [SYMBOLS=AAPL,BHP] [DRY_RUN=1]; its simulator takes IBKR_SIM_FAULTS, IBKR_SIM_NOW
	$(PY) -m ibkr_market_data_dev.local_cli collect $(if $(DATE),--date $(DATE)) $(if $(TIMEFRAME),--timeframe $(TIMEFRAME)) $(if $(SYMBOLS),--symbols $(SYMBOLS)) $(if $(DRY_RUN),--dry-run)

backfill: install  ## fill missing dates: make backfill FROM=2025-01-01 TO=2025-12-31 [TIMEFRAME=1min] [SYMBOLS=AAPL] [DRY_RUN=1] [RECHECK=1]
	$(PY) -m ibkr_market_data_dev.local_cli backfill --from $(FROM) --to $(TO) $(if $(TIMEFRAME),--timeframe $(TIMEFRAME)) $(if $(SYMBOLS),--symbols $(SYMBOLS)) $(if $(EXCHANGES),--exchanges $(EXCHANGES)) $(if $(DRY_RUN),--dry-run) $(if $(RECHECK),--recheck-no-data)

report: install  ## run metrics and coverage in the terminal: make report FROM=2025-01-01 TO=2025-01-31
	$(PY) -m ibkr_market_data_dev.local_cli report $(if $(FROM),--from $(FROM)) $(if $(TO),--to $(TO))

export: install  ## stored bars as Parquet, changed files only: make export FROM=2025-01-01 TO=2025-12-31 OUT=dir [TIMEFRAME=1min] [SYMBOLS=AAPL,BHP]
	$(PY) -m ibkr_market_data_dev.local_cli export --from "$(FROM)" --to "$(TO)" --out "$(OUT)" $(if $(TIMEFRAME),--timeframe "$(TIMEFRAME)") $(if $(SYMBOLS),--symbols "$(SYMBOLS)")

sim: install  ## the TWS simulator on 127.0.0.1:$${IBKR_SIM_PORT:-4002}
	$(PY) -m tws_simulator --universe $(wildcard include/ibkr_market_data/universe/*.csv)

bench: install  ## benchmarks; figures go to bench/results.md [ONLY=sim,reads,...] [ESTIMATE=1] [REPEATS=3] [DAILY_SYMBOLS=n] [SCALE_SIZES=320,1000]
	$(PY) -m bench.run $(if $(ONLY),--only "$(ONLY)") $(if $(ESTIMATE),--estimate) $(if $(REPEATS),--repeats $(REPEATS)) $(if $(DAILY_SYMBOLS),--daily-symbols $(DAILY_SYMBOLS)) $(if $(SCALE_SIZES),--scale-sizes $(SCALE_SIZES))

faults: install  ## the fault campaign against real daily runs; results go to campaign/results.md [ONLY=name,...] [EXECUTOR=celery] [SYMBOLS=24]
	$(PY) -m campaign.run $(if $(ONLY),--only "$(ONLY)") $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(SYMBOLS),--symbols $(SYMBOLS))

soak: install  ## the daily DAG over DAYS trading dates with random faults; report in campaign/soak.md [DAYS=20] [SEED=n] [SYMBOLS=8] [EXECUTOR=celery]
	$(PY) -m campaign.soak --days $(or $(DAYS),20) $(if $(SEED),--seed $(SEED)) $(if $(SYMBOLS),--symbols $(SYMBOLS)) $(if $(EXECUTOR),--executor $(EXECUTOR))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/hadolint Dockerfile

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

lock: install  ## re-pin requirements*.txt from requirements/*.in
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements/runtime.in -o requirements.txt
	$(VENV)/bin/uv pip compile --quiet --python-version 3.11 requirements/dev.in -o requirements-dev.txt

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache .mypy_cache
