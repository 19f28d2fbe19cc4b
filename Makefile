# Everything runs inside .venv, created and filled from requirements/lock.txt on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := dlbook
# The book's notebooks print one compact line per epoch (no progress widgets, no timings).
export COMPANION_PROGRESS := line
export PYTHONHASHSEED := 0
# Idle OpenMP threads sleep instead of spinning: on a shared machine spinning costs many times the work.
export OMP_WAIT_POLICY := PASSIVE
NB ?= book
# The notebooks ask for the '$(KERNEL)' kernel; its kernel.json carries these settings, so a plain
# `jupyter lab` (or nbclient) runs the chapters as `make` does. Binder's postBuild installs the same.
KERNEL_ENV := --env OMP_WAIT_POLICY PASSIVE --env COMPANION_PROGRESS line --env PYTHONHASHSEED 0

.PHONY: install test unit nbval nbval-isa book book-check browser-check pdf benchmarks execute lab clean help

help:
	@echo "make test     unit tests + every notebook under nbval + book build (what CI runs)"
	@echo "make book     build the HTML book into _build/html (Chinese edition: _build/html/zh)"
	@echo "make pdf      the whole book as one PDF, _build/html/downloads/book.pdf (after make book)"
	@echo "make lab      JupyterLab with the '$(KERNEL)' kernel that imports companion"
	@echo "make execute  re-run notebooks in place (NB=book/01_images_as_tensors.ipynb for one)"
	@echo "make nbval-isa  nbval under an emulated instruction set other than this CPU's (NB= too)"

install: $(STAMP)

$(STAMP): requirements/lock.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -qq --upgrade pip
	$(PY) -m pip install -qq -r requirements/lock.txt
	$(PY) -m pip install -qq --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (dlbook)" $(KERNEL_ENV) >/dev/null
	touch $@

test: unit nbval book-check browser-check

unit: $(STAMP)
	$(PY) -m pytest tests -q

NBVAL := $(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

nbval: $(STAMP)
	$(NBVAL) --durations=0 -q $(NB)

# The same notebooks under another CPU's kernels (scripts/other_isa.sh picks them from this
# CPU's flags): outputs stored on one machine must print the same on any other.
nbval-isa: $(STAMP)
	source scripts/other_isa.sh && $(NBVAL) -q $(NB)

# Both editions: English in _build/html/, Chinese (the same notebooks, translated through
# locale/zh_CN/) in _build/html/zh/; then the catalogues against freshly extracted messages.
book-check: $(STAMP)
	rm -rf _build/html
	$(VENV)/bin/jupyter-book build . -W --keep-going -q
	$(PY) scripts/i18n.py build -W --keep-going -q
	$(PY) scripts/i18n.py check

# The built book as readers meet it (needs Debian's chromium; .ci/run installs it): Sphinx's
# linkcheck on internal links (external ones are ignored offline), then headless Chromium over every
# page of the table of contents (tests/browser). Screenshots land in _build/screenshots/.
browser-check: book-check pdf
	$(VENV)/bin/jupyter-book build . --builder linkcheck -W --keep-going -q
	mkdir -p _build/linkcheck && mv -f _build/html/output.txt _build/html/output.json _build/linkcheck/
	BOOK_BROWSER_CHECK=1 $(PY) -m pytest tests/browser -q

# Timing scripts (never tests): each benchmarks/bench_*.py's output is stored in
# benchmarks/results/, which the book's Performance appendix shows.
benchmarks: $(STAMP)
	mkdir -p benchmarks/results
	for f in benchmarks/bench_*.py; do \
	    [ -e "$$f" ] || continue; n=$$(basename $$f .py); echo "== $$n"; \
	    $(PY) $$f > benchmarks/results/$$n.txt.tmp && mv benchmarks/results/$$n.txt.tmp benchmarks/results/$$n.txt || exit 1; \
	done

# The whole book as one PDF: a single-page HTML build printed by headless Chromium (print CSS,
# typeset math, expanded solutions, an outline), copied next to the HTML book for its download link.
pdf: $(STAMP)
	$(PY) scripts/build_pdf.py

book: book-check pdf
	@echo "The book is built: open file://$(CURDIR)/_build/html/index.html"

execute: $(STAMP)
	$(PY) scripts/execute_notebooks.py $(NB)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.ip=127.0.0.1 --notebook-dir=$(or $(LAB_DIR),book) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean:
	rm -rf _build
