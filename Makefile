# The two commands a newcomer needs:   make demo   and   make test
# Both create (or reuse) .venv, install PyTorch and this package, then run.
# Pick another PyTorch build with e.g.  make test TORCH="torch==2.14.1 torchvision==0.29.1" TORCH_INDEX="--index-url URL"

PYTHON      ?= python3
VENV        ?= .venv
TORCH       ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
EXTRAS      ?= test
PYTEST_ARGS ?=
BIN         := $(VENV)/bin
# The stamp names what was installed, so asking for another torch build or other extras reinstalls.
STAMP       := $(VENV)/.installed-$(shell echo '$(TORCH) $(TORCH_INDEX) $(EXTRAS)' | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

## Meta-train CTS and Reptile on builtin tasks, fine-tune them and scratch on a held-out target, compare.
demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python recipes/demo.py

## The test suite (offline; slow and multi-process tests included).
test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lsml_hub recipes tests benchmarks hubconf.py conftest.py

## Every benchmark; each prints its ratio last and writes benchmarks/results/*.json.
bench: $(STAMP)
	for script in benchmarks/[!_]*.py; do HF_HUB_OFFLINE=1 $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
