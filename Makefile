# The two commands of the README: `make book` and `make test`. Both create the environment
# when there is none. AEVB_PROFILE (smoke | book | paper) sets every training length.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.aevb-installed
TORCH_PIN ?= torch==2.13.0
AEVB_PROFILE ?= book
SMOKE_BUILD := _build/smoke
export AEVB_CACHE ?= $(CURDIR)/_build/cache
# Small models on a 2-core machine: one BLAS thread per process is faster than two fighting
# over the cores (measured: 3-10x under load). Override with OMP_NUM_THREADS=2 make ...
export OMP_NUM_THREADS ?= 1

.PHONY: help env book test test-unit test-notebooks test-browser lint format bench bench-book smoke-book check-draws clean

help:
	@echo "make book   build the HTML book into _build/html (profile: $(AEVB_PROFILE))"
	@echo "make test   lint, unit tests, notebooks under nbval, and browser tests of the built book"
	@echo "make bench  run benchmarks/ into benchmarks/report.json (chapter times kept)"
	@echo "make bench-book  time a cold book build; chapter times into benchmarks/report.json"
	@echo "make check-draws every chapter (book profile) with models trained on other draws"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_PIN)"
	$(PY) -m pip install -q -e ".[book,test]"
	touch $@

env: $(STAMP)

# The HTML book. Chapters are executed (cached in _build/.jupyter_cache, so an unchanged
# chapter is not re-run); widgets are rendered as static explorers (no kernel needed).
# The execution cache knows a notebook's code, not AEVB_PROFILE: a build in another profile
# than the cached one clears it, so no page shows another profile's results.
# A build under a draw salt (AEVB_DRAW_SALT, see check-draws) counts as another profile.
BOOK_RUN := $(AEVB_PROFILE)$(if $(filter-out 0,$(AEVB_DRAW_SALT)), salt $(AEVB_DRAW_SALT))
book: $(STAMP)
	@if [ -d _build/.jupyter_cache ] && [ "$$(cat _build/.aevb-profile 2>/dev/null)" != "$(BOOK_RUN)" ]; then \
	  echo "book: profile $(BOOK_RUN) differs from the cached one: re-executing every chapter"; \
	  rm -rf _build/.jupyter_cache _build/.doctrees _build/jupyter_execute _build/html; \
	fi
	@mkdir -p _build && echo "$(BOOK_RUN)" > _build/.aevb-profile
	AEVB_PROFILE=$(AEVB_PROFILE) AEVB_WIDGETS=static $(BIN)/jupyter-book build . -W -n --keep-going
	@test -f _build/html/index.html && echo "book: _build/html/index.html"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test-unit: $(STAMP)
	AEVB_PROFILE=smoke $(BIN)/pytest -q -m "not browser" tests

# Every chapter, top to bottom, in the smoke profile: nbval fails on any failing cell
# (including the cells that assert the claims the text makes).
test-notebooks: $(STAMP)
	AEVB_PROFILE=smoke AEVB_WIDGETS=static $(BIN)/pytest -q --nbval-lax -p no:randomly book

# The browser tests run over a book built in the smoke profile (a separate build folder and
# execution cache, so the book profile's cache is untouched). They drive Debian's Chromium
# (/usr/bin/chromium) and keep a screenshot of every page in $(SMOKE_BUILD)/_build/html/_screenshots.
# Under CI=true a missing Chromium or book fails them instead of skipping.
smoke-book: $(STAMP)
	AEVB_PROFILE=smoke AEVB_WIDGETS=static $(BIN)/jupyter-book build . -W -n --keep-going --path-output $(SMOKE_BUILD)
	@test -f $(SMOKE_BUILD)/_build/html/index.html

test-browser: smoke-book
	AEVB_BOOK_HTML=$(SMOKE_BUILD)/_build/html $(BIN)/pytest -q -m browser tests

test: lint test-unit test-notebooks test-browser

# Every chapter in the book profile with every model trained on other random draws: the
# initial weights, minibatches, binary pixels and noise of all training move with
# AEVB_DRAW_SALT (aevb._random.draw_salt), the evaluations keep theirs, and the models are
# cached apart (_build/salt-N). A claim asserted by a chapter that fails here held for the
# published draws only. Not part of `make test`: about 10 minutes on 2 cores.
DRAW_SALT ?= 1
check-draws: $(STAMP)
	AEVB_CACHE=$(CURDIR)/_build/salt-$(DRAW_SALT)/cache AEVB_PROFILE=book AEVB_DRAW_SALT=$(DRAW_SALT) \
	  AEVB_WIDGETS=static $(BIN)/pytest -q --nbval-lax -p no:randomly -p no:cacheprovider book

bench: $(STAMP)
	$(PY) -m benchmarks --threads $(shell nproc) --update --out benchmarks/report.json

# A cold build of the whole book, timed (wall time, peak memory by GNU time), its chapter times
# read from the build's execution cache (and, for the pages run at every build, from its
# output) into the report. Clears _build first.
bench-book: $(STAMP)
	rm -rf _build
	set -o pipefail; /usr/bin/time -v -o book-build.time $(MAKE) book 2>&1 | tee book-build.log
	$(PY) -m benchmarks --skip-throughput --skip-figure2 --from-build _build \
	  --build-time book-build.time --build-log book-build.log --update --out benchmarks/report.json
	rm -f book-build.time book-build.log

clean:
	rm -rf _build
