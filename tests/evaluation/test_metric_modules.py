"""The project's metrics as `evaluate` modules shipped in the package: they load offline from their folder with
`evaluate.load(path)` and give the numbers of the library functions they call (one definition of each formula)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys

import pytest

from jmlr_hf.evaluation import METRIC_MODULES, load_metric, metric_module_path, ranking_metrics
from jmlr_hf.evaluation.metrics import accuracy, macro_f1

PREDICTIONS = ["A", "", "C", "B", "B", "D"]  # "": a reply that names no answer (`None` for the functions)
FUNCTION_PREDICTIONS = [p or None for p in PREDICTIONS]
REFERENCES = ["A", "B", "D", "B", "C", "D"]
RANKED = [["d3", "d1", "d2"], ["d2", "d9", "d4"], ["d7", "d8", "d5"], ["d1", "d2", "d3"]]
GOLD = [["d1"], ["d4", "d2"], [], ["d6"]]  # the third query has no gold ids and is left out

OFFLINE_PROBE = """
import json, evaluate
from jmlr_hf.evaluation import metric_module_path
modules = {{name: evaluate.load(str(metric_module_path(name))) for name in {names!r}}}
print(json.dumps({{
    "accuracy": modules["jmlr_accuracy"].compute(predictions={p!r}, references={r!r}),
    "macro_f1": modules["jmlr_macro_f1"].compute(predictions={p!r}, references={r!r}),
    "ranking": modules["jmlr_ranking"].compute(predictions={ranked!r}, references={gold!r}, k_values=[1, 2, 3]),
}}))
"""


def test_the_modules_load_offline_and_give_the_library_numbers(tmp_path):
    """A fresh process, offline (HF_EVALUATE_OFFLINE / HF_HUB_OFFLINE) and with an empty module cache: each
    module comes from its folder inside the package, nothing from the Hub or an earlier download."""
    probe = OFFLINE_PROBE.format(names=METRIC_MODULES, p=PREDICTIONS, r=REFERENCES, ranked=RANKED, gold=GOLD)
    env = {
        **os.environ,
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "HF_HOME": str(tmp_path / "hf_home"),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["accuracy"] == {"accuracy": accuracy(FUNCTION_PREDICTIONS, REFERENCES)}
    assert result["macro_f1"] == {"macro_f1": macro_f1(FUNCTION_PREDICTIONS, REFERENCES)}
    assert result["ranking"] == ranking_metrics(RANKED, GOLD, [1, 2, 3])
    assert any((tmp_path / "modules").rglob("jmlr_ranking.py"))  # copied from the package into the fresh cache


@pytest.mark.parametrize("seed", range(5))
def test_the_modules_agree_with_the_functions_on_random_cases(seed):
    rng = random.Random(seed)
    labels = ["yes", "no", "maybe"]
    size = rng.randint(1, 30)
    references = [rng.choice(labels) for _ in range(size)]
    predictions = [rng.choice([*labels, None]) for _ in range(size)]
    answered = [p if p is not None else "" for p in predictions]  # as the harness passes them
    got = load_metric("jmlr_accuracy").compute(predictions=answered, references=references)
    assert got["accuracy"] == accuracy(predictions, references)
    got = load_metric("jmlr_macro_f1").compute(predictions=answered, references=references, labels=labels)
    assert got["macro_f1"] == macro_f1(predictions, references, labels)
    got = load_metric("jmlr_macro_f1").compute(predictions=answered, references=references)  # labels seen
    assert got["macro_f1"] == macro_f1(predictions, references)

    corpus = [f"d{i}" for i in range(12)]
    ranked = [rng.sample(corpus, rng.randint(1, 8)) for _ in range(size)]
    gold = [rng.sample(corpus, rng.randint(0, 3)) for _ in range(size)]
    got = load_metric("jmlr_ranking").compute(predictions=ranked, references=gold, k_values=[1, 3, 5])
    expected = ranking_metrics(ranked, gold, [1, 3, 5]) or {"num_questions": 0}
    assert got.keys() == expected.keys()
    assert all(math.isclose(got[key], expected[key]) for key in expected)


def test_the_modules_add_batches_like_any_evaluate_metric():
    metric = load_metric("jmlr_accuracy")
    metric.add_batch(predictions=PREDICTIONS[:3], references=REFERENCES[:3])
    metric.add_batch(predictions=PREDICTIONS[3:], references=REFERENCES[3:])
    assert metric.compute() == {"accuracy": accuracy(FUNCTION_PREDICTIONS, REFERENCES)}


def test_an_unknown_module_is_named():
    with pytest.raises(ValueError, match="ships jmlr_accuracy, jmlr_macro_f1, jmlr_ranking"):
        metric_module_path("accuracy")


def test_the_packaging_ships_every_module_file():
    """A wheel carries the module folders (package data: they are scripts that `evaluate.load` copies, not
    subpackages), or `load_metric` would fail in every install but a source checkout."""
    import fnmatch
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    evaluation = root / "jmlr_hf" / "evaluation"
    files = [path.relative_to(evaluation).as_posix() for path in (evaluation / "metric_modules").rglob("*")]
    files = [name for name in files if (evaluation / name).is_file() and "__pycache__" not in name]
    assert {name.split("/")[1] for name in files} == set(METRIC_MODULES)
    assert all(any(fnmatch.fnmatch(name, p) for p in patterns["jmlr_hf.evaluation"]) for name in files), files
