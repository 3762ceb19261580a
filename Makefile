# Set-up pins torch==2.13.0: a bare `torch` pulls a multi-GB CUDA build. pyproject keeps a range for users.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

# The gguf extra compiles llama.cpp (llama-cpp-python, ~9 min on 2 cores the first time, then from pip's cache);
# `make demo EXTRAS=dev` leaves it out, and the quickstart then skips the GGUF files, saying so. llamacpp-server adds
# llama.cpp's OpenAI-compatible server, which the teacher test runs against (no second build).
EXTRAS ?= dev,gguf,llamacpp-server

$(BIN)/finsent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[$(EXTRAS)]" || { echo "warning: .[$(EXTRAS)] did not install; trying .[dev]" >&2; \
		$(BIN)/pip install -q -e ".[dev]"; }
	touch $@

setup: $(BIN)/finsent

demo: setup
	$(BIN)/finsent quickstart

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_pack.py
	$(BIN)/python benchmarks/bench_dedup.py
	$(BIN)/python benchmarks/bench_serve.py
	$(BIN)/python benchmarks/bench_inference.py
	$(BIN)/python benchmarks/bench_learning.py
	$(BIN)/python benchmarks/bench_calibration.py

clean:
	rm -rf $(VENV) runs .pytest_cache
