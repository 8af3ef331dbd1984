# The two commands of the README: `make demo` and `make test`. Each creates the virtual
# environment it needs on first use (Python and the machine's services are all it assumes),
# at the versions of the committed lock, requirements/dev.txt: the same commit checks the same
# way on any day. `make upgrade` moves the lock on, on purpose (see .ci/lock.py).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)

.PHONY: demo test lint typecheck pytest docs package bench clean screenshots lock upgrade

# A new lock makes a new environment (--clear): nothing of the old one's stays behind. pip and
# the build backend come from the lock first, so that the project installs with those versions.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --constraint $(LOCK) pip hatchling hatch-fancy-pypi-readme editables
	$(PY) -m pip install --quiet --constraint $(LOCK) --no-build-isolation \
		-e '.[test,lint,docs,bench,dev]'
	touch $@

demo: $(STAMP)
	cd example && ../$(PY) demo.py

test: lint typecheck docs pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(PY) -m mypy

docs: $(STAMP)
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

pytest: $(STAMP)
	$(PY) -m pytest

# Build the sdist and wheel, check their contents and metadata, install the wheel in a new venv.
package: $(STAMP)
	$(PY) .ci/check_package.py

# The locks of requirements/: `lock` resolves what pyproject.toml or tox.ini changed and keeps
# every other pin; `upgrade` moves every pin to its newest release. Commit the result on its own.
lock: $(STAMP)
	$(PY) .ci/lock.py

upgrade: $(STAMP)
	$(PY) .ci/lock.py --upgrade

clean:
	rm -rf $(VENV) .tox docs/_build .pytest_cache .mypy_cache .ruff_cache

bench: $(STAMP)
	$(PY) -m benchmarks
	$(PY) -m benchmarks.lock_commands
	$(PY) -m benchmarks.joins
	$(PY) -m benchmarks.scale
	$(PY) -m benchmarks.admin_page

# The docs' pictures of the admin section (docs/_static/admin-*.png): the browser tests take
# them as they run (tests/test_admin_browser.py), with Debian's chromium and chromium-driver.
screenshots: $(STAMP)
	CELERY_EVENTS_REQUIRE_BROWSER=1 CELERY_EVENTS_DOCS_SCREENSHOTS=docs/_static \
		$(PY) -m pytest -p no:cacheprovider tests/test_admin_browser.py
