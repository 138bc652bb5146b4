"""The experiment commands of the README and RESULTS.md: their configs load, and `python -m` finds them from the
repository root (the training itself is tested on tiny models in test_jmlr_vs_rag.py and test_headroom.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from trl import TrlParser

from experiments.headroom import HeadroomArguments
from experiments.jmlr_vs_rag import ARMS, ExperimentArguments, parse_variant

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments" / "configs").glob("*.yaml"))


def test_the_configs_are_there():
    assert [path.name for path in CONFIGS] == [
        "experiment-medmcqa.yaml",
        "experiment-pubmedqa.yaml",
        "joint-medmcqa.yaml",
        "joint-medquad.yaml",
        "joint-pubmedqa.yaml",
    ]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
def test_each_config_loads(config):
    (args,) = TrlParser((ExperimentArguments,)).parse_args_and_config(args=["--config", str(config)])
    assert args.output_dir == f"outputs/{config.stem}" and args.arms and set(args.arms) <= set(ARMS)
    args, headroom = TrlParser((ExperimentArguments, HeadroomArguments)).parse_args_and_config(
        args=["--config", str(config), "--headroom_limit", "7"]
    )
    assert headroom.headroom_limit == 7


@pytest.mark.parametrize("module", ["experiments.jmlr_vs_rag", "experiments.headroom", "experiments.precision"])
def test_python_dash_m_from_the_repository_root(module):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    run = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "--output_dir" in run.stdout and "--num_candidates" in run.stdout


def test_variants_parse_after_the_command_line_was_parsed():
    """HfArgumentParser rewrites the dataclass fields' types while parsing; a `--variants` value must still be read
    as its field's declared type (`eval_answer_limit: int | None` takes `none`)."""
    (args,) = TrlParser((ExperimentArguments,)).parse_args_and_config(args=["--config", str(CONFIGS[0])])
    variant = parse_variant("all eval_answer_limit=none max_steps=5 retrieval_temperature=0.1", args)
    assert (variant.eval_answer_limit, variant.max_steps, variant.retrieval_temperature) == (None, 5, 0.1)
