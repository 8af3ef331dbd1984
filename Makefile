# The two commands of the README: `make demo` and `make test`. Each creates the virtual
# environment it needs on first use (Python and the machine's services are all it assumes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest docs package bench clean screenshots

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint,docs,bench,dev]'
	touch $@

demo: $(STAMP)
	cd example && ../$(PY) demo.py

test: lint typecheck docs pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

pytest: $(STAMP)
	$(PY) -m pytest

# Build the sdist and wheel, check their contents and metadata, install the wheel in a new venv.
package: $(STAMP)
	$(PY) .ci/check_package.py

clean:
	rm -rf $(VENV) .tox docs/_build .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.lock_commands
	$(PY) -m benchmarks.scale
	$(PY) -m benchmarks.admin_page

# The docs' pictures of the admin section (docs/_static/admin-*.png): the browser tests take
# them as they run (tests/test_admin_browser.py), with Debian's chromium and chromium-driver.
screenshots: $(STAMP)
	CELERY_EVENTS_REQUIRE_BROWSER=1 CELERY_EVENTS_DOCS_SCREENSHOTS=docs/_static \
		$(PY) -m pytest -p no:cacheprovider tests/test_admin_browser.py
