# The two commands of the README: `make demo` (set up, then the quick preset of every
# study) and `make test` (set up, then the test suite). Both do all set-up themselves.
VENV ?= .venv
# Real data: --data-dir or DLSLAB_DATA; a ../shared/data folder beside the checkout is used if present.
DLSLAB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export DLSLAB_DATA

.PHONY: setup demo test bench
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	VENV=$(VENV) scripts/setup.sh

demo: setup
	$(VENV)/bin/dlslab run all --preset quick --jobs 2

test: setup
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python benchmarks/train_loop.py
