# The two commands a fresh machine needs: `make demo` and `make test`.
# Each installs what is missing (Debian packages, then a .venv with pinned Python packages).

# Debian's own python3.11 when the machine has it, else the python3 on PATH. Debian builds its
# interpreter with profile-guided and link-time optimisation and links it statically; with
# it, web and recommender servers spent 5 % less CPU on a cold "for you" page than under a
# default pyenv build (shared libpython, no PGO), see BENCHMARKS.md. `make clean` first to
# move an existing .venv over.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test drills lint install system test-tools clean

# MOVIELENS=path/to/ml-latest-small imports that release instead of generating data.
demo: system $(STAMP)
	$(BIN)/movierec demo $(if $(MOVIELENS),--movielens $(MOVIELENS))

test: install
	$(BIN)/ruff check movierec tests bench
	$(BIN)/ruff format --check movierec tests bench
	./ops/audit.sh $(BIN)
	$(BIN)/pytest

# Every fault drill, the slow ones too (`make test` runs only the quick ones; the slow ones,
# marker drill_slow, live beside the tests of what they break): a local cluster on loopback
# under a bounded load, members killed and restarted, each drill's numbers printed as a table
# row at the end (BENCHMARKS.md, "Drills").
drills: install
	$(BIN)/pytest -m "drill or drill_slow"

install: system test-tools $(STAMP)

system:
	@./ops/install-system.sh

# Chromium and the test OpenID Connect provider: only the tests need them.
test-tools: system
	@./ops/install-test-tools.sh

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check movierec tests bench
	$(BIN)/ruff format --check movierec tests bench

clean:
	rm -rf $(VENV) .state .pytest_cache
