# The two commands of the README, and a few more for developers. Installs take the exact versions
# of constraints.txt (`make constraints` rewrites it from the venv); pyproject.toml holds bounds.
#   make run    set up .venv and run the default workflow (synthetic data, both papers)
#   make test   set up .venv and run lint + the whole test suite (what CI runs)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test test-fast lint bench clean constraints

setup: $(VENV)/.installed

# With the essentia extra (AGPL-3.0, optional for users), so that the tests cover that feature.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint constraints.txt -e '.[dev,essentia]'
	$(BIN)/merflow pretrained fetch musicnn  # weights from the musicnn wheel on PyPI, cached
	touch $@

# gpu = the CUDA devices torch sees: 0 on a CPU machine, so training jobs run side by side there.
run: setup
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete \
	  --resources gpu=$$($(BIN)/python -c 'import torch; print(torch.cuda.device_count())')
	@echo "Tables and figures: results/report/index.md"

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint

test: lint
	$(BIN)/pytest -q

test-fast: setup
	$(BIN)/pytest -q -m 'not slow'

bench: setup
	$(BIN)/python bench/features.py
	$(BIN)/python bench/training.py

constraints: setup
	$(BIN)/pip freeze --exclude-editable --all | grep -v '^pip==' | sed 's/+[a-z0-9.]*$$//' > constraints.txt

clean:
	rm -rf results .snakemake
