# Two entry points: `make demo` and `make test`. Each creates .venv in the
# checkout on first use and installs the project (with its extras) into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml setup.py $(wildcard proto/mpc/v1/*.proto)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

DATA ?= ../shared/data

demo: $(STAMP)
	$(BIN)/mpc-crm demo
	$(BIN)/mpc-crm simulate --users 4 --values 8 --key-bits 2048
	$(BIN)/mpc-crm simulate --ratings $(DATA)/movietweetings-top1000.csv --users 100 --targets 3 --top-n 20 \
	    --key-bits 2048 --titles $(DATA)/movietweetings-top1000-items.csv
	$(BIN)/mpc-crm simulate --baskets $(DATA)/groceries.csv --customers 80 --key-bits 1024 \
	    --product "whole milk" --product "rolls/buns" --k 5
	mkdir -p build/demo
	$(BIN)/mpc-crm churn train --data $(DATA)/telco-churn.csv --out build/demo/model.json
	$(BIN)/mpc-crm churn score --data $(DATA)/telco-churn.csv --model build/demo/model.json \
	    --customers 300 --key-bits 2048 --out build/demo/scores.json
	$(BIN)/mpc-crm churn plan --data $(DATA)/telco-churn.csv --model build/demo/model.json \
	    --costs examples/telco-costs.toml --max-action-sets 5 --customers 300 --key-bits 2048 \
	    --out build/demo/plan.json
	$(BIN)/mpc-crm churn report --scores build/demo/scores.json --plan build/demo/plan.json \
	    --model build/demo/model.json --data $(DATA)/telco-churn.csv --out build/demo/report.html

test: $(STAMP)
	$(BIN)/ruff check mpc crm bench scripts tests
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@echo "the framework's tests again, with the CRM absent (tests/without_crm/sitecustomize.py):"
	PYTHONPATH=tests/without_crm $(BIN)/python -m pytest -q tests/mpc

lint: $(STAMP)
	$(BIN)/ruff check mpc crm bench scripts tests

bench: $(STAMP)
	$(BIN)/python scripts/bench_crypto.py --bits 2048 --json bench/results/bench_crypto.json

clean:
	rm -rf $(VENV) build *.egg-info mpc/v1
