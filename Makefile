# Two commands set up everything on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: here the CPU build installs offline from a local wheel,
# while an unpinned torch would pull several GB of CUDA packages.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test venv bench bench-outside lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,compare]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m archlab.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/builder_overhead.py

# the analysis on torchvision and timm models, in its own environment (.venv-outside, several GB,
# made on first use with torch 2.14.1 + torchvision 0.29.1 + timm + fvcore); niced, long
bench-outside:
	$(PYTHON) benchmarks/outside_models.py --resume

clean:
	rm -rf $(VENV) build dist src/*.egg-info
