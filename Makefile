# The two commands a newcomer needs:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: demo test bench bench-ls screenshots clean

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check --no-deps -e .   # the llm-prelabel* commands
	touch $@

# The whole loop in a real Label Studio (installed once into its own virtualenv), until Ctrl-C.
# For CI: make demo ARGS="--no-wait --tasks 40".  Without Label Studio: $(PY) -m demo --offline.
demo: $(VENV)/.installed
	LS_BIN="$$(tools/ensure_label_studio.sh)" && LS_BIN="$$LS_BIN" $(PY) -m demo $(ARGS)

# Lint and types first, then every test.  A missing Redis, Label Studio or Chromium fails the run; for local
# work without Label Studio: ALLOW_SKIP_SERVICES=1 make test (its tests are then skipped and listed;
# ignored when CI=true).  Extra pytest arguments: make test PYTEST_ARGS="-x -k spans".
test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	tools/ensure_redis.sh
	if LS_BIN="$$(tools/ensure_label_studio.sh)"; then export LS_BIN; \
	elif [ "$${ALLOW_SKIP_SERVICES:-}" != 1 ] || [ "$${CI:-}" = true ] || [ "$${CI:-}" = 1 ]; then exit 1; fi; \
	if CHROMEDRIVER="$$(tools/ensure_chromium.sh)"; then export CHROMEDRIVER; \
	elif [ "$${ALLOW_SKIP_SERVICES:-}" != 1 ] || [ "$${CI:-}" = true ] || [ "$${CI:-}" = 1 ]; then exit 1; fi; \
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_stats.py
	$(PY) bench/bench_predict.py
	tools/ensure_redis.sh
	$(PY) bench/bench_ledger.py
	$(PY) bench/bench_ratelimit.py

bench-ls: $(VENV)/.installed
	tools/ensure_redis.sh
	LS_BIN="$$(tools/ensure_label_studio.sh)" && LS_BIN="$$LS_BIN" $(PY) bench/bench_scoring.py && \
	  LS_BIN="$$LS_BIN" $(PY) bench/bench_ls_import.py

# Label Studio's UI in headless Chromium (tests/test_ui_browser.py): screenshots in out/screenshots/,
# the two the README shows copied to docs/screenshots/.
screenshots: $(VENV)/.installed
	LS_BIN="$$(tools/ensure_label_studio.sh)" && CHROMEDRIVER="$$(tools/ensure_chromium.sh)" && \
	LS_BIN="$$LS_BIN" CHROMEDRIVER="$$CHROMEDRIVER" $(PY) -m pytest tests/test_ui_browser.py
	mkdir -p docs/screenshots
	cp out/screenshots/agreement-tab.png out/screenshots/model-settings.png docs/screenshots/
	$(PY) -m demo --offline >/dev/null   # the HTML report, as a screenshot of its first screens
	"$$(dirname "$$(tools/ensure_chromium.sh)")/chromium" --headless=new --no-sandbox --disable-gpu \
	  --disable-background-networking --disable-component-update --disable-sync --no-first-run \
	  --screenshot=docs/screenshots/report.png --window-size=1300,2300 "file://$(CURDIR)/out/demo/report.html"

clean:
	rm -rf $(VENV) var out .pytest_cache .mypy_cache .ruff_cache
