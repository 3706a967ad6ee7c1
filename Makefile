# The two commands a newcomer needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check-template package bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

## run: start the local cloud and the functions in the foreground (Ctrl-C stops it)
run: $(STAMP)
	$(BIN)/assistflow up

## test: lint, type-check, check template.yml offline and run the whole test suite
test: $(STAMP) lint typecheck check-template
	$(BIN)/python -m pytest

## check-template: template.yml through Alibaba's ROS CDK and the FC 3.0 SDK (needs node)
check-template: $(STAMP)
	$(BIN)/assistflow check-template template.yml

## package: one zip per function in dist/, to upload to the CodeBucket
package: $(STAMP)
	$(BIN)/assistflow package --out dist

## bench: benchmarks, not tests (12-14 minutes; BENCH_ARGS=--quick about 5): a table and
## bench/results/latest.json
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .assistflow .pytest_cache .mypy_cache .ruff_cache
