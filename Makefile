# lensops: the two commands of the README, and the heavier checks.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo bench soak lint clean

# lensops and its test tooling, the AWS emulator of emulator/ (distribution
# lensops-emulator, on no index), in one pip command so that the local
# emulator is what satisfies the `test` extra.
$(STAMP): pyproject.toml emulator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ./emulator -e '.[test]'
	touch $(STAMP)

## make lint: ruff (bugs, not style: see [tool.ruff] in pyproject.toml) and mypy (strict on controller/ and reconcilers/)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy controller reconcilers runbooks

## make test: the lint, then the whole test suite (under 10 minutes on 2 cores)
test: lint
	$(BIN)/python -m pytest -q -n 2 tests

## make demo: the daemon on an embedded AWS emulator, on a Git repo made from desired-state/
demo: $(STAMP)
	$(BIN)/lensops demo

## make bench: performance figures (prints a table, asserts nothing on time)
bench: $(STAMP)
	$(BIN)/python -m pytest -s tests/benchmarks -p no:randomly

## make soak: fault injection at scale
soak: $(STAMP)
	$(BIN)/python -m pytest -s tests/soak

clean:
	rm -rf $(VENV) .pytest_cache .lensops .mypy_cache .ruff_cache
