# The two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench bench-ls clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) -m demo

test: $(VENV)/.installed
	tools/ensure_redis.sh
	LS_BIN="$$(tools/ensure_label_studio.sh)" $(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_predict.py
	tools/ensure_redis.sh
	$(PY) bench/bench_ledger.py

bench-ls: $(VENV)/.installed
	tools/ensure_redis.sh
	LS_BIN="$$(tools/ensure_label_studio.sh)" $(PY) bench/bench_scoring.py

clean:
	rm -rf $(VENV) var out .pytest_cache
